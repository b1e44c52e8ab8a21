"""dlcrun train on this machine (the local scheduler), and the training request's checks.

The Slurm training job is in test_slurm_cluster.py; both run DeepLabCut's own training, offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.demo import write_video
from dlcrun.engines import pin_model
from dlcrun.engines.pytorch import latest_snapshot
from dlcrun.errors import ConfigError
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.settings import load_settings
from dlcrun.task import run_index
from dlcrun.training import start_training


def test_latest_snapshot_ignores_best_and_other_files(tmp_path: Path) -> None:
    assert latest_snapshot(tmp_path) is None
    for name in ("snapshot-005.pt", "snapshot-020.pt", "snapshot-best-030.pt", "snapshot-detector-040.pt", "x.pt"):
        (tmp_path / name).write_bytes(b"")
    assert latest_snapshot(tmp_path) == tmp_path / "snapshot-020.pt"


def test_training_request_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no DeepLabCut project"):
        start_training(load_settings(None, runs_dir=tmp_path))
    with pytest.raises(ConfigError, match="not a DeepLabCut project"):  # refused when the settings load
        start_training(load_settings(None, project=tmp_path, runs_dir=tmp_path))
    with pytest.raises(ConfigError, match="no config.yaml"):  # a path this machine does not see: refused here
        start_training(load_settings(None, project=tmp_path / "elsewhere", runs_dir=tmp_path))
    (tmp_path / "config.yaml").write_text("Task: x\n")
    with pytest.raises(ConfigError, match="--weights .*missing.pt: no such file"):
        start_training(load_settings(None, project=tmp_path, runs_dir=tmp_path), weights=tmp_path / "missing.pt")
    assert not (tmp_path / "train").exists(), "nothing is written for a refused request"


@pytest.mark.slow
def test_local_train_continues_from_the_newest_snapshot(tmp_path: Path, demo_project: Path) -> None:
    project = tmp_path / demo_project.name
    shutil.copytree(demo_project, project)
    (start,) = project.glob("dlc-models-pytorch/*/*/train/snapshot-*.pt")
    before = start.stat().st_mtime_ns
    shown = CliRunner().invoke(
        app, ["train", "--project", str(project), "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--wait"]
    )
    assert shown.exit_code == 0, shown.output
    assert "snapshot" in shown.output
    (workdir,) = (tmp_path / "runs" / "train").iterdir()
    request = json.loads((workdir / "train.json").read_text())
    assert request["scheduler"] == "local" and request["job_id"].startswith("local-") and request["epochs"] == 1
    result = json.loads((workdir / "result.json").read_text())
    assert result["state"] == "done", result
    assert Path(result["snapshot"]).parent == start.parent and Path(result["snapshot"]).stat().st_mtime_ns > before
    assert not (workdir / "init.pt").exists(), "an existing snapshot is the starting point"
    log = (workdir / "logs" / "train.out").read_text()
    assert f"starting from {start}" in log and "Epoch 1/1" in log

    # Evaluation ran and its choice is what a later batch uses by default.
    chosen = result["selected"]
    assert chosen["snapshot"] == Path(result["snapshot"]).name and chosen["test_rmse"] >= 0
    assert (start.parent / "dlcrun-selected.json").is_file()
    shutil.copy(start.parent / chosen["snapshot"], start.parent / "snapshot-099.pt")  # newer, never evaluated
    assert pin_model(project).snapshot.endswith(chosen["snapshot"])
    assert pin_model(project, snapshot="-1").snapshot.endswith("snapshot-099.pt"), "--snapshot still wins"
    video = write_video(tmp_path / "videos" / "v.mp4", frames=6)
    manifest = write_manifest(tmp_path / "m.txt", Manifest(entries=[str(video)]))
    settings = load_settings(None, project=project, dest=str(tmp_path / "k"), runs_dir=tmp_path / "runs")
    run, _ = batch.start_run(manifest, settings)
    assert Path(run.model["snapshot"]).name == chosen["snapshot"]
    assert run_index(run, 0).state == "done", "the trained snapshot analyses a video"
    (start.parent / "dlcrun-selected.json").unlink()
    assert pin_model(project).snapshot.endswith("snapshot-099.pt"), "without a choice: config.yaml's index"
    listed = CliRunner().invoke(app, ["models", "--project", str(project)])
    assert listed.exit_code == 0 and "snapshot-099.pt" in listed.output and "yes" not in listed.output
