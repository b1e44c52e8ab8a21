"""Shared fixtures: real DLC projects and videos, built once per session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The loopback Dropbox API emulation (tests/dropbox_emulator.py): binds at configure time,
# before anything imports the dropbox SDK, which reads its hosts once at import.
pytest_plugins = ["dropbox_emulator"]

os.environ.setdefault("MPLBACKEND", "Agg")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OPENFIELD = SHARED / "fixtures" / "openfield"


@pytest.fixture(scope="session")
def openfield_fixture() -> Path:
    """../shared/fixtures/openfield, or a skip saying why (a user's clone has no ../shared)."""
    if not (OPENFIELD / "config.yaml").is_file():
        pytest.skip(f"{OPENFIELD} not present (CI and developer machines have ../shared beside the checkout)")
    return OPENFIELD


@pytest.fixture(scope="session")
def openfield_project(openfield_fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real openfield project (labelled data, config) with a random-initialised ResNet-50 snapshot."""
    from dlcrun.demo import project_from_example

    return project_from_example(openfield_fixture, tmp_path_factory.mktemp("openfield"))


def cut_clip(src: Path, dst: Path, frames: int, scale: float = 1.0) -> Path:
    """The first ``frames`` frames of a real video, re-encoded (optionally scaled)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) * scale), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) * scale)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok, f"{src} has fewer than {frames} frames"
        out.write(cv2.resize(frame, (w, h)) if scale != 1.0 else frame)
    out.release()
    cap.release()
    return dst


@pytest.fixture(scope="session")
def openfield_clip(openfield_fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-frame 640x480 clip of the fixture's real video (m3v1mp4.mp4)."""
    return cut_clip(openfield_fixture / "videos" / "m3v1mp4.mp4", tmp_path_factory.mktemp("clips") / "m3v1.mp4", 6)


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic single-animal project (128x96 frames); returns the project folder."""
    from dlcrun.demo import make_project

    return make_project(tmp_path_factory.mktemp("demo") / "project").parent


@pytest.fixture
def tiny_videos(tmp_path: Path):
    """Factory: write N tiny synthetic videos into a folder and return their paths."""
    from dlcrun.demo import write_video

    def make(folder: Path | None = None, names: list[str] | None = None, frames: int = 8) -> list[Path]:
        folder = folder or tmp_path / "videos"
        names = names or ["a.mp4", "b.mp4"]
        return [write_video(folder / n, frames=frames, phase=i) for i, n in enumerate(names)]

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests need CUDA: skipped, with the reason, on machines without a visible GPU."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible to torch (gpu marker)")
    for item in gpu_items:
        item.add_marker(skip)


# Trained multi-animal projects (tests/support/multianimal.py): two drawn mice, DLC's own project,
# training-set and train_network functions, trained on CPU from random weights (no download).
# Build times measured on the 2-core development machine, the first with a CI run going at once.
# torch trains on 1 thread (bit-identical snapshots from one build to the next).


@pytest.fixture(scope="session")
def multianimal_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained bottom-up project (ResNet-50 with part-affinity fields, 2 mice, 3 bodyparts, 15
    epochs); returns the project folder. ~90 s to build (2 cores; 94 s while a CI run was going)."""
    from multianimal import make_multianimal_project

    return make_multianimal_project(tmp_path_factory.mktemp("multianimal")).parent


@pytest.fixture(scope="session")
def topdown_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained top-down project (SSDLite detector, 15 epochs, then a top-down ResNet-50 on 64 px
    crops, 8 epochs); returns the project folder. ~100-105 s to build (2 cores; 100 s while a CI
    run was going, 145 s once with another job on the cores)."""
    from multianimal import make_multianimal_project

    return make_multianimal_project(tmp_path_factory.mktemp("topdown"), "top_down_resnet_50", top_down=True).parent


@pytest.fixture(scope="session")
def animals_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 frames (128x96) of the two mice in poses between the labelled ones; truth: multianimal.video_truth."""
    from multianimal import CLIP_PHASE, write_animals_video

    return write_animals_video(tmp_path_factory.mktemp("animals") / "animals.mp4", frames=24, phase=CLIP_PHASE)
