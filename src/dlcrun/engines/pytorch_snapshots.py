"""A PyTorch (DLC 3) shuffle's snapshot and scorer, read from its files without importing DeepLabCut.

Importing DeepLabCut imports torch and most of its stack: seconds of a ``submit`` that otherwise
takes about one, spent only to read two YAML files and a folder listing. This module reads what
DLC's own pin reads (config.yaml, the shuffle's ``train/pytorch_config.yaml``, the snapshot
names, dlcrun's ``dlcrun-selected.json``) and applies DeepLabCut 3.0's rules to them: the model
folder (``auxiliaryfunctions.get_model_folder``), the order of the snapshots
(``data.snapshots.list_snapshots``), the choice among them (``apis.utils``
``parse_snapshot_index_for_analysis`` and ``get_model_snapshots``) and the scorer
(``DLCLoader.scorer``).

It answers only where those rules are plain: a value DLC's config models would fill with a
default or coerce from another type, a multi-animal project or a model other than bottom-up
(whose scorer also names a detector), or a snapshot that is not there gives ``None``, and the engine asks DeepLabCut itself (whose error then names what
is wrong). The spec is DLC's either way: ``tests/integration/test_pin_from_files.py`` holds it
equal to DLC's on the real openfield project for every way of naming a snapshot.

What it does not do is validate the rest of config.yaml as DLC's ``ProjectConfig`` would; an
index that loads the model does (the engine loads it through DLC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcrun.inference import ModelSpec, selected_snapshot

# data.snapshots.list_snapshots with the pose model's prefix ("snapshot": bottom-up, top-down and
# conditional top-down alike); a detector's "snapshot-detector-*" never matches.
_NAME = re.compile(r"^(snapshot(-best)?-\d+\.pt)$")
_EPOCHS = re.compile(r"-(\d+)\.pt$")


class _NotPlain(Exception):
    """The files hold something DeepLabCut's rules would interpret: ask DeepLabCut."""


@dataclass(frozen=True)
class Snapshot:
    """One ``snapshot[-best]-<epochs>.pt`` of a model folder, as DLC's ``Snapshot.from_path`` reads it."""

    best: bool
    epochs: int
    path: Path

    def uid(self) -> str:
        return f"best-{self.epochs}" if self.best else str(self.epochs)


def list_snapshots(folder: Path) -> list[Snapshot]:
    """The folder's snapshots by epochs, the best one(s) last: DLC's ``list_snapshots(best_in_last=True)``."""
    found = []
    for path in folder.iterdir():
        if _NAME.match(path.name):
            epochs = _EPOCHS.search(path.name)
            assert epochs is not None  # _NAME ends the same way
            found.append(Snapshot(best="-best" in path.stem, epochs=int(epochs.group(1)), path=path))
    found.sort(key=lambda s: (1 if s.best else 0, s.epochs))
    return found


def choose(snapshots: list[Snapshot], wanted: str | None, index_in_config: int | str) -> Snapshot | None:
    """The snapshot DLC's pin takes for ``wanted`` (a file name, an index, ``best``; None: the
    config's ``snapshotindex``), or None where DLC would find none or refuse the choice."""
    if wanted and wanted.endswith(".pt"):  # get_model_snapshots(snapshot_filter=[stem])
        stem = Path(wanted).stem
        return next((s for s in snapshots if s.path.stem == stem), None)
    index: int | str | None = wanted
    if wanted and wanted.lstrip("-").isdigit():
        try:
            index = int(wanted)
        except ValueError:  # "--1": DLC refuses it too
            return None
    if index is None:
        index = index_in_config
    if index == "all":  # parse_snapshot_index_for_analysis
        index = -1
    if isinstance(index, str):
        if index.lower() == "best":
            best = [s for s in snapshots if s.best]
            return best[-1] if best else None
        if index.lower() == "all":
            return snapshots[0] if snapshots else None
        return None
    if not -len(snapshots) <= index < len(snapshots):
        return None
    return snapshots[index]


def scorer(task: str, date: str, net_type: str, shuffle: int, snapshot: Snapshot) -> str:
    """DLC's scorer for a bottom-up model's snapshot (``DLCLoader.scorer``, no detector)."""
    name = "".join(part.capitalize() for part in net_type.split("_"))
    return f"DLC_{name}_{task}{date}shuffle{shuffle}_snapshot_{snapshot.uid()}"


def pin_from_files(project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec | None:
    """The spec DLC's pin gives (``PytorchEngine.pin``), or None where the files do not suffice."""
    try:
        return _pin(Path(project), shuffle, trainingsetindex, snapshot)
    except (_NotPlain, OSError, ValueError):
        return None


def _pin(project: Path, shuffle: int, trainingsetindex: int, snapshot: str | None) -> ModelSpec | None:
    cfg = _yaml(project / "config.yaml")
    multi = cfg.get("multianimalproject")
    if multi is None:  # DLC's templates leave it empty: a null key takes the field's default, False
        multi = False
    if type(multi) is not bool:
        raise _NotPlain("multianimalproject")
    if multi:  # individuals, unique bodyparts, the tracker: DLC's loader reads them (pin_with_dlc)
        raise _NotPlain("multianimalproject")
    task, date = _plain(cfg, "Task", str), _plain(cfg, "date", str)
    iteration, batch_size = _plain(cfg, "iteration", int), _plain(cfg, "batch_size", int)
    fractions = _plain(cfg, "TrainingFraction", list)
    index_in_config = cfg.get("snapshotindex")
    if iteration < 0 or batch_size < 1 or not 0 <= trainingsetindex < len(fractions):
        raise _NotPlain("iteration, batch_size or TrainingFraction")
    if not (type(index_in_config) is int or index_in_config == "all"):
        raise _NotPlain("snapshotindex")
    fraction = fractions[trainingsetindex]
    if type(fraction) is not float or not 0.0 <= fraction <= 1.0:
        raise _NotPlain("TrainingFraction")
    # auxiliaryfunctions.get_model_folder (int(), not round(): 0.57 * 100 is 56.99...)
    folder = (
        project
        / "dlc-models-pytorch"
        / f"iteration-{iteration}"
        / f"{task}{date}-trainset{int(fraction * 100)}shuffle{shuffle}"
        / "train"
    )
    model_cfg = _yaml(folder / "pytorch_config.yaml")
    method, net_type = _plain(model_cfg, "method", str), _plain(model_cfg, "net_type", str)
    metadata = _plain(model_cfg, "metadata", dict)
    bodyparts = _plain(metadata, "bodyparts", list)
    if method.upper() != "BU" or not all(type(b) is str for b in bodyparts):  # a top-down scorer names its detector
        raise _NotPlain("method or bodyparts")
    chosen = choose(
        list_snapshots(folder), snapshot if snapshot is not None else selected_snapshot(folder), index_in_config
    )
    if chosen is None:
        return None
    return ModelSpec(
        project=str(project),
        shuffle=shuffle,
        trainingsetindex=trainingsetindex,
        snapshot=str(chosen.path.resolve()),
        scorer=scorer(task, date, net_type, shuffle, chosen),
        bodyparts=list(bodyparts),
        net_type=net_type,
        default_batch_size=batch_size,
    )


def _yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping read as DLC reads it (``ruamel.yaml`` safe, pure Python)."""
    from ruamel.yaml import YAML, YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text())
    except YAMLError as exc:
        raise _NotPlain(str(exc)) from None
    if not isinstance(data, dict):
        raise _NotPlain(f"{path}: not a mapping")
    return data


def _plain(data: dict[str, Any], key: str, kind: type) -> Any:
    """``data[key]`` when it is exactly of ``kind`` (a bool is no int here); else DLC decides."""
    value = data.get(key)
    if type(value) is not kind:
        raise _NotPlain(key)
    return value
