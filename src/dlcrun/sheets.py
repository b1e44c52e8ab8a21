"""Spreadsheets as labs save them: .xlsx and .csv in, rows with the numbers Excel shows out.

Two commands read sheets (``manifest`` and ``sample``) and both kinds of sheet (a list of videos,
or folder + date-window rows) go through here, so a formula without a saved value, a Windows-1252
CSV or a workbook renamed .csv is handled once. This is the data floor: it reads files and names
columns, and lists no storage; what the rows select is the selection wing's business.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dlcrun.errors import ManifestError
from dlcrun.files import sha256_file
from dlcrun.names import normal_name

VIDEO_COLUMNS = ("video", "videos", "path", "video_path", "file", "filename", "uri", "location")
TIME_COLUMNS = ("datetime", "start", "start_time", "timestamp", "recorded", "date", "time")
CAMERA_COLUMNS = ("camera", "cam", "camera_id")
ROLES = ("folder", "start", "end")
# Header names a selection sheet's columns may carry, compared after normal_name() (case, spaces, _ and -).
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "folder": ("folder", "subfolder", "directory", "dir", "tank", "camera", "cam", "videoset", "set"),
    "start": ("start", "startdate", "from", "fromdate", "begin", "begindate", "firstday", "startday"),
    "end": ("end", "enddate", "to", "todate", "until", "stop", "stopdate", "lastday", "endday"),
}
SheetKind = Literal["list", "selection"]
# Row errors shown in one message: a sheet with a wrong date format in every row should still
# fit on a screen, and the first ten say what is wrong.
SHOWN_ERRORS = 10

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


def present(value: Any) -> bool:
    """Whether a cell holds anything: None, "" and whitespace are all an empty cell."""
    return value is not None and str(value).strip() != ""


def cell_text(value: Any) -> str:
    """A cell as text, the way the user typed it: a tank numbered 3 comes back from Excel as 3.0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return "" if value is None else str(value).strip()


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
    raw = [(n, cells) for n, cells in raw if any(present(c) for c in cells)]
    if not raw:
        raise ManifestError(f"{path}: the sheet is empty")
    header_no, header = raw[0]
    columns = [str(c).strip() if present(c) else "" for c in header]
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
    header_no, header = next(((n, c) for n, c in rows if n in unsaved_rows or any(present(v) for v in c)), (0, []))

    def column(row: int, col: int) -> str | None:
        name = header[col - 1] if col - 1 < len(header) else None
        if row != header_no and present(name):
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


def refuse_bad_rows(path: Path, errors: Sequence[str]) -> None:
    """Every bad row of a sheet in one line naming the sheet (the first ten, then how many more),
    so the user fixes them all in one pass; nothing when there is none."""
    if not errors:
        return
    more = f"; and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
    raise ManifestError(f"{path}: {'; '.join(errors[:SHOWN_ERRORS])}{more}")


def provenance(path: Path) -> str:
    """The manifest header line recording which sheet, byte for byte, a manifest came from."""
    return f"sheet: {Path(path).resolve()} (sha256 {sha256_file(path)[:16]})"
