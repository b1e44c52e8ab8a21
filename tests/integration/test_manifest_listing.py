"""Manifests from a folder listing (`manifest --folder`, local or Dropbox), selection sheets on a
Dropbox root, and the pre-submit check on Dropbox entries."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from dropbox_emulator import DropboxEmulator
from typer.testing import CliRunner

from dlcrun.batch import check_sources
from dlcrun.cli import app
from dlcrun.errors import ManifestError, StorageError
from dlcrun.listing import from_listing
from dlcrun.manifest import Manifest, read_manifest
from dlcrun.storage import StoredObject

UTC = dt.timezone.utc


def noon(day: int, month: int = 10) -> float:
    """Noon local time, so a date filter cannot flip with the machine's time zone."""
    return dt.datetime(2026, month, day, 12).timestamp()


def listing() -> list[StoredObject]:
    return [
        StoredObject("dropbox:/V/cam1_2026-09-30_23-00-00.mp4", 10, noon(1)),
        StoredObject("dropbox:/V/cam1_2026-10-02_08-00-00.mp4", 20, noon(2)),
        StoredObject("dropbox:/V/cam2_2026-10-05_08-00-00.MP4", 30, noon(5)),
        StoredObject("dropbox:/V/notes.txt", 10, noon(3)),
        StoredObject("dropbox:/V/cam1_2026-10-02_08-00-00 (Ann's conflicted copy 2026-10-03).mp4", 20, noon(3)),
        StoredObject("dropbox:/V/cam1_2026-10-09_08-00-00.mp4", 40, noon(9)),
    ]


def test_listing_filtered_on_modified_time() -> None:
    found = from_listing(listing(), source="dropbox:/V", since="2026-10-02", until="2026-10-05")
    assert [v.uri for v in found.videos] == [
        "dropbox:/V/cam1_2026-10-02_08-00-00.mp4",
        "dropbox:/V/cam2_2026-10-05_08-00-00.MP4",
    ]
    assert found.total_bytes == 50
    assert found.videos[1].fields["camera"] == "cam2" and found.videos[1].timed_by == "mtime"
    assert found.manifest().header == ["listing: dropbox:/V since=2026-10-02 until=2026-10-05 by modified"]
    assert found.warnings == [
        "dropbox:/V: skipped 1 Dropbox conflicted copies: "
        "cam1_2026-10-02_08-00-00 (Ann's conflicted copy 2026-10-03).mp4"
    ]


def test_listing_filtered_on_names() -> None:
    found = from_listing(listing(), source="dropbox:/V", until="2026-10-01", dates="name")
    assert [v.uri for v in found.videos] == ["dropbox:/V/cam1_2026-09-30_23-00-00.mp4"]
    assert found.videos[0].start == dt.datetime(2026, 9, 30, 23)
    assert len(from_listing(listing(), source="dropbox:/V").videos) == 4, "every video, nothing else"


def test_listing_errors_name_the_problem() -> None:
    undated = [*listing(), StoredObject("dropbox:/V/take3.mp4", 1, noon(4))]
    with pytest.raises(ManifestError, match=r"dropbox:/V: no start time for take3\.mp4; they do not match"):
        from_listing(undated, source="dropbox:/V", since="2026-10-01", dates="name")
    with pytest.raises(ManifestError, match="4 videos, none in the date range"):
        from_listing(listing(), source="dropbox:/V", since="2027-01-01")
    with pytest.raises(ManifestError, match="no videos"):
        from_listing(listing()[3:4], source="dropbox:/V")
    with pytest.raises(ManifestError, match="--dates: 'ctime'"):
        from_listing(listing(), source="dropbox:/V", dates="ctime")
    with pytest.raises(ManifestError, match="--since: 'soon' is not a date"):
        from_listing(listing(), source="dropbox:/V", since="soon")


def test_cli_manifest_from_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, day in [
        ("cam1_2026-10-01_00-00-00.mp4", 1),
        ("cam1_2026-10-04_00-00-00.mp4", 4),
        ("sub/cam2_2026-10-04_00-00-00.mp4", 4),
    ]:
        path = tmp_path / "videos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"v")
        os.utime(path, (noon(day), noon(day)))
    result = CliRunner().invoke(app, ["manifest", "--folder", "videos", "--since", "2026-10-02", "--recursive"])
    assert result.exit_code == 0, result.output
    written = read_manifest(tmp_path / "manifests" / "videos.txt")
    assert written.entries == [
        str(tmp_path / "videos" / n) for n in ("cam1_2026-10-04_00-00-00.mp4", "sub/cam2_2026-10-04_00-00-00.mp4")
    ]
    assert f"listing: {tmp_path / 'videos'} since=2026-10-02 by modified recursive" in written.header

    both = CliRunner().invoke(app, ["manifest", "sheet.xlsx", "--folder", "videos"])
    assert both.exit_code == 1 and "one of them" in both.output
    camera = CliRunner().invoke(app, ["manifest", "--folder", "videos", "--camera", "cam1", "--probe"])
    assert camera.exit_code == 1 and "--camera, --probe: for spreadsheets, not --folder" in camera.output


@pytest.mark.dropbox
def test_cli_manifest_from_dropbox_then_check_sources(
    dropbox_emulator: DropboxEmulator, dropbox_env: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for month, day, size in [(9, 28, 100), (10, 2, 2000), (10, 3, 30000)]:
        when = dt.datetime(2026, month, day, 12, tzinfo=UTC)
        dropbox_emulator.put_file(f"/Videos/2026-10/cam1_{when:%Y-%m-%d_%H-%M-%S}.mp4", b"v" * size, when)
    partial = "/Videos/2026-10/.cam1_2026-10-04_00-00-00.mp4.dlcrun-part-7"
    dropbox_emulator.put_file(partial, b"partial", dt.datetime(2026, 10, 4, tzinfo=UTC))
    dropbox_emulator.page_size = 1

    result = CliRunner().invoke(
        app, ["manifest", "--folder", "dropbox:/Videos/2026-10", "--since", "2026-10-01", "-o", "batch.txt"]
    )
    assert result.exit_code == 0, result.output
    assert "2 videos, 0.00 GB, from dropbox:/Videos/2026-10" in result.output
    manifest = read_manifest(tmp_path / "batch.txt")
    assert manifest.entries == [
        "dropbox:/Videos/2026-10/cam1_2026-10-02_12-00-00.mp4",
        "dropbox:/Videos/2026-10/cam1_2026-10-03_12-00-00.mp4",
    ]
    assert "listing: dropbox:/Videos/2026-10 since=2026-10-01 by modified" in manifest.header

    assert check_sources(manifest).total_bytes == 32000
    dropbox_emulator.files.pop("/videos/2026-10/cam1_2026-10-03_12-00-00.mp4")
    with pytest.raises(StorageError, match=r"1 manifest videos not found: dropbox:/Videos/2026-10/cam1_2026-10-03"):
        check_sources(Manifest(entries=manifest.entries))

    missing = CliRunner().invoke(app, ["manifest", "--folder", "dropbox:/Nowhere"])
    assert missing.exit_code == 1 and "dropbox:/Nowhere: no such folder on Dropbox" in missing.output


@pytest.mark.dropbox
def test_selection_sheet_on_a_dropbox_root(
    dropbox_emulator: DropboxEmulator, dropbox_env: tuple[str, str], tmp_path: Path
) -> None:
    for tank, stamp in [
        ("tank1", "2026-10-02_10-00-00"),
        ("tank1", "2026-10-09_10-00-00"),
        ("tank2", "2026-10-03_07-30-00"),
    ]:
        dropbox_emulator.put_file(f"/Videos/{tank}/cam_{stamp}.mp4", b"v")
    (tmp_path / "batch.csv").write_text("folder,start,end\ntank1,2026-10-01,2026-10-05\ntank2,2026-10-03,2026-10-03\n")
    result = CliRunner().invoke(
        app, ["manifest", str(tmp_path / "batch.csv"), "--root", "dropbox:/Videos", "-o", str(tmp_path / "m.txt")]
    )
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "m.txt").entries == [
        "dropbox:/Videos/tank1/cam_2026-10-02_10-00-00.mp4",
        "dropbox:/Videos/tank2/cam_2026-10-03_07-30-00.mp4",
    ]


@pytest.mark.dropbox
@pytest.mark.parametrize("overlap", [False, True])
def test_lab_sheet_on_a_dropbox_root_line_by_line(
    dropbox_emulator: DropboxEmulator, dropbox_env: tuple[str, str], tmp_path: Path, overlap: bool
) -> None:
    """The lab's own sheet over the same iSpy tree as the local-root tests, served by Dropbox."""
    from selection_data import HEADER, IN_WINDOW, ROWS, TREE, comments, entries, write_xlsx

    for folder, files in TREE.items():
        for name, size in files.items():
            dropbox_emulator.put_file(f"/iSpyData/video/{folder}/{name}", b"v" * size)
    sheet = write_xlsx(tmp_path / "Video_Set_Oct26.xlsx", HEADER, ROWS)
    target = tmp_path / "oct26.txt"
    args = ["manifest", str(sheet), "--root", "dropbox:/iSpyData/video", "-o", str(target)]
    result = CliRunner().invoke(app, args + ["--overlap"] * overlap)
    assert result.exit_code == 0, result.output
    names = IN_WINDOW
    if overlap:
        names = [
            "cam1/cam1_2020-10-25_23-30-00.mp4",
            *names[:4],
            "cam2/cam2_2020-10-25_20-00-00.avi",
            *names[4:],
            "cam2/cam2_2020-10-27_00-00-01.avi",
        ]
    assert entries(target) == [f"dropbox:/iSpyData/video/{n}" for n in names]
    assert any(
        c.startswith('row 2: folder="cam1" window=2020-10-26T00:00:00..2020-10-27T23:59:59') for c in comments(target)
    )
    assert "conflicted" in result.output
    assert ("row 5" in result.output) != overlap, "row 5's window is empty unless the video before it runs into it"


@pytest.mark.dropbox
def test_check_sources_lists_a_folder_of_many_videos_once(
    dropbox_emulator: DropboxEmulator, dropbox_env: tuple[str, str]
) -> None:
    """Six videos of one folder: one listing, not six round trips; a lone video elsewhere, and a
    name whose case differs from Dropbox's (Dropbox ignores case), are asked about one by one."""
    when = dt.datetime(2026, 10, 2, tzinfo=UTC)
    names = [f"cam1_2026-10-02_{h:02d}-00-00.mp4" for h in range(6)]
    for name in names:
        dropbox_emulator.put_file(f"/Videos/cam1/{name}", b"v" * 10, when)
    dropbox_emulator.put_file("/Videos/cam2/lone.mp4", b"v" * 5, when)
    entries = [f"dropbox:/Videos/cam1/{n}" for n in names[:5]] + [
        f"dropbox:/Videos/cam1/{names[5].upper()}",
        "dropbox:/Videos/cam2/lone.mp4",
    ]
    assert check_sources(Manifest(entries=entries)).total_bytes == 65
    assert dropbox_emulator.count("files/list_folder") == 1  # (and its pages: files/list_folder/continue)
    assert dropbox_emulator.count("files/get_metadata") == 2
