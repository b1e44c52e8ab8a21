"""Spreadsheet -> manifest: filters, row-numbered errors, nothing written on error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dlcrun.errors import ManifestError
from dlcrun.locations import output_folders
from dlcrun.manifest import Manifest, manifest_from_list, read_manifest, read_sheet, write_manifest
from selection_data import xlsx


def csv_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_xlsx_list_with_real_dates_and_filters(tmp_path: Path) -> None:
    sheet = xlsx(
        tmp_path / "batch.xlsx",
        [
            ["Video", "Camera", "DateTime"],
            ["cam1/a.mp4", "cam1", dt.datetime(2026, 10, 1, 9)],
            ["cam2/b.mp4", "cam2", dt.datetime(2026, 10, 2, 23, 30)],
            [None, None, None],
            ["/data/c.mp4", "cam1", dt.datetime(2026, 10, 3)],
        ],
    )
    parsed = read_sheet(sheet)
    assert [r.number for r in parsed.rows] == [2, 3, 5]
    every = manifest_from_list(parsed)
    assert every.entries == [str(tmp_path / "cam1/a.mp4"), str(tmp_path / "cam2/b.mp4"), "/data/c.mp4"]
    window = manifest_from_list(parsed, since="2026-10-02", until="2026-10-02")
    assert window.entries == [str(tmp_path / "cam2/b.mp4")]  # --until covers the whole day
    cams = manifest_from_list(parsed, cameras=["CAM1"], root="dropbox:/Videos")
    assert cams.entries == ["dropbox:/Videos/cam1/a.mp4", "/data/c.mp4"]


def test_csv_text_dates_and_column_override(tmp_path: Path) -> None:
    sheet = csv_file(tmp_path / "b.csv", "clip,recorded\nx.mp4,26-Oct-2020\ny.mp4,2020-10-27 08:00\n")
    with pytest.raises(ManifestError, match="no video column"):
        manifest_from_list(read_sheet(sheet))
    result = manifest_from_list(read_sheet(sheet), column="clip", since="2020-10-27", root="/v")
    assert result.entries == ["/v/y.mp4"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("video,date\na.mp4,2020-01-01\n,2020-01-02\n", r"row 3: 'video' is empty"),
        (
            "video,date\na.mp4,2020-01-01\nb.mp4,x\na.mp4,2020-01-03\n",
            r"row 3: 'date' 'x' is not a date; row 4: duplicate of row 2",
        ),
        ("video,date\na.mp4,2020-13-45\n", r"row 2: 'date' '2020-13-45' is not a date"),
    ],
)
def test_bad_rows_are_named_and_nothing_is_written(tmp_path: Path, body: str, message: str) -> None:
    sheet = csv_file(tmp_path / "bad.csv", body)
    target = tmp_path / "manifests" / "bad.txt"
    with pytest.raises(ManifestError, match=message) as info:
        write_manifest(target, manifest_from_list(read_sheet(sheet), since="2019-01-01"))
    assert str(sheet) in str(info.value)
    assert "\n" not in str(info.value)
    assert not target.exists() and not target.parent.exists()


def test_unknown_column_lists_the_real_ones(tmp_path: Path) -> None:
    sheet = csv_file(tmp_path / "s.csv", "path,cam\na.mp4,1\n")
    with pytest.raises(ManifestError, match=r"no column 'video' \(columns: path, cam\)"):
        manifest_from_list(read_sheet(sheet), column="video")


def test_manifest_round_trip_and_header(tmp_path: Path) -> None:
    target = write_manifest(tmp_path / "m.txt", Manifest(entries=["/a/x.mp4", "dropbox:/b/y.mp4"], header=["sheet: s"]))
    text = target.read_text()
    assert text.startswith("# dlcrun manifest, written ")
    assert "# sheet: s" in text and "# videos: 2" in text
    assert read_manifest(target).entries == ["/a/x.mp4", "dropbox:/b/y.mp4"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.txt"]  # no temp file left behind


def test_manifest_with_duplicate_lines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_text("# c\n/a.mp4\n\n/a.mp4\n")
    with pytest.raises(ManifestError, match=r"line 4: duplicate of line 2"):
        read_manifest(path)


def test_output_folders_keep_what_distinguishes_videos() -> None:
    assert output_folders(["/v/cam1/a.mp4", "/v/cam2/a.mp4", "/v/cam2/sub/b.mp4"]) == ["cam1", "cam2", "cam2/sub"]
    assert output_folders(["/v/a.mp4", "/v/b.mp4"]) == ["", ""]
    assert output_folders(["dropbox:/V/c1/a.mp4", "dropbox:/V/c2/a.mp4"]) == ["c1", "c2"]
