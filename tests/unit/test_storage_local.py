"""The file backend: atomic, verified publishing; clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlcrun.errors import StorageError
from dlcrun.files import sha256_file
from dlcrun.locations import basename, join, scheme_of
from dlcrun.storage import storage_for


def test_scheme_and_join() -> None:
    assert [scheme_of(u) for u in ("/a", "file:///a", "rel/a.mp4", "dropbox:/V")] == ["file", "file", "file", "dropbox"]
    assert join("/dest", "cam1", "a.h5") == "/dest/cam1/a.h5"
    assert join("dropbox:/K", "", "a.h5") == "dropbox:/K/a.h5"
    assert join("dropbox:", "a.h5") == "dropbox:a.h5"
    assert basename("dropbox:/K/x.mp4") == "x.mp4"


def test_put_publishes_whole_files_only(tmp_path: Path) -> None:
    src = tmp_path / "out.h5"
    src.write_bytes(os.urandom(3 << 20))
    store = storage_for(str(tmp_path))
    stored = store.put(src, str(tmp_path / "dest" / "sub" / "out.h5"))
    target = tmp_path / "dest" / "sub" / "out.h5"
    assert stored.size == target.stat().st_size == src.stat().st_size
    assert stored.sha256 == sha256_file(target) == sha256_file(src)
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.h5"]
    assert store.stat(str(target)).size == stored.size
    assert store.stat(str(tmp_path / "none")) is None
    assert [o.uri for o in store.list(str(tmp_path / "dest"), recursive=True)] == [str(target)]


def test_fetch_missing_and_list_missing_folder(tmp_path: Path) -> None:
    store = storage_for("file://" + str(tmp_path))
    with pytest.raises(StorageError, match="no such file"):
        store.fetch(str(tmp_path / "gone.mp4"), tmp_path / "x.mp4")
    with pytest.raises(StorageError, match="no such folder"):
        list(store.list(str(tmp_path / "nofolder")))


def test_failed_copy_leaves_no_temp_file(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 10)
    blocker = tmp_path / "dest"
    blocker.write_text("a file where a folder should be")
    with pytest.raises((StorageError, OSError)):
        storage_for(str(src)).put(src, str(blocker / "a.bin"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "dest"]


def test_unknown_scheme() -> None:
    with pytest.raises(StorageError, match="no storage backend for 'ftp:'"):
        storage_for("ftp://host/x")
