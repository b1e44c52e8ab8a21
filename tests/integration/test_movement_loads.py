"""dlcrun's outputs load in ``movement`` (neuroinformatics-unit) as DeepLabCut's own do.

movement runs in its own venv (``make install-movement``; tests/support/movement_check.py), on
files written here: a single-animal .h5 and .csv from dlcrun's analyzer, and the tracks of a
multi-animal video as DeepLabCut's stitch_tracklets writes them (DLC's TrackletStitcher, no
trained model needed). What movement reads is compared, value by value, with pandas' reading of
the same file in the main venv. Each movement call starts an interpreter that imports xarray and
friends (~3-5 s), hence ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from movement_check import MovementError, load_with_movement, requires_movement

pytestmark = [pytest.mark.slow, requires_movement()]

FPS = 10  # tiny_videos' frame rate (dlcrun.demo.write_video)


def dlc_arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """x/y as (time, space, keypoints, individuals) and likelihood as (time, keypoints, individuals),
    each column picked from the DLC table by its labels (a single-animal table has no individuals)."""
    scorer = df.columns.get_level_values("scorer")[0]
    keypoints = list(df.columns.get_level_values("bodyparts").unique())
    multi = "individuals" in df.columns.names
    individuals = list(df.columns.get_level_values("individuals").unique()) if multi else [""]

    def column(individual: str, keypoint: str, coord: str) -> np.ndarray:
        return df[(scorer, individual, keypoint, coord) if multi else (scorer, keypoint, coord)].to_numpy()

    def stack(coord: str) -> np.ndarray:  # (keypoints, individuals, time)
        return np.array([[column(i, k, coord) for i in individuals] for k in keypoints])

    xy = np.array([stack("x"), stack("y")]).transpose(3, 0, 1, 2)
    return xy, stack("likelihood").transpose(2, 0, 1)


def first_finite(xy: np.ndarray, keypoints: list[str], individual: int) -> tuple[int, str, list[float]]:
    """The first (frame, then keypoint) with both x and y finite, as movement_check reports it."""
    for t in range(xy.shape[0]):
        for k, name in enumerate(keypoints):
            if np.isfinite(xy[t, :, k, individual]).all():
                return t, name, [float(v) for v in xy[t, :, k, individual]]
    raise AssertionError(f"individual {individual} has no finite keypoint")


def assert_same_as_pandas(moved: dict, df: pd.DataFrame, individuals: list[str], rtol: float = 0.0) -> None:
    """movement's reading equals pandas' (exactly, unless ``rtol``), NaN where DLC has NaN."""
    keypoints = list(df.columns.get_level_values("bodyparts").unique())
    assert moved["keypoints"] == keypoints and moved["space"] == ["x", "y"]
    assert moved["individuals"] == individuals
    assert moved["n_frames"] == len(df) and list(df.index) == list(range(len(df)))
    assert moved["source_software"] == "DeepLabCut" and moved["fps"] == FPS
    assert moved["time"] == pytest.approx([0.0, (len(df) - 1) / FPS]), "time in seconds at the video's rate"
    xy, likelihood = dlc_arrays(df)
    np.testing.assert_allclose(np.array(moved["position"], dtype=float), xy, rtol=rtol, atol=0)
    np.testing.assert_allclose(np.array(moved["confidence"], dtype=float), likelihood, rtol=rtol, atol=0)
    assert moved["finite"] == int(np.isfinite(xy).sum()) and moved["values"] == xy.size
    for i, name in enumerate(individuals):
        frame, keypoint, sample = first_finite(xy, keypoints, i)
        got = moved["first_finite"][name]
        assert (got["frame"], got["keypoint"]) == (frame, keypoint)
        assert got["xy"] == pytest.approx(sample, rel=rtol), "movement's first position, the .h5's"


def test_movement_loads_dlcruns_single_animal_h5_and_csv(demo_project: Path, tiny_videos, tmp_path: Path) -> None:
    """The .h5 (key df_with_missing) and .csv dlcrun's analyzer writes, read by movement's
    from_dlc_file: the project's bodyparts, every frame, the same numbers as pandas reads."""
    from dlcrun.engines import open_analyzer, pin_model

    (video,) = tiny_videos(names=["mouse.mp4"], frames=9)
    analysis = open_analyzer(pin_model(demo_project), batch_size=4, device="cpu").analyze(
        video, tmp_path / "out", save_csv=True
    )
    h5 = next(f for f in analysis.files if f.suffix == ".h5")
    assert h5.with_suffix(".csv") in analysis.files
    df = pd.read_hdf(h5, "df_with_missing")
    assert df.shape[0] == 9 and df.columns.names == ["scorer", "bodyparts", "coords"]
    xy, _ = dlc_arrays(df)
    assert np.isfinite(xy).all() and xy[:, 0, 0, 0].std() > 0, "keypoints vary by frame: the comparison has power"

    # the .h5 holds float32; the .csv their shortest decimal text, read back as float64
    for path, rtol in ((h5, 0.0), (h5.with_suffix(".csv"), 1e-6)):
        moved = load_with_movement(path, fps=FPS, full=True)
        assert moved["movement"] == "0.15.0"
        assert_same_as_pandas(moved, df, ["individual_0"], rtol)  # individual_0: movement's name for single-animal


def write_stitched_tracks(path: Path, frames: int = 12) -> Path:
    """Two animals' tracks written by DLC's own TrackletStitcher.write_tracks, as stitch_tracklets
    writes ``..._el.h5`` (key ``tracks``, columns (scorer, individuals, bodyparts, coords), index
    range(frames)) and, with save_as_csv, ``..._el.csv``. mouse2 appears at frame 3: NaN before."""
    from deeplabcut.refine_training_dataset.stitch import TrackletStitcher

    bodyparts = ["nose", "body", "tail"]
    header = pd.MultiIndex.from_product(
        [["DLC_dlcrnetms5_miceNov30shuffle1_snapshot_050"], bodyparts, ["x", "y", "likelihood"]],
        names=["scorer", "bodyparts", "coords"],
    )

    def tracklet(x0: float, start: int) -> dict[str, np.ndarray]:
        return {
            f"frame{f:04d}": np.array(
                [[x0 + 1.5 * f + 5 * b, 20 + 2.25 * f + b, 0.5 + 0.04 * f] for b in range(3)]
            ).ravel()
            for f in range(start, frames)
        }

    stitcher = TrackletStitcher.from_dict_of_dict(
        {"header": header, 0: tracklet(10, 0), 1: tracklet(80, 3)}, n_tracks=2, min_length=3
    )
    stitcher.build_graph()
    stitcher.stitch()
    stitcher.write_tracks(str(path), animal_names=["mouse1", "mouse2"], save_as_csv=True)
    return path


def test_movement_reads_the_individuals_of_dlc_tracks(tmp_path: Path) -> None:
    """movement 0.15.0's from_dlc_file takes an .h5 only under the key df_with_missing, so it
    refuses DLC's stitched ``_el.h5`` (key ``tracks``) with that message; the ``_el.csv`` it
    reads, and the .h5 through pandas and movement's from_dlc_style_df. Both give the two
    individuals, mouse2's three missing frames as NaN and the values pandas reads. (Should a
    later movement read key ``tracks`` itself, the refusal below fails: then load the .h5 directly.)"""
    el_h5 = write_stitched_tracks(tmp_path / "miceDLC_dlcrnetms5_miceNov30shuffle1_snapshot_050_el.h5")
    df = pd.read_hdf(el_h5, "tracks")
    assert df.columns.names == ["scorer", "individuals", "bodyparts", "coords"] and df.shape == (12, 18)

    with pytest.raises(MovementError, match=r"movement 0\.15\.0 \(file\): ValueError: .*df_with_missing"):
        load_with_movement(el_h5, fps=FPS)
    for moved in (
        load_with_movement(el_h5.with_suffix(".csv"), fps=FPS, full=True),
        load_with_movement(el_h5, reader="dataframe", fps=FPS, full=True),
    ):
        assert_same_as_pandas(moved, df, ["mouse1", "mouse2"])
        assert [moved["first_finite"][m]["frame"] for m in ("mouse1", "mouse2")] == [0, 3]
        assert moved["finite"] == 2 * 3 * 2 * 12 - 2 * 3 * 3  # mouse2's x and y missing in frames 0-2
