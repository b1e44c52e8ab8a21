"""Selection sheets: one row per folder and date window, the way a lab chooses a batch.

A lab with months of 24/7 video rarely lists files. It writes down which folder (a tank, a
camera) to analyse between which dates, and the recording software (iSpy) puts each video's
start time in its name. This module turns such rows into videos: each folder is listed through
the Storage seam, so a local disk and a ``dropbox:`` root behave alike, and each name is read
through a pattern. List sheets (one video per row) pass through the same ``Video`` type so that
``dlcrun sample`` treats both kinds alike.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from dlcrun.dates import bounds, parse_day, window
from dlcrun.errors import ManifestError, StorageError
from dlcrun.files import sha256_file
from dlcrun.locations import basename, check_text, resolve_location, scheme_of, shown
from dlcrun.manifest import TIME_COLUMNS, VIDEO_COLUMNS, Manifest, Row, Sheet, find_column, manifest_from_list
from dlcrun.names import ISPY_PATTERN, VIDEO_EXTENSIONS, NamePattern, is_conflicted_copy, is_video, normal_name
from dlcrun.storage import StoredObject, storage_for

ROLES = ("folder", "start", "end")
# Header names a selection sheet's columns may carry, compared after normal_name() (case, spaces, _ and -).
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "folder": ("folder", "subfolder", "directory", "dir", "tank", "camera", "cam", "videoset", "set"),
    "start": ("start", "startdate", "from", "fromdate", "begin", "begindate", "firstday", "startday"),
    "end": ("end", "enddate", "to", "todate", "until", "stop", "stopdate", "lastday", "endday"),
}
SheetKind = Literal["list", "selection"]


@dataclass(frozen=True)
class Video:
    """One candidate video: where it is, when it started, and what it can be grouped by.

    ``fields`` holds the sheet row's cells, the folder and the name pattern's fields (camera),
    so sampling can stratify by any of them. ``timed_by`` is 'name', 'mtime' or 'sheet'.
    """

    uri: str
    start: dt.datetime | None
    row: int
    size: int | None = None
    duration: float | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    timed_by: str = "name"
    before_window: bool = False


@dataclass
class RowResult:
    """A selection row after listing: its window and the videos it selected, in start order."""

    number: int
    folder: str
    start: dt.datetime
    end: dt.datetime
    videos: list[Video]

    @property
    def bytes(self) -> int:
        return sum(v.size or 0 for v in self.videos)


@dataclass
class Selection:
    """The videos a sheet names, deduplicated, in sheet order; plus what the user should hear."""

    kind: SheetKind
    videos: list[Video]
    header: list[str]
    rows: list[RowResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def manifest(self) -> Manifest:
        return Manifest(entries=[v.uri for v in self.videos], header=list(self.header))

    @property
    def total_bytes(self) -> int:
        return sum(v.size or 0 for v in self.videos)

    @property
    def known_hours(self) -> tuple[float, int]:
        """Hours of video over the videos whose duration is known, and how many those are."""
        known = [v.duration for v in self.videos if v.duration is not None]
        return sum(known) / 3600, len(known)


# --- file names -------------------------------------------------------------------------------


# --- dates ------------------------------------------------------------------------------------


# --- which kind of sheet ----------------------------------------------------------------------


def parse_column_map(text: str | None) -> dict[str, str]:
    """``folder=Tank,start=From,end=To`` -> {'folder': 'Tank', ...}; any subset of the three."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        role, sep, name = item.partition("=")
        role, name = role.strip().lower(), name.strip()
        if not sep or role not in ROLES or not name:
            raise ManifestError(f"--columns: '{item.strip()}' is not ROLE=COLUMN with ROLE one of {', '.join(ROLES)}")
        out[role] = name
    return out


def selection_columns(sheet: Sheet, given: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The sheet's folder, start and end columns; None when any is missing and none was given."""
    by_normal = {normal_name(c): c for c in sheet.columns}
    found: dict[str, str] = {}
    for role in ROLES:
        if given and role in given:
            column = by_normal.get(normal_name(given[role]))
            if column is None:
                listed = ", ".join(sheet.columns)
                raise ManifestError(f"{sheet.path}: --columns {role}={given[role]}: no such column (columns: {listed})")
            found[role] = column
            continue
        column = next((by_normal[n] for n in ROLE_NAMES[role] if n in by_normal), None)
        if column is None:
            if given:
                raise ManifestError(
                    f"{sheet.path}: no {role} column (looked for {', '.join(ROLE_NAMES[role])}); "
                    f"name it with --columns {role}=COLUMN"
                )
            return None
        found[role] = column
    return found


def sheet_kind(sheet: Sheet, column: str | None = None, columns: Mapping[str, str] | None = None) -> SheetKind:
    """'list' when the sheet has a video/path column, 'selection' when it has folder+start+end.

    A video column wins (a list may well carry start and end times); ``--columns`` forces a
    selection and ``--column`` a list.
    """
    if columns:
        return "selection"
    if column is not None or find_column(sheet, None, VIDEO_COLUMNS, "video") is not None:
        return "list"
    if selection_columns(sheet) is not None:
        return "selection"
    raise ManifestError(
        f"{sheet.path}: neither a list of videos (a column named {', '.join(VIDEO_COLUMNS[:3])}, ...) nor a "
        f"selection (folder, start and end columns); columns: {', '.join(sheet.columns) or 'none'}. "
        "Name them with --column or --columns folder=...,start=...,end=..."
    )


def check_options(kind: SheetKind, sheet: Sheet, **given: Any) -> None:
    """Refuse options that mean nothing for this kind of sheet rather than silently ignore them."""
    for option, value in given.items():
        if value not in (None, False, (), [], {}):
            flag = "--" + option.replace("_", "-")
            other = "selection (folder, start, end)" if kind == "selection" else "list (one video per row)"
            raise ManifestError(f"{sheet.path}: {flag} does not apply: this sheet is a {other}")


# --- selection sheets -------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a tank numbered 3 comes back from Excel as 3.0
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return "" if value is None else str(value).strip()


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


@dataclass
class _Folder:
    """One listed folder: dated videos in start order, and what was set aside."""

    videos: list[tuple[dt.datetime, StoredObject, dict[str, str], str]]
    unmatched: list[str]
    conflicted: list[str]
    unsafe: list[str] = field(default_factory=list)


def _videos_only(
    objects: Iterable[StoredObject], conflicted: list[str], unsafe: list[str]
) -> Iterator[tuple[StoredObject, str]]:
    """Video files of a listing with their names; Dropbox conflicted copies go to ``conflicted``,
    and locations holding a control character (a newline would split a manifest line) to ``unsafe``."""
    for obj in objects:
        name = basename(obj.uri)
        if not is_video(name):
            continue
        if _has_control(obj.uri):
            unsafe.append(f"'{shown(obj.uri)}'")
            continue
        if is_conflicted_copy(name):
            conflicted.append(name)
            continue
        yield obj, name


def _has_control(text: str) -> bool:
    return shown(text) != text


def _unsafe_warning(source: str, unsafe: Sequence[str]) -> str:
    return (
        f"{source}: skipped {len(unsafe)} video(s) whose names hold a control character (a newline, a tab); "
        f"rename them to include them: {_listing(list(unsafe), 3)}"
    )


def _scan(objects: Iterable[StoredObject], pattern: NamePattern, mtime_fallback: bool) -> _Folder:
    videos, unmatched, conflicted, unsafe = [], [], [], []
    for obj, name in _videos_only(objects, conflicted, unsafe):
        hit = pattern.match(name)
        if hit is not None:
            videos.append((hit[0], obj, hit[1], "name"))
        elif mtime_fallback and obj.mtime is not None:
            videos.append((dt.datetime.fromtimestamp(obj.mtime), obj, {}, "mtime"))
        else:
            unmatched.append(name)
    videos.sort(key=lambda v: (v[0], v[1].uri))
    return _Folder(videos, unmatched, conflicted, unsafe)


def _listing(names: Sequence[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
        problems = []
        folder = _cell_text(row.cells.get(cols["folder"]))
        if not folder:
            problems.append(f"'{cols['folder']}' is empty")
        try:
            check_text(folder, f"'{cols['folder']}'")
        except ManifestError as exc:
            problems.append(str(exc))
        when = {}
        for role in ("start", "end"):
            raw = row.cells.get(cols[role])
            if not _present(raw):
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
        if not problems:
            try:
                uri = resolve_location(folder, base)
            except ManifestError as exc:
                problems.append(f"'{cols['folder']}' {exc}")
        if problems:
            errors.append(f"row {row.number}: {'; '.join(problems)}")
            continue
        windows.append((row, folder, uri, lo, hi))

    folders: dict[str, _Folder] = {}
    if not errors:  # list nothing until every row reads: a typo in row 40 should not cost a slow listing first
        for row, folder, uri, _, _ in windows:
            if uri in folders:
                continue
            try:
                folders[uri] = _scan(storage_for(uri).list(uri), name_pattern, mtime_fallback)
            except StorageError as exc:
                errors.append(f"row {row.number}: folder '{folder}': {exc}")
                folders[uri] = _Folder([], [], [])
    if errors:
        shown = "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise ManifestError(f"{sheet.path}: {shown}")

    warnings: list[str] = []
    for uri, found in folders.items():
        if found.unmatched:
            warnings.append(
                f"{uri}: {len(found.unmatched)} video name(s) do not match '{pattern}' and were left out: "
                f"{_listing(found.unmatched)} (--name-pattern to fit them, --mtime-fallback to use file times)"
            )
        if found.conflicted:
            some = _listing(found.conflicted, 3)
            warnings.append(f"{uri}: skipped {len(found.conflicted)} Dropbox conflicted copies: {some}")
        if found.unsafe:
            warnings.append(_unsafe_warning(uri, found.unsafe))

    results: list[RowResult] = []
    chosen: dict[str, int] = {}
    videos: list[Video] = []
    for row, folder, uri, lo, hi in windows:
        listed = folders[uri].videos
        picked = [v for v in listed if lo <= v[0] <= hi]
        before = [v for v in listed if v[0] < lo]
        extra = [before[-1]] if overlap and before else []
        cells = {c: _cell_text(v) for c, v in row.cells.items()}
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
        _sheet_line(sheet),
        f"selection: root={base} name_pattern={pattern}{flags}",
        *(_row_line(r) for r in results),
    ]
    return Selection(kind="selection", videos=videos, header=header, rows=results, warnings=warnings)


def _sheet_line(sheet: Sheet) -> str:
    return f"sheet: {sheet.path.resolve()} (sha256 {sha256_file(sheet.path)[:16]})"


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


def probe_durations(uris: Iterable[str]) -> dict[str, float | None]:
    """Seconds of video per location, read from the container header; None where unknown.

    Opt-in (``--probe``): opening every file costs milliseconds each on a shared filesystem, and
    a remote video would have to be downloaded first, so only local files are read.
    """
    import cv2

    from dlcrun.storage.local import to_path

    # An unreadable file is an unknown duration in the summary, not a screenful of FFmpeg errors.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    out: dict[str, float | None] = {}
    for uri in uris:
        out[uri] = None
        if scheme_of(uri) != "file":
            continue
        cap = cv2.VideoCapture(str(to_path(uri)))
        try:
            frames, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
        finally:
            cap.release()
        if frames > 0 and fps > 0:
            out[uri] = frames / fps
    return out


# --- folder listings --------------------------------------------------------------------------


def from_listing(
    objects: Iterable[StoredObject],
    *,
    source: str,
    since: str | None = None,
    until: str | None = None,
    dates: str = "modified",
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
) -> Selection:
    """The videos of a folder listing (any storage backend), in name order, optionally in a window.

    ``dates`` says what ``since``/``until`` compare with: ``modified``, the storage's own time
    (Dropbox's server_modified, a file's mtime), read in this machine's time zone; or ``name``,
    the start time that ``pattern`` reads from the file name. Dropbox conflicted copies are left
    out with a warning, and with a window every video must have a time, or the listing fails
    naming the ones without.
    """
    if dates not in ("modified", "name"):
        raise ManifestError(f"--dates: '{dates}' is not one of modified, name")
    lo, hi = bounds(since, until, dayfirst, flags=("--since", "--until"))
    name_pattern = NamePattern.compile(pattern)
    videos, undated, conflicted, unsafe, seen = [], [], [], [], 0
    for obj, name in _videos_only(objects, conflicted, unsafe):
        seen += 1
        hit = name_pattern.match(name)
        if dates == "name":
            start = hit[0] if hit else None
        else:
            start = dt.datetime.fromtimestamp(obj.mtime) if obj.mtime is not None else None
        if start is None and (lo or hi):
            undated.append(name)
            continue
        if start is not None and ((lo and start < lo) or (hi and start > hi)):
            continue
        parent = obj.uri.rstrip("/").rsplit("/", 1)[0]
        fields = {**(hit[1] if hit else {}), "folder": basename(parent)}
        timed_by = "name" if dates == "name" else "mtime"
        videos.append(Video(uri=obj.uri, start=start, row=0, size=obj.size, fields=fields, timed_by=timed_by))
    if undated:
        hint = f"; they do not match --name-pattern '{pattern}'" if dates == "name" else ""
        raise ManifestError(f"{source}: no start time for {_listing(undated, 3)}{hint}")
    if not videos:
        what = f"{seen} videos, none in the date range" if seen else f"no videos ({', '.join(VIDEO_EXTENSIONS)})"
        if unsafe:
            what += f"; {len(unsafe)} skipped for a control character in their names: {_listing(unsafe, 3)}"
        raise ManifestError(f"{source}: {what}")
    warnings = [_unsafe_warning(source, unsafe)] if unsafe else []
    if conflicted:
        warnings.append(f"{source}: skipped {len(conflicted)} Dropbox conflicted copies: {_listing(conflicted, 3)}")
    window_text = f" since={since}" * bool(since) + f" until={until}" * bool(until)
    by = f" by {dates}" + (f" name_pattern={pattern}" if dates == "name" else "") if window_text else ""
    header = [f"listing: {source}{window_text}{by}"]
    videos.sort(key=lambda v: v.uri)
    return Selection(kind="list", videos=videos, header=header, warnings=warnings)


def from_folder(location: str, *, recursive: bool = False, **options: Any) -> Selection:
    """List a folder (a path, relative to here, or a URI such as dropbox:/Videos) into a Selection."""
    folder = resolve_location(location, os.getcwd())
    listing = storage_for(folder).list(folder, recursive=recursive)
    found = from_listing(listing, source=folder, **options)
    if recursive:
        found.header[0] += " recursive"
    return found


# --- list sheets, as Videos -------------------------------------------------------------------


def from_list(
    sheet: Sheet,
    *,
    column: str | None = None,
    root: str = "",
    time_column: str | None = None,
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
) -> Selection:
    """A list sheet's rows as Videos: validated by manifest_from_list, timed by the sheet or the name.

    The start time comes from the sheet's date column where the row has one, else from the file
    name through ``pattern``; a video with neither has no start time.
    """
    listed = manifest_from_list(sheet, column=column, root=root, time_column=time_column, dayfirst=dayfirst)
    when_col = find_column(sheet, time_column, TIME_COLUMNS, "time")
    name_pattern = NamePattern.compile(pattern)
    videos = []
    # Without filters manifest_from_list keeps every row or raises, so entries line up with rows.
    for uri, row in zip(listed.entries, sheet.rows, strict=True):
        cells = {c: _cell_text(v) for c, v in row.cells.items()}
        hit = name_pattern.match(basename(uri))
        named = hit[1] if hit else {}
        start, timed_by = (hit[0], "name") if hit else (None, "")
        if when_col is not None and _present(row.cells.get(when_col)):
            start, timed_by = parse_day(row.cells[when_col], dayfirst), "sheet"
        parent = uri.rstrip("/").rsplit("/", 1)[0] if "/" in uri else ""
        fields = {**named, "folder": basename(parent) if parent else "", **cells}
        videos.append(Video(uri=uri, start=start, row=row.number, fields=fields, timed_by=timed_by))
    return Selection(kind="list", videos=videos, header=list(listed.header))


def gather(
    sheet: Sheet,
    *,
    root: str = "",
    column: str | None = None,
    columns: Mapping[str, str] | None = None,
    time_column: str | None = None,
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
    overlap: bool = False,
    mtime_fallback: bool = False,
) -> Selection:
    """Either kind of sheet as Videos (what ``dlcrun sample`` draws from)."""
    kind = sheet_kind(sheet, column, columns)
    if kind == "selection":
        check_options(kind, sheet, column=column, time_column=time_column)
        return select(
            sheet,
            root=root,
            columns=columns,
            pattern=pattern,
            dayfirst=dayfirst,
            overlap=overlap,
            mtime_fallback=mtime_fallback,
        )
    check_options(kind, sheet, overlap=overlap, mtime_fallback=mtime_fallback)
    return from_list(sheet, column=column, root=root, time_column=time_column, pattern=pattern, dayfirst=dayfirst)


__all__ = [
    "RowResult",
    "Selection",
    "Video",
    "bounds",
    "check_options",
    "from_folder",
    "from_list",
    "from_listing",
    "gather",
    "parse_column_map",
    "parse_day",
    "probe_durations",
    "select",
    "selection_columns",
    "sheet_kind",
    "window",
]
