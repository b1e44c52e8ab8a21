"""DeepLabCut 2.x (TensorFlow-engine) shuffles: detection, training, selection, analysis, offline.

These need TensorFlow, which the main venv leaves out (DLC's TensorFlow engine pins its own
TensorFlow/Keras); ``make test`` runs them a second time in ``.venv-tf`` (``make install-tf``),
where they do run. In a venv without TensorFlow only the refusal test runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dlcrun.cli import app
from dlcrun.engines import pin_model
from dlcrun.errors import ConfigError
from dlcrun.inference import TENSORFLOW, shuffle_engine

HAVE_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow not installed here; make test runs these in .venv-tf")
pytestmark = pytest.mark.tensorflow


def _fake_tf_shuffle(root: Path) -> Path:
    """The files a DLC 2.x project keeps for shuffle 1 (no weights): enough to detect the engine."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(
        "Task: octo\nscorer: lab\ndate: Oct1\niteration: 0\nTrainingFraction:\n- 0.95\nsnapshotindex: -1\n"
        "multianimalproject: false\nbodyparts: [a, b]\nbatch_size: 1\n"
    )
    for part in ("train", "test"):
        folder = root / "dlc-models" / "iteration-0" / "octoOct1-trainset95shuffle1" / part
        folder.mkdir(parents=True)
        (folder / "pose_cfg.yaml").write_text("net_type: resnet_50\nall_joints_names: [a, b]\n")
    return root


def test_engine_is_read_from_the_model_folders_without_writing(tmp_path: Path) -> None:
    project = _fake_tf_shuffle(tmp_path / "octo")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    assert shuffle_engine(project, 1) == TENSORFLOW
    assert shuffle_engine(project, 2) == "pytorch", "no such TF shuffle: DLC 3's default, whose loader explains"
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before, (
        "nothing written (DLC would add metadata.yaml)"
    )


def test_a_tf_snapshot_is_pinned_without_tensorflow_and_runs_only_where_tensorflow_is(tmp_path: Path) -> None:
    """A login node with the PyTorch install pins a TF snapshot (DLC's scorer name, no TensorFlow
    import); the run is refused unless this environment or the run's image can run it."""
    from dlcrun import batch
    from dlcrun.demo import write_video
    from dlcrun.manifest import Manifest, write_manifest
    from dlcrun.settings import load_settings

    project = _fake_tf_shuffle(tmp_path / "octo")
    train = next(project.glob("dlc-models/iteration-0/*/train"))
    for n in (500, 1500):
        (train / f"snapshot-{n}.index").write_bytes(b"")
    spec = pin_model(project)
    assert spec.engine == TENSORFLOW and Path(spec.snapshot) == train / "snapshot-1500"
    assert spec.scorer == "DLC_resnet50_octoOct1shuffle1_1500" and spec.bodyparts == ["a", "b"]
    assert Path(pin_model(project, snapshot="0").snapshot).name == "snapshot-500"

    video = write_video(tmp_path / "videos" / "v.mp4", frames=3)
    manifest = write_manifest(tmp_path / "m.txt", Manifest(entries=[str(video)]))
    settings = load_settings(None, project=project, dest=str(tmp_path / "k"), runs_dir=tmp_path / "runs")
    if HAVE_TF:
        assert batch.start_run(manifest, settings)[0].model["engine"] == TENSORFLOW
        return
    with pytest.raises(ConfigError, match=r"TensorFlow-engine .*ENGINE=tensorflow.*--image"):
        batch.start_run(manifest, settings)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "nothing half-made"
    run, _ = batch.start_run(manifest, settings.model_copy(update={"image": str(tmp_path / "dlc-tf.sif")}))
    assert run.model["engine"] == TENSORFLOW, "the image runs it"


def test_submit_refuses_a_precision_the_tf_engine_cannot_run_before_creating_anything(tmp_path: Path) -> None:
    """bf16 on a TensorFlow shuffle would fail on every array index after submit; the engine says
    so at pinning, which needs no TensorFlow, so this runs in any venv."""
    from dlcrun.demo import write_video
    from dlcrun.manifest import Manifest, write_manifest

    project = _fake_tf_shuffle(tmp_path / "octo")
    train = next(project.glob("dlc-models/iteration-0/*/train"))
    (train / "snapshot-500.index").write_bytes(b"")
    video = write_video(tmp_path / "videos" / "v.mp4", frames=3)
    manifest = write_manifest(tmp_path / "m.txt", Manifest(entries=[str(video)]))
    args = ["submit", str(manifest), "--project", str(project), "--dest", str(tmp_path / "k")]
    args += ["--runs-dir", str(tmp_path / "runs"), "--image", str(tmp_path / "dlc-tf.sif"), "--no-wait"]
    refused = CliRunner().invoke(app, [*args, "--precision", "bf16"])
    assert refused.exit_code == 1, refused.output
    assert (
        "precision bf16: the TensorFlow engine (shuffle 1) runs fp32 only; submit with --precision fp32"
        in refused.output
    )
    assert "Traceback" not in refused.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "nothing half-made"


def _offline_imagenet_weights() -> None:
    """DLC 2.x's create_training_dataset downloads ImageNet ResNet-50 weights into its own
    install unless they are there. Tests have no network: this venv gets random weights of the
    same architecture at that path instead (dlcrun's own random_init, as ``dlcrun train`` uses)."""
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.utils import auxfun_models, auxiliaryfunctions

    from dlcrun.engines.tensorflow import random_init

    root = auxiliaryfunctions.get_deeplabcut_path()
    target = root / auxfun_models.MODELTYPE_FILEPATH_MAP["resnet_50"]
    if Path(f"{target}.index").is_file():
        return
    cfg = load_config(str(root / "pose_cfg.yaml"))
    cfg.update(net_type="resnet_50", num_joints=3, all_joints=[[0], [1], [2]], all_joints_names=["a", "b", "c"])
    random_init(cfg, target)


@pytest.fixture(scope="module")
def tf_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project with a TensorFlow shuffle, trained 2 iterations from random weights by dlcrun."""
    from dlcrun.demo import make_project
    from dlcrun.engines.tensorflow import set_pose_cfg
    from dlcrun.training import train

    _offline_imagenet_weights()
    root = tmp_path_factory.mktemp("tfproject")
    project = make_project(root / "project", engine=TENSORFLOW).parent
    assert shuffle_engine(project) == TENSORFLOW
    (pose_cfg,) = project.glob("dlc-models/iteration-0/*shuffle1/train/pose_cfg.yaml")
    # init_weights as after a move from a laptop; min_input_size: DLC's loader refuses (and its
    # training then waits forever) on images as small as the demo's 128x96 unless told otherwise;
    # multi_step: DLC's first rate (0.005, momentum 0.9) sometimes drives a random network's loss
    # to NaN within the 9 iterations these tests train (seen once in four runs), 1e-4 does not.
    set_pose_cfg(
        pose_cfg,
        init_weights="/laptop/site-packages/resnet_v1_50.ckpt",
        min_input_size=32,
        multi_step=[[0.0001, 1030000]],
    )
    snapshot = train(project, iterations=2, device="cpu", workdir=root / "work")
    assert snapshot.name == "snapshot-2" and Path(f"{snapshot}.index").is_file()
    assert (root / "work" / "random-init").is_dir(), "no ImageNet weights named: random ones, never a download"
    return project


@needs_tf
@pytest.mark.slow
def test_tf_keypoints_equal_analyze_videos(tf_project: Path, openfield_clip: Path, tmp_path: Path) -> None:
    """DLC's own TensorFlow analyze_videos and dlcrun's frame loop on one snapshot and a real
    640x480 clip (6 frames, batch 4: one full batch and one padded one)."""
    import deeplabcut
    from deeplabcut.core.engine import Engine

    from dlcrun.engines import open_analyzer
    from dlcrun.inference import Sampling

    spec = pin_model(tf_project)
    assert spec.engine == TENSORFLOW and Path(spec.snapshot).name == "snapshot-2"
    assert spec.scorer.startswith("DLC_resnet50_") and spec.scorer.endswith("shuffle1_2")
    deeplabcut.analyze_videos(
        str(tf_project / "config.yaml"),
        [str(openfield_clip)],
        shuffle=1,
        batch_size=4,
        destfolder=str(tmp_path / "dlc"),
        engine=Engine.TF,
    )
    (theirs_h5,) = (tmp_path / "dlc").glob("*.h5")
    analyzer = open_analyzer(spec, batch_size=4, device="cpu")
    analysis = analyzer.analyze(openfield_clip, tmp_path / "ours")
    ours_h5 = next(f for f in analysis.files if f.suffix == ".h5")
    assert ours_h5.name == theirs_h5.name, "DLC's file name (video + scorer)"
    theirs, ours = pd.read_hdf(theirs_h5, "df_with_missing"), pd.read_hdf(ours_h5, "df_with_missing")
    assert list(ours.columns) == list(theirs.columns) and list(ours.index) == list(theirs.index) == list(range(6))
    assert np.abs(ours.to_numpy() - theirs.to_numpy()).max() < 1e-3
    assert ours.to_numpy()[:, 0].std() > 0, "keypoints vary by frame: the comparison has power"
    meta = pd.read_pickle(next(f for f in analysis.files if f.name.endswith("_meta.pickle")))
    assert meta["data"]["Scorer"] == spec.scorer and meta["data"]["nframes"] == 6

    strided = analyzer.analyze(openfield_clip, tmp_path / "strided", sampling=Sampling(stride=2))
    rows = pd.read_hdf(next(f for f in strided.files if f.suffix == ".h5"), "df_with_missing")
    assert list(rows.index) == [0, 2, 4] and np.abs(rows.to_numpy() - ours.loc[[0, 2, 4]].to_numpy()).max() < 1e-3


@needs_tf
@pytest.mark.slow
def test_tf_train_job_resumes_is_evaluated_and_its_snapshot_runs_a_batch(tf_project: Path, tmp_path: Path) -> None:
    """`dlcrun train` on the local scheduler continues a TF shuffle from its newest snapshot (as
    after a requeue), DLC's evaluate_network scores it, and submit then pins that snapshot."""
    from dlcrun import batch
    from dlcrun.demo import write_video
    from dlcrun.manifest import Manifest, write_manifest
    from dlcrun.settings import load_settings
    from dlcrun.task import run_index

    project = tmp_path / tf_project.name
    shutil.copytree(tf_project, project)
    shown = CliRunner().invoke(
        app,
        [
            "train",
            "--project",
            str(project),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--wait",
        ],
    )
    assert shown.exit_code == 0, shown.output
    (workdir,) = (tmp_path / "runs" / "train").iterdir()
    result = json.loads((workdir / "result.json").read_text())
    assert result["state"] == "done", result
    # one epoch = the shuffle's 7 training images at batch 1, counted on from snapshot-2
    assert Path(result["snapshot"]).name == "snapshot-9", "DLC resumed at iteration 2"
    log = (workdir / "logs" / "train.out").read_text()
    assert "snapshot-2" in log.split("starting from", 1)[1].splitlines()[0]
    assert result["selected"]["snapshot"] == "snapshot-9" and result["selected"]["test_rmse"] >= 0

    listed = CliRunner().invoke(app, ["models", "--project", str(project)])
    assert listed.exit_code == 0, listed.output
    line = next(ln for ln in listed.output.splitlines() if "snapshot-9" in ln)
    assert "tensorflow" in line and "yes" in line

    video = write_video(tmp_path / "videos" / "v.mp4", frames=5)
    manifest = write_manifest(tmp_path / "m.txt", Manifest(entries=[str(video)]))
    settings = load_settings(None, project=project, dest=str(tmp_path / "k"), runs_dir=tmp_path / "runs", device="cpu")
    run, _ = batch.start_run(manifest, settings)
    assert run.model["engine"] == TENSORFLOW and Path(run.model["snapshot"]).name == "snapshot-9"
    record = run_index(run, 0)
    assert record.state == "done", record
    (h5,) = (tmp_path / "k").rglob("*.h5")
    assert h5.name.endswith("shuffle1_9.h5") and len(pd.read_hdf(h5, "df_with_missing")) == 5


@needs_tf
@pytest.mark.slow
def test_tf_training_job_ends_with_the_loaders_error_when_dlcs_data_loader_dies(
    tf_project: Path, tmp_path: Path
) -> None:
    """DLC's loader thread raises on images smaller than min_input_size; DLC's training loop would
    then wait on its empty queue until the walltime ends. The job must end with that error."""
    import os
    import signal
    import time

    from dlcrun.engines.tensorflow import set_pose_cfg
    from dlcrun.settings import load_settings
    from dlcrun.training import result, start_training

    project = tmp_path / tf_project.name
    shutil.copytree(tf_project, project)
    (pose_cfg,) = project.glob("dlc-models/iteration-0/*shuffle1/train/pose_cfg.yaml")
    set_pose_cfg(pose_cfg, min_input_size=512)  # the demo's frames are 128x96
    settings = load_settings(None, project=project, runs_dir=tmp_path / "runs", device="cpu")
    job = start_training(settings, iterations=5, evaluate=False)
    deadline = time.monotonic() + 240
    while (outcome := result(job.workdir)) is None:
        if time.monotonic() > deadline:
            os.killpg(int(job.request.job_id.removeprefix("local-")), signal.SIGKILL)
            pytest.fail("the training job still waits on DLC's queue after 240 s")
        time.sleep(1)
    assert outcome["state"] == "failed", outcome
    assert outcome["error"].startswith("DeepLabCut's TensorFlow data loader died: ValueError: Image size"), outcome
    assert "min_input_size" in outcome["error"]
    assert sorted(p.name for p in pose_cfg.parent.glob("snapshot-*.index")) == ["snapshot-2.index"]


@needs_tf
def test_tf_refuses_what_it_cannot_do(tf_project: Path) -> None:
    from dlcrun.engines import open_analyzer

    with pytest.raises(ConfigError, match="snapshot 'snapshot-9' not found.*snapshot-2"):
        pin_model(tf_project, snapshot="snapshot-9")
    with pytest.raises(ConfigError, match="fp32 only"):
        open_analyzer(pin_model(tf_project), precision="bf16")


@pytest.mark.slow
def test_doctor_checks_tensorflow_when_the_projects_shuffle_needs_it(tmp_path: Path) -> None:
    from dlcrun.doctor import run_doctor
    from dlcrun.settings import load_settings

    project = _fake_tf_shuffle(tmp_path / "octo")
    settings = load_settings(None, project=project, scratch=tmp_path, device="cpu")
    checks = {c.name: c for c in run_doctor(settings, require_gpu=False)}
    assert checks["tensorflow"].status == ("ok" if HAVE_TF else "fail"), checks["tensorflow"]
    pytorch_only = {c.name for c in run_doctor(settings.model_copy(update={"engine": "pytorch"}), require_gpu=False)}
    assert "tensorflow" not in pytorch_only


@needs_tf
@pytest.mark.slow
def test_tf_project_moves_with_or_without_its_snapshots(tf_project: Path, tmp_path: Path) -> None:
    from dlcrun.project import pack, unpack

    bare = unpack(pack(tf_project, tmp_path / "bare.tar.gz"), tmp_path / "bare")
    assert not list(bare.rglob("snapshot-*")), "no old models unless asked"
    assert list(bare.glob("dlc-models/iteration-0/*/train/pose_cfg.yaml")), "the shuffle's definition travels"
    moved = unpack(pack(tf_project, tmp_path / "full.tar.gz", with_snapshots=True), tmp_path / "moved")
    spec = pin_model(moved)
    assert Path(spec.snapshot).is_relative_to(moved) and spec.scorer == pin_model(tf_project).scorer
    for pose_cfg in moved.rglob("pose_cfg.yaml"):
        assert str(tf_project) not in pose_cfg.read_text(), f"{pose_cfg} still names the old place"
