"""``dlcrun submit``, ``status``, ``resubmit``, ``cancel`` and ``task``: a run's life, one array at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dlcrun.cli import views
from dlcrun.cli.app import ConfigOpt, ImageOpt, RunArg, RunsDirOpt, app, err, friendly, out, settings_from

PANEL = "Batches"  # where --help lists these commands


@app.command(rich_help_panel=PANEL)
@friendly
def submit(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="manifest from dlcrun manifest")],
    project: Annotated[Optional[Path], typer.Option(help="DeepLabCut project folder")] = None,
    dest: Annotated[Optional[str], typer.Option(help="where keypoints go (path or URI)")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="local, slurm, pbs, torque")] = None,
    max_running: Annotated[Optional[int], typer.Option(help="array indices running at once")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="GPUs per array index (resources.gpus)")] = None,
    shuffle: Annotated[Optional[int], typer.Option(help="DLC training shuffle")] = None,
    snapshot: Annotated[Optional[str], typer.Option(help="snapshot file, 'best' or index (pinned now)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="frames per forward pass")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (gpu means cuda)")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32 (DLC's keypoints), bf16 or fp16 (faster)")] = None,
    decoder: Annotated[
        Optional[str], typer.Option(help="video decoder: opencv (as DLC) or pyav (same frames, FFmpeg threads)")
    ] = None,
    videos_per_task: Annotated[
        Optional[int], typer.Option(help="manifest lines per array index (one model load; next video prefetched)")
    ] = None,
    stride: Annotated[Optional[int], typer.Option(help="analyse one frame in N")] = None,
    every: Annotated[Optional[str], typer.Option(help="analyse one frame every DURATION, e.g. 10s")] = None,
    save_csv: Annotated[Optional[bool], typer.Option("--csv/--no-csv", help="also write DLC's .csv")] = None,
    scratch: Annotated[Optional[Path], typer.Option(help="node-local scratch (default $TMPDIR)")] = None,
    image: ImageOpt = None,
    runs_dir: RunsDirOpt = None,
    wait: Annotated[Optional[bool], typer.Option("--wait/--no-wait", help="follow progress (local default)")] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="check every video exists first")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the job script and submit command only")] = False,
    config: ConfigOpt = None,
) -> None:
    """Start a run: pin the model, freeze the settings, submit one job array."""
    from dlcrun import batch
    from dlcrun.schedulers import follows

    settings = settings_from(config, locals(), resources=None if gpus is None else {"gpus": gpus})
    if dry_run:
        with err.status("checking the manifest and pinning the model..."):
            plans = batch.dry_run(manifest_path, settings, check=check)
        typer.echo("\n".join(views.plans(plans)))
        err.print("dry run: nothing was submitted and no run directory was written")
        return
    with err.status("checking the manifest, pinning the model and submitting..."):
        run, preflight, sub = batch.launch(manifest_path, settings, check=check)
    for line in views.started(run, preflight, sub):
        out.print(line)
    if follows(sub.scheduler, wait):
        follow(run)
    else:
        out.print(f"follow it with: dlcrun status {run.id}")


def follow(run: Any) -> None:
    """A progress bar until every index has finished, then the status; exit 1 if any failed."""
    from dlcrun import batch

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task("videos", total=len(run))
        for current in batch.watch(run):
            ended, words = views.progress(current)
            progress.update(bar, completed=ended, description=words)
    print_status(current)
    if current.failures:
        raise typer.Exit(1)


@app.command(rich_help_panel=PANEL)
@friendly
def status(
    run: RunArg = None,
    runs_dir: RunsDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout, for scripts")] = False,
) -> None:
    """Counts by state, failures grouped by reason (job ids, logs), throughput and ETA (the newest run by default)."""
    from dlcrun import batch, report

    current = batch.status(find_run(run, runs_dir, config))
    if as_json:
        typer.echo(views.status_json(report.summarize(current)))
        return
    print_status(current)


def print_warnings(run: Any) -> None:
    """One line per damaged ledger file (each once), never a traceback."""
    from rich.markup import escape

    for line in run.new_warnings():
        err.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


def find_run(run: str | None, runs_dir: Path | None, config: Path | None) -> Any:
    from dlcrun.ledger import Run
    from dlcrun.settings import load_settings

    return Run.find(run, runs_dir or load_settings(config).runs_dir)


def print_status(current: Any) -> None:
    """Warnings (the ledger's damaged files, a scheduler not asked) on stderr, then the report."""
    from rich.markup import escape

    from dlcrun.report import summarize

    print_warnings(current.run)
    for line in current.unseen_warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    for shown in views.status(summarize(current)):
        out.print(shown, highlight=False, soft_wrap=True)


@app.command(rich_help_panel=PANEL)
@friendly
def resubmit(
    run: RunArg = None,
    runs_dir: RunsDirOpt = None,
    config: ConfigOpt = None,
    wait: Annotated[Optional[bool], typer.Option("--wait/--no-wait")] = None,
    time_limit: Annotated[
        Optional[str], typer.Option("--time", help="wall time per index from now on: HH:MM:SS, 12h, 1d12h")
    ] = None,
    mem: Annotated[Optional[str], typer.Option(help="memory per index from now on, e.g. 32G")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="GPUs per index from now on")] = None,
    partition: Annotated[Optional[str], typer.Option(help="Slurm partition / PBS queue from now on")] = None,
    max_running: Annotated[Optional[int], typer.Option(help="indices running at once from now on")] = None,
) -> None:
    """Submit a new array of only the indices that are not done (failed, interrupted, lost, cancelled)."""
    from dlcrun import batch
    from dlcrun.schedulers import follows

    target = find_run(run, runs_dir, config)
    changes = {"time": time_limit, "mem": mem, "gpus": gpus, "partition": partition}
    try:
        sub = batch.resubmit(target, {k: v for k, v in changes.items() if v is not None}, max_running)
    finally:
        print_warnings(target)
    if sub is None:
        out.print("nothing to resubmit: every video is done, queued or running")
        return
    out.print(views.array(target, sub))
    if follows(sub.scheduler, wait):
        follow(target)


@app.command(rich_help_panel=PANEL)
@friendly
def cancel(run: RunArg = None, runs_dir: RunsDirOpt = None, config: ConfigOpt = None) -> None:
    """Stop a run's queued and running indices."""
    from dlcrun import batch

    target = find_run(run, runs_dir, config)
    try:
        n = batch.cancel(target)
    finally:
        print_warnings(target)
    out.print(
        f"cancelled; {n} indices were queued or running" if n else "nothing to cancel: no index is queued or running"
    )


@app.command(rich_help_panel=PANEL)
@friendly
def task(
    run: Annotated[Path, typer.Option(help="run directory")],
    index: Annotated[Optional[int], typer.Option(help="manifest index (0-based)")] = None,
    submission: Annotated[Optional[int], typer.Option(help="submission number, with --array-index")] = None,
    array_index: Annotated[
        Optional[int],
        typer.Option(
            envvar=["SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID"], help="array index in that submission"
        ),
    ] = None,
    array_offset: Annotated[
        int,
        typer.Option(
            envvar="DLCRUN_ARRAY_OFFSET", help="added to the array index (a submission split into several arrays)"
        ),
    ] = 0,
) -> None:
    """What one array index runs: stage in, infer, verify, stage out, record (per video)."""
    from dlcrun.ledger import Run
    from dlcrun.runtime import Interrupted
    from dlcrun.task import run_task

    try:
        records = run_task(Run(run), index, submission, None if array_index is None else array_offset + array_index)
    except Interrupted as exc:
        err.print(str(exc))
        raise typer.Exit(143) from None
    for line in views.task(records):
        err.print(line, highlight=False, soft_wrap=True)
    if any(r.state != "done" for r in records):
        raise typer.Exit(1)
