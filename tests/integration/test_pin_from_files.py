"""Pinning a PyTorch shuffle from its files gives DeepLabCut's own spec, without importing DLC.

Real parts: the openfield project with its DLC-made shuffle and random-initialised snapshot
(tests/conftest.py), copied with more snapshots beside it (hard links of the real one), and
DeepLabCut's own loader and scorer functions to compare with. Where the files do not suffice
(a value DLC's config model fills in), the pin falls back to DLC and still gives DLC's spec.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from dlcrun.engines import pin_model
from dlcrun.engines.pytorch import pin_with_dlc
from dlcrun.engines.pytorch_snapshots import pin_from_files
from dlcrun.errors import ConfigError
from dlcrun.inference import PYTORCH, TENSORFLOW, shuffle_engine

SNAPSHOTS = ["snapshot-002.pt", "snapshot-010.pt", "snapshot-best-007.pt"]  # beside the fixture's snapshot-005.pt


def copy_project(source: Path, dest: Path) -> Path:
    """What pinning reads of ``source`` (config, training datasets, models), snapshots hard-linked."""
    dest.mkdir(parents=True)
    shutil.copy2(source / "config.yaml", dest / "config.yaml")
    shutil.copytree(source / "training-datasets", dest / "training-datasets")
    shutil.copytree(source / "dlc-models-pytorch", dest / "dlc-models-pytorch", copy_function=os.link)
    return dest


def model_folder(project: Path) -> Path:
    return next(project.glob("dlc-models-pytorch/iteration-0/*shuffle1/train"))


def edit_config(project: Path, **changes: object) -> None:
    yaml = YAML()
    cfg = yaml.load((project / "config.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    with open(project / "config.yaml", "w") as fh:
        yaml.dump(cfg, fh)


@pytest.fixture(scope="module")
def project(openfield_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The openfield project with snapshots 2, 5, 10 and best-7 (hard links of the real one)."""
    copy = copy_project(openfield_project, tmp_path_factory.mktemp("pin") / openfield_project.name)
    folder = model_folder(copy)
    (real,) = folder.glob("snapshot-*.pt")
    for name in SNAPSHOTS:
        os.link(real, folder / name)
    return copy.resolve()


def dlc_scorer(project: Path, snapshot: str) -> str:
    """The scorer DLC's own get_scorer_name gives for that snapshot file."""
    from deeplabcut.pose_estimation_pytorch.apis.utils import get_scorer_name, get_scorer_uid
    from deeplabcut.pose_estimation_pytorch.data.snapshots import Snapshot

    from dlcrun.inference import project_config

    cfg = project_config(project)
    uid = get_scorer_uid(Snapshot.from_path(Path(snapshot)), None)
    return get_scorer_name(cfg, 1, cfg["TrainingFraction"][0], snapshot_uid=uid)


@pytest.mark.parametrize(
    "snapshot",
    [None, "best", "BEST", "0", "1", "3", "-1", "-2", "-4", "all", "snapshot-010.pt", "snapshot-best-007.pt"],
)
def test_pin_from_files_equals_dlc_for_every_way_of_naming_a_snapshot(project: Path, snapshot: str | None) -> None:
    from_files = pin_from_files(project, 1, 0, snapshot)
    assert from_files is not None, "the files suffice for this choice"
    assert from_files == pin_with_dlc(project, 1, 0, snapshot)
    assert from_files.scorer == dlc_scorer(project, from_files.snapshot)


def test_the_snapshot_dlcrun_train_selected_is_the_default(project: Path) -> None:
    folder = model_folder(project)
    (folder / "dlcrun-selected.json").write_text(json.dumps({"snapshot": "snapshot-002.pt"}))
    try:
        spec = pin_from_files(project, 1, 0, None)
        assert spec is not None and Path(spec.snapshot).name == "snapshot-002.pt"
        assert spec == pin_with_dlc(project, 1, 0, None)
    finally:
        (folder / "dlcrun-selected.json").unlink()


@pytest.mark.parametrize("snapshot", ["7", "-5", "snapshot-003.pt", "snapshot-005", "latest", "--1"])
def test_a_snapshot_dlc_would_not_find_falls_back_to_dlcs_refusal(project: Path, snapshot: str) -> None:
    assert pin_from_files(project, 1, 0, snapshot) is None
    with pytest.raises(ConfigError, match="not usable"):
        pin_model(project, 1, 0, snapshot)


def test_pinning_imports_neither_deeplabcut_nor_torch(project: Path) -> None:
    code = (
        "import json, sys\n"
        "from dlcrun.engines import pin_model\n"
        f"spec = pin_model({str(project)!r}, 1, 0, 'best')\n"
        "heavy = sorted(m for m in ('deeplabcut', 'torch', 'tensorflow') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'spec': spec.to_dict()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["heavy"] == []
    assert answer["spec"] == pin_with_dlc(project, 1, 0, "best").to_dict()


def test_a_value_dlc_would_fill_in_falls_back_to_dlc(project: Path, tmp_path: Path) -> None:
    """No batch_size or snapshotindex in config.yaml: DLC's config model supplies its defaults."""
    copy = copy_project(project, tmp_path / project.name)
    edit_config(copy, batch_size=None, snapshotindex=None)
    assert pin_from_files(copy, 1, 0, None) is None
    spec = pin_model(copy, 1, 0, None)
    assert spec == pin_with_dlc(copy, 1, 0, None)
    assert spec.default_batch_size == 8  # DLC's default, not dlcrun's guess


def test_a_training_fraction_dlc_truncates_names_the_folder_it_made(project: Path, tmp_path: Path) -> None:
    """0.57 * 100 is 56.99...: DLC's folder says trainset56, and so must the pin."""
    copy = copy_project(project, tmp_path / project.name)
    edit_config(copy, TrainingFraction=[0.57])
    old = model_folder(copy).parent
    old.rename(old.with_name(old.name.replace("trainset95", "trainset56")))
    from_files = pin_from_files(copy, 1, 0, "-1")
    assert from_files is not None and "trainset56" in from_files.snapshot
    assert from_files == pin_with_dlc(copy, 1, 0, "-1")


def test_a_multi_animal_project_is_left_to_dlc(project: Path, tmp_path: Path) -> None:
    """Its individuals, unique bodyparts and tracker are read through DLC's loader (pin_with_dlc)."""
    copy = copy_project(project, tmp_path / project.name)
    edit_config(copy, multianimalproject=True)
    assert pin_from_files(copy, 1, 0, None) is None


def test_shuffle_engine_finds_a_truncated_fraction_folder(tmp_path: Path) -> None:
    """A DLC 2.x shuffle of TrainingFraction 0.57 lives in ...trainset56shuffle1 (DLC's int())."""
    (tmp_path / "config.yaml").write_text("Task: lab\ndate: Jan1\niteration: 0\nTrainingFraction: [0.57]\n")
    train = tmp_path / "dlc-models" / "iteration-0" / "labJan1-trainset56shuffle1" / "train"
    train.mkdir(parents=True)
    (train / "pose_cfg.yaml").write_text("net_type: resnet_50\n")
    assert shuffle_engine(tmp_path, 1, 0) == TENSORFLOW
    assert shuffle_engine(tmp_path, 2, 0) == PYTORCH  # no such shuffle: DLC 3's default
