"""Trained multi-animal DLC 3 projects, built offline, for the tracking and top-down tests.

The multi-animal path (assembly, tracking, stitching, a detector before the pose model) only
does something when the model finds animals, so a random-initialised snapshot (as in
``dlcrun.demo``) is not enough: these builders draw two animals with known keypoints, make a
real multi-animal project with DeepLabCut's own functions, and train it on CPU from random
initial weights (nothing is downloaded: no ImageNet or COCO weights) until its predictions
assemble and track. Pure functions, no pytest: the fixtures in tests/conftest.py and the
benchmarks both use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INDIVIDUALS = ("mouse1", "mouse2")
BODYPARTS = ("nose", "body", "tail")
SIZE = (128, 96)  # small frames: a ResNet-50 trains on 2 CPU cores in under 2 minutes
STEP = 0.1  # time between two video frames: a few pixels of motion, as at a real frame rate
CLIP_PHASE = 0.37  # the animals clip's start: poses between the labelled ones

# Per individual: path centre (fraction of width, height), path radii (fractions), angular speed,
# phase, and the body colour (BGR). The two paths never meet: mouse1 stays in the left half,
# mouse2 in the right half, so assembly (which keypoints belong together) is learnt in ~120
# iterations and the trackers never have to tell two touching animals apart.
_PATHS = {
    "mouse1": ((0.28, 0.5), (0.10, 0.20), 1.0, 0.0, (40, 40, 150)),
    "mouse2": ((0.72, 0.5), (0.10, 0.20), -1.3, 1.0, (150, 70, 30)),
}
_NOSE, _TAIL = (0, 220, 230), (40, 170, 40)  # the same on both animals: identity is not drawn


def animal_keypoints(width: int, height: int, t: float) -> dict[str, list[tuple[float, float]]]:
    """{individual: [(x, y) of nose, body, tail]} at time ``t``: each animal faces along its path.

    The tail is bent 40 degrees off the body axis, so the keypoints span an area (as a real
    animal's do) and the ellipse DLC's default tracker fits to them has a width and a direction.
    """
    points = {}
    length = 0.13 * min(width, height)
    bend = math.radians(40)
    for name, ((fx, fy), (rx, ry), speed, phase, _) in _PATHS.items():
        theta = speed * t + phase
        x, y = width * (fx + rx * math.cos(theta)), height * (fy + ry * math.sin(theta))
        dx, dy = -width * rx * math.sin(theta) * speed, height * ry * math.cos(theta) * speed
        norm = math.hypot(dx, dy)
        hx, hy = dx / norm, dy / norm
        tx, ty = hx * math.cos(bend) - hy * math.sin(bend), hx * math.sin(bend) + hy * math.cos(bend)
        points[name] = [(x + length * hx, y + length * hy), (x, y), (x - length * tx, y - length * ty)]
    return points


def unique_keypoints(width: int, height: int, t: float, names: Sequence[str]) -> list[tuple[float, float]]:
    """Positions of the unique bodyparts (small white squares sliding along the top edge)."""
    return [(width * (0.2 + 0.6 * (0.5 + 0.5 * math.sin(0.4 * t + i))), 0.09 * height) for i in range(len(names))]


def draw_animals(
    width: int, height: int, t: float, unique_bodyparts: Sequence[str] = ()
) -> tuple[Any, dict[str, list[tuple[float, float]]]]:
    """A grey arena with two animals; returns (BGR image, {individual: [(x, y) per bodypart]}).

    Each animal is a thick bent line in its own colour, yellow nose, green tail; with
    ``unique_bodyparts`` the keypoints of those are returned under ``"single"`` (DLC's name).
    """
    import cv2
    import numpy as np

    frame = np.full((height, width, 3), 190, np.uint8)
    points = animal_keypoints(width, height, t)
    for name, (nose, body, tail) in points.items():
        colour = _PATHS[name][4]
        nose_px, body_px, tail_px = ((round(x), round(y)) for x, y in (nose, body, tail))
        cv2.line(frame, nose_px, body_px, colour, 9, cv2.LINE_AA)
        cv2.line(frame, body_px, tail_px, colour, 5, cv2.LINE_AA)
        cv2.circle(frame, nose_px, 3, _NOSE, -1, cv2.LINE_AA)
        cv2.circle(frame, tail_px, 3, _TAIL, -1, cv2.LINE_AA)
        cv2.circle(frame, body_px, 2, (20, 20, 20), -1, cv2.LINE_AA)
    if unique_bodyparts:
        points["single"] = unique_keypoints(width, height, t, unique_bodyparts)
        for x, y in points["single"]:
            cv2.rectangle(frame, (round(x) - 3, round(y) - 3), (round(x) + 3, round(y) + 3), (255, 255, 255), -1)
    return frame, points


def write_animals_video(
    path: Path,
    frames: int = 24,
    size: tuple[int, int] = SIZE,
    fps: int = 10,
    phase: float = 0.0,
    unique_bodyparts: Sequence[str] = (),
    blank: bool = False,
) -> Path:
    """An mp4v video of the scene from time ``phase`` (``blank``: the empty arena, no animal)."""
    import numpy as np

    from dlcrun.demo import write_frames

    empty = np.full((size[1], size[0], 3), 190, np.uint8)
    images = (empty if blank else draw_animals(*size, phase + i * STEP, unique_bodyparts)[0] for i in range(frames))
    return write_frames(path, images, size, fps)


def video_truth(
    frames: int, size: tuple[int, int] = SIZE, phase: float = 0.0
) -> dict[str, list[list[tuple[float, float]]]]:
    """{individual: per frame, [(x, y) per bodypart]}: the truth for ``write_animals_video``."""
    truth: dict[str, list[list[tuple[float, float]]]] = {name: [] for name in INDIVIDUALS}
    for i in range(frames):
        for name, pts in animal_keypoints(*size, phase + i * STEP).items():
            truth[name].append(pts)
    return truth


def make_multianimal_project(
    root: Path,
    net_type: str = "resnet_50",
    *,
    top_down: bool = False,
    detector: str = "ssdlite",
    n_labeled: int = 16,
    epochs: int | None = None,
    detector_epochs: int = 15,
    batch_size: int = 2,
    detector_batch_size: int = 4,
    unique_bodyparts: Sequence[str] = (),
    size: tuple[int, int] = SIZE,
    crop: int = 64,
    seed: int = 0,
    threads: int | None = 1,
) -> Path:
    """A trained multi-animal DLC 3 project (PyTorch shuffle 1); returns its config.yaml.
    ``epochs=0``: untrained, the random initial weights saved as its snapshots (seconds).

    Bottom-up by default (``resnet_50``: DLC 3 makes it a ResNet-50 (``resnet50_gn``) with a
    DLCRNet head predicting heatmaps and part-affinity fields). ``top_down``: ``net_type`` is a
    top-down pose model (``top_down_resnet_50``) and ``detector`` the torchvision detector DLC
    trains before it: ``ssdlite``, the one detector whose random initialisation downloads
    nothing (DLC's FasterRCNN variants always ask torchvision for ImageNet backbone weights).

    ``epochs`` defaults to what makes the predictions assemble and track on the animals clip
    (15 bottom-up, 8 top-down, plus ``detector_epochs`` for the detector). Training starts from
    random weights saved under ``root/init`` (outside the model folder, so never taken for a
    trained snapshot), with torch seeded and on ``threads`` CPU threads (1: the same floating
    point sums on any machine, and on a shared 2-core machine faster than 2 contended threads).
    """
    import deeplabcut
    import torch
    from deeplabcut.core.engine import Engine
    from deeplabcut.utils import auxiliaryfunctions

    if epochs is None:
        epochs = 8 if top_down else 15
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    seed_video = write_animals_video(
        root / "seed" / "arena.mp4", frames=n_labeled, size=size, unique_bodyparts=unique_bodyparts
    )
    config = Path(
        deeplabcut.create_new_project(
            "animals",
            "dlcrun",
            [str(seed_video)],
            working_directory=str(root),
            copy_videos=False,
            multianimal=True,
            individuals=list(INDIVIDUALS),
        )
    )
    cfg = auxiliaryfunctions.read_config(config)
    cfg["individuals"] = list(INDIVIDUALS)
    cfg["multianimalbodyparts"] = list(BODYPARTS)
    cfg["uniquebodyparts"] = list(unique_bodyparts)
    cfg["bodyparts"] = "MULTI!"
    cfg["skeleton"] = [["nose", "body"], ["body", "tail"]]
    cfg["numframes2pick"] = n_labeled
    cfg["batch_size"] = 4  # analyze_videos' batch size
    auxiliaryfunctions.write_config(config, cfg)

    _write_labels(config, cfg["scorer"], seed_video.stem, n_labeled, size, unique_bodyparts)
    deeplabcut.create_multianimaltraining_dataset(
        str(config),
        net_type=net_type,
        detector_type=detector if top_down else None,
        engine=Engine.PYTORCH,
        userfeedback=False,
    )
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        _train(
            config,
            root / "init",
            epochs=epochs,
            detector_epochs=detector_epochs,
            batch_size=batch_size,
            detector_batch_size=detector_batch_size,
            size=size,
            crop=crop,
            seed=seed,
        )
    finally:
        torch.set_num_threads(previous_threads)
    return config


def _write_labels(
    config: Path, scorer: str, stem: str, n: int, size: tuple[int, int], unique_bodyparts: Sequence[str]
) -> None:
    """Labelled frames and CollectedData_<scorer>.h5 with DLC's 4-level multi-animal columns."""
    import cv2
    import pandas as pd

    folder = config.parent / "labeled-data" / stem
    folder.mkdir(parents=True, exist_ok=True)
    columns = [(scorer, ind, bp, c) for ind in INDIVIDUALS for bp in BODYPARTS for c in ("x", "y")]
    columns += [(scorer, "single", bp, c) for bp in unique_bodyparts for c in ("x", "y")]
    owners = [*INDIVIDUALS, "single"] if unique_bodyparts else list(INDIVIDUALS)
    rows, index = [], []
    for i in range(n):
        # Spread the labelled poses over the paths (1.7 rad apart: no two frames alike).
        image, points = draw_animals(*size, i * 1.7, unique_bodyparts)
        name = f"img{i:03d}.png"
        cv2.imwrite(str(folder / name), image)
        index.append(("labeled-data", stem, name))
        rows.append([c for owner in owners for point in points[owner] for c in point])
    labels = pd.DataFrame(
        rows,
        columns=pd.MultiIndex.from_tuples(columns, names=["scorer", "individuals", "bodyparts", "coords"]),
        index=pd.MultiIndex.from_tuples(index),
    )
    labels.to_hdf(folder / f"CollectedData_{scorer}.h5", key="keypoints", mode="w")
    labels.to_csv(folder / f"CollectedData_{scorer}.csv")


def _train(
    config: Path,
    init: Path,
    *,
    epochs: int,
    detector_epochs: int,
    batch_size: int,
    detector_batch_size: int,
    size: tuple[int, int],
    crop: int,
    seed: int,
    lr: float = 5e-4,
    detector_lr: float = 1e-3,
) -> None:
    """Random-initialised weights (no download), then DLC's own train_network on CPU."""
    import deeplabcut
    import torch
    from deeplabcut.pose_estimation_pytorch.data import DLCLoader
    from deeplabcut.pose_estimation_pytorch.models import DETECTORS, PoseModel

    loader = DLCLoader(config=config, shuffle=1, trainset_index=0)
    model_cfg = loader.model_cfg
    train = model_cfg["data"]["train"]
    # The scene has one scale and clean frames: no scaling, blur or noise augmentation, which
    # only slow learning down here. Bottom-up: train on the whole small image instead of DLC's
    # 448x448 crops (padding, 8x the pixels). Top-down: small pose crops instead of 256x256
    # (an animal's box is ~50x45 px at 128x96 with DLC's 20 px margin), in training and inference.
    train["affine"]["scaling"] = [1.0, 1.0]
    train["motion_blur"] = False
    train["gaussian_noise"] = None
    if train.get("crop_sampling") is not None:
        train["crop_sampling"]["width"], train["crop_sampling"]["height"] = size
    for mode in ("train", "inference"):
        if model_cfg["data"][mode].get("top_down_crop") is not None:
            model_cfg["data"][mode]["top_down_crop"] = {"width": crop, "height": crop}
    # No evaluation (it would cost time and name the snapshot snapshot-best-NNN.pt).
    model_cfg["runner"]["eval_interval"] = epochs + 1
    model_cfg["runner"]["optimizer"]["params"]["lr"] = lr
    detector_cfg = model_cfg.get("detector")
    if detector_cfg is not None:
        detector_cfg["runner"]["eval_interval"] = detector_epochs + 1
        detector_cfg["runner"]["optimizer"]["params"]["lr"] = detector_lr
        # From random weights the detector's BatchNorm layers must learn their statistics
        # (DLC freezes them, for COCO weights); no flips, turns or rescaling of the frames.
        detector_cfg["model"]["freeze_bn_stats"] = False
        detector_cfg["data"]["train"]["affine"] = None
        detector_cfg["data"]["train"]["hflip"] = None
        detector_cfg["data"]["train"]["collate"]["min_scale"] = 1.0
    model_cfg.to_yaml(loader.model_config_path)

    init.mkdir(parents=True, exist_ok=True)
    # DLC's augmentation and sampling draw from Python's and NumPy's global generators too: seeded
    # here, the build no longer depends on what ran before it in the session.
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    pose = PoseModel.build(model_cfg["model"], pretrained_backbone=False)
    torch.save({"model": pose.state_dict()}, init / "pose.pt")
    detector_path = None
    if detector_cfg is not None:
        torch.manual_seed(seed)
        detector = DETECTORS.build(detector_cfg["model"], pretrained=False)
        detector_path = init / "detector.pt"
        torch.save({"model": detector.state_dict()}, detector_path)
    if epochs == 0:  # untrained: the random weights are the shuffle's snapshots (no train_network)
        import shutil

        shutil.copyfile(init / "pose.pt", loader.model_folder / "snapshot-001.pt")
        if detector_path is not None:
            shutil.copyfile(detector_path, loader.model_folder / "snapshot-detector-001.pt")
        return
    deeplabcut.train_network(
        str(config),
        shuffle=1,
        device="cpu",
        snapshot_path=str(init / "pose.pt"),
        detector_path=None if detector_path is None else str(detector_path),
        batch_size=batch_size,
        epochs=epochs,
        save_epochs=epochs,
        detector_batch_size=detector_batch_size,
        detector_epochs=detector_epochs,
        detector_save_epochs=detector_epochs,
        display_iters=1000,
    )
    if detector_cfg is not None:
        _recalibrate_batchnorm(loader, detector_cfg, detector_epochs)


def _recalibrate_batchnorm(loader: Any, detector_cfg: Any, detector_epochs: int) -> None:
    """Re-estimate the trained detector's BatchNorm statistics on the labelled frames, in place.

    A detector trained from random weights for a few dozen iterations has good weights but
    BatchNorm running statistics far behind them (torchvision's SSDLite updates them with
    momentum 0.03): in eval mode it then returns the same boxes for every frame. One pass over
    the labelled frames, as DLC's detector inference sees them (RGB, ImageNet-normalised),
    sets them to those frames' statistics ("precise BN"); the snapshot keeps DLC's format.
    """
    import cv2
    import numpy as np
    import torch
    from deeplabcut.pose_estimation_pytorch.models import DETECTORS

    snapshot_path = loader.model_folder / f"snapshot-detector-{detector_epochs:03d}.pt"
    snapshot = torch.load(snapshot_path, map_location="cpu", weights_only=False)
    detector = DETECTORS.build(detector_cfg["model"], pretrained=False)
    detector.load_state_dict(snapshot["model"])
    frames = sorted((loader.project_path / "labeled-data").glob("*/*.png"))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    images = [(cv2.imread(str(f))[:, :, ::-1] / 255.0 - mean) / std for f in frames]
    batch = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2)
    detector.eval()
    norms = [m for m in detector.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over what it sees
        norm.train()
    with torch.no_grad():
        detector(batch)
    snapshot["model"] = detector.state_dict()
    torch.save(snapshot, snapshot_path)
