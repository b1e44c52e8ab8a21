"""dlcrun doctor: each check against real folders, sockets and the installed stack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlcrun.container import IMAGE_INFO_ENV
from dlcrun.doctor import check_dropbox, check_image, check_scratch
from dlcrun.settings import Settings


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()


def closed_port() -> tuple[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()


def test_scratch_writable_missing_and_too_full(tmp_path: Path) -> None:
    ok = check_scratch(tmp_path, min_free_gb=0.001)
    assert ok.status == "ok" and "writable" in ok.detail and not list(tmp_path.iterdir())
    assert check_scratch(tmp_path / "nope", 1).status == "fail"
    full = check_scratch(tmp_path, min_free_gb=1e9)
    assert full.status == "fail" and "below 1e+09 GB" in full.detail


TOKEN = "refresh-token-that-must-never-be-printed"


@pytest.fixture
def dropbox_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "DLCRUN_DROPBOX_API_HOST", "DLCRUN_DROPBOX_ACCESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no token file there
    monkeypatch.setenv("DLCRUN_DROPBOX_APP_KEY", "appkey")
    monkeypatch.setenv("DLCRUN_DROPBOX_REFRESH_TOKEN", TOKEN)


def test_dropbox_checked_only_when_used(listener: tuple[str, int], dropbox_env: None) -> None:
    assert check_dropbox(Settings(dest="/data/out"), listener, 1.0) is None
    used = Settings(source="dropbox:/lab/videos", dest="/data/out")
    ok = check_dropbox(used, listener, 1.0)
    assert ok.status == "ok" and "credentials from DLCRUN_DROPBOX_REFRESH_TOKEN" in ok.detail
    down = check_dropbox(used, closed_port(), 1.0)
    assert down.status == "fail" and "unreachable within 1 s" in down.detail
    assert TOKEN not in ok.detail + down.detail


def test_dropbox_endpoint_from_the_backends_host_override_and_the_proxy(
    listener: tuple[str, int], dropbox_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = Settings(dest="dropbox:/lab/keypoints")
    monkeypatch.setenv("DLCRUN_DROPBOX_API_HOST", f"{listener[0]}:{listener[1]}")
    assert check_dropbox(used, None, 1.0).status == "ok"
    monkeypatch.setenv("DLCRUN_DROPBOX_API_HOST", "{}:{}".format(*closed_port()))
    assert check_dropbox(used, None, 1.0).status == "fail"
    monkeypatch.setenv("HTTPS_PROXY", f"http://{listener[0]}:{listener[1]}")
    got = check_dropbox(used, None, 1.0)
    assert got.status == "ok" and "via the HTTPS proxy" in got.detail


def test_dropbox_without_credentials_fails_naming_the_fix(
    listener: tuple[str, int], dropbox_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DLCRUN_DROPBOX_REFRESH_TOKEN")
    got = check_dropbox(Settings(dest="dropbox:/lab/keypoints"), listener, 1.0)
    assert got.status == "fail" and "dlcrun auth dropbox" in got.detail


def test_image_outside_and_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_INFO_ENV, raising=False)
    assert check_image(Settings()).status == "note"
    missing = check_image(Settings(image=str(tmp_path / "dlc.sif")))
    assert missing.status == "fail" and "no such file" in missing.detail
    (tmp_path / "dlc.sif").write_bytes(b"sif")
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    no_tool = check_image(Settings(image=str(tmp_path / "dlc.sif")))
    assert no_tool.status == "fail" and "apptainer is not on PATH" in no_tool.detail
    (bare / "apptainer").write_text("#!/bin/sh\n")
    (bare / "apptainer").chmod(0o755)
    assert check_image(Settings(image=str(tmp_path / "dlc.sif"))).status == "ok"

    info = tmp_path / "image.json"
    info.write_text(json.dumps({"engine": "tensorflow", "variant": "gpu", "python": "3.12.3", "built": "today"}))
    monkeypatch.setenv(IMAGE_INFO_ENV, str(info))
    inside = check_image(Settings(image="/elsewhere/dlc.sif"))
    assert inside.status == "ok" and "inside the dlcrun image (tensorflow, gpu build" in inside.detail


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    full_env.pop(IMAGE_INFO_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "dlcrun", "doctor", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.mark.slow
def test_cli_reports_the_stack_one_line_each_and_fails_on_what_is_required(tmp_path: Path) -> None:
    import torch

    result = doctor("--scratch", str(tmp_path), "--min-free", "0.001")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[1] for line in lines] == ["image", "torch", "deeplabcut", "gpu", "cuda", "cudnn", "scratch"]
    assert f"torch      {torch.__version__}" in result.stdout and "deeplabcut 3.0.2" in result.stdout

    full = doctor("--scratch", str(tmp_path), "--min-free", "1e9")
    assert full.returncode == 1 and any(line.startswith("fail scratch") for line in full.stdout.splitlines())

    host, port = closed_port()
    dropbox = doctor(
        "--scratch",
        str(tmp_path),
        "--min-free",
        "0.001",
        "--timeout",
        "1",
        DLCRUN_DEST="dropbox:/lab/keypoints",
        HTTPS_PROXY=f"http://{host}:{port}",
        DLCRUN_DROPBOX_APP_KEY="appkey",
        DLCRUN_DROPBOX_REFRESH_TOKEN=TOKEN,
    )
    assert dropbox.returncode == 1 and "fail dropbox" in dropbox.stdout and "unreachable" in dropbox.stdout
    assert TOKEN not in dropbox.stdout + dropbox.stderr

    if not torch.cuda.is_available():
        no_gpu = doctor("--scratch", str(tmp_path), "--min-free", "0.001", DLCRUN_RESOURCES__GPUS="1")
        assert no_gpu.returncode == 1 and "fail gpu" in no_gpu.stdout
        # A login node: indices run in the image elsewhere, so a missing GPU here is only a note.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "apptainer").write_text("#!/bin/sh\n")
        (bin_dir / "apptainer").chmod(0o755)
        (tmp_path / "dlc.sif").write_bytes(b"sif")
        login = doctor(
            "--scratch",
            str(tmp_path),
            "--min-free",
            "0.001",
            DLCRUN_RESOURCES__GPUS="1",
            DLCRUN_IMAGE=str(tmp_path / "dlc.sif"),
            PATH=f"{bin_dir}:{os.environ['PATH']}",
        )
        assert login.returncode == 0, login.stdout
        assert "note gpu" in login.stdout and "ok   image      indices run in" in login.stdout


@pytest.mark.gpu
def test_cli_sees_the_gpu_cuda_and_cudnn(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    result = doctor("--scratch", str(tmp_path), "--min-free", "0.001", "--gpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   gpu" in result.stdout and "driver" in result.stdout and "ok   cudnn" in result.stdout
