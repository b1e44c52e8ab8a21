"""Spreadsheets in, manifests out.

A manifest is the contract between ``submit`` and every array index: one video location per
line, in a fixed order, so that array index *i* always means the same video. It is plain text
so a cluster user can read, diff and edit it; ``#`` lines are comments.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcrun.dates import bounds, parse_day
from dlcrun.errors import ManifestError
from dlcrun.storage import join, scheme_of, sha256_file

VIDEO_COLUMNS = ("video", "videos", "path", "video_path", "file", "filename", "uri", "location")
TIME_COLUMNS = ("datetime", "start", "start_time", "timestamp", "recorded", "date", "time")
CAMERA_COLUMNS = ("camera", "cam", "camera_id")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".h264", ".wmv")


@dataclass
class Row:
    """One non-blank sheet row; ``number`` is the row number the user sees in Excel."""

    number: int
    cells: dict[str, Any]


@dataclass
class Sheet:
    path: Path
    columns: list[str]
    rows: list[Row]


@dataclass
class Manifest:
    entries: list[str]
    header: list[str] = field(default_factory=list)


def read_sheet(path: Path, sheet: str | None = None) -> Sheet:
    """Rows of an .xlsx or .csv file with the header on the first non-blank row."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        raw = list(_xlsx_rows(path, sheet))
    elif suffix in (".csv", ".txt", ".tsv"):
        raw = list(_csv_rows(path, delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise ManifestError(f"{path}: not a spreadsheet (.xlsx or .csv expected)")
    raw = [(n, cells) for n, cells in raw if any(_present(c) for c in cells)]
    if not raw:
        raise ManifestError(f"{path}: the sheet is empty")
    header_no, header = raw[0]
    columns = [str(c).strip() if _present(c) else "" for c in header]
    seen: dict[str, int] = {}
    for col in columns:
        if col and col.lower() in seen:
            raise ManifestError(f"{path}: row {header_no}: column '{col}' appears twice")
        seen[col.lower()] = 1
    rows = [
        Row(number=n, cells={col: cells[i] if i < len(cells) else None for i, col in enumerate(columns) if col})
        for n, cells in raw[1:]
    ]
    return Sheet(path=path, columns=[c for c in columns if c], rows=rows)


def _xlsx_rows(path: Path, sheet: str | None) -> Iterator[tuple[int, list[Any]]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise ManifestError(f"{path}: cannot read as .xlsx ({exc})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ManifestError(f"{path}: no sheet '{sheet}' (sheets: {', '.join(book.sheetnames)})")
        ws = book[sheet] if sheet else book.worksheets[0]
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            yield number, list(values)
    finally:
        book.close()


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[Any]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for number, values in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            yield number, values


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def find_column(sheet: Sheet, wanted: str | None, candidates: Sequence[str], what: str) -> str | None:
    """The sheet's column for ``what``: the one named by the user, else the first known name."""
    by_lower = {c.lower(): c for c in sheet.columns}
    if wanted is not None:
        if wanted.lower() not in by_lower:
            raise ManifestError(f"{sheet.path}: no column '{wanted}' (columns: {', '.join(sheet.columns)})")
        return by_lower[wanted.lower()]
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    return None


def manifest_from_list(
    sheet: Sheet,
    *,
    column: str | None = None,
    root: str = "",
    since: str | None = None,
    until: str | None = None,
    cameras: Sequence[str] = (),
    time_column: str | None = None,
    dayfirst: bool = False,
) -> Manifest:
    """A manifest from a sheet that lists videos, one per row; every bad row is named."""
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

    base = root or str(sheet.path.resolve().parent)
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    entries: list[str] = []
    for row in sheet.rows:
        cell = row.cells.get(video_col)
        if not _present(cell):
            errors.append(f"row {row.number}: '{video_col}' is empty")
            continue
        location = resolve_location(str(cell).strip(), base)
        if location in first_seen:
            errors.append(f"row {row.number}: duplicate of row {first_seen[location]} ({cell})")
            continue
        first_seen[location] = row.number
        if when_col is not None and (filtering_time or _present(row.cells.get(when_col))):
            raw = row.cells.get(when_col)
            if not _present(raw):
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
        entries.append(location)
    if errors:
        shown = "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise ManifestError(f"{sheet.path}: {shown}")
    if not entries:
        raise ManifestError(f"{sheet.path}: no video left after the filters")
    filters = [f"since={since}"] * bool(since) + [f"until={until}"] * bool(until)
    filters += [f"camera={','.join(cameras)}"] * bool(cameras)
    header = [
        f"sheet: {sheet.path.resolve()} (sha256 {sha256_file(sheet.path)[:16]})",
        f"column: {video_col}" + (f"; filters: {' '.join(filters)}" if filters else ""),
    ]
    return Manifest(entries=entries, header=header)


def resolve_location(text: str, base: str) -> str:
    """Absolute location for a sheet cell: URIs and absolute paths stay, the rest joins ``base``."""
    if scheme_of(text) != "file" or text.startswith("/") or text.startswith("file:"):
        return text
    expanded = os.path.expanduser(text)
    if os.path.isabs(expanded):
        return expanded
    if scheme_of(base) == "file":
        return os.path.normpath(os.path.join(base, expanded))
    return join(base, expanded)


def write_manifest(path: Path, manifest: Manifest) -> Path:
    """Write atomically: a reader, or a crash, never sees half a manifest."""
    from dlcrun import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# dlcrun manifest, written {stamp} by dlcrun {__version__}"]
    lines += [f"# {h}" for h in manifest.header]
    lines.append(f"# videos: {len(manifest.entries)}")
    lines += manifest.entries
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest (dlcrun manifest SHEET -o {path} writes one)") from None
    entries, header, seen = [], [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            header.append(line[1:].strip())
            continue
        if line in seen:
            raise ManifestError(f"{path}: line {number}: duplicate of line {seen[line]} ({line})")
        seen[line] = number
        entries.append(line)
    if not entries:
        raise ManifestError(f"{path}: the manifest lists no video")
    return Manifest(entries=entries, header=header)


def output_folders(entries: Iterable[str]) -> list[str]:
    """Per entry, the sub-folder its keypoints go to under the destination.

    The folders below the entries' common parent are kept, so cam1/a.mp4 and cam2/a.mp4 never
    write the same output file; a batch from one folder lands flat in the destination.
    """
    parents = [posixpath.dirname(_path_part(e)) for e in entries]
    try:
        common = posixpath.commonpath(parents)
    except ValueError:  # mixed absolute and relative locations: nothing in common to strip
        return ["" for _ in parents]
    return [posixpath.relpath(p, common) if p != common else "" for p in parents]


def _path_part(entry: str) -> str:
    if scheme_of(entry) == "file":
        return entry[len("file://") :] if entry.startswith("file://") else entry
    return entry.split(":", 1)[1]
