"""``dlcrun manifest`` and ``dlcrun sample``: which videos a batch is, from a sheet or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlcrun.cli import views
from dlcrun.cli.app import ConfigOpt, app, err, friendly, out, setting, settings_from, warn
from dlcrun.sheets import TIME_COLUMNS, VIDEO_COLUMNS

RootOpt = Annotated[
    Optional[str],
    typer.Option(
        help="folder or URI that relative entries and folders are under",
        show_default="dlcrun.toml's source, else the sheet's folder",
    ),
]
ColumnsOpt = Annotated[
    Optional[str],
    typer.Option(help="selection sheet columns, e.g. folder=Tank,start=From,end=To", show_default="matched by name"),
]
NamePatternOpt = Annotated[
    Optional[str],
    setting(
        "name_pattern",
        help="file names with their start time: {start:FORMAT} in strftime codes, other {fields} match any text",
    ),
]
OverlapOpt = Annotated[bool, typer.Option(help="also keep, per row, the last video started before the window")]
MtimeOpt = Annotated[bool, typer.Option(help="time names that do not match the pattern by their modification time")]
DayfirstOpt = Annotated[bool, typer.Option(help="read 01/02/2020 as 1 February")]
SheetNameOpt = Annotated[Optional[str], typer.Option("--sheet", help="worksheet", show_default="the first")]
ColumnOpt = Annotated[
    Optional[str],
    typer.Option(help="list sheets: column holding the video locations", show_default=", ".join(VIDEO_COLUMNS)),
]
TimeColumnOpt = Annotated[
    Optional[str],
    typer.Option(help="list sheets: column holding the date/time", show_default=", ".join(TIME_COLUMNS)),
]
# One meaning in every command: a date alone in --until is the whole of that day (dates.bounds).
SinceOpt = Annotated[
    Optional[str], typer.Option(help="keep videos recorded at or after this date/time", show_default="no limit")
]
UntilOpt = Annotated[
    Optional[str],
    typer.Option(
        help="keep videos recorded up to this date/time (a date alone: the whole day)", show_default="no limit"
    ),
]

PANEL = "Batches"  # where --help lists these commands


@app.command(rich_help_panel=PANEL)
@friendly
def manifest(
    sheet: Annotated[
        Optional[Path],
        typer.Argument(help=".xlsx or .csv: a list of videos, or folder + start + end rows (or --folder instead)"),
    ] = None,
    folder: Annotated[
        Optional[str],
        typer.Option(
            help="list this folder or URI instead of reading a sheet, e.g. dropbox:/Videos/2026-10",
            show_default="none: read the sheet",
        ),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="manifest to write", show_default="manifests/<sheet or folder>.txt"),
    ] = None,
    column: ColumnOpt = None,
    root: RootOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    camera: Annotated[
        Optional[list[str]], typer.Option(help="list sheets: keep these cameras (repeatable)", show_default="all")
    ] = None,
    time_column: TimeColumnOpt = None,
    columns: ColumnsOpt = None,
    name_pattern: NamePatternOpt = None,
    overlap: OverlapOpt = False,
    mtime_fallback: MtimeOpt = False,
    probe: Annotated[bool, typer.Option(help="selection sheets: read local videos' durations for the summary")] = False,
    dates: Annotated[
        str,
        typer.Option(
            help="--folder: --since/--until compare each file's 'modified' time or the start time in its 'name'"
        ),
    ] = "modified",
    recursive: Annotated[bool, typer.Option(help="--folder: include sub-folders")] = False,
    dayfirst: DayfirstOpt = False,
    sheet_name: SheetNameOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Turn a spreadsheet, or a folder listing, into a validated manifest (nothing is written on error).

    A list sheet has a video/path column; --since, --until and --camera filter its rows. A
    selection sheet has folder, start and end columns: each row picks the videos under
    ROOT/folder whose names say they started within its dates. --folder lists one folder (local,
    dropbox: or rclone:) instead, optionally between --since and --until.

    Examples:

        dlcrun manifest batch.xlsx -o manifests/batch.txt
        dlcrun manifest Video_Set_Oct26.xlsx --root dropbox:/iSpyData/video
        dlcrun manifest --folder dropbox:/Videos/2026-10 --since 2026-10-01 --until 2026-10-14
    """
    from dlcrun.manifest import default_manifest_path, write_manifest
    from dlcrun.selection import Request, build

    settings = settings_from(config, {}, name_pattern=name_pattern)
    request = Request(
        sheet=sheet,
        listing=folder,
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
    warn(found.warnings)
    target = write_manifest(output or default_manifest_path(sheet, listing=folder), found.manifest())
    if folder is not None:
        out.print(f"{len(found.videos)} videos, {found.total_bytes / 1e9:.2f} GB, from {folder} -> {target}")
        return
    if found.kind == "selection":
        for shown in views.selection(found, probe):
            out.print(shown)
    out.print(f"{len(found.videos)} videos from {found.sheet_rows} rows -> {target}")


@app.command(rich_help_panel=PANEL)
@friendly
def sample(
    sheet: Annotated[Path, typer.Argument(help=".xlsx or .csv: a list of videos, or folder + start + end rows")],
    count: Annotated[int, typer.Option("--count", "-n", help="videos to draw")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    per: Annotated[
        Optional[str],
        typer.Option(
            help="spread evenly over this: a sheet column, 'folder', a name field (camera) or 'day'",
            show_default="one pool",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="same seed, same sample")] = 0,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="manifest to write", show_default="manifests/<sheet>-sample.txt"),
    ] = None,
    root: RootOpt = None,
    column: ColumnOpt = None,
    time_column: TimeColumnOpt = None,
    columns: ColumnsOpt = None,
    name_pattern: NamePatternOpt = None,
    overlap: OverlapOpt = False,
    mtime_fallback: MtimeOpt = False,
    dayfirst: DayfirstOpt = False,
    sheet_name: SheetNameOpt = None,
    extract_to: Annotated[
        Optional[Path],
        typer.Option(
            help="DLC project: add the sampled videos and extract frames to label (DLC's own functions)",
            show_default="none: only the manifest",
        ),
    ] = None,
    frames: Annotated[
        Optional[int],
        typer.Option(help="with --extract-to: frames per video", show_default="the project's numframes2pick"),
    ] = None,
    copy_videos: Annotated[bool, typer.Option(help="with --extract-to: copy local videos instead of linking")] = False,
    config: ConfigOpt = None,
) -> None:
    """Draw a reproducible random sample of videos for labelling, spread over cameras or days.

    Reads the same sheets as dlcrun manifest; --since and --until keep videos that started
    between them. The same sheet, count and seed always draw the same videos.

    Examples:

        dlcrun sample videos.xlsx --count 20 --since 2026-10-01 --until 2026-10-14 --per camera --seed 7
        dlcrun sample videos.xlsx -n 20 --per day --extract-to ~/dlc/octopus-2026
    """
    from dlcrun.dates import bounds
    from dlcrun.manifest import default_manifest_path, write_manifest
    from dlcrun.sampling import draw
    from dlcrun.selection import Request, build

    settings = settings_from(config, {}, name_pattern=name_pattern)
    earliest, latest = bounds(since, until, dayfirst)
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
    drawn = draw(found.videos, count, seed=seed, per=per, since=earliest, until=latest)
    warn(found.warnings + drawn.warnings)
    target = write_manifest(output or default_manifest_path(sheet, sample=True), drawn.manifest(found.header))
    out.print(views.strata(drawn, per))
    out.print(f"{len(drawn.videos)} of {sum(s.available for s in drawn.strata)} videos (seed {seed}) -> {target}")
    if extract_to is not None:
        from dlcrun.labelling import extract_for_labelling

        with err.status("adding the videos to the project and extracting frames..."):
            counts = extract_for_labelling(extract_to, [v.uri for v in drawn.videos], frames, copy_videos)
        out.print(
            f"{sum(counts.values())} frames to label in {extract_to / 'labeled-data'} "
            f"({len(counts)} videos); next: deeplabcut.label_frames"
        )
