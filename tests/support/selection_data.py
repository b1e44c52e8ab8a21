"""Builders for selection-sheet tests: a lab's sheet and an iSpy-named video tree.

The files are empty or a few bytes (listing and naming is what is tested); sizes differ so the
byte counts in manifest headers are checked against what was written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

# name -> size in bytes; None marks names that must never be selected.
TREE: dict[str, dict[str, int]] = {
    "cam1": {
        "cam1_2020-10-25_22-00-00.mp4": 10,
        "cam1_2020-10-25_23-30-00.mp4": 11,  # runs into the 26-27 Oct window: kept only with --overlap
        "cam1_2020-10-26_00-00-00.mp4": 12,  # starts exactly at the window's start
        "cam1_2020-10-26_00-00-00 (1).mp4": 5,  # Dropbox conflicted copies
        "cam1_2020-10-26_12-00-00.mp4": 13,
        "cam1_2020-10-26_12-00-00 (Jane Doe's conflicted copy 2020-10-27).mp4": 5,
        "cam1_2020-10-27_23-00-00.mp4": 14,  # the end date's last hour
        "cam1_2020-10-27_23-59-59.mp4": 15,  # its last second
        "cam1_2020-10-28_00-00-00.mp4": 16,  # the day after
        "cam1_2020-10-26_13-00-00.jpg": 3,  # a thumbnail, not a video
        "notes from tuesday.mp4": 7,  # does not match the name pattern
    },
    "cam2": {
        "cam2_2020-10-25_20-00-00.avi": 20,
        "cam2_2020-10-26_08-15-00.avi": 21,
        "cam2_2020-10-26_23-45-10.avi": 22,
        "cam2_2020-10-27_00-00-01.avi": 23,
    },
}

# What the lab sheet (ROWS) selects from TREE without --overlap, in manifest order.
IN_WINDOW = [
    "cam1/cam1_2020-10-26_00-00-00.mp4",
    "cam1/cam1_2020-10-26_12-00-00.mp4",
    "cam1/cam1_2020-10-27_23-00-00.mp4",
    "cam1/cam1_2020-10-27_23-59-59.mp4",
    "cam2/cam2_2020-10-26_08-15-00.avi",
    "cam2/cam2_2020-10-26_23-45-10.avi",
]

HEADER = ["Tank", "Start Date", "END", "Notes"]
ROWS: list[list[Any] | None] = [
    ["cam1", "26-Oct-2020", "27-Oct-2020", "text dates"],  # sheet row 2
    None,  # row 3: blank
    ["cam2", dt.datetime(2020, 10, 26), dt.datetime(2020, 10, 26), "Excel dates"],  # row 4
    ["cam2", "01-Nov-2020", "02-Nov-2020", "nothing recorded then"],  # row 5
]


def make_tree(root: Path, tree: dict[str, dict[str, int]] = TREE) -> Path:
    for folder, files in tree.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, size in files.items():
            (root / folder / name).write_bytes(b"v" * size)
    return root


def xlsx(path: Path, rows: list[list[object]]) -> Path:
    """A one-sheet workbook of ``rows`` as given (header included)."""
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[Any] | None]) -> Path:
    """An .xlsx as Excel saves it: real dates stored as dates, blank rows left blank."""
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.append(header)
    for row in rows:
        ws.append(row if row is not None else [])
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, dt.datetime):
                cell.number_format = "DD-MMM-YYYY"
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def lab_sheet(tmp: Path) -> tuple[Path, Path]:
    """(sheet, video root) in the lab's format."""
    root = make_tree(tmp / "iSpyData" / "video")
    return write_xlsx(tmp / "Video_Set_Oct26.xlsx", HEADER, ROWS), root


def entries(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def comments(path: Path) -> list[str]:
    return [line[2:] for line in path.read_text().splitlines() if line.startswith("# ")]
