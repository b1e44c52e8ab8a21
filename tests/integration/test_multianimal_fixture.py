"""The trained multi-animal fixtures are what the equality tests (test_multianimal.py) need.

DLC's own ``analyze_videos(auto_track=True)`` on the animals clip, with each session fixture
(bottom-up ResNet-50 with part-affinity fields; SSDLite detector + top-down ResNet-50), writes
exactly these five files, its assemblies hold both animals, and the tracked ``_el.h5`` follows
each drawn mouse with one individual, within a few pixels. Building both fixtures takes ~3.2-3.5
min on the 2-core development machine (see their docstrings); each analysis then ~2 s.
DLC's trackers need filterpy 1.4.x (see the first test): with 2.0.0 all three tests fail.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from multianimal import BODYPARTS, CLIP_PHASE, INDIVIDUALS, video_truth

# What analyze_videos(auto_track=True) writes for a multi-animal model, after <video><scorer>.
OUTPUTS = {"_meta.pickle", "_full.pickle", "_assemblies.pickle", "_el.pickle", "_el.h5"}
FRAMES = 24  # the animals_clip fixture


def analyze(project: Path, clip: Path, out: Path) -> str:
    """deeplabcut.analyze_videos as a lab runs it (outputs into ``out``); returns the scorer."""
    import deeplabcut

    return deeplabcut.analyze_videos(
        str(project / "config.yaml"), [str(clip)], destfolder=str(out), device="cpu", auto_track=True
    )


def column(tracks: pd.DataFrame, individual: str, bodypart: str, coord: str) -> np.ndarray:
    levels = ("individuals", "bodyparts", "coords")
    return tracks.xs((individual, bodypart, coord), level=levels, axis=1).to_numpy().ravel()


def track_errors(tracks: pd.DataFrame) -> dict[str, tuple[str, np.ndarray]]:
    """{individual: (the drawn mouse it follows, per-frame per-bodypart distance in px)}."""
    truth = {name: np.asarray(frames) for name, frames in video_truth(FRAMES, phase=CLIP_PHASE).items()}
    matched = {}
    for individual in tracks.columns.get_level_values("individuals").unique():
        x, y = (
            np.stack([column(tracks, individual, bodypart, coord) for bodypart in BODYPARTS], axis=1)
            for coord in ("x", "y")
        )
        distances = {name: np.hypot(x - t[..., 0], y - t[..., 1]) for name, t in truth.items()}
        name = min(distances, key=lambda n: np.nanmedian(distances[n]))
        matched[individual] = (name, distances[name])
    return matched


@pytest.mark.slow  # no training, but ~25 s: DLC's import and numba compiling its ellipse fitter
def test_dlc_ellipse_tracker_keeps_each_drawn_animal_in_one_tracklet() -> None:
    """DLC's default tracker, on the true keypoints of the clip: one tracklet per mouse, 24 frames.

    Fails with filterpy 2.0.0: its ``kinematic_kf`` fills the measurement matrix H with ones
    (1.4.5: the identity), so DLC's Kalman trackers (ellipse, skeleton) diverge after one
    update, every tracklet is one frame long and analyze_videos(auto_track=True) ends in
    stitch_tracklets' "Tracklets are empty." without writing the ``_el.h5``.
    """
    import filterpy
    from deeplabcut.pose_estimation_pytorch.apis.tracklets import build_tracklets

    truth = video_truth(FRAMES, phase=CLIP_PHASE)
    assemblies = {
        i: np.array([[[x, y, 1.0, -1.0] for x, y in truth[name][i]] for name in INDIVIDUALS]) for i in range(FRAMES)
    }
    inference_cfg = {"max_age": 1, "min_hits": 1, "iou_threshold": 0.6, "topktoretain": 2, "pcutoff": 0.1}
    tracklets = build_tracklets(assemblies, "ellipse", inference_cfg, list(BODYPARTS), "scorer", FRAMES)
    lengths = sorted(len(frames) for key, frames in tracklets.items() if key != "header")
    assert lengths == [FRAMES, FRAMES], f"tracklet lengths {lengths} with filterpy {filterpy.__version__}"


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["multianimal_project", "topdown_project"])
def test_analyze_videos_assembles_and_tracks_both_animals(
    fixture: str, request: pytest.FixtureRequest, animals_clip: Path, tmp_path: Path
) -> None:
    project = request.getfixturevalue(fixture)
    scorer = analyze(project, animals_clip, tmp_path)
    prefix = animals_clip.stem + scorer
    assert {p.name for p in tmp_path.iterdir()} == {prefix + suffix for suffix in OUTPUTS}
    if fixture == "topdown_project":
        assert "_detector_" in scorer, scorer

    with open(tmp_path / f"{prefix}_assemblies.pickle", "rb") as fh:
        assemblies = pickle.load(fh)
    per_frame = [len(assemblies.get(i, ())) for i in range(FRAMES)]
    assert sum(n == 2 for n in per_frame) >= FRAMES - 2, f"assemblies per frame: {per_frame}"

    tracks = pd.read_hdf(tmp_path / f"{prefix}_el.h5")
    assert tracks.shape == (FRAMES, len(INDIVIDUALS) * len(BODYPARTS) * 3)
    assert tracks.columns.get_level_values("individuals").unique().tolist() == list(INDIVIDUALS)
    matched = track_errors(tracks)
    assert sorted(name for name, _ in matched.values()) == list(INDIVIDUALS), "one individual per drawn mouse"
    for individual, (name, distance) in matched.items():
        finite, near = np.isfinite(distance).mean(), (distance < 15).mean()
        # Measured 90-100% finite, 96-100% within 15 px; one CI build (before the seeds below were
        # all fixed) gave 83% / 82%. What the equality tests need is both animals tracked.
        assert finite >= 0.75 and near >= 0.7, f"{individual} ({name}): {finite:.0%} finite, {near:.0%} within 15 px"
