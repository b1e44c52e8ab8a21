"""Manifests from a folder listing (local or Dropbox), and the pre-submit check on Dropbox entries."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcrun.batch import check_sources
from dlcrun.cli import app
from dlcrun.errors import ManifestError, StorageError
from dlcrun.manifest import Manifest, date_in_name, manifest_from_listing, read_manifest
from dlcrun.storage import StoredObject
from dropbox_emulator import DropboxEmulator


def noon(day: int, month: int = 10) -> float:
    """Noon local time, so a date filter cannot flip with the machine's time zone."""
    return dt.datetime(2026, month, day, 12).timestamp()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cam1_2026-10-03_14-05-09.mp4", dt.datetime(2026, 10, 3, 14, 5, 9)),
        ("20261003_140509.avi", dt.datetime(2026, 10, 3, 14, 5, 9)),
        ("rig2-2026_10_03.mp4", dt.datetime(2026, 10, 3)),
        ("2026-10-03T1405.mkv", dt.datetime(2026, 10, 3, 14, 5)),
        ("cam9_2026-13-40_then_2026-11-02.mp4", dt.datetime(2026, 11, 2)),  # the first *valid* date
        ("cam1_take3.mp4", None),
        ("id_1234567890123.mp4", None),
    ],
)
def test_date_in_name(name: str, expected: dt.datetime | None) -> None:
    assert date_in_name(name) == expected


def listing() -> list[StoredObject]:
    return [
        StoredObject("dropbox:/V/cam1_2026-09-30_23-00-00.mp4", 10, noon(1)),
        StoredObject("dropbox:/V/cam1_2026-10-02_08-00-00.mp4", 10, noon(2)),
        StoredObject("dropbox:/V/cam2_2026-10-05_08-00-00.MP4", 10, noon(5)),
        StoredObject("dropbox:/V/notes.txt", 10, noon(3)),
        StoredObject("dropbox:/V/cam1_2026-10-09_08-00-00.mp4", 10, noon(9)),
    ]


def test_listing_filtered_on_modified_time() -> None:
    result = manifest_from_listing(listing(), source="dropbox:/V", since="2026-10-02", until="2026-10-05")
    assert result.entries == ["dropbox:/V/cam1_2026-10-02_08-00-00.mp4", "dropbox:/V/cam2_2026-10-05_08-00-00.MP4"]
    assert result.header == ["listing: dropbox:/V; filters: since=2026-10-02 until=2026-10-05 on modified"]


def test_listing_filtered_on_names() -> None:
    result = manifest_from_listing(listing(), source="dropbox:/V", until="2026-10-01", dates="name")
    assert result.entries == ["dropbox:/V/cam1_2026-09-30_23-00-00.mp4"]
    unfiltered = manifest_from_listing(listing(), source="dropbox:/V")
    assert len(unfiltered.entries) == 4, "every video, nothing else"


def test_listing_errors_name_the_problem() -> None:
    undated = [*listing(), StoredObject("dropbox:/V/cam3.mp4", 1, noon(4))]
    with pytest.raises(ManifestError, match=r"dropbox:/V: no date for cam3\.mp4; filter with --dates modified"):
        manifest_from_listing(undated, source="dropbox:/V", since="2026-10-01", dates="name")
    with pytest.raises(ManifestError, match="4 videos, none in the date range"):
        manifest_from_listing(listing(), source="dropbox:/V", since="2027-01-01")
    with pytest.raises(ManifestError, match="no videos"):
        manifest_from_listing(listing()[3:4], source="dropbox:/V")
    with pytest.raises(ManifestError, match="--dates: 'ctime'"):
        manifest_from_listing(listing(), source="dropbox:/V", dates="ctime")


def test_cli_manifest_from_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, day in [("cam1_2026-10-01.mp4", 1), ("cam1_2026-10-04.mp4", 4), ("sub/cam2_2026-10-04.mp4", 4)]:
        path = tmp_path / "videos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"v")
        os.utime(path, (noon(day), noon(day)))
    result = CliRunner().invoke(app, ["manifest", "--from", "videos", "--since", "2026-10-02", "--recursive"])
    assert result.exit_code == 0, result.output
    written = read_manifest(tmp_path / "manifests" / "videos.txt")
    assert written.entries == [str(tmp_path / "videos" / n) for n in ("cam1_2026-10-04.mp4", "sub/cam2_2026-10-04.mp4")]

    both = CliRunner().invoke(app, ["manifest", "sheet.xlsx", "--from", "videos"])
    assert both.exit_code == 1 and "one of them" in both.output
    camera = CliRunner().invoke(app, ["manifest", "--from", "videos", "--camera", "cam1"])
    assert camera.exit_code == 1 and "apply to spreadsheets" in camera.output


@pytest.mark.dropbox
def test_cli_manifest_from_dropbox_then_check_sources(
    dropbox_emulator: DropboxEmulator, dropbox_env: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    utc = dt.timezone.utc
    for day, size in [(28, 100), (2, 2000), (3, 30000)]:
        month = 9 if day == 28 else 10
        dropbox_emulator.put_file(f"/Videos/2026-10/cam1_{month:02d}-{day:02d}.mp4", b"v" * size,
                                  dt.datetime(2026, month, day, 12, tzinfo=utc))
    partial = "/Videos/2026-10/.cam1_10-04.mp4.dlcrun-part-7"
    dropbox_emulator.put_file(partial, b"partial", dt.datetime(2026, 10, 4, tzinfo=utc))
    dropbox_emulator.page_size = 1

    result = CliRunner().invoke(
        app, ["manifest", "--from", "dropbox:/Videos/2026-10", "--since", "2026-10-01", "-o", "batch.txt"]
    )
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "batch.txt")
    assert manifest.entries == ["dropbox:/Videos/2026-10/cam1_10-02.mp4", "dropbox:/Videos/2026-10/cam1_10-03.mp4"]
    assert "listing: dropbox:/Videos/2026-10; filters: since=2026-10-01 on modified" in manifest.header

    assert check_sources(manifest).total_bytes == 32000
    dropbox_emulator.files.pop("/videos/2026-10/cam1_10-03.mp4")
    with pytest.raises(StorageError, match=r"1 manifest videos not found: dropbox:/Videos/2026-10/cam1_10-03\.mp4"):
        check_sources(Manifest(entries=manifest.entries))

    missing = CliRunner().invoke(app, ["manifest", "--from", "dropbox:/Nowhere"])
    assert missing.exit_code == 1 and "dropbox:/Nowhere: no such folder on Dropbox" in missing.output
