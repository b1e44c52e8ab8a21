"""A login node with dlcrun alone (make install-login: no DeepLabCut, no torch) submits a run.

The submit host here is a real venv without DeepLabCut (``.venv-login``, which ``make test``
builds). Apptainer is emulated: a stand-in ``apptainer exec [options] IMAGE CMD`` checks that
IMAGE exists, then runs CMD with the main venv (which has DeepLabCut) standing in for the image's
/opt/dlcrun. So the snapshot is pinned and the videos analysed by real DLC, and the login venv
never imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dlcrun.engines import pin_model
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest, write_manifest

ROOT = Path(__file__).resolve().parents[2]
LOGIN = ROOT / ".venv-login" / "bin"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (LOGIN / "dlcrun").exists(), reason="no .venv-login here (make install-login)"),
]

# `apptainer exec [--nv] [--bind X] [--env K=V]... IMAGE CMD...`, as dlcrun's exec prefix calls it.
APPTAINER_EMULATION = """#!/bin/sh
[ "$1" = exec ] || { echo "emulation: only exec" >&2; exit 64; }
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --nv) shift ;;
    --bind) shift 2 ;;
    --env) export "$2"; shift 2 ;;
    -*) echo "emulation: unknown option $1" >&2; exit 64 ;;
    *) break ;;
  esac
done
[ -f "$1" ] || { echo "FATAL:   could not open image $1: failed to retrieve path" >&2; exit 255; }
shift
echo "$*" >> "$EMULATION_LOG"
export PATH="$IMAGE_BIN:$PATH" DLCRUN_IMAGE_INFO="$IMAGE_INFO"
exec "$@"
"""


@pytest.fixture
def login(tmp_path: Path):
    """Run the login venv's dlcrun, with the Apptainer emulation on PATH."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "apptainer").write_text(APPTAINER_EMULATION)
    (fake / "apptainer").chmod(0o755)
    info = tmp_path / "image.json"
    info.write_text(json.dumps({"engine": "pytorch", "variant": "cpu", "python": "3.11"}))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DLCRUN_IMAGE_INFO")}
    env.update(
        PATH=f"{fake}:{LOGIN}:/usr/bin:/bin",
        IMAGE_BIN=str(Path(sys.executable).parent),
        IMAGE_INFO=str(info),
        EMULATION_LOG=str(tmp_path / "apptainer.log"),
        TMPDIR=str(tmp_path),
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LOGIN / "dlcrun"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    return run


def test_the_login_venv_has_no_deeplabcut_or_torch() -> None:
    probe = subprocess.run(
        [
            str(LOGIN / "python"),
            "-c",
            "import importlib.util as u; print(u.find_spec('deeplabcut'), u.find_spec('torch'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["None", "None"]


def test_submit_from_a_login_node_pins_in_the_image_and_runs_there(
    tmp_path: Path, demo_project: Path, tiny_videos, login
) -> None:
    """Apptainer emulated. The pinned model equals what DeepLabCut pins in-process; the indices
    run in the image and publish DLC .h5 files; doctor passes with notes for torch/DLC."""
    videos = tiny_videos(names=["a.mp4", "b.mp4"], frames=6)
    write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    image = tmp_path / "dlc.sif"
    image.write_bytes(b"SIF")
    (tmp_path / "dlcrun.toml").write_text(
        f'project = "{demo_project}"\ndest = "{tmp_path / "keypoints"}"\nimage = "{image}"\n'
        f'runs_dir = "{tmp_path / "runs"}"\nscratch = "{tmp_path / "scratch"}"\ndevice = "cpu"\n'
    )

    done = login("submit", "batch.txt")
    assert done.returncode == 0, done.stdout + done.stderr
    run = Run(next((tmp_path / "runs").iterdir()))
    assert run.model == pin_model(demo_project).to_dict()
    calls = (tmp_path / "apptainer.log").read_text().splitlines()
    assert calls[0].startswith(f"dlcrun pin {demo_project} --shuffle 1 --trainingsetindex 0")
    assert sum(" task " in f" {c} " for c in calls) >= 1
    for video in videos:
        h5 = tmp_path / "keypoints" / f"{video.stem}{run.model['scorer']}.h5"
        frame = pd.read_hdf(h5)
        assert len(frame) == 6 and frame.columns.names == ["scorer", "bodyparts", "coords"]

    status = login("status")
    assert status.returncode == 0 and "done" in status.stdout, status.stdout + status.stderr
    doctor = login("doctor", "--scratch", str(tmp_path))
    assert doctor.returncode == 0, doctor.stdout
    assert "not needed here: the image has its own" in doctor.stdout
    models = login("models")
    assert models.returncode == 0 and Path(run.model["snapshot"]).name in models.stdout, models.stdout + models.stderr

    sheet = tmp_path / "videos.csv"
    sheet.write_text("video\n" + "".join(f"{v}\n" for v in videos))
    extract = login("sample", str(sheet), "--count", "1", "-o", "s.txt", "--extract-to", str(tmp_path / "frames"))
    assert extract.returncode == 1
    assert extract.stderr.strip().startswith("error: this needs DeepLabCut, which is not installed here"), (
        extract.stderr
    )
    assert "Traceback" not in extract.stderr


def test_login_node_errors_are_one_line(tmp_path: Path, demo_project: Path, tiny_videos, login) -> None:
    """No image: say how to fix it. A bad snapshot: the image's own message comes back."""
    (video,) = tiny_videos(names=["a.mp4"])
    write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(video)]))
    common = ["--project", str(demo_project), "--dest", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]

    bare = login("submit", "batch.txt", *common)
    assert bare.returncode == 1
    assert bare.stderr.strip().startswith("error: DeepLabCut is not installed here: set image"), bare.stderr

    image = tmp_path / "dlc.sif"
    image.write_bytes(b"SIF")
    wrong = login("submit", "batch.txt", *common, "--image", str(image), "--snapshot", "snapshot-999.pt")
    assert wrong.returncode == 1
    assert f"pinning the snapshot inside {image}: " in wrong.stderr and "snapshot-999.pt" in wrong.stderr, wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr

    missing = login("submit", "batch.txt", *common, "--image", str(tmp_path / "gone.sif"))
    assert missing.returncode == 1 and "could not open image" in missing.stderr, missing.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
