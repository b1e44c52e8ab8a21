"""rclone remotes, for real: the ``rclone`` binary against ``rclone serve webdav`` on loopback.

The server is rclone's own WebDAV server with a user and password; the client reads the remote
from an rclone.conf file, as a lab's would. No emulation: every call crosses HTTP.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from dlcrun.errors import StorageError, VerificationError
from dlcrun.storage import rclone as backend
from dlcrun.storage import storage_for

pytestmark = [
    pytest.mark.rclone,
    pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone not installed (apt-get install rclone)"),
]
PASSWORD = "s3cret-webdav-pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["rclone", "serve", "webdav", str(root), "--addr", f"127.0.0.1:{port}", "--user", "lab", "--pass", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "rclone serve webdav did not start"
            time.sleep(0.1)


class Server:
    def __init__(self, root: Path, port: int, config: Path) -> None:
        self.root, self.port, self.config = root, port, config
        self.proc = _serve(root, port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def start(self) -> None:
        self.proc = _serve(self.root, self.port)


@pytest.fixture
def webdav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A WebDAV server over tmp_path/remote, and an rclone.conf naming it ``lab``."""
    root = tmp_path / "remote"
    root.mkdir()
    port = _free_port()
    obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True, check=True).stdout
    config = tmp_path / "rclone.conf"
    config.write_text(
        f"[lab]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = rclone\nuser = lab\npass = {obscured.strip()}\n"
    )
    config.chmod(0o600)
    monkeypatch.setenv("RCLONE_CONFIG", str(config))
    backend.private_config.cache_clear()
    server = Server(root, port, config)
    yield server
    server.stop()
    backend.private_config.cache_clear()


def test_round_trip_publishes_whole_verified_files(webdav: Server, tmp_path: Path) -> None:
    store = storage_for("rclone:lab:videos/a.mp4")
    (webdav.root / "videos" / "tank1").mkdir(parents=True)
    (webdav.root / "videos" / "a.mp4").write_bytes(os.urandom(300_000))
    (webdav.root / "videos" / "tank1" / "b.mp4").write_bytes(b"b" * 10)
    (webdav.root / "videos" / ".hidden.mp4").write_bytes(b"h")

    found = store.stat("rclone:lab:videos/a.mp4")
    assert found is not None and found.size == 300_000 and found.mtime is not None
    assert store.stat("rclone:lab:videos/missing.mp4") is None
    assert store.stat("rclone:lab:videos") is None, "a folder is not a file"
    assert [o.uri for o in store.list("rclone:lab:videos")] == ["rclone:lab:videos/a.mp4"]
    assert [o.uri for o in store.list("rclone:lab:videos/", recursive=True)] == [
        "rclone:lab:videos/a.mp4",
        "rclone:lab:videos/tank1/b.mp4",
    ]

    local = tmp_path / "scratch" / "a.mp4"
    assert store.fetch("rclone:lab:videos/a.mp4", local).size == 300_000
    assert local.read_bytes() == (webdav.root / "videos" / "a.mp4").read_bytes()
    assert sorted(p.name for p in local.parent.iterdir()) == ["a.mp4"], "no temporary file left"

    result = tmp_path / "out.h5"
    result.write_bytes(os.urandom(50_000))
    put = store.put(result, "rclone:lab:keypoints/new/folder/out.h5")
    assert put.size == 50_000 and put.sha256 is not None
    published = webdav.root / "keypoints" / "new" / "folder"
    assert (published / "out.h5").read_bytes() == result.read_bytes()
    assert [p.name for p in published.iterdir()] == ["out.h5"], "the hidden upload name was moved away"

    store.delete("rclone:lab:keypoints/new/folder/out.h5")
    store.delete("rclone:lab:keypoints/new/folder/never-there.h5")
    assert not (published / "out.h5").exists()


def test_each_process_reads_a_private_copy_of_rclone_conf(webdav: Server) -> None:
    """rclone rewrites its config when it refreshes a token; hundreds of tasks must not race on it."""
    before = webdav.config.read_bytes()
    store = storage_for("rclone:lab:x")
    assert store.stat("rclone:lab:x") is None
    flag, copy = backend.private_config()
    assert flag == "--config" and Path(copy) != webdav.config and Path(copy).read_bytes() == before
    assert stat.S_IMODE(Path(copy).stat().st_mode) == 0o600
    assert webdav.config.read_bytes() == before


def test_errors_are_one_line_name_the_location_and_hide_the_password(webdav: Server, tmp_path: Path) -> None:
    store = storage_for("rclone:lab:videos/a.mp4")
    with pytest.raises(StorageError, match=r"^rclone:lab:videos/a.mp4: no such file$"):
        store.fetch("rclone:lab:videos/a.mp4", tmp_path / "a.mp4")
    with pytest.raises(StorageError, match=r"^rclone:lab:nowhere: no such folder$"):
        list(store.list("rclone:lab:nowhere"))
    with pytest.raises(StorageError, match=r"rclone:REMOTE:path"):
        store.stat("rclone:no-remote-here")
    with pytest.raises(StorageError, match=r"^rclone:nosuch:a.mp4: rclone lsjson failed: .*nosuch"):
        store.stat("rclone:nosuch:a.mp4")

    webdav.stop()
    with pytest.raises(StorageError) as down:
        store.stat("rclone:lab:videos/a.mp4")
    message = str(down.value)
    assert message.startswith("rclone:lab:videos/a.mp4: rclone lsjson failed: ") and "connection refused" in message
    assert "\n" not in message and PASSWORD not in message
    obscured = webdav.config.read_text().split("pass = ")[1].strip()
    assert obscured not in message
    webdav.start()


def test_a_failed_upload_publishes_nothing(webdav: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-back hash differs (a corrupted transfer): the hidden upload is removed, the final
    name never appears."""
    result = tmp_path / "out.h5"
    result.write_bytes(b"keypoints" * 1000)
    monkeypatch.setattr(backend, "sha256_file", lambda path: "0" * 64)
    with pytest.raises(VerificationError, match=r"^rclone:lab:k/out.h5: content changed in transit"):
        storage_for("rclone:lab:k/out.h5").put(result, "rclone:lab:k/out.h5")
    assert not any(p.is_file() for p in webdav.root.rglob("*"))


def test_manifest_from_an_rclone_folder(webdav: Server, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dlcrun.cli import app

    for name in ("cam1_2026-03-01_10-00-00.mp4", "cam1_2026-03-01_11-00-00.mp4", "notes.txt"):
        (webdav.root / "tank1" / name).parent.mkdir(exist_ok=True)
        (webdav.root / "tank1" / name).write_bytes(b"v")
    out = tmp_path / "m.txt"
    shown = CliRunner().invoke(app, ["manifest", "--folder", "rclone:lab:tank1", "-o", str(out)])
    assert shown.exit_code == 0, shown.output
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["rclone:lab:tank1/cam1_2026-03-01_10-00-00.mp4", "rclone:lab:tank1/cam1_2026-03-01_11-00-00.mp4"]

    sheet = tmp_path / "sets.csv"  # a selection: folder and date window, folders under --root
    sheet.write_text("Tank,Start,End\ntank1,2026-03-01 10:30,2026-03-01\n")
    shown = CliRunner().invoke(app, ["manifest", str(sheet), "--root", "rclone:lab:", "-o", str(out)])
    assert shown.exit_code == 0, shown.output
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["rclone:lab:tank1/cam1_2026-03-01_11-00-00.mp4"]


@pytest.mark.slow
def test_batch_from_and_to_an_rclone_remote(webdav: Server, tmp_path: Path, demo_project: Path) -> None:
    """Videos on the remote, keypoints back to it, local scheduler, real DLC."""
    from waiting import wait_for

    from dlcrun import batch
    from dlcrun.demo import write_video
    from dlcrun.manifest import Manifest, write_manifest
    from dlcrun.settings import load_settings

    names = ["a.mp4", "b.mp4"]
    for i, name in enumerate(names):
        write_video(webdav.root / "videos" / name, frames=5, phase=i)
    manifest = write_manifest(tmp_path / "m.txt", Manifest(entries=[f"rclone:lab:videos/{n}" for n in names]))
    settings = load_settings(
        None,
        project=demo_project,
        dest="rclone:lab:keypoints",
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        device="cpu",
    )
    run, preflight = batch.start_run(manifest, settings)
    assert preflight is not None and preflight.videos == 2 and preflight.total_bytes > 0
    batch.submit(run)
    final = wait_for(run)
    assert final.counts["done"] == 2, {i: r.error for i, r in final.records.items()}
    scorer = run.model["scorer"]
    published = sorted(p.name for p in (webdav.root / "keypoints").iterdir())
    assert published == sorted(f"{Path(n).stem}{scorer}{ext}" for n in names for ext in (".h5", "_meta.pickle"))
    frame = pd.read_hdf(webdav.root / "keypoints" / f"a{scorer}.h5")
    assert len(frame) == 5 and frame.columns.names == ["scorer", "bodyparts", "coords"]
    assert sorted(p.name for p in (webdav.root / "videos").iterdir()) == names, "sources stay"
    assert not any(p.is_file() for p in (tmp_path / "scratch").rglob("*")), "local copies deleted"


def test_doctor_checks_the_binary_and_the_remotes_the_settings_name(webdav: Server) -> None:
    from dlcrun.doctor import check_rclone
    from dlcrun.settings import Settings

    assert check_rclone(Settings(dest="/data/keypoints")) is None, "not used, not inside the image: no line"
    settings = Settings(source="rclone:lab:videos", dest="rclone:lab:keypoints")
    ok = check_rclone(settings)
    assert ok is not None and ok.status == "ok", ok
    assert ok.detail.startswith("rclone v") and re.search(r"remote lab answered in \d+ ms$", ok.detail)
    bad = check_rclone(Settings(source="rclone:gdrive:videos", dest="rclone:lab:keypoints"))
    assert bad is not None and bad.status == "fail" and bad.detail.startswith("remote gdrive not configured")
    webdav.stop()
    down = check_rclone(settings)
    webdav.start()
    assert down is not None and down.status == "fail", down
    assert down.detail.startswith("remote lab unreachable from here: ") and "connection refused" in down.detail
    assert PASSWORD not in down.detail
