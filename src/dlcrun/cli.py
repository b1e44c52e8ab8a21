"""Command line: parse, call one function, print. Logic lives in the modules it calls."""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dlcrun import __version__
from dlcrun.errors import DlcrunError

app = typer.Typer(
    help="DeepLabCut over thousands of videos: spreadsheet -> manifest -> one job array -> keypoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="settings file (default ./dlcrun.toml)")]
RunArg = Annotated[Optional[str], typer.Argument(help="run id or directory (default: the newest)")]
RunsDirOpt = Annotated[Optional[Path], typer.Option("--runs-dir", help="where run directories live")]


def friendly(fn: F) -> F:
    """DlcrunError -> one red line on stderr and exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DlcrunError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"dlcrun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@friendly
def init(
    path: Annotated[Path, typer.Argument(help="file to write")] = Path("dlcrun.toml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented dlcrun.toml with every setting at its default."""
    from dlcrun.settings import render_template

    if path.exists() and not force:
        raise DlcrunError(f"{path} exists; pass --force to overwrite")
    path.write_text(render_template() + "\n")
    out.print(f"wrote {path}")


@app.command()
@friendly
def manifest(
    sheet: Annotated[Path, typer.Argument(help=".xlsx or .csv listing videos")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="manifest to write")] = None,
    column: Annotated[Optional[str], typer.Option(help="column holding the video locations")] = None,
    root: Annotated[Optional[str], typer.Option(help="folder or URI that relative entries are under")] = None,
    since: Annotated[Optional[str], typer.Option(help="keep videos recorded at or after this date/time")] = None,
    until: Annotated[Optional[str], typer.Option(help="keep videos recorded up to this date (whole day)/time")] = None,
    camera: Annotated[Optional[list[str]], typer.Option(help="keep these cameras (repeatable)")] = None,
    time_column: Annotated[Optional[str], typer.Option(help="column holding the recording date/time")] = None,
    dayfirst: Annotated[bool, typer.Option(help="read 01/02/2020 as 1 February")] = False,
    sheet_name: Annotated[Optional[str], typer.Option("--sheet", help="worksheet (default: the first)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Turn a spreadsheet of videos into a validated manifest (nothing is written on error)."""
    from dlcrun.manifest import manifest_from_list, read_sheet, write_manifest
    from dlcrun.settings import load_settings

    settings = load_settings(config)
    parsed = read_sheet(sheet, sheet_name)
    result = manifest_from_list(
        parsed,
        column=column,
        root=root if root is not None else settings.source,
        since=since,
        until=until,
        cameras=camera or (),
        time_column=time_column,
        dayfirst=dayfirst,
    )
    target = output or Path("manifests") / f"{sheet.stem}.txt"
    write_manifest(target, result)
    out.print(f"{len(result.entries)} videos from {len(parsed.rows)} rows -> {target}")


@app.command()
@friendly
def submit(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="manifest from dlcrun manifest")],
    project: Annotated[Optional[Path], typer.Option(help="DeepLabCut project folder")] = None,
    dest: Annotated[Optional[str], typer.Option(help="where keypoints go (path or URI)")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="local, slurm, pbs, torque")] = None,
    max_running: Annotated[Optional[int], typer.Option(help="array indices running at once")] = None,
    shuffle: Annotated[Optional[int], typer.Option(help="DLC training shuffle")] = None,
    snapshot: Annotated[Optional[str], typer.Option(help="snapshot file, 'best' or index (pinned now)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="frames per forward pass")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda")] = None,
    csv: Annotated[Optional[bool], typer.Option("--csv/--no-csv", help="also write DLC's .csv")] = None,
    scratch: Annotated[Optional[Path], typer.Option(help="node-local scratch (default $TMPDIR)")] = None,
    runs_dir: RunsDirOpt = None,
    wait: Annotated[Optional[bool], typer.Option("--wait/--no-wait", help="follow progress (local default)")] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="check every video exists first")] = True,
    config: ConfigOpt = None,
) -> None:
    """Start a run: pin the model, freeze the settings, submit one job array."""
    from dlcrun import batch
    from dlcrun.settings import load_settings

    settings = load_settings(
        config,
        project=project,
        dest=dest,
        scheduler=scheduler,
        max_running=max_running,
        shuffle=shuffle,
        snapshot=snapshot,
        batch_size=batch_size,
        device=device,
        save_csv=csv,
        scratch=scratch,
        runs_dir=runs_dir,
    )
    with err.status("checking the manifest and pinning the model..."):
        run, preflight = batch.start_run(manifest_path, settings, check=check)
    model = run.model
    out.print(f"run [bold]{run.id}[/bold] in {run.path}")
    out.print(f"  model   {model['scorer']}  ({Path(model['snapshot']).name})")
    if preflight:
        out.print(f"  videos  {preflight.videos}, {preflight.total_bytes / 1e9:.2f} GB to stage")
    sub = batch.submit(run)
    out.print(f"  {sub.scheduler} array of {len(sub.indices)}: {', '.join(sub.job_ids)}")
    if wait if wait is not None else sub.scheduler == "local":
        _follow(run)
    else:
        out.print(f"follow it with: dlcrun status {run.id}")


def _follow(run: Any) -> None:
    from dlcrun import batch

    total = len(run)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task("videos", total=total)
        while True:
            current = batch.status(run)
            c = current.counts
            progress.update(bar, completed=c["done"] + c["failed"] + c["interrupted"] + c["lost"],
                            description=f"done {c['done']} failed {c['failed'] + c['interrupted'] + c['lost']}")
            if current.finished:
                break
            time.sleep(1.0)
    _print_status(current)
    if current.failures:
        raise typer.Exit(1)


@app.command()
@friendly
def status(run: RunArg = None, runs_dir: RunsDirOpt = None, config: ConfigOpt = None) -> None:
    """Counts by state and every failure's reason (the newest run by default)."""
    from dlcrun import batch

    current = batch.status(_find(run, runs_dir, config))
    _print_status(current)


def _find(run: str | None, runs_dir: Path | None, config: Path | None) -> Any:
    from dlcrun.ledger import Run
    from dlcrun.settings import load_settings

    return Run.find(run, runs_dir or load_settings(config).runs_dir)


def _print_status(current: Any) -> None:
    run = current.run
    out.print(f"run [bold]{run.id}[/bold]: {len(run)} videos -> {run.settings.dest}")
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("state")
    table.add_column("videos", justify="right")
    for state in ("done", "running", "queued", "pending", "failed", "interrupted", "lost"):
        if current.counts[state]:
            table.add_row(state, str(current.counts[state]))
    out.print(table)
    for rec in current.failures:
        state = current.states[rec.index]
        out.print(f"  [red]{state}[/red] #{rec.index} {rec.video}: {rec.error}", highlight=False, soft_wrap=True)
    if current.failures:
        out.print(f"rerun them with: dlcrun resubmit {run.id}")


@app.command()
@friendly
def resubmit(run: RunArg = None, runs_dir: RunsDirOpt = None, config: ConfigOpt = None,
             wait: Annotated[Optional[bool], typer.Option("--wait/--no-wait")] = None) -> None:
    """Submit a new array of only the indices that are not done (failed, interrupted, lost)."""
    from dlcrun import batch

    target = _find(run, runs_dir, config)
    sub = batch.resubmit(target)
    if sub is None:
        out.print("nothing to resubmit: every video is done, queued or running")
        return
    out.print(f"{sub.scheduler} array of {len(sub.indices)}: {', '.join(sub.job_ids)}")
    if wait if wait is not None else sub.scheduler == "local":
        _follow(target)


@app.command()
@friendly
def cancel(run: RunArg = None, runs_dir: RunsDirOpt = None, config: ConfigOpt = None) -> None:
    """Stop a run's queued and running indices."""
    from dlcrun import batch

    n = batch.cancel(_find(run, runs_dir, config))
    out.print(f"cancelled; {n} indices were queued or running")


@app.command()
@friendly
def task(
    run: Annotated[Path, typer.Option(help="run directory")],
    index: Annotated[Optional[int], typer.Option(help="manifest index (0-based)")] = None,
    submission: Annotated[Optional[int], typer.Option(help="submission number, with --array-index")] = None,
    array_index: Annotated[Optional[int], typer.Option(
        envvar=["SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID"], help="array index in that submission")] = None,
) -> None:
    """What one array index runs: stage in, infer, verify, stage out, record."""
    from dlcrun.ledger import Run
    from dlcrun.task import Interrupted, run_index, sigterm_unwinds

    target = Run(run)
    if index is None:
        if array_index is None:
            raise DlcrunError("task needs --index, or --submission with --array-index")
        index = target.manifest_index(submission, array_index)
    try:
        with sigterm_unwinds():
            record = run_index(target, index)
    except Interrupted as exc:
        err.print(f"index {index}: {exc}")
        raise typer.Exit(143) from None
    if record.state != "done":
        err.print(f"index {index} {record.state}: {record.error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    err.print(f"index {index} done: {record.frames} frames -> {record.outputs[-1].uri}")


@app.command()
@friendly
def doctor(
    scratch: Annotated[Optional[Path], typer.Option(help="scratch to check (default: settings, then $TMPDIR)")] = None,
    gpu: Annotated[Optional[bool], typer.Option(
        "--gpu/--no-gpu", help="require a visible GPU (default: when the settings ask for one here)")] = None,
    min_free: Annotated[float, typer.Option(help="GB that scratch must have free")] = 1.0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for Dropbox")] = 3.0,
    config: ConfigOpt = None,
) -> None:
    """Check this machine or image: GPU, CUDA/cuDNN, torch/DLC, scratch, Dropbox. Exit 1 if one is missing."""
    from dlcrun.doctor import failed, run_doctor
    from dlcrun.settings import load_settings

    checks = run_doctor(load_settings(config, scratch=scratch), require_gpu=gpu, min_free_gb=min_free, timeout=timeout)
    style = {"ok": "green", "fail": "red", "note": "yellow"}
    for c in checks:
        out.print(f"[{style[c.status]}]{c.status:<4}[/] {c.name:<10} {c.detail}", highlight=False, soft_wrap=True)
    if failed(checks):
        raise typer.Exit(1)


@app.command()
@friendly
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo project, videos and outputs go")] = Path("demo"),
    videos: Annotated[int, typer.Option(help="synthetic videos in the batch")] = 3,
) -> None:
    """Build a tiny DLC project and videos offline, then run manifest -> submit -> status."""
    from dlcrun.demo import run_demo

    run_demo(workdir, n_videos=videos, console=out)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
