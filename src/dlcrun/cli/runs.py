"""``dlcrun submit``, ``status``, ``resubmit``, ``cancel`` and ``task``: a run's life, one array at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dlcrun.cli import views
from dlcrun.cli.app import ConfigOpt, ImageOpt, RunArg, RunsDirOpt, app, err, friendly, out, setting, settings_from
from dlcrun.cli.resources import (
    AccountOpt,
    ConstraintOpt,
    CpusOpt,
    GpusOpt,
    LaterAccountOpt,
    LaterConstraintOpt,
    LaterCpusOpt,
    LaterGpusOpt,
    LaterMemOpt,
    LaterPartitionOpt,
    LaterQosOpt,
    LaterTimeOpt,
    MemOpt,
    PartitionOpt,
    QosOpt,
    TimeOpt,
    resources_given,
)

PANEL = "Batches"  # where --help lists these commands


@app.command(rich_help_panel=PANEL)
@friendly
def submit(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="manifest from dlcrun manifest")],
    project: Annotated[Optional[Path], setting("project")] = None,
    dest: Annotated[Optional[str], setting("dest")] = None,
    scheduler: Annotated[Optional[str], setting("scheduler")] = None,
    max_running: Annotated[Optional[int], setting("max_running")] = None,
    shuffle: Annotated[Optional[int], setting("shuffle")] = None,
    snapshot: Annotated[
        Optional[str],
        setting(
            "snapshot",
            help="snapshot to use: a file name (snapshot-200.pt), 'best', or an index (-1 = last); pinned now",
            default="the project's snapshotindex",
        ),
    ] = None,
    batch_size: Annotated[Optional[int], setting("batch_size")] = None,
    detector_batch_size: Annotated[Optional[int], setting("detector_batch_size")] = None,
    device: Annotated[Optional[str], setting("device")] = None,
    precision: Annotated[Optional[str], setting("precision")] = None,
    decoder: Annotated[Optional[str], setting("decoder")] = None,
    videos_per_task: Annotated[Optional[int], setting("videos_per_task")] = None,
    stride: Annotated[Optional[int], setting("stride")] = None,
    every: Annotated[Optional[str], setting("every", default="off")] = None,
    save_csv: Annotated[Optional[bool], setting("save_csv", "--save-csv/--no-save-csv")] = None,
    filter: Annotated[Optional[str], setting("filter")] = None,
    qc_clips: Annotated[Optional[bool], setting("qc_clips", "--qc-clips/--no-qc-clips")] = None,
    scratch: Annotated[Optional[Path], setting("scratch")] = None,
    image: ImageOpt = None,
    runs_dir: RunsDirOpt = None,
    wait: Annotated[
        Optional[bool],
        typer.Option(
            "--wait/--no-wait", help="follow progress", show_default="wait with the local scheduler, else not"
        ),
    ] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="check every video exists first")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="write the scripts and submit commands, estimate the time; queue nothing")
    ] = False,
    config: ConfigOpt = None,
    time_limit: TimeOpt = None,
    mem: MemOpt = None,
    cpus: CpusOpt = None,
    gpus: GpusOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    constraint: ConstraintOpt = None,
) -> None:
    """Start a run: pin the model, freeze the settings, submit one job array.

    An option not given comes from dlcrun.toml (dlcrun init writes one; DLCRUN_* variables override
    it), else the default shown. Try it with --dry-run first: it writes the job scripts and shows
    the array and an estimate of its time, and queues nothing.

    Examples:

        dlcrun submit manifests/batch.txt --project ~/dlc/proj --dest /data/keypoints
        dlcrun submit manifests/batch.txt --project ~/dlc/proj --dest dropbox:/Keypoints \\
            --scheduler slurm --gpus 1 --time 12h --dry-run
    """
    from dlcrun import batch
    from dlcrun.schedulers import follows

    settings = settings_from(config, locals(), resources=resources_given(locals()) or None)
    if dry_run:
        with err.status("checking the manifest, pinning the model and writing the dry run..."):
            made = batch.dry_run(manifest_path, settings, check=check)
        print_warnings(made.run)
        typer.echo("\n".join(views.dry_run(made)))
        return
    with err.status("checking the manifest, pinning the model and submitting..."):
        run, preflight, sub = batch.launch(manifest_path, settings, check=check)
    for line in views.started(run, preflight, sub):
        out.print(line)
    print_warnings(run)
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


# How often ``status --watch`` asks the scheduler and redraws: a squeue every few seconds is
# polite to the cluster, and the ETA moves no faster.
WATCH_SECONDS = 5.0


@app.command(rich_help_panel=PANEL)
@friendly
def status(
    run: RunArg = None,
    runs_dir: RunsDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout, for scripts")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help=f"redraw every {WATCH_SECONDS:g} s until the run ends; Ctrl-C stops watching, not the run"
        ),
    ] = False,
) -> None:
    """Counts by state, failures grouped by reason (job ids, logs), throughput and ETA (the newest run by default).

    Examples:

        dlcrun status
        dlcrun status 20261002-141200-batch --watch
        dlcrun status --json > status.json
    """
    from dlcrun import batch, report
    from dlcrun.errors import ConfigError

    if watch and as_json:
        raise ConfigError("--watch and --json: --json prints one object for scripts, --watch redraws; give one")
    target = find_run(run, runs_dir, config)
    if watch:
        watch_status(target)
        return
    current = batch.status(target)
    if as_json:
        typer.echo(views.status_json(report.summarize(current)))
        return
    print_status(current)


def watch_status(run: Any) -> None:
    """The status redrawn in place until every index has finished (or the scheduler cannot be
    asked: then its last view stays, with the warning saying why). Ctrl-C stops the watching,
    quietly and with exit status 0; the run goes on."""
    import datetime as dt

    from rich.console import Group
    from rich.live import Live

    from dlcrun import batch
    from dlcrun.report import summarize

    try:
        with Live(console=out, auto_refresh=False) as live:
            for current in batch.watch(run, every=WATCH_SECONDS):
                print_status_warnings(current)
                shown = [
                    out.render_str(item, highlight=False) if isinstance(item, str) else item
                    for item in views.status(summarize(current))
                ]
                if not current.finished:
                    shown.append(
                        out.render_str(
                            f"[dim]{dt.datetime.now():%H:%M:%S}, redrawn every {WATCH_SECONDS:g} s; "
                            "Ctrl-C stops watching, not the run[/dim]"
                        )
                    )
                live.update(Group(*shown), refresh=True)
    except KeyboardInterrupt:
        pass


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
    from dlcrun.report import summarize

    print_status_warnings(current)
    for shown in views.status(summarize(current)):
        out.print(shown, highlight=False, soft_wrap=True)


def print_status_warnings(current: Any) -> None:
    """The ledger's damaged files (each once) and the schedulers that could not be asked, on stderr."""
    from rich.markup import escape

    print_warnings(current.run)
    for line in current.unseen_warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


@app.command(rich_help_panel=PANEL)
@friendly
def resubmit(
    run: RunArg = None,
    runs_dir: RunsDirOpt = None,
    config: ConfigOpt = None,
    wait: Annotated[
        Optional[bool],
        typer.Option(
            "--wait/--no-wait", help="follow progress", show_default="wait with the local scheduler, else not"
        ),
    ] = None,
    max_running: Annotated[
        Optional[int], typer.Option(help="indices running at once from now on", show_default="the run's")
    ] = None,
    time_limit: LaterTimeOpt = None,
    mem: LaterMemOpt = None,
    cpus: LaterCpusOpt = None,
    gpus: LaterGpusOpt = None,
    partition: LaterPartitionOpt = None,
    account: LaterAccountOpt = None,
    qos: LaterQosOpt = None,
    constraint: LaterConstraintOpt = None,
) -> None:
    """Submit a new array of only the indices that are not done (failed, interrupted, lost, cancelled).

    Resource flags change what this and later arrays of the run ask for (the usual answer to
    indices interrupted by the time limit); without them, and for every other setting, the run
    keeps what it was submitted with.

    Examples:

        dlcrun resubmit
        dlcrun resubmit 20261002-141200-batch --time 12h --mem 32G
    """
    from dlcrun import batch
    from dlcrun.cli.app import flag_spellings
    from dlcrun.schedulers import follows

    target = find_run(run, runs_dir, config)
    changes = resources_given(locals())
    try:
        sub = batch.resubmit(target, changes, max_running, flags=flag_spellings(["max_running"], changes))
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
    """Stop a run's queued and running indices.

    Example:

        dlcrun cancel 20261002-141200-batch
    """
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
    index: Annotated[
        Optional[int],
        typer.Option(help="manifest index (0-based)", show_default="from --submission and the array index"),
    ] = None,
    submission: Annotated[
        Optional[int], typer.Option(help="submission number, with --array-index", show_default="none: --index")
    ] = None,
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
    """What one array index runs: stage in, infer, verify, stage out, record (per video).

    The job scripts call it. By hand, --index runs one manifest line of a run on this machine (to debug it).

    Example:

        dlcrun task --run runs/20261002-141200-batch --index 0
    """
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
