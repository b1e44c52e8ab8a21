"""Issue 13, "Sheets" and "Paths": what `dlcrun manifest` guarantees about the files labs really have.

Every case runs the real CLI (``python -m dlcrun``, a subprocess, so a traceback would show) on
real files: xlsx written by openpyxl (whose formulas have no saved value) and patched to hold one
as Excel saves it, a Windows-1252 CSV, Excel's UTF-16 "Unicode text", a workbook renamed .csv.
A refusal is exit status 1, one line naming the file and the row (or line) and column, no
traceback, and no manifest written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from selection_data import xlsx

from dlcrun.manifest import read_manifest


def dlcrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dlcrun", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def refused(done: subprocess.CompletedProcess[str], pattern: str) -> str:
    """The single error line, after checking exit 1, one line on stderr, nothing on stdout, no traceback."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def save_formula_results(path: Path, results: dict[str, str]) -> Path:
    """Give formula cells the saved (cached) string value Excel writes beside the formula:
    ``<c r="A3" t="str"><f>...</f><v>value</v></c>``; openpyxl itself writes ``<v />``."""
    with zipfile.ZipFile(path) as src:
        parts = {name: src.read(name) for name in src.namelist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    for ref, value in results.items():
        cell = rf'<c r="{ref}"(?P<attrs>[^>]*)>(?P<f><f>.*?</f>)<v\s*/>'
        xml, n = re.subn(cell, rf'<c r="{ref}" t="str"\g<attrs>>\g<f><v>{value}</v>', xml)
        assert n == 1, f"no formula cell {ref} in {xml}"
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in parts.items():
            out.writestr(name, data)
    return path


# --- sheets: formulas --------------------------------------------------------------------------


def test_formula_without_saved_value_is_refused_naming_row_and_column(tmp_path: Path) -> None:
    """A formula cell with no saved value (a sheet written by openpyxl or a script, never opened in
    Excel) is refused naming file, row and column; it used to read as a blank row and vanish."""
    sheet = xlsx(
        tmp_path / "batch.xlsx",
        [
            ["video", "camera"],
            ["cam1/a.mp4", "cam1"],
            ["cam1/b.mp4", "cam1"],
            ['="cam2/"&"c.mp4"', None],
        ],
    )
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    refused(
        done,
        rf"^error: {re.escape(str(sheet))}: row 4, column 'video': a formula with no saved value; "
        r"open and save the sheet in Excel or LibreOffice$",
    )
    assert not (tmp_path / "m.txt").exists()


def test_formula_with_saved_value_is_read_as_that_value(tmp_path: Path) -> None:
    """A formula the file holds a value for (as Excel and LibreOffice save it) is read as its value,
    and one whose saved value is "" is a blank cell, not a refusal. (A guard on the fix above:
    this also held before it.)"""
    sheet = xlsx(
        tmp_path / "batch.xlsx",
        [
            ["video", "camera"],
            ["cam1/a.mp4", "cam1"],
            ['="cam2/"&"c.mp4"', "cam2"],
            ['=IF(1,"","x")', None],
        ],
    )
    save_formula_results(sheet, {"A3": "cam2/c.mp4", "A4": ""})
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    assert done.returncode == 0, done.stderr
    assert read_manifest(tmp_path / "m.txt").entries == [str(tmp_path / "cam1/a.mp4"), str(tmp_path / "cam2/c.mp4")]


# --- sheets: encodings and binary files --------------------------------------------------------


def test_windows_1252_csv_is_read_with_one_warning(tmp_path: Path) -> None:
    """A CSV saved by Excel on Windows (cp1252) is read as Windows-1252 with a one-line warning
    naming the file; it used to be a UnicodeDecodeError traceback."""
    sheet = tmp_path / "batch.csv"
    sheet.write_bytes("video,camera\r\nRené/caméra–1.mp4,cam1\r\nb.mp4,cam2\r\n".encode("cp1252"))
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "Windows-1252" in line]
    assert len(warnings) == 1 and str(sheet) in warnings[0] and "WARNING" in warnings[0], done.stderr
    written = read_manifest(tmp_path / "m.txt").entries
    assert written == [str(tmp_path / "René/caméra–1.mp4"), str(tmp_path / "b.mp4")]


def test_excel_unicode_text_utf16_is_read(tmp_path: Path) -> None:
    """Excel's "Unicode text" (UTF-16 with a byte-order mark, tab-separated) is read like any
    sheet; it used to be a UnicodeDecodeError traceback."""
    sheet = tmp_path / "batch.txt"
    sheet.write_bytes("video\tcamera\r\nRené/é.mp4\tcam1\r\n".encode("utf-16"))
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    assert done.returncode == 0, done.stderr
    assert read_manifest(tmp_path / "m.txt").entries == [str(tmp_path / "René/é.mp4")]


def test_xlsx_renamed_csv_is_refused_in_one_line(tmp_path: Path) -> None:
    """A workbook renamed .csv is refused in one line saying what it is; it used to be a
    UnicodeDecodeError traceback."""
    sheet = xlsx(tmp_path / "batch.xlsx", [["video"], ["a.mp4"]]).rename(tmp_path / "x.csv")
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    refused(
        done,
        rf"^error: {re.escape(str(sheet))}: not a text CSV \(it looks like an \.xlsx workbook; "
        r"save it as \.xlsx or export CSV\)$",
    )
    assert not (tmp_path / "m.txt").exists()


# --- paths: control characters -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_newline_in_a_path_cell_is_refused_naming_the_row(tmp_path: Path, kind: str) -> None:
    """A newline inside a path cell (Alt+Enter in Excel, a quoted newline in a CSV) is refused
    naming the row; it used to split one entry into two manifest lines."""
    rows = [["video", "camera"], ["cam1/a.mp4", "cam1"], ["cam1/b\nc.mp4", "cam1"]]
    if kind == "csv":
        sheet = tmp_path / "batch.csv"
        sheet.write_text('video,camera\ncam1/a.mp4,cam1\n"cam1/b\nc.mp4",cam1\n')
    else:
        sheet = xlsx(tmp_path / "batch.xlsx", rows)
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    refused(
        done, rf"^error: {re.escape(str(sheet))}: row 3: 'video' holds a control character \(\\n\): 'cam1/b\\nc\.mp4'$"
    )
    assert not (tmp_path / "m.txt").exists()


def test_tab_in_a_folder_cell_is_refused_naming_the_row(tmp_path: Path) -> None:
    """A control character in a selection sheet's folder cell is refused naming the row, before
    any folder is listed."""
    sheet = tmp_path / "sets.csv"
    sheet.write_text('folder,start,end\ncam1,2020-10-26,2020-10-27\n"cam\t2",2020-10-26,2020-10-26\n')
    done = dlcrun(tmp_path, "manifest", str(sheet), "--root", str(tmp_path), "-o", "m.txt")
    refused(done, rf"^error: {re.escape(str(sheet))}: row 3: 'folder' holds a control character \(\\t\): 'cam\\t2'$")
    assert not (tmp_path / "m.txt").exists()


def test_control_character_in_a_hand_written_manifest_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A manifest line holding a control character (here a form feed, which Python's splitlines()
    used to break into two entries) is refused naming its line."""
    manifest = tmp_path / "m.txt"
    manifest.write_text("# by hand\n/v/a.mp4\n/v/b\x0cc.mp4\n")
    done = dlcrun(tmp_path, "submit", str(manifest))
    refused(done, rf"^error: {re.escape(str(manifest))}: line 3: the entry holds a control character \(\\x0c\)")


def test_listing_names_with_control_characters_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """`manifest --folder` skips a video whose name holds a newline, naming it in a one-line warning;
    it used to write the name as two manifest lines."""
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"v")
    (folder / "bad\nname.mp4").write_bytes(b"v")
    done = dlcrun(tmp_path, "manifest", "--folder", "videos", "-o", "m.txt")
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if "control character" in line]
    assert len(warning) == 1 and "bad\\nname.mp4" in warning[0], done.stderr
    assert read_manifest(tmp_path / "m.txt").entries == [str(folder / "a.mp4")]


# --- paths: normalisation ----------------------------------------------------------------------


def test_entries_are_normalised_and_duplicates_found_after(tmp_path: Path) -> None:
    """Entries are written normalised, keeping their scheme (`.`, `..`, `//` collapsed), and two
    spellings of one video are duplicates; both used to go into the manifest as written."""
    sheet = tmp_path / "batch.csv"
    sheet.write_text("video\n/w/A/../B/x.mp4\n//w//C/./y.mp4\ndropbox:/a/../b.mp4\nrclone:remote:a/./b.mp4\n")
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "m.txt")
    assert done.returncode == 0, done.stderr
    lines = [line for line in (tmp_path / "m.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["/w/B/x.mp4", "/w/C/y.mp4", "dropbox:/b.mp4", "rclone:remote:a/b.mp4"]

    sheet.write_text("video\n/w/A/../B/x.mp4\n/w/B/x.mp4\n")
    done = dlcrun(tmp_path, "manifest", str(sheet), "-o", "dup.txt")
    refused(done, rf"^error: {re.escape(str(sheet))}: row 3: duplicate of row 2 \(/w/B/x\.mp4\)$")
    assert not (tmp_path / "dup.txt").exists()


def test_hand_written_manifest_duplicates_are_found_after_normalising(tmp_path: Path) -> None:
    """A hand-written manifest is normalised when read, so two spellings of one video are refused
    as duplicates naming the lines."""
    manifest = tmp_path / "m.txt"
    manifest.write_text("/w/A/../B/x.mp4\n/w/B/./x.mp4\n")
    done = dlcrun(tmp_path, "submit", str(manifest))
    refused(done, rf"^error: {re.escape(str(manifest))}: line 2: duplicate of line 1 \(/w/B/\./x\.mp4\)$")


def test_relative_entry_climbing_above_a_remote_root_is_refused(tmp_path: Path) -> None:
    """A relative cell that climbs above a remote --root (`../x.mp4` under dropbox:/V) is refused
    naming the row; it used to be written as dropbox:/V/../x.mp4."""
    sheet = tmp_path / "batch.csv"
    sheet.write_text("video\na.mp4\n../x.mp4\n")
    done = dlcrun(tmp_path, "manifest", str(sheet), "--root", "dropbox:/V", "-o", "m.txt")
    refused(done, rf"^error: {re.escape(str(sheet))}: row 3: 'video' '\.\./x\.mp4' climbs above the root dropbox:/V$")
    assert not (tmp_path / "m.txt").exists()
