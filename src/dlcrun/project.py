"""Moving a DLC project between a laptop and a cluster, and listing its trained models.

DLC stores absolute paths in several YAML files (config.yaml's ``project_path`` and
``video_sets``; the shuffle's ``pytorch_config.yaml`` and ``pose_cfg.yaml``). A copied project
with stale paths makes DLC rewrite config.yaml from every reader, or fail; ``unpack`` rewrites
them once, keeping the files' comments (ruamel round trip).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dlcrun.errors import ConfigError
from dlcrun.inference import selected_snapshot

PACK_INFO = "dlcrun-pack.json"
# Labelled data and shuffle definitions travel; videos, snapshots and evaluation outputs do not.
EXCLUDED_DIRS = {"videos", "evaluation-results", "evaluation-results-pytorch", "__pycache__"}
EXCLUDED_SUFFIXES = {".pt", ".pth", ".mp4", ".avi", ".mov", ".mkv", ".pickle~"}
YAML_FILES = ("config.yaml", "pytorch_config.yaml", "pose_cfg.yaml", "metadata.yaml")


# A snapshot: PyTorch's snapshot-*.pt, or the files of a TensorFlow checkpoint snapshot-N.
SNAPSHOT_FILE = re.compile(r"snapshot-.*\.pt|snapshot-\d+\.(?:index|meta|data-\d+-of-\d+)")


def _project_files(project: Path, with_snapshots: bool) -> Iterator[Path]:
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if not path.is_file() or rel.parts[0] in EXCLUDED_DIRS:
            continue
        if SNAPSHOT_FILE.fullmatch(path.name):
            if with_snapshots:
                yield path
            continue
        if path.suffix in EXCLUDED_SUFFIXES:
            continue
        yield path


def pack(project: Path, archive: Path, with_snapshots: bool = False) -> Path:
    """config.yaml, labelled data and shuffle definitions into one .tar.gz (written atomically)."""
    from ruamel.yaml import YAML

    project = Path(project).expanduser().resolve()
    config = project / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{project}: no config.yaml; not a DeepLabCut project")
    if archive.exists():
        raise ConfigError(f"{archive} exists; remove it or choose another name")
    cfg = YAML().load(config.read_text())
    info = {
        "source": str(project),
        "project_path": str(cfg.get("project_path", "")),
        "packed": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "with_snapshots": with_snapshots,
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in _project_files(project, with_snapshots):
                tar.add(path, arcname=str(PurePosixPath(project.name) / path.relative_to(project).as_posix()))
            blob = json.dumps(info, indent=2).encode()
            member = tarfile.TarInfo(f"{project.name}/{PACK_INFO}")
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    return archive


def unpack(archive: Path, to: Path, videos: Path | None = None) -> Path:
    """Extract under ``to`` and point every stored path at the new location; never overwrites."""
    archive, to = Path(archive), Path(to).expanduser().resolve()
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = tar.getnames()
            tops = {n.split("/", 1)[0] for n in names}
            if len(tops) != 1 or f"{next(iter(tops))}/{PACK_INFO}" not in names:
                raise ConfigError(f"{archive}: not made by dlcrun project pack (no {PACK_INFO})")
            name = tops.pop()
            target = to / name
            if target.exists():
                raise ConfigError(f"{target} exists; unpack elsewhere or remove it first (nothing was changed)")
            to.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.unpack-", dir=to))
            try:
                tar.extractall(staging, filter="data")
                unpacked = staging / name
                info = json.loads((unpacked / PACK_INFO).read_text())
                (unpacked / PACK_INFO).unlink()
                old = [p for p in {info["source"], info["project_path"]} if p]
                _rewrite_paths(unpacked, old, target, videos or target / "videos")
                (unpacked / "videos").mkdir(exist_ok=True)
                os.replace(unpacked, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{archive}: cannot unpack ({exc})") from None
    return target


def _rewrite_paths(root: Path, old: list[str], new: Path, videos: Path) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    prefixes = sorted(old, key=len, reverse=True)

    def moved(value: str) -> str:
        for prefix in prefixes:
            if value == prefix or value.startswith(prefix.rstrip("/") + "/"):
                return str(new) + value[len(prefix.rstrip("/")) :]
        return value

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key in list(node):
                node[key] = walk(node[key])
            return node
        if isinstance(node, list):
            for i, item in enumerate(node):
                node[i] = walk(item)
            return node
        return moved(node) if isinstance(node, str) else node

    for path in root.rglob("*.yaml"):
        if path.name not in YAML_FILES:
            continue
        data = yaml.load(path.read_text())
        if data is None:
            continue
        walk(data)
        if path == root / "config.yaml":
            data["project_path"] = str(new)
            sets = data.get("video_sets") or {}
            for key in list(sets):
                renamed = str(videos / PurePosixPath(str(key)).name)
                if renamed != key:
                    position = list(sets).index(key)
                    value = sets.pop(key)
                    sets.insert(position, renamed, value)
        with open(path, "w") as fh:
            yaml.dump(data, fh)


@dataclass
class ModelInfo:
    shuffle: int
    train_fraction: float
    snapshot: str
    epochs: int | None  # training iterations for a TensorFlow-engine snapshot
    train_rmse: float | None
    test_rmse: float | None
    selected: bool = False
    engine: str = "pytorch"


def list_models(project: Path) -> list[ModelInfo]:
    """Every snapshot of the current iteration (PyTorch, then TensorFlow-engine shuffles), with
    DLC's evaluation error where known."""
    from ruamel.yaml import YAML

    project = Path(project).expanduser().resolve()
    if not (project / "config.yaml").is_file():
        raise ConfigError(f"{project}: no config.yaml; not a DeepLabCut project")
    cfg = YAML(typ="safe").load((project / "config.yaml").read_text())
    iteration = f"iteration-{cfg.get('iteration', 0)}"
    out: list[ModelInfo] = []
    for engine, models, results, pattern, count, rmse in (
        (
            "pytorch",
            "dlc-models-pytorch",
            "evaluation-results-pytorch",
            "snapshot-*.pt",
            "Training epochs",
            ("train rmse", "test rmse"),
        ),
        (
            "tensorflow",
            "dlc-models",
            "evaluation-results",
            "snapshot-*.index",
            "Training iterations:",
            (" Train error(px)", " Test error(px)"),
        ),
    ):
        scores = _scores(project / results / iteration / "CombinedEvaluation-results.csv", count)
        for folder in sorted((project / models / iteration).glob("*shuffle*")):
            match = re.search(r"trainset(\d+)shuffle(\d+)$", folder.name)
            if not match:
                continue
            fraction, shuffle = int(match.group(1)) / 100, int(match.group(2))
            snaps = sorted((folder / "train").glob(pattern), key=_snapshot_order)
            chosen = selected_snapshot(folder / "train")
            for snap in snaps:
                name = snap.name if engine == "pytorch" else snap.stem
                epochs = _epochs(snap)
                found = scores.get((shuffle, round(fraction * 100, 4), epochs or -1)) or scores.get(
                    (shuffle, round(fraction, 4), epochs or -1), {}
                )
                out.append(
                    ModelInfo(
                        shuffle=shuffle,
                        train_fraction=fraction,
                        snapshot=name,
                        epochs=epochs,
                        train_rmse=found.get(rmse[0]),
                        test_rmse=found.get(rmse[1]),
                        selected=name == chosen,
                        engine=engine,
                    )
                )
    return out


def _scores(combined: Path, count: str) -> dict[tuple[int, float, int], dict[str, float]]:
    import pandas as pd

    scores: dict[tuple[int, float, int], dict[str, float]] = {}
    if combined.is_file():
        for _, row in pd.read_csv(combined).iterrows():
            key = (int(row["Shuffle number"]), round(float(row["%Training dataset"]), 4), int(row[count]))
            scores[key] = {k: float(v) for k, v in row.items() if isinstance(v, (int, float))}
    return scores


def _epochs(path: Path) -> int | None:
    match = re.search(r"snapshot-(?:best-)?(\d+)\.(?:pt|index)$", path.name)
    return int(match.group(1)) if match else None


def _snapshot_order(path: Path) -> tuple[int, int]:
    return ("best" in path.name, _epochs(path) or 0)
