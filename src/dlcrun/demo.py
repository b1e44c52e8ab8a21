"""An offline end-to-end demo: a tiny DLC project, synthetic videos, a real batch.

Nothing is downloaded: the snapshot is a randomly initialised DLC model (the keypoints are
meaningless but are produced by DLC's real model and pipeline), and the videos are drawn
here. The same builders serve the tests.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dlcrun.ledger import Run

BODYPARTS = ["snout", "tail"]


def draw_frame(width: int, height: int, t: float) -> tuple[Any, list[tuple[float, float]]]:
    """A grey arena with a dark 'animal' whose snout and tail move on a circle."""
    import cv2
    import numpy as np

    frame = np.full((height, width, 3), 200, np.uint8)
    cx, cy, r = width / 2, height / 2, min(width, height) / 4
    snout = (cx + r * math.cos(t), cy + r * math.sin(t))
    tail = (cx + r * math.cos(t + 2.5), cy + r * math.sin(t + 2.5))
    cv2.line(frame, tuple(map(int, snout)), tuple(map(int, tail)), (60, 60, 60), 6)
    cv2.circle(frame, tuple(map(int, snout)), 5, (20, 20, 160), -1)
    cv2.circle(frame, tuple(map(int, tail)), 4, (20, 120, 20), -1)
    return frame, [snout, tail]


def write_video(
    path: Path, frames: int = 20, size: tuple[int, int] = (128, 96), fps: int = 10, phase: float = 0.0
) -> Path:
    return write_frames(path, (draw_frame(*size, phase + i * 0.3)[0] for i in range(frames)), size, fps)


def write_frames(path: Path, images: Iterable[Any], size: tuple[int, int], fps: int) -> Path:
    """BGR ``images`` of ``size`` (width, height) as an mp4v video at ``path``."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4 here")
    for image in images:
        writer.write(image)
    writer.release()
    return path


def make_project(root: Path, n_labeled: int = 8, size: tuple[int, int] = (128, 96), engine: str = "pytorch") -> Path:
    """A single-animal DLC 3 project with labelled frames and shuffle 1; returns config.yaml.

    A PyTorch shuffle gets a random-initialised snapshot; a TensorFlow one (``engine="tensorflow"``)
    none: DLC 2.x's create_training_dataset needs its ImageNet weights in place (it downloads them).
    """
    import cv2
    import deeplabcut
    import pandas as pd
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils import auxiliaryfunctions

    root.mkdir(parents=True, exist_ok=True)
    seed_video = write_video(root / "seed" / "arena.mp4", frames=n_labeled, size=size)
    config = Path(
        deeplabcut.create_new_project(
            "demo", "dlcrun", [str(seed_video)], working_directory=str(root), copy_videos=False
        )
    )
    cfg = auxiliaryfunctions.read_config(config)
    cfg["bodyparts"] = BODYPARTS
    cfg["numframes2pick"] = n_labeled
    cfg["batch_size"] = 4
    auxiliaryfunctions.write_config(config, cfg)

    folder = config.parent / "labeled-data" / seed_video.stem
    folder.mkdir(parents=True, exist_ok=True)
    rows, index = [], []
    for i in range(n_labeled):
        image, points = draw_frame(*size, i * 0.7)
        name = f"img{i:03d}.png"
        cv2.imwrite(str(folder / name), image)
        index.append(("labeled-data", seed_video.stem, name))
        rows.append([c for p in points for c in p])
    columns = pd.MultiIndex.from_product(
        [[cfg["scorer"]], BODYPARTS, ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    labels = pd.DataFrame(rows, columns=columns, index=pd.MultiIndex.from_tuples(index))
    labels.to_hdf(folder / f"CollectedData_{cfg['scorer']}.h5", key="keypoints", mode="w")
    labels.to_csv(folder / f"CollectedData_{cfg['scorer']}.csv")
    if engine == "tensorflow":
        deeplabcut.create_training_dataset(str(config), net_type="resnet_50", engine=Engine.TF)
        return config
    deeplabcut.create_training_dataset(str(config), net_type="resnet_50", engine=Engine.PYTORCH)
    init_snapshot(config)
    return config


def init_snapshot(config: Path, shuffle: int = 1, epoch: int = 1, seed: int = 0) -> Path:
    """Save a randomly initialised model as ``snapshot-<epoch>.pt`` of the shuffle: no download."""
    import torch

    from dlcrun.engines.pytorch import random_init, shuffle_loader

    loader = shuffle_loader(Path(config).parent, shuffle, 0)
    torch.manual_seed(seed)
    return random_init(loader, loader.model_folder / f"snapshot-{epoch:03d}.pt")


def project_from_example(example: Path, workdir: Path, epoch: int = 5) -> Path:
    """A DLC example project (config.yaml + labeled-data, e.g. DLC's openfield) made runnable
    offline: paths rewritten, a PyTorch ResNet-50 shuffle 1, a random-initialised snapshot."""
    import shutil

    import deeplabcut
    from deeplabcut.core.engine import Engine
    from ruamel.yaml import YAML

    yaml = YAML()
    cfg = yaml.load((example / "config.yaml").read_text())
    project = workdir / f"{cfg['Task']}-{cfg['scorer']}"
    project.mkdir(parents=True)
    shutil.copytree(example / "labeled-data", project / "labeled-data")
    cfg["project_path"] = str(project)
    folders = sorted(p.name for p in (project / "labeled-data").iterdir() if p.is_dir())
    cfg["video_sets"] = {str(project / "videos" / f"{name}.mp4"): {"crop": "0, 640, 0, 480"} for name in folders}
    with open(project / "config.yaml", "w") as fh:
        yaml.dump(cfg, fh)
    deeplabcut.create_training_dataset(str(project / "config.yaml"), net_type="resnet_50", engine=Engine.PYTORCH)
    init_snapshot(project / "config.yaml", epoch=epoch)
    return project


def run_demo(workdir: Path, n_videos: int = 3, say: Callable[[str], object] = print) -> Run:
    """Project, videos, spreadsheet -> manifest -> a local array over it, launched; returns the
    run, which the caller follows (``dlcrun demo`` with submit's progress display)."""
    import openpyxl

    from dlcrun import batch
    from dlcrun.manifest import write_manifest
    from dlcrun.selection import Request, build
    from dlcrun.settings import load_settings

    workdir = workdir.resolve()
    config = next(workdir.glob("project/*/config.yaml"), None)
    if config is None:
        say("building a small DeepLabCut project (random-initialised ResNet-50, offline)...")
        config = make_project(workdir / "project")
    say(f"project  {config.parent}")

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["video", "camera", "datetime"])
    start = dt.datetime(2026, 11, 2, 10, 0, 0)
    for i in range(n_videos):
        when = start + dt.timedelta(hours=i)
        name = f"cam{i % 2 + 1}_{when:%Y-%m-%d_%H-%M-%S}.mp4"
        write_video(workdir / "videos" / name, frames=20, phase=i)
        sheet.append([f"videos/{name}", f"cam{i % 2 + 1}", when])
    sheet_path = workdir / "batch.xlsx"
    book.save(sheet_path)
    say(f"sheet    {sheet_path} ({n_videos} videos)")

    manifest_path = write_manifest(workdir / "manifests" / "batch.txt", build(Request(sheet=sheet_path)).manifest())
    say(f"manifest {manifest_path}")
    settings = load_settings(
        None, project=config.parent, dest=str(workdir / "keypoints"), runs_dir=workdir / "runs", max_running=1
    )
    run, _, sub = batch.launch(manifest_path, settings)
    say(f"run      {run.path} (local array {', '.join(sub.job_ids)})")
    return run
