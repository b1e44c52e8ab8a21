"""Spreadsheets in, manifests out.

A manifest is the contract between ``submit`` and every array index: one video location per
line, in a fixed order, so that array index *i* always means the same video. It is plain text
so a cluster user can read, diff and edit it; ``#`` lines are comments.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcrun.dates import bounds, parse_day
from dlcrun.errors import ManifestError
from dlcrun.files import sha256_file
from dlcrun.locations import check_text, normalize_location, resolve_location, shown

VIDEO_COLUMNS = ("video", "videos", "path", "video_path", "file", "filename", "uri", "location")
TIME_COLUMNS = ("datetime", "start", "start_time", "timestamp", "recorded", "date", "time")
CAMERA_COLUMNS = ("camera", "cam", "camera_id")

log = logging.getLogger(__name__)
# A formula element in a worksheet's XML (<f>, <f t="shared" .../>, <x:f>), before parsing it.
_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")


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


def _xlsx_rows(path: Path, sheet: str | None) -> list[tuple[int, list[Any]]]:
    """The cells' saved values; a formula the file holds no value for is refused, not read as blank."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise ManifestError(f"{path}: cannot read as .xlsx ({exc})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ManifestError(f"{path}: no sheet '{sheet}' (sheets: {', '.join(book.sheetnames)})")
        ws = book[sheet] if sheet else book.worksheets[0]
        rows = [(number, list(values)) for number, values in enumerate(ws.iter_rows(values_only=True), start=1)]
        part = getattr(ws, "_worksheet_path", None)  # the sheet's XML inside the zip
    finally:
        book.close()
    if part:
        _refuse_unsaved_formulas(path, rows, _unsaved_formulas(path, part))
    return rows


def _unsaved_formulas(path: Path, part: str) -> list[tuple[int, int]]:
    """(row, column) of each formula cell with no saved value, as openpyxl and scripts write them.

    openpyxl reads those as None, indistinguishable from an empty cell, so the sheet's XML is
    read here (only when it holds a formula at all). A string formula whose saved value is ""
    (``t="str"`` and an empty ``<v>``) has a value: it is blank, like Excel shows it.
    """
    from xml.etree.ElementTree import ParseError, iterparse

    from openpyxl.utils.cell import column_index_from_string

    try:
        with zipfile.ZipFile(path) as archive, archive.open(part) as fh:
            data = fh.read()
    except (OSError, KeyError, zipfile.BadZipFile):
        return []  # openpyxl has just read it: nothing more to say
    if not _FORMULA_TAG.search(data):
        return []
    found: list[tuple[int, int]] = []
    row_no = 0
    try:
        for _, element in iterparse(io.BytesIO(data)):
            if element.tag.rsplit("}", 1)[-1] != "row":
                continue
            row_no = int(element.get("r") or row_no + 1)
            col = 0
            for cell in element:
                if cell.tag.rsplit("}", 1)[-1] != "c":
                    continue
                ref = cell.get("r")
                col = column_index_from_string(ref.rstrip("0123456789")) if ref else col + 1
                kids = {child.tag.rsplit("}", 1)[-1]: child for child in cell}
                if "f" not in kids:
                    continue
                saved = kids.get("v")
                if saved is None or (not saved.text and cell.get("t") not in ("str", "inlineStr")):
                    found.append((row_no, col))
            element.clear()
    except (ParseError, ValueError):
        return []
    return found


def _refuse_unsaved_formulas(path: Path, rows: list[tuple[int, list[Any]]], cells: list[tuple[int, int]]) -> None:
    """One line naming the first formula cell without a value that the sheet's columns would read."""
    if not cells:
        return
    unsaved_rows = {r for r, _ in cells}
    header_no, header = next(((n, c) for n, c in rows if n in unsaved_rows or any(_present(v) for v in c)), (0, []))

    def column(row: int, col: int) -> str | None:
        name = header[col - 1] if col - 1 < len(header) else None
        if row != header_no and _present(name):
            return f"'{str(name).strip()}'"
        return _column_letter(col) if row == header_no else None  # a column with no header is never read

    named = [(r, column(r, c)) for r, c in sorted(cells) if r >= header_no]
    named = [(r, name) for r, name in named if name is not None]
    if not named:
        return
    more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
    raise ManifestError(
        f"{path}: row {named[0][0]}, column {named[0][1]}: a formula with no saved value{more}; "
        "open and save the sheet in Excel or LibreOffice"
    )


def _column_letter(col: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return get_column_letter(col)


def _csv_rows(path: Path, delimiter: str) -> list[tuple[int, list[Any]]]:
    """Rows of a text sheet in UTF-8, UTF-16 (Excel's "Unicode text") or Windows-1252 (with a warning).

    Excel's "Unicode text" is tab-separated whatever the file is called, so a first line with
    tabs and no commas is read with tabs.
    """
    text = _sheet_text(path)
    if delimiter == ",":
        first = next((line for line in io.StringIO(text) if line.strip()), "")
        if "\t" in first and "," not in first:
            delimiter = "\t"
    rows: list[tuple[int, list[Any]]] = []
    try:
        for number, values in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), start=1):
            rows.append((number, values))
    except csv.Error as exc:
        raise ManifestError(f"{path}: row {len(rows) + 1}: {exc}") from None
    return rows


def _sheet_text(path: Path) -> str:
    """A text sheet's characters; a binary file (a workbook renamed .csv) is refused in one line."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ManifestError(f"{path}: not a text CSV (a damaged UTF-16 file)") from None
    if data.startswith(b"PK\x03\x04"):
        raise ManifestError(f"{path}: not a text CSV ({_zip_kind(path)})")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ManifestError(f"{path}: not a text CSV (it looks like an old .xls workbook; save it as .xlsx or CSV)")
    if b"\x00" in data:
        raise ManifestError(f"{path}: not a text CSV (binary data at byte {data.index(0)})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        position = exc.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise ManifestError(
            f"{path}: neither UTF-8 nor Windows-1252 text (byte {position}); save it as 'CSV UTF-8'"
        ) from None
    log.warning(
        "%s: not UTF-8 (byte %d); read as Windows-1252, Excel's 'CSV (Comma delimited)' on Windows. "
        "Save it as 'CSV UTF-8' if a name comes out wrong",
        path,
        position,
    )
    return text


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        names = []
    if any(n.startswith("xl/") for n in names):
        return "it looks like an .xlsx workbook; save it as .xlsx or export CSV"
    if "content.xml" in names:
        return "it looks like an .ods spreadsheet; save it as .xlsx or export CSV"
    return "it is a zip archive"


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


def write_manifest(path: Path, manifest: Manifest) -> Path:
    """Write atomically: a reader, or a crash, never sees half a manifest.

    Entries are written normalised (``normalize_location``); one holding a control character, or
    the same location twice once normalised, is refused before anything is written.
    """
    from dlcrun import __version__

    path = Path(path)
    entries = _checked_entries(path, manifest.entries, "entry")
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# dlcrun manifest, written {stamp} by dlcrun {__version__}"]
    lines += [f"# {shown(h)}" for h in manifest.header]  # a newline in a header would make an entry
    lines.append(f"# videos: {len(entries)}")
    lines += entries
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_manifest(path: Path) -> Manifest:
    """A manifest's entries, normalised as ``write_manifest`` writes them (a hand-written one too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest (dlcrun manifest SHEET -o {path} writes one)") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    lines: list[tuple[int, str]] = []
    header = []
    # split("\n"), not splitlines(): that also splits at \x0b, \x0c, \x1c-\x1e, which are refused instead.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            header.append(line[1:].strip())
            continue
        lines.append((number, line))
    if not lines:
        raise ManifestError(f"{path}: the manifest lists no video")
    numbers = [n for n, _ in lines]
    entries = _checked_entries(path, [line for _, line in lines], "line", numbers)
    return Manifest(entries=entries, header=header)


def _checked_entries(path: Path, entries: Sequence[str], what: str, numbers: Sequence[int] | None = None) -> list[str]:
    """Entries normalised; a control character, a climb above the top, or a duplicate (once
    normalised: /w/A/../B/x.mp4 is /w/B/x.mp4) is refused naming its line (or entry number)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        number = numbers[i] if numbers is not None else i + 1
        try:
            check_text(entry, "the entry")
            normal = normalize_location(entry)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {what} {number}: {exc}") from None
        if normal in seen:
            raise ManifestError(f"{path}: {what} {number}: duplicate of {what} {seen[normal]} ({shown(entry)})")
        seen[normal] = number
        out.append(normal)
    return out
