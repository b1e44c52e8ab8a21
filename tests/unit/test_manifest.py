"""Spreadsheet -> manifest: filters, row-numbered errors, nothing written on error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from selection_data import xlsx

from dlcrun.errors import ManifestError
from dlcrun.locations import output_folders
from dlcrun.manifest import Manifest, default_manifest_path, read_manifest, write_manifest
from dlcrun.selection import from_list
from dlcrun.sheets import SHOWN_ERRORS, Sheet, read_sheet


def csv_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def listed(sheet: Sheet, **options: Any) -> list[str]:
    """What a list sheet puts in the manifest, in order."""
    return from_list(sheet, **options).manifest().entries


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
    assert listed(parsed) == [str(tmp_path / "cam1/a.mp4"), str(tmp_path / "cam2/b.mp4"), "/data/c.mp4"]
    # --until covers the whole day
    assert listed(parsed, since="2026-10-02", until="2026-10-02") == [str(tmp_path / "cam2/b.mp4")]
    assert listed(parsed, cameras=["CAM1"], root="dropbox:/Videos") == ["dropbox:/Videos/cam1/a.mp4", "/data/c.mp4"]


def test_csv_text_dates_and_column_override(tmp_path: Path) -> None:
    sheet = csv_file(tmp_path / "b.csv", "clip,recorded\nx.mp4,26-Oct-2020\ny.mp4,2020-10-27 08:00\n")
    with pytest.raises(ManifestError, match="no video column"):
        from_list(read_sheet(sheet))
    assert listed(read_sheet(sheet), column="clip", since="2020-10-27", root="/v") == ["/v/y.mp4"]


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
        write_manifest(target, from_list(read_sheet(sheet), since="2019-01-01").manifest())
    assert str(sheet) in str(info.value)
    assert "\n" not in str(info.value)
    assert not target.exists() and not target.parent.exists()


def test_row_errors_are_cut_at_ten_in_one_line(tmp_path: Path) -> None:
    """Thirteen bad rows: the first ten are named, then how many more, in one line naming the sheet."""
    sheet = csv_file(tmp_path / "bad.csv", "video,camera\n" + ",c\n" * 13)
    with pytest.raises(ManifestError) as info:
        from_list(read_sheet(sheet))
    message = str(info.value)
    named = [f"row {n}: 'video' is empty" for n in range(2, 2 + SHOWN_ERRORS)]
    assert SHOWN_ERRORS == 10
    assert message == f"{sheet}: " + "; ".join(named) + "; and 3 more"
    ten = csv_file(tmp_path / "ten.csv", "video,camera\n" + ",c\n" * 10)
    with pytest.raises(ManifestError) as info:
        from_list(read_sheet(ten))
    assert str(info.value).endswith("row 11: 'video' is empty") and "more" not in str(info.value)


def test_default_manifest_paths() -> None:
    assert default_manifest_path(Path("/s/Video_Set_Oct26.xlsx")) == Path("manifests/Video_Set_Oct26.txt")
    assert default_manifest_path(Path("/s/batch.csv"), sample=True) == Path("manifests/batch-sample.txt")
    assert default_manifest_path(listing="dropbox:/Videos/2026-10/") == Path("manifests/2026-10.txt")
    assert default_manifest_path(listing="rclone:gdrive:") == Path("manifests/listing.txt")
    assert default_manifest_path(listing=".") == Path("manifests/listing.txt")


def test_unknown_column_lists_the_real_ones(tmp_path: Path) -> None:
    sheet = csv_file(tmp_path / "s.csv", "path,cam\na.mp4,1\n")
    with pytest.raises(ManifestError, match=r"no column 'video' \(columns: path, cam\)"):
        from_list(read_sheet(sheet), column="video")


def test_manifest_round_trip_and_header(tmp_path: Path) -> None:
    target = write_manifest(tmp_path / "m.txt", Manifest(entries=["/a/x.mp4", "dropbox:/b/y.mp4"], header=["sheet: s"]))
    text = target.read_text()
    assert text.startswith("# dlcrun manifest, written ")
    assert "# sheet: s" in text and "# videos: 2" in text
    assert read_manifest(target).entries == ["/a/x.mp4", "dropbox:/b/y.mp4"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.txt"]  # no temp file left behind


def test_a_manifest_dlcrun_wrote_is_read_whatever_its_name(tmp_path: Path) -> None:
    """A spreadsheet's extension is refused by submit (the CLI tests), unless dlcrun wrote the file."""
    target = write_manifest(tmp_path / "batch.csv", Manifest(entries=["/a/x.mp4"]))
    assert read_manifest(target).entries == ["/a/x.mp4"]
    (tmp_path / "hand.csv").write_text("/a/x.mp4\n")
    with pytest.raises(ManifestError, match=r"hand.csv is a spreadsheet: `dlcrun manifest .*hand.csv` writes"):
        read_manifest(tmp_path / "hand.csv")
    with pytest.raises(ManifestError, match=r": a folder, not a manifest"):
        read_manifest(tmp_path)


def test_manifest_with_duplicate_lines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_text("# c\n/a.mp4\n\n/a.mp4\n")
    with pytest.raises(ManifestError, match=r"line 4: duplicate of line 2"):
        read_manifest(path)


def test_output_folders_keep_what_distinguishes_videos() -> None:
    assert output_folders(["/v/cam1/a.mp4", "/v/cam2/a.mp4", "/v/cam2/sub/b.mp4"]) == ["cam1", "cam2", "cam2/sub"]
    assert output_folders(["/v/a.mp4", "/v/b.mp4"]) == ["", ""]
    assert output_folders(["dropbox:/V/c1/a.mp4", "dropbox:/V/c2/a.mp4"]) == ["c1", "c2"]
