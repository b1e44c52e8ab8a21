"""The commands that need no model start without torch or DeepLabCut (seconds each, per call).

Each command runs in a fresh interpreter, as a user's shell runs it, and then says which heavy
libraries its process imported. ``submit --dry-run`` pins a PyTorch shuffle from its files: the
project here holds what a DLC 3 shuffle's files hold (config.yaml, the shuffle's
pytorch_config.yaml, a snapshot's name; its content is not read at submit).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlcrun.manifest import read_manifest

HEAVY = ("torch", "deeplabcut", "tensorflow", "torchvision", "timm")

# The command line as `dlcrun` runs it, then the heavy modules now imported, as JSON on stderr's last line.
CHILD = """
import json, sys
sys.argv = ["dlcrun", *sys.argv[1:]]
from dlcrun.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"heavy": heavy, "code": code}}), file=sys.stderr)
"""


def dlcrun(*args: str, cwd: Path) -> tuple[list[str], object, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(heavy=HEAVY), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    answer = json.loads(done.stderr.strip().splitlines()[-1])
    return answer["heavy"], answer["code"], done.stdout + done.stderr


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A DLC 3 project's files for shuffle 1 (snapshot 20 trained), two videos and their manifest."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "config.yaml").write_text(
        "Task: lab\ndate: Jan1\nmultianimalproject: false\nbodyparts: [snout, tail]\n"
        "TrainingFraction: [0.95]\niteration: 0\nsnapshotindex: -1\nbatch_size: 4\n"
    )
    train = project / "dlc-models-pytorch" / "iteration-0" / "labJan1-trainset95shuffle1" / "train"
    train.mkdir(parents=True)
    (train / "pytorch_config.yaml").write_text(
        "method: bu\nnet_type: resnet_50\nmetadata:\n  bodyparts: [snout, tail]\n  unique_bodyparts: []\n"
        "  individuals: [animal]\n"
    )
    (train / "snapshot-010.pt").write_bytes(b"")
    (train / "snapshot-020.pt").write_bytes(b"")
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (videos / name).write_bytes(b"\0" * 1000)
    (tmp_path / "batch.txt").write_text(f"{videos / 'a.mp4'}\n{videos / 'b.mp4'}\n")
    return tmp_path


def test_help_imports_no_model_library(lab: Path) -> None:
    heavy, code, _ = dlcrun("--help", cwd=lab)
    assert (heavy, code) == ([], 0)


@pytest.mark.parametrize("scheduler", ["local", "slurm"])
def test_submit_dry_run_pins_a_pytorch_shuffle_without_torch_or_deeplabcut(lab: Path, scheduler: str) -> None:
    heavy, code, output = dlcrun(
        "submit",
        "batch.txt",
        "--dry-run",
        "--project",
        "proj",
        "--dest",
        "keypoints",
        "--runs-dir",
        "runs",
        "--scheduler",
        scheduler,
        "--device",
        "cpu",
        cwd=lab,
    )
    assert code in (0, None), output
    assert heavy == [], output
    (model,) = lab.glob("runs/*/model.json")
    spec = json.loads(model.read_text())
    assert spec["scorer"] == "DLC_Resnet50_labJan1shuffle1_snapshot_20"
    assert Path(spec["snapshot"]).name == "snapshot-020.pt"

    heavy, code, output = dlcrun("status", model.parent.name, "--runs-dir", "runs", cwd=lab)
    assert (heavy, code) == ([], 0), output


def test_manifest_imports_no_model_library(lab: Path) -> None:
    heavy, code, output = dlcrun("manifest", "--folder", "videos", "-o", "listed.txt", cwd=lab)
    assert (heavy, code) == ([], 0), output
    assert [Path(e).name for e in read_manifest(lab / "listed.txt").entries] == ["a.mp4", "b.mp4"]


def test_an_index_loads_its_model_while_the_first_video_downloads(tmp_path: Path, monkeypatch) -> None:
    """The model load starts before the first video's fetch ends (they used to take turns).

    The fetch waits for the load to begin and the load, once begun, fails: so the fetch finishes
    (it is timed in the record) and the index fails on the model, not on a fetch that waited in vain.
    """
    import threading

    from dlcrun import task
    from dlcrun.errors import ConfigError, StorageError
    from dlcrun.ledger import Run
    from dlcrun.manifest import Manifest
    from dlcrun.settings import load_settings
    from dlcrun.storage.local import LocalStorage

    loading = threading.Event()
    fetch = LocalStorage.fetch

    def fetch_once_loading(self, uri, local):  # type: ignore[no-untyped-def]
        if not loading.wait(timeout=30):
            raise StorageError("the model load had not started when the fetch ended")
        return fetch(self, uri, local)

    def refuse(*args: object, **kwargs: object) -> object:
        loading.set()
        raise ConfigError("the model for this test")

    monkeypatch.setattr(LocalStorage, "fetch", fetch_once_loading)
    monkeypatch.setattr(task, "open_analyzer", refuse)
    (tmp_path / "config.yaml").write_text("Task: lab\n")
    video = tmp_path / "videos" / "a.mp4"
    video.parent.mkdir()
    video.write_bytes(b"\0" * 1000)
    settings = load_settings(
        None, project=tmp_path, dest=str(tmp_path / "kp"), runs_dir=tmp_path / "runs", scratch=tmp_path / "scratch"
    )
    model = {"project": str(tmp_path), "shuffle": 1, "trainingsetindex": 0, "snapshot": "/x/snapshot-1.pt"}
    model |= {"scorer": "DLC_Resnet50_labJan1shuffle1_snapshot_1", "bodyparts": ["snout"], "net_type": "resnet_50"}
    run = Run.create(
        tmp_path / "runs", settings, Manifest(entries=[str(video)]), model | {"default_batch_size": 1}, "b"
    )

    (record,) = task.run_indices(run, [0])
    assert record.state == "failed" and record.error == "the model for this test"
    assert "fetch" in record.seconds
