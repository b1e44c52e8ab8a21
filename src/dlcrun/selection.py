"""Which videos a batch is: from a list sheet, a selection sheet or a folder listing.

``dlcrun manifest`` and ``dlcrun sample`` ask the same question, so both call ``build`` with a
``Request`` (the flags as the user gave them) and get a ``Selection`` back. A list sheet names
one video per row. A lab with months of 24/7 video rarely lists files: a selection sheet says
which folder (a tank, a camera) to analyse between which dates, and the recording software
(iSpy) puts each video's start time in its name; each folder is listed through the Storage
seam, so a local disk and a ``dropbox:`` root behave alike. ``--folder`` lists one folder
(``listing``). All three yield the same ``Video`` type, so ``dlcrun sample`` treats them alike.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dlcrun.dates import bounds, parse_day, window
from dlcrun.errors import InferenceError, ManifestError, StorageError
from dlcrun.listing import FolderScan, from_folder, scan
from dlcrun.locations import basename, check_text, resolve_location, scheme_of
from dlcrun.names import ISPY_PATTERN, NamePattern
from dlcrun.sheets import (
    CAMERA_COLUMNS,
    TIME_COLUMNS,
    VIDEO_COLUMNS,
    Row,
    Sheet,
    SheetKind,
    cell_text,
    find_column,
    parse_column_map,
    present,
    provenance,
    read_sheet,
    refuse_bad_rows,
    selection_columns,
    sheet_kind,
)
from dlcrun.storage import storage_for
from dlcrun.videos import RowResult, Selection, Video


@dataclass(frozen=True)
class Request:
    """What the user asked for, each flag as given (None, False or empty: not given).

    Exactly one of ``sheet`` and ``listing`` (``--folder``). ``root`` is ``--root`` and ``source``
    the settings' root, used when ``--root`` is not given; ``name_pattern`` is ``--name-pattern``
    as given and ``pattern`` the one in force (the settings', which include the flag). Flags are
    kept as given so that one that means nothing for the sheet's kind is refused, not ignored.
    ``sampling`` is set by ``dlcrun sample``: it draws by start time, so a list sheet's videos
    are timed by their names too and ``--name-pattern`` applies to list sheets.
    """

    sheet: Path | None = None
    listing: str | None = None
    worksheet: str | None = None
    column: str | None = None
    columns: str | None = None
    root: str | None = None
    source: str = ""
    since: str | None = None
    until: str | None = None
    cameras: tuple[str, ...] = ()
    time_column: str | None = None
    name_pattern: str | None = None
    pattern: str = ISPY_PATTERN
    overlap: bool = False
    mtime_fallback: bool = False
    probe: bool = False
    dates: str = "modified"
    recursive: bool = False
    dayfirst: bool = False
    sampling: bool = False


def build(request: Request) -> Selection:
    """The videos a request names, checked before anything is written; every error is one line.

    The sheet's columns decide its kind (``sheets.sheet_kind``); a flag that means nothing for
    that kind, or for a listing, is refused: a --since that silently did not filter would be a
    batch of the wrong videos.
    """
    r = request
    if (r.sheet is None) == (r.listing is None):
        raise ManifestError("give a spreadsheet or --folder FOLDER (one of them)")
    if r.listing is not None:
        _refuse_sheet_flags(r)
        return from_folder(
            r.listing,
            recursive=r.recursive,
            since=r.since,
            until=r.until,
            dates=r.dates,
            pattern=r.pattern,
            dayfirst=r.dayfirst,
        )
    assert r.sheet is not None
    sheet = read_sheet(r.sheet, r.worksheet)
    column_map = parse_column_map(r.columns)
    kind = sheet_kind(sheet, r.column, column_map)
    _refuse_other_kinds_flags(kind, sheet, r)
    root = r.root if r.root is not None else r.source
    if kind == "list":
        return from_list(
            sheet,
            column=r.column,
            root=root,
            since=r.since,
            until=r.until,
            cameras=r.cameras,
            time_column=r.time_column,
            pattern=r.pattern,
            dayfirst=r.dayfirst,
        )
    return select(
        sheet,
        root=root,
        columns=column_map,
        pattern=r.pattern,
        dayfirst=r.dayfirst,
        overlap=r.overlap,
        mtime_fallback=r.mtime_fallback,
        probe=r.probe,
    )


def _refuse_sheet_flags(r: Request) -> None:
    sheet_only = {
        "--column": r.column,
        "--root": r.root,
        "--camera": r.cameras,
        "--time-column": r.time_column,
        "--columns": r.columns,
        "--overlap": r.overlap,
        "--mtime-fallback": r.mtime_fallback,
        "--probe": r.probe,
        "--sheet": r.worksheet,
    }
    if given := [flag for flag, value in sheet_only.items() if value]:
        raise ManifestError(f"{', '.join(given)}: for spreadsheets, not --folder")


def _refuse_other_kinds_flags(kind: SheetKind, sheet: Sheet, r: Request) -> None:
    """The first flag given that this kind of sheet does not use, in one line naming the sheet."""
    dates = None if r.dates == "modified" else r.dates
    if kind == "list":
        flags = {
            "--name-pattern": None if r.sampling else r.name_pattern,
            "--overlap": r.overlap,
            "--mtime-fallback": r.mtime_fallback,
            "--probe": r.probe,
            "--dates": dates,
            "--recursive": r.recursive,
        }
        other = "list (one video per row)"
    else:
        flags = {
            "--column": r.column,
            "--since": r.since,
            "--until": r.until,
            "--camera": r.cameras,
            "--time-column": r.time_column,
            "--dates": dates,
            "--recursive": r.recursive,
        }
        other = "selection (folder, start, end)"
    for flag, value in flags.items():
        if value not in (None, False, ()):
            raise ManifestError(f"{sheet.path}: {flag} does not apply: this sheet is a {other}")


# --- list sheets ------------------------------------------------------------------------------


def from_list(
    sheet: Sheet,
    *,
    column: str | None = None,
    root: str = "",
    since: str | None = None,
    until: str | None = None,
    cameras: Sequence[str] = (),
    time_column: str | None = None,
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
) -> Selection:
    """A sheet that lists videos, one per row, as Videos in sheet order; every bad row is named.

    ``since``/``until`` keep rows by the sheet's date column, ``cameras`` by its camera column.
    A video's start time is its row's date where there is one, else the one ``pattern`` reads
    from its name (what ``dlcrun sample`` draws by); a video with neither has none.
    """
    video_col = find_column(sheet, column, VIDEO_COLUMNS, "video")
    if video_col is None:
        raise ManifestError(
            f"{sheet.path}: no video column (looked for {', '.join(VIDEO_COLUMNS)}); name it with --column"
        )
    filtering_time = since is not None or until is not None
    when_col = find_column(sheet, time_column, TIME_COLUMNS, "time")
    if filtering_time and when_col is None:
        raise ManifestError(f"{sheet.path}: --since/--until need a date column ({', '.join(TIME_COLUMNS)})")
    cam_col = find_column(sheet, None, CAMERA_COLUMNS, "camera")
    if cameras and cam_col is None:
        raise ManifestError(f"{sheet.path}: --camera needs a camera column ({', '.join(CAMERA_COLUMNS)})")
    lo, hi = bounds(since, until, dayfirst, flags=("--since", "--until"))
    wanted_cams = {c.lower() for c in cameras}
    name_pattern = NamePattern.compile(pattern)

    base = root or str(sheet.path.resolve().parent)
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    videos: list[Video] = []
    for row in sheet.rows:
        cell = row.cells.get(video_col)
        if not present(cell):
            errors.append(f"row {row.number}: '{video_col}' is empty")
            continue
        text = str(cell).strip()
        try:
            check_text(text, f"'{video_col}'")
        except ManifestError as exc:
            errors.append(f"row {row.number}: {exc}")
            continue
        try:
            location = resolve_location(text, base)
        except ManifestError as exc:
            errors.append(f"row {row.number}: '{video_col}' {exc}")
            continue
        if location in first_seen:  # after normalising: /w/A/../B/x.mp4 is /w/B/x.mp4
            errors.append(f"row {row.number}: duplicate of row {first_seen[location]} ({text})")
            continue
        first_seen[location] = row.number
        when = None
        if when_col is not None and (filtering_time or present(row.cells.get(when_col))):
            raw = row.cells.get(when_col)
            if not present(raw):
                errors.append(f"row {row.number}: '{when_col}' is empty")
                continue
            try:
                when = parse_day(raw, dayfirst)
            except ValueError as exc:
                errors.append(f"row {row.number}: '{when_col}' {exc}")
                continue
            if (lo is not None and when < lo) or (hi is not None and when > hi):
                continue
        if wanted_cams and str(row.cells.get(cam_col, "")).strip().lower() not in wanted_cams:
            continue
        videos.append(_listed_video(location, row, when, name_pattern))
    refuse_bad_rows(sheet.path, errors)
    if not videos:
        raise ManifestError(f"{sheet.path}: no video left after the filters")
    filters = [f"since={since}"] * bool(since) + [f"until={until}"] * bool(until)
    filters += [f"camera={','.join(cameras)}"] * bool(cameras)
    header = [
        provenance(sheet.path),
        f"column: {video_col}" + (f"; filters: {' '.join(filters)}" if filters else ""),
    ]
    return Selection(kind="list", videos=videos, header=header, sheet_rows=len(sheet.rows))


def _listed_video(location: str, row: Row, when: dt.datetime | None, pattern: NamePattern) -> Video:
    """A list sheet's row as a Video: timed by the sheet's date, else by its name; fields for --per."""
    hit = pattern.match(basename(location))
    start, timed_by = (hit[0], "name") if hit else (None, "")
    if when is not None:
        start, timed_by = when, "sheet"
    parent = location.rstrip("/").rsplit("/", 1)[0] if "/" in location else ""
    cells = {c: cell_text(v) for c, v in row.cells.items()}
    fields = {**(hit[1] if hit else {}), "folder": basename(parent) if parent else "", **cells}
    return Video(uri=location, start=start, row=row.number, fields=fields, timed_by=timed_by)


# --- selection sheets -------------------------------------------------------------------------


def select(
    sheet: Sheet,
    *,
    root: str = "",
    columns: Mapping[str, str] | None = None,
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
    overlap: bool = False,
    mtime_fallback: bool = False,
    probe: bool = False,
) -> Selection:
    """The videos a selection sheet names, checked row by row before anything is listed.

    Every row's folder is ``<root>/<folder>`` (a folder cell that is absolute or a URI is used
    as is; an empty root means the sheet's own folder). A video belongs to a row when the start
    time in its name lies in the row's window; ``overlap`` also keeps the last video that started
    before the window, since recording is continuous and it runs into the window.
    """
    cols = selection_columns(sheet, columns)
    if cols is None:
        raise ManifestError(f"{sheet.path}: not a selection sheet (needs folder, start and end columns)")
    name_pattern = NamePattern.compile(pattern)
    base = root or str(sheet.path.resolve().parent)
    if scheme_of(base) == "file" and not base.startswith("file:"):
        base = os.path.abspath(os.path.expanduser(base))  # manifest lines must not depend on the cwd

    errors: list[str] = []
    windows: list[tuple[Row, str, str, dt.datetime, dt.datetime]] = []
    for row in sheet.rows:
        problems, found = _row_window(row, cols, base, dayfirst)
        if problems:
            errors.append(f"row {row.number}: {'; '.join(problems)}")
        elif found is not None:
            windows.append((row, *found))

    folders: dict[str, FolderScan] = {}
    if not errors:  # list nothing until every row reads: a typo in row 40 should not cost a slow listing first
        for row, folder, uri, _, _ in windows:
            if uri in folders:
                continue
            try:
                folders[uri] = scan(storage_for(uri).list(uri), name_pattern, mtime_fallback)
            except StorageError as exc:
                errors.append(f"row {row.number}: folder '{folder}': {exc}")
                folders[uri] = FolderScan([], [], [])
    refuse_bad_rows(sheet.path, errors)

    warnings = [line for uri, found in folders.items() for line in found.warnings(uri, pattern)]
    results: list[RowResult] = []
    chosen: dict[str, int] = {}
    videos: list[Video] = []
    for row, folder, uri, lo, hi in windows:
        listed = folders[uri].videos
        picked = [v for v in listed if lo <= v[0] <= hi]
        before = [v for v in listed if v[0] < lo]
        extra = [before[-1]] if overlap and before else []
        cells = {c: cell_text(v) for c, v in row.cells.items()}
        row_videos = [
            Video(
                uri=obj.uri,
                start=start,
                row=row.number,
                size=obj.size,
                timed_by=timed_by,
                fields={**named, "folder": folder, **cells},
                before_window=bool(extra) and i == 0,
            )
            for i, (start, obj, named, timed_by) in enumerate(extra + picked)
        ]
        results.append(RowResult(row.number, folder, lo, hi, row_videos))
        if not row_videos:
            warnings.append(f"row {row.number}: no video in '{folder}' from {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M}")
        shared = [v for v in row_videos if v.uri in chosen]
        if shared:
            warnings.append(
                f"row {row.number}: {len(shared)} video(s) already selected by row {chosen[shared[0].uri]} "
                "(overlapping windows); listed once"
            )
        for v in row_videos:
            if v.uri not in chosen:
                chosen[v.uri] = row.number
                videos.append(v)
    if not videos:
        unmatched = sum(len(f.unmatched) for f in folders.values())
        raise ManifestError(
            f"{sheet.path}: no row's window matches a video under {base} (checked {len(results)} rows; "
            f"{unmatched} video names did not match --name-pattern '{pattern}')"
        )
    if probe:
        durations = probe_durations(v.uri for v in videos)
        videos = [replace(v, duration=durations[v.uri]) for v in videos]
        for r in results:
            r.videos = [replace(v, duration=durations[v.uri]) for v in r.videos]

    flags = " overlap" * overlap + " mtime-fallback" * mtime_fallback
    header = [
        provenance(sheet.path),
        f"selection: root={base} name_pattern={pattern}{flags}",
        *(_row_line(r) for r in results),
    ]
    return Selection(
        kind="selection", videos=videos, header=header, rows=results, warnings=warnings, sheet_rows=len(sheet.rows)
    )


def _row_window(
    row: Row, cols: Mapping[str, str], base: str, dayfirst: bool
) -> tuple[list[str], tuple[str, str, dt.datetime, dt.datetime] | None]:
    """A selection row's problems, or its (folder cell, folder location, window start, end)."""
    problems = []
    folder = cell_text(row.cells.get(cols["folder"]))
    if not folder:
        problems.append(f"'{cols['folder']}' is empty")
    try:
        check_text(folder, f"'{cols['folder']}'")
    except ManifestError as exc:
        problems.append(str(exc))
    when = {}
    for role in ("start", "end"):
        raw = row.cells.get(cols[role])
        if not present(raw):
            problems.append(f"'{cols[role]}' is empty")
            continue
        try:
            when[role] = parse_day(raw, dayfirst)
        except ValueError as exc:
            problems.append(f"'{cols[role]}' {exc}")
    if len(when) == 2:
        lo, hi = window(when["start"], when["end"])
        if hi < lo:
            problems.append(f"end {when['end']:%Y-%m-%d} is before start {when['start']:%Y-%m-%d}")
    if problems:
        return problems, None
    try:
        uri = resolve_location(folder, base)
    except ManifestError as exc:
        return [f"'{cols['folder']}' {exc}"], None
    return [], (folder, uri, lo, hi)


def _row_line(r: RowResult) -> str:
    line = (
        f'row {r.number}: folder="{r.folder}" window={r.start:%Y-%m-%dT%H:%M:%S}..{r.end:%Y-%m-%dT%H:%M:%S} '
        f"videos={len(r.videos)} bytes={r.bytes}"
    )
    starts = [v.start for v in r.videos if v.start is not None]
    if starts:
        line += f" first={min(starts):%Y-%m-%dT%H:%M:%S} last={max(starts):%Y-%m-%dT%H:%M:%S}"
    if r.videos and r.videos[0].before_window:
        line += " overlap=1"
    return line


def probe_durations(uris: Iterable[str], decoder: str = "opencv") -> dict[str, float | None]:
    """Seconds of video per location, read from the container header; None where unknown.

    Opt-in (``--probe``): opening every file costs milliseconds each on a shared filesystem, and
    a remote video would have to be downloaded first, so only local files are read. The files
    are opened through the decoder seam, as the array indices open them.
    """
    from dlcrun.decoders import decoder_for
    from dlcrun.storage.local import to_path

    # An unreadable file is an unknown duration in the summary, not a screenful of FFmpeg errors.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    opener = decoder_for(decoder)
    out: dict[str, float | None] = {}
    for uri in uris:
        out[uri] = None
        if scheme_of(uri) != "file":
            continue
        try:
            stream = opener.open(to_path(uri))
        except InferenceError:
            continue
        try:
            frames, fps = stream.info.header_frames, stream.info.fps
        finally:
            stream.close()
        if frames > 0 and fps > 0:
            out[uri] = frames / fps
    return out


__all__ = ["Request", "build", "from_list", "probe_durations", "select"]
