"""The user's story end to end against the emulated Dropbox: `dlcrun auth dropbox`, a manifest from
a Dropbox folder, a local-scheduler array whose tasks (separate processes) fetch from and publish
to Dropbox, through injected faults, and no secret anywhere it should not be."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dropbox_emulator import DropboxEmulator
from typer.testing import CliRunner
from waiting import wait_for

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.files import PART_MARK
from dlcrun.inference import count_rows
from dlcrun.settings import load_settings

pytestmark = pytest.mark.dropbox


def run_auth_cli(emulator: DropboxEmulator, env: dict[str, str]) -> str:
    """`dlcrun auth dropbox` as a user runs it: read the URL it prints, 'approve' it, paste the code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcrun", "auth", "dropbox", "--app-key", "lab-app-key"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stdin is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "https://" in line:
                break
        url = next(word for word in seen[-1].split() if word.startswith("https://"))
        proc.stdin.write(emulator.approve(url) + "\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    return output


def test_auth_cli_writes_a_private_token_file(dropbox_emulator: DropboxEmulator, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    output = run_auth_cli(dropbox_emulator, env)
    token_file = tmp_path / "xdg" / "dlcrun" / "dropbox.json"
    assert f"in {token_file}" in output.replace("\n", "")
    assert token_file.stat().st_mode & 0o777 == 0o600
    stored = token_file.read_text()
    refresh = [s for s in dropbox_emulator.issued if s.startswith("emu-refresh-")]
    access = [s for s in dropbox_emulator.issued if s.startswith("sl.")]
    assert len(refresh) == 1 and refresh[0] in stored, "the refresh token is what is kept"
    assert access and not any(a in stored for a in access), "access tokens expire: never stored"
    assert not any(s in output for s in refresh + access)


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_array_run_from_dropbox_to_dropbox(
    dropbox_emulator: DropboxEmulator,
    demo_project: Path,
    tiny_videos,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DLCRUN_DROPBOX_CHUNK_BYTES", "16384")  # small, so outputs go through upload sessions
    auth_output = run_auth_cli(dropbox_emulator, dict(os.environ))

    names = ["cam1_2026-10-02_10-00-00.mp4", "cam2_2026-10-02_11-00-00.mp4", "cam1_2026-09-28_10-00-00.mp4"]
    for video in tiny_videos(names=names, frames=6):
        when = dt.datetime.strptime(video.stem.split("_", 1)[1], "%Y-%m-%d_%H-%M-%S").replace(tzinfo=dt.timezone.utc)
        dropbox_emulator.put_file(f"/Videos/2026-10/{video.name}", video.read_bytes(), when)
    made = CliRunner().invoke(
        app,
        [
            "manifest",
            "--folder",
            "dropbox:/Videos/2026-10",
            "--since",
            "2026-10-01",
            "--dates",
            "name",
            "-o",
            "manifests/batch.txt",
        ],
    )
    assert made.exit_code == 0, made.output

    # Each task process meets a fault and must get past it on its own.
    dropbox_emulator.inject("files/download", "500")
    dropbox_emulator.inject("files/download", "cut")
    dropbox_emulator.inject("files/upload_session/append_v2", "drop_reply")
    dropbox_emulator.inject("files/upload_session/finish", "429", retry_after=1)
    dropbox_emulator.inject("files/move_v2", "expire")

    settings = load_settings(
        None,
        project=demo_project,
        dest="dropbox:/Keypoints",
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        max_running=1,
        device="cpu",
    )
    run, preflight = batch.start_run(Path("manifests/batch.txt"), settings)
    assert preflight is not None and preflight.videos == 2 and preflight.total_bytes > 0
    batch.submit(run)
    status = wait_for(run, timeout=900)

    logs = "\n".join(p.read_text(errors="replace") for p in (run.path / "logs").glob("*"))
    assert status.counts["done"] == 2, [(r.video, r.error) for r in status.records.values()] or logs
    assert not dropbox_emulator.faults, f"faults never hit: {dropbox_emulator.faults}"

    scorer = run.model["scorer"]
    published = [p for p in dropbox_emulator.paths() if p.startswith("/Keypoints/")]
    assert published == sorted(
        f"/Keypoints/{Path(n).stem}{scorer}{ext}" for n in names[:2] for ext in (".h5", "_meta.pickle")
    )
    assert not [p for p in dropbox_emulator.paths() if PART_MARK in p], "temporary names left at the destination"
    assert dropbox_emulator.count("files/upload_session/finish") >= 2, "outputs should go through upload sessions"
    for record in status.records.values():
        h5 = record.outputs[-1]
        data = dropbox_emulator.read(h5.uri.removeprefix("dropbox:"))
        assert data is not None and hashlib.sha256(data).hexdigest() == h5.sha256
        local = tmp_path / "check.h5"
        local.write_bytes(data)
        assert count_rows(local) == record.frames == 6
    assert not [p for p in _files_under(tmp_path / "scratch") if p.suffix == ".mp4"], "videos left on scratch"

    # No secret in the run directory (settings, records, logs), the manifests, or any output.
    out, err = capfd.readouterr()
    texts = [auth_output, made.output, out, err]
    written = _files_under(run.path) + _files_under(tmp_path / "manifests")
    texts += [p.read_bytes().decode(errors="replace") for p in written]
    everything = "\n".join(texts)
    assert len(dropbox_emulator.issued) >= 3, "expected the refresh token and per-task access tokens"
    for secret in dropbox_emulator.issued:
        assert secret not in everything
    assert "retry" in logs, "the task logs should show the retries"
