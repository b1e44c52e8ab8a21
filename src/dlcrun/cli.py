"""Command line: parse, call one function, print. Logic lives in the modules it calls."""

from __future__ import annotations

import functools
import json
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
from dlcrun.errors import DlcrunError, install_redaction, redact

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
ImageOpt = Annotated[
    Optional[str],
    typer.Option(help="Apptainer image (.sif) the jobs run in; on a login node without DLC, pins there too"),
]


def friendly(fn: F) -> F:
    """DlcrunError -> one red line on stderr and exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DlcrunError as exc:
            err.print(f"[red]error:[/red] {redact(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in HEAVY:
                raise
            err.print(
                f"[red]error:[/red] this needs {HEAVY[top]}, which is not installed here (a login-node install?): "
                "run it where DeepLabCut is (make install), or in the image: apptainer exec dlc.sif dlcrun ...",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# What make install-login leaves out, by the module name an import fails on.
HEAVY = {"deeplabcut": "DeepLabCut", "torch": "PyTorch", "cv2": "OpenCV", "av": "PyAV", "tables": "PyTables"}


def _version(value: bool) -> None:
    if value:
        out.print(f"dlcrun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()  # every log line and traceback, and uncaught ones, with secrets masked


def _settings(config: Path | None, options: dict[str, Any], **more: Any) -> Any:
    """Settings from the file and environment, overridden by a command's ``options`` (its
    ``locals()``) that are named like a setting and were given; ``more`` for any spelled otherwise."""
    from dlcrun.settings import Settings, load_settings

    return load_settings(config, **{k: v for k, v in options.items() if k in Settings.model_fields}, **more)


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


RootOpt = Annotated[Optional[str], typer.Option(help="folder or URI that relative entries and folders are under")]
ColumnsOpt = Annotated[
    Optional[str],
    typer.Option(help="selection sheet columns, e.g. folder=Tank,start=From,end=To (default: matched by name)"),
]
NamePatternOpt = Annotated[
    Optional[str],
    typer.Option(
        help="file names with their start time (default settings.name_pattern: {camera}_{start:%Y-%m-%d_%H-%M-%S})"
    ),
]
OverlapOpt = Annotated[bool, typer.Option(help="also keep, per row, the last video started before the window")]
MtimeOpt = Annotated[bool, typer.Option(help="time names that do not match the pattern by their modification time")]
DayfirstOpt = Annotated[bool, typer.Option(help="read 01/02/2020 as 1 February")]
SheetNameOpt = Annotated[Optional[str], typer.Option("--sheet", help="worksheet (default: the first)")]


@app.command()
@friendly
def manifest(
    sheet: Annotated[
        Optional[Path],
        typer.Argument(help=".xlsx or .csv: a list of videos, or folder + start + end rows (or --from instead)"),
    ] = None,
    from_: Annotated[
        Optional[str],
        typer.Option("--from", help="list this folder or URI instead of reading a sheet, e.g. dropbox:/Videos/2026-10"),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="manifest to write")] = None,
    column: Annotated[Optional[str], typer.Option(help="list sheets: column holding the video locations")] = None,
    root: RootOpt = None,
    since: Annotated[
        Optional[str], typer.Option(help="list sheets, --from: keep videos recorded at or after this")
    ] = None,
    until: Annotated[Optional[str], typer.Option(help="list sheets, --from: keep videos up to this date/time")] = None,
    camera: Annotated[Optional[list[str]], typer.Option(help="list sheets: keep these cameras (repeatable)")] = None,
    time_column: Annotated[Optional[str], typer.Option(help="list sheets: column holding the date/time")] = None,
    columns: ColumnsOpt = None,
    name_pattern: NamePatternOpt = None,
    overlap: OverlapOpt = False,
    mtime_fallback: MtimeOpt = False,
    probe: Annotated[bool, typer.Option(help="selection sheets: read local videos' durations for the summary")] = False,
    dates: Annotated[
        str,
        typer.Option(
            help="--from: --since/--until compare each file's 'modified' time or the start time in its 'name'"
        ),
    ] = "modified",
    recursive: Annotated[bool, typer.Option(help="--from: include sub-folders")] = False,
    dayfirst: DayfirstOpt = False,
    sheet_name: SheetNameOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Turn a spreadsheet, or a folder listing, into a validated manifest (nothing is written on error).

    A list sheet has a video/path column. A selection sheet has folder, start and end columns: each row picks the
    videos under ROOT/folder whose names say they started within its dates. --from lists one folder (local or
    dropbox:), optionally between --since and --until.
    """
    from dlcrun.manifest import default_manifest_path, write_manifest
    from dlcrun.selection import Request, build
    from dlcrun.settings import load_settings

    settings = load_settings(config, name_pattern=name_pattern)
    request = Request(
        sheet=sheet,
        listing=from_,
        worksheet=sheet_name,
        column=column,
        columns=columns,
        root=root,
        source=settings.source,
        since=since,
        until=until,
        cameras=tuple(camera or ()),
        time_column=time_column,
        name_pattern=name_pattern,
        pattern=settings.name_pattern,
        overlap=overlap,
        mtime_fallback=mtime_fallback,
        probe=probe,
        dates=dates,
        recursive=recursive,
        dayfirst=dayfirst,
    )
    with err.status("listing..."):
        found = build(request)
    _warn(found.warnings)
    target = write_manifest(output or default_manifest_path(sheet, listing=from_), found.manifest())
    if from_ is not None:
        out.print(f"{len(found.videos)} videos, {found.total_bytes / 1e9:.2f} GB, from {from_} -> {target}")
        return
    if found.kind == "selection":
        _print_selection(found, probe)
    out.print(f"{len(found.videos)} videos from {found.sheet_rows} rows -> {target}")


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        err.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)


def _print_selection(found: Any, probed: bool) -> None:
    """Rows, videos, hours (where known) and GB: the scratch and quota impact before a submit."""
    table = Table(show_header=True, header_style="bold", box=None, show_footer=True)
    hours, known = found.known_hours
    table.add_column("row", footer="total")
    table.add_column("folder", footer=f"{len(found.rows)} rows")
    table.add_column("window")
    table.add_column("videos", justify="right", footer=str(len(found.videos)))
    table.add_column("hours", justify="right", footer=_hours(hours, known, len(found.videos)))
    table.add_column("GB", justify="right", footer=f"{found.total_bytes / 1e9:.2f}")
    for r in found.rows:
        durations = [v.duration for v in r.videos if v.duration is not None]
        table.add_row(
            str(r.number),
            r.folder,
            f"{r.start:%Y-%m-%d} .. {r.end:%Y-%m-%d}",
            str(len(r.videos)),
            _hours(sum(durations) / 3600, len(durations), len(r.videos)),
            f"{r.bytes / 1e9:.2f}",
        )
    out.print(table)
    if not probed:
        out.print("hours: unknown without --probe (reads local videos' headers)", style="dim")


def _hours(hours: float, known: int, total: int) -> str:
    if not known:
        return "-"
    return f"{hours:.1f}" + (f" ({known}/{total})" if known < total else "")


@app.command()
@friendly
def sample(
    sheet: Annotated[Path, typer.Argument(help=".xlsx or .csv: a list of videos, or folder + start + end rows")],
    n: Annotated[int, typer.Option("--n", help="videos to draw")],
    from_: Annotated[Optional[str], typer.Option("--from", help="only videos starting on or after this date")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="only videos starting up to this date (whole day)")] = None,
    per: Annotated[
        Optional[str],
        typer.Option(help="spread evenly over this: a sheet column, 'folder', a name field (camera) or 'day'"),
    ] = None,
    seed: Annotated[int, typer.Option(help="same seed, same sample")] = 0,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="manifest to write")] = None,
    root: RootOpt = None,
    column: Annotated[Optional[str], typer.Option(help="list sheets: column holding the video locations")] = None,
    time_column: Annotated[Optional[str], typer.Option(help="list sheets: column holding the date/time")] = None,
    columns: ColumnsOpt = None,
    name_pattern: NamePatternOpt = None,
    overlap: OverlapOpt = False,
    mtime_fallback: MtimeOpt = False,
    dayfirst: DayfirstOpt = False,
    sheet_name: SheetNameOpt = None,
    extract_to: Annotated[
        Optional[Path],
        typer.Option(help="DLC project: add the sampled videos and extract frames to label (DLC's own functions)"),
    ] = None,
    frames: Annotated[Optional[int], typer.Option(help="with --extract-to: frames per video (numframes2pick)")] = None,
    copy_videos: Annotated[bool, typer.Option(help="with --extract-to: copy local videos instead of linking")] = False,
    config: ConfigOpt = None,
) -> None:
    """Draw a reproducible random sample of videos for labelling, spread over cameras or days."""
    from dlcrun.dates import bounds
    from dlcrun.manifest import default_manifest_path, write_manifest
    from dlcrun.sampling import draw
    from dlcrun.selection import Request, build
    from dlcrun.settings import load_settings

    settings = load_settings(config, name_pattern=name_pattern)
    since, until = bounds(from_, to, dayfirst)
    request = Request(
        sheet=sheet,
        worksheet=sheet_name,
        column=column,
        columns=columns,
        root=root,
        source=settings.source,
        time_column=time_column,
        name_pattern=name_pattern,
        pattern=settings.name_pattern,
        overlap=overlap,
        mtime_fallback=mtime_fallback,
        dayfirst=dayfirst,
        sampling=True,
    )
    with err.status("listing videos..."):
        found = build(request)
    drawn = draw(found.videos, n, seed=seed, per=per, since=since, until=until)
    _warn(found.warnings + drawn.warnings)
    target = write_manifest(output or default_manifest_path(sheet, sample=True), drawn.manifest(found.header))
    _print_strata(drawn, per)
    out.print(f"{len(drawn.videos)} of {sum(s.available for s in drawn.strata)} videos (seed {seed}) -> {target}")
    if extract_to is not None:
        from dlcrun.labelling import extract_for_labelling

        with err.status("adding the videos to the project and extracting frames..."):
            counts = extract_for_labelling(extract_to, [v.uri for v in drawn.videos], frames, copy_videos)
        out.print(
            f"{sum(counts.values())} frames to label in {extract_to / 'labeled-data'} "
            f"({len(counts)} videos); next: deeplabcut.label_frames"
        )


def _print_strata(drawn: Any, per: str | None) -> None:
    """Per stratum, the videos available and how many were drawn: an even spread, or why not."""
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column(per or "all")
    table.add_column("available", justify="right")
    table.add_column("sampled", justify="right")
    for s in drawn.strata:
        table.add_row(s.key or "(blank)", str(s.available), str(s.chosen))
    out.print(table)


auth_app = typer.Typer(help="Store credentials for remote storage, once per user.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")


@auth_app.command("dropbox")
@friendly
def auth_dropbox(
    app_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="DLCRUN_DROPBOX_APP_KEY", help="your Dropbox app's key (App Console -> your app -> Settings)"
        ),
    ] = None,
) -> None:
    """Authorize dlcrun for your Dropbox (PKCE, offline access); stores a refresh token, mode 0600."""
    from dlcrun.storage.dropbox_auth import authorize

    key = app_key or typer.prompt("Dropbox app key")

    def ask(url: str) -> str:
        out.print("1. Open this URL (log in to Dropbox if asked) and click Allow:")
        out.print(f"   {url}", markup=False, highlight=False, soft_wrap=True)
        return str(typer.prompt("2. Paste the authorization code here"))

    path, account = authorize(key, ask)
    out.print(f"saved a refresh token for {account} in {path} (mode 0600); access tokens are refreshed from it")


@app.command()
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
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda")] = None,
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
    from dlcrun import batch, report
    from dlcrun.schedulers import follows

    settings = _settings(config, locals(), resources=None if gpus is None else {"gpus": gpus})
    if dry_run:
        with err.status("checking the manifest and pinning the model..."):
            plans = batch.dry_run(manifest_path, settings, check=check)
        typer.echo("\n".join(report.plans(plans)))
        err.print("dry run: nothing was submitted and no run directory was written")
        return
    with err.status("checking the manifest, pinning the model and submitting..."):
        run, preflight, sub = batch.launch(manifest_path, settings, check=check)
    for line in report.started(run, preflight, sub):
        out.print(line)
    if follows(sub.scheduler, wait):
        _follow(run)
    else:
        out.print(f"follow it with: dlcrun status {run.id}")


def _follow(run: Any) -> None:
    """A progress bar until every index has finished, then the status; exit 1 if any failed."""
    from dlcrun import batch, report

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task("videos", total=len(run))
        for current in batch.watch(run):
            ended, words = report.progress(current)
            progress.update(bar, completed=ended, description=words)
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


def _print_warnings(run: Any) -> None:
    """One line per damaged ledger file (each once), never a traceback."""
    from rich.markup import escape

    for line in run.new_warnings():
        err.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


def _find(run: str | None, runs_dir: Path | None, config: Path | None) -> Any:
    from dlcrun.ledger import Run
    from dlcrun.settings import load_settings

    return Run.find(run, runs_dir or load_settings(config).runs_dir)


def _print_status(current: Any) -> None:
    from dlcrun import report

    _print_warnings(current.run)
    for shown in report.status(current):
        out.print(shown, highlight=False, soft_wrap=True)


@app.command()
@friendly
def resubmit(
    run: RunArg = None,
    runs_dir: RunsDirOpt = None,
    config: ConfigOpt = None,
    wait: Annotated[Optional[bool], typer.Option("--wait/--no-wait")] = None,
    time_limit: Annotated[
        Optional[str], typer.Option("--time", help="wall time per index from now on, HH:MM:SS (timed-out indices)")
    ] = None,
    mem: Annotated[Optional[str], typer.Option(help="memory per index from now on, e.g. 32G")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="GPUs per index from now on")] = None,
    partition: Annotated[Optional[str], typer.Option(help="Slurm partition / PBS queue from now on")] = None,
    max_running: Annotated[Optional[int], typer.Option(help="indices running at once from now on")] = None,
) -> None:
    """Submit a new array of only the indices that are not done (failed, interrupted, lost, cancelled)."""
    from dlcrun import batch, report
    from dlcrun.schedulers import follows

    target = _find(run, runs_dir, config)
    changes = {"time": time_limit, "mem": mem, "gpus": gpus, "partition": partition}
    try:
        sub = batch.resubmit(target, {k: v for k, v in changes.items() if v is not None}, max_running)
    finally:
        _print_warnings(target)
    if sub is None:
        out.print("nothing to resubmit: every video is done, queued or running")
        return
    out.print(report.array(target, sub))
    if follows(sub.scheduler, wait):
        _follow(target)


@app.command()
@friendly
def cancel(run: RunArg = None, runs_dir: RunsDirOpt = None, config: ConfigOpt = None) -> None:
    """Stop a run's queued and running indices."""
    from dlcrun import batch

    target = _find(run, runs_dir, config)
    try:
        n = batch.cancel(target)
    finally:
        _print_warnings(target)
    out.print(
        f"cancelled; {n} indices were queued or running" if n else "nothing to cancel: no index is queued or running"
    )


@app.command()
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
    from dlcrun import report
    from dlcrun.ledger import Run
    from dlcrun.runtime import Interrupted
    from dlcrun.task import run_task

    try:
        records = run_task(Run(run), index, submission, None if array_index is None else array_offset + array_index)
    except Interrupted as exc:
        err.print(str(exc))
        raise typer.Exit(143) from None
    for line in report.task(records):
        err.print(line, highlight=False, soft_wrap=True)
    if any(r.state != "done" for r in records):
        raise typer.Exit(1)


@app.command()
@friendly
def train(
    project: Annotated[Optional[Path], typer.Option(help="DeepLabCut project folder")] = None,
    shuffle: Annotated[Optional[int], typer.Option(help="DLC training shuffle")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs to train (default: the shuffle's config)")] = None,
    iterations: Annotated[
        Optional[int],
        typer.Option(
            help="TensorFlow-engine (DLC 2.x) shuffles: training iterations (DLC's maxiters; default from --epochs)"
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            help="snapshot (.pt, or a TensorFlow checkpoint prefix) to start from (default: the shuffle's newest; "
            "random weights when none)"
        ),
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="images per training batch")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="local, slurm, pbs, torque")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="GPUs for the job (default: resources.gpus, at least 1)")] = None,
    image: ImageOpt = None,
    evaluate: Annotated[
        bool, typer.Option(help="evaluate the new snapshot and select the best for later batches")
    ] = True,
    runs_dir: RunsDirOpt = None,
    wait: Annotated[
        Optional[bool], typer.Option("--wait/--no-wait", help="wait for the snapshot (local default)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Train the project's network as one scheduler job (offline); logs go in a training directory."""
    from dlcrun.schedulers import follows
    from dlcrun.training import result, start_training

    settings = _settings(config, locals())
    wanted = gpus if gpus is not None else max(1, settings.resources.gpus)
    settings = settings.model_copy(update={"resources": settings.resources.model_copy(update={"gpus": wanted})})
    job = start_training(settings, epochs=epochs, weights=weights, evaluate=evaluate, iterations=iterations)
    out.print(f"training job {job.request.job_id} ({job.request.scheduler}) in {job.workdir}")
    out.print(f"  log     {job.workdir / 'logs'}")
    if not follows(job.request.scheduler, wait):
        out.print(f"  result  {job.workdir / 'result.json'} once it ends")
        return
    with err.status("training..."):
        while (outcome := result(job.workdir)) is None:
            time.sleep(2.0)
    if outcome["state"] != "done":
        raise DlcrunError(f"training {outcome['state']}: {outcome.get('error', '')} (log in {job.workdir / 'logs'})")
    out.print(f"  snapshot {outcome['snapshot']}")
    if outcome.get("selected"):
        chosen = outcome["selected"]
        out.print(f"  selected {chosen['snapshot']} (test RMSE {chosen['test_rmse']:.2f} px) for later batches")


@app.command(hidden=True)
@friendly
def pin(
    project: Annotated[Path, typer.Argument(help="DeepLabCut project folder")],
    shuffle: Annotated[int, typer.Option(help="shuffle")] = 1,
    trainingsetindex: Annotated[int, typer.Option(help="training-set index")] = 0,
    snapshot: Annotated[Optional[str], typer.Option(help="snapshot (default: selected, else config.yaml's)")] = None,
) -> None:
    """The model a run would pin, as JSON: how a submit host without DeepLabCut asks the image."""
    from dlcrun.engines import pin_model

    spec = pin_model(project, shuffle, trainingsetindex, snapshot)
    print(json.dumps(spec.to_dict()))


@app.command("train-task", hidden=True)
@friendly
def train_task(workdir: Annotated[Path, typer.Option(help="training directory (holds train.json)")]) -> None:
    """What a training job runs: train as train.json says, write result.json."""
    from dlcrun.training import run_training_task

    outcome = run_training_task(workdir)
    if outcome["state"] != "done":
        err.print(f"training {outcome['state']}: {redact(outcome.get('error', ''))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    err.print(f"training done: {outcome['snapshot']}")


@app.command()
@friendly
def doctor(
    scratch: Annotated[Optional[Path], typer.Option(help="scratch to check (default: settings, then $TMPDIR)")] = None,
    gpu: Annotated[
        Optional[bool],
        typer.Option("--gpu/--no-gpu", help="require a visible GPU (default: when the settings ask for one here)"),
    ] = None,
    min_free: Annotated[float, typer.Option(help="GB that scratch must have free")] = 1.0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for Dropbox")] = 3.0,
    config: ConfigOpt = None,
) -> None:
    """Check this machine or image: GPU, CUDA/cuDNN, torch/DLC, scratch, Dropbox. Exit 1 if one is missing."""
    from dlcrun import report
    from dlcrun.doctor import failed, run_doctor

    checks = run_doctor(_settings(config, locals()), require_gpu=gpu, min_free_gb=min_free, timeout=timeout)
    for line in report.checks(checks):
        out.print(line, highlight=False, soft_wrap=True)
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

    run = run_demo(workdir, n_videos=videos, say=out.print)
    try:
        _follow(run)
    finally:
        out.print(f"keypoints in {run.settings.dest}:")
        for h5 in sorted(Path(run.settings.dest or "").glob("*.h5")):
            out.print(f"  {h5.name}")


project_app = typer.Typer(help="Move a DeepLabCut project between machines (paths rewritten).", no_args_is_help=True)
app.add_typer(project_app, name="project")


@project_app.command("pack")
@friendly
def project_pack(
    project: Annotated[Path, typer.Argument(help="DeepLabCut project folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="archive to write (.tar.gz)")],
    with_snapshots: Annotated[bool, typer.Option(help="include trained snapshots (.pt)")] = False,
) -> None:
    """config.yaml, labelled data and shuffle definitions; no videos, no old models."""
    from dlcrun.project import pack

    archive = pack(project, output, with_snapshots=with_snapshots)
    out.print(f"packed {project} -> {archive} ({archive.stat().st_size / 1e6:.1f} MB)")


@project_app.command("unpack")
@friendly
def project_unpack(
    archive: Annotated[Path, typer.Argument(help="archive from dlcrun project pack")],
    to: Annotated[Path, typer.Option("--to", help="folder to unpack into")],
    videos: Annotated[Optional[Path], typer.Option(help="where the project's videos will live")] = None,
) -> None:
    """Unpack and rewrite project_path, video_sets and the shuffles' paths; never overwrites."""
    from dlcrun.project import unpack

    target = unpack(archive, to, videos=videos)
    out.print(f"unpacked -> {target}")
    out.print(f"use it with: dlcrun submit MANIFEST --project {target}")


@app.command()
@friendly
def models(
    project: Annotated[Optional[Path], typer.Option(help="DeepLabCut project folder")] = None,
    config: ConfigOpt = None,
) -> None:
    """Snapshots of the project's shuffles, with DLC's evaluation error where evaluated."""
    from dlcrun import report
    from dlcrun.project import list_models
    from dlcrun.settings import load_settings

    folder = project or load_settings(config).project
    if folder is None:
        raise DlcrunError("no project: pass --project or set project in dlcrun.toml")
    found = list_models(folder)
    if not found:
        out.print(f"{folder}: no trained snapshot yet (dlcrun train)")
        return
    out.print(report.models(found))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
