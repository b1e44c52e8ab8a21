"""A real batch with ``--filter`` and ``--qc-clips``: quality numbers in the record and in
``_meta.pickle``, equal to recomputing them from the published .h5; the ``_filtered`` files equal
DLC's own ``filterpredictions``; a labelled clip of the worst stretch in the run directory.

Real parts: the openfield project (random-initialised ResNet-50) and its real video, cut short
and scaled down; the local scheduler's array index in its own process; DeepLabCut's
analyze_videos, filterpredictions and colormaps for the references.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML
from waiting import wait_for

from conftest import cut_clip
from dlcrun import batch
from dlcrun.filtering import FILTERS, filter_h5
from dlcrun.inference import project_config
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.quality import quality_of, window_rows
from dlcrun.settings import load_settings

pytestmark = pytest.mark.slow

FRAMES = 90  # 3 s at 30 fps: a worst window of 5 rows (5 % of 90)
PCUTOFF = 0.1


@pytest.fixture(scope="module")
def project(openfield_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the openfield project whose pcutoff splits a random network's likelihoods."""
    copy = tmp_path_factory.mktemp("quality") / openfield_project.name
    shutil.copytree(openfield_project, copy)
    yaml = YAML()
    cfg = yaml.load((copy / "config.yaml").read_text())
    cfg["pcutoff"], cfg["project_path"] = PCUTOFF, str(copy)
    with open(copy / "config.yaml", "w") as fh:
        yaml.dump(cfg, fh)
    return copy


@pytest.fixture(scope="module")
def video(openfield_fixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 90 frames of the real openfield video at 160x120."""
    out = tmp_path_factory.mktemp("videos") / "m3v1.mp4"
    return cut_clip(openfield_fixture / "videos" / "m3v1mp4.mp4", out, FRAMES, scale=0.25)


@pytest.fixture(scope="module")
def finished(project: Path, video: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One video through a local array with --filter median --qc-clips --save-csv."""
    work = tmp_path_factory.mktemp("run")
    manifest = write_manifest(work / "batch.txt", Manifest(entries=[str(video)]))
    settings = load_settings(
        None,
        project=project,
        dest=str(work / "keypoints"),
        runs_dir=work / "runs",
        scratch=work / "scratch",
        batch_size=4,
        filter="median",
        qc_clips=True,
        save_csv=True,
    )
    run, _ = batch.start_run(manifest, settings)
    batch.submit(run)
    final = wait_for(run)
    assert final.counts["done"] == 1, final.records
    return run


def published(run: Run, video: Path, suffix: str) -> Path:
    return Path(run.settings.dest or "") / f"{video.stem}{run.model['scorer']}{suffix}"


def test_record_and_meta_carry_the_quality_numbers_of_the_published_h5(finished: Run, video: Path) -> None:
    record = finished.record(0)
    assert record is not None and record.state == "done"
    with open(published(finished, video, "_meta.pickle"), "rb") as fh:
        meta = pickle.load(fh)
    assert meta["dlcrun"]["quality"] == record.quality
    assert meta["dlcrun"]["filter"] == "median"
    assert set(meta) == {"data", "dlcrun"}  # DLC's own block stays DLC's

    table = pd.read_hdf(published(finished, video, ".h5"), "df_with_missing")
    bodyparts = list(table.columns.get_level_values("bodyparts").unique())
    window = window_rows(meta["data"]["fps"], 1, len(table))
    again = quality_of(table.index.to_numpy(), table.to_numpy(), bodyparts, PCUTOFF, window, chunk=17)
    quality = record.quality
    assert quality["frames"] == FRAMES and quality["pcutoff"] == PCUTOFF and window == 5
    assert bodyparts == ["snout", "leftear", "rightear", "tailbase"]  # the ledger's JSON sorts the keys
    assert (
        sorted(quality["bodyparts"]) == sorted(bodyparts) and list(meta["dlcrun"]["quality"]["bodyparts"]) == bodyparts
    )
    for name in bodyparts:
        ours, theirs = quality["bodyparts"][name], again["bodyparts"][name]
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            assert value == pytest.approx(theirs[key], abs=1e-12), (name, key)
    assert quality["worst"] == pytest.approx(again["worst"]) and quality["score"] == pytest.approx(again["score"])
    # the numbers say something: a random network is neither always sure nor never
    assert 0 < quality["score"] < 1
    assert record.seconds["filter"] > 0 and record.seconds["clip"] > 0


def test_filtered_outputs_equal_filterpredictions_on_analyze_videos(
    finished: Run, project: Path, video: Path, tmp_path: Path
) -> None:
    import deeplabcut

    record = finished.record(0)
    assert record is not None
    names = [Path(o.uri).name for o in record.outputs]
    scorer = finished.model["scorer"]
    assert names == [
        f"{video.stem}{scorer}_meta.pickle",
        f"{video.stem}{scorer}.csv",
        f"{video.stem}{scorer}_filtered.csv",
        f"{video.stem}{scorer}_filtered.h5",
        f"{video.stem}{scorer}.h5",
    ]
    ref = tmp_path / "reference"
    config = str(project / "config.yaml")
    assert deeplabcut.analyze_videos(config, [str(video)], batch_size=4, destfolder=str(ref)) == scorer
    deeplabcut.filterpredictions(config, [str(video)], filtertype="median", destfolder=str(ref))
    ours = pd.read_hdf(published(finished, video, "_filtered.h5"), "df_with_missing")
    theirs = pd.read_hdf(ref / f"{video.stem}{scorer}_filtered.h5", "df_with_missing")
    assert ours.columns.equals(theirs.columns) and ours.index.equals(theirs.index) and len(ours) == FRAMES
    assert np.abs(ours.to_numpy() - theirs.to_numpy()).max() <= 1e-3
    unfiltered = pd.read_hdf(published(finished, video, ".h5"), "df_with_missing")
    assert not np.allclose(ours.to_numpy(), unfiltered.to_numpy())  # the median filter did something
    csv = pd.read_csv(published(finished, video, "_filtered.csv"), header=[0, 1, 2], index_col=0)
    assert np.allclose(csv.to_numpy(), ours.to_numpy())


def test_a_second_run_finds_the_filtered_outputs_done_and_keeps_their_numbers(
    finished: Run, project: Path, video: Path, tmp_path: Path
) -> None:
    """Same video, snapshot and filter into the same dest: nothing is analysed, and the record
    takes the quality numbers from the published _meta.pickle."""
    first = finished.record(0)
    assert first is not None
    manifest = write_manifest(tmp_path / "again.txt", Manifest(entries=[str(video)]))
    settings = load_settings(
        None,
        project=project,
        dest=finished.settings.dest,
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        filter="median",
        save_csv=True,
    )
    run, _ = batch.start_run(manifest, settings)
    batch.submit(run)
    assert wait_for(run).counts["done"] == 1
    again = run.record(0)
    assert again is not None and "infer" not in again.seconds  # found done, not analysed
    assert again.quality == first.quality and again.clip == ""
    assert [o.uri for o in again.outputs] == [o.uri for o in first.outputs]


@pytest.mark.parametrize("filtertype", FILTERS)
def test_each_filter_is_dlcs_own_on_the_same_h5(
    finished: Run, project: Path, video: Path, tmp_path: Path, filtertype: str
) -> None:
    """Same .h5 in, the same bytes' worth of keypoints out, for median, arima and spline."""
    import deeplabcut

    scorer = finished.model["scorer"]
    h5 = published(finished, video, ".h5")
    ours_dir, dlc_dir = tmp_path / "ours", tmp_path / "dlc"
    for folder in (ours_dir, dlc_dir):
        folder.mkdir()
        shutil.copy(h5, folder / h5.name)
    written = filter_h5(
        ours_dir / h5.name, video.stem, scorer, project_config(project), project / "config.yaml", filtertype, True
    )
    assert [p.name for p in written] == [f"{video.stem}{scorer}_filtered.csv", f"{video.stem}{scorer}_filtered.h5"]
    assert not (ours_dir / ".dlcrun-filter").exists()
    deeplabcut.filterpredictions(
        str(project / "config.yaml"), [str(video)], filtertype=filtertype, destfolder=str(dlc_dir)
    )
    for name in (p.name for p in written):
        if name.endswith(".h5"):
            pd.testing.assert_frame_equal(
                pd.read_hdf(ours_dir / name, "df_with_missing"), pd.read_hdf(dlc_dir / name, "df_with_missing")
            )
        else:
            assert (ours_dir / name).read_bytes() == (dlc_dir / name).read_bytes()


def test_the_qc_clip_shows_the_worst_stretch_with_dlcs_colours(finished: Run, project: Path, video: Path) -> None:
    import cv2
    import matplotlib.pyplot as plt

    record = finished.record(0)
    assert record is not None and record.clip == f"clips/0-{video.stem}.mp4"
    clip = finished.path / record.clip
    worst = record.quality["worst"]
    frames = []
    cap = cv2.VideoCapture(str(clip))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])  # RGB
    cap.release()
    assert len(frames) == worst["end"] - worst["start"] + 1 == 5
    assert frames[0].shape == (120, 160, 3)

    table = pd.read_hdf(published(finished, video, ".h5"), "df_with_missing")
    bodyparts = list(table.columns.get_level_values("bodyparts").unique())
    colormap = project_config(project)["colormap"]  # jet, in the openfield project
    colours = (plt.cm.ScalarMappable(cmap=colormap).to_rgba(np.linspace(0, 1, len(bodyparts)))[:, :3] * 255).astype(int)
    dotsize = project_config(project)["dotsize"]
    checked = 0
    for offset, number in enumerate(range(worst["start"], worst["end"] + 1)):
        row = table.loc[number].droplevel("scorer")
        drawn = [bp for bp in bodyparts if row[(bp, "likelihood")] > PCUTOFF]  # in DLC's drawing order
        for k, bp in enumerate(drawn):
            x, y = row[(bp, "x")], row[(bp, "y")]
            later = [(row[(b, "x")], row[(b, "y")]) for b in drawn[k + 1 :]]
            if not (2 <= x < 158 and 2 <= y < 118) or any(np.hypot(x - u, y - v) <= dotsize + 2 for u, v in later):
                continue  # outside the frame, or a dot drawn after it covers its centre
            patch = frames[offset][int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3)
            colour = colours[bodyparts.index(bp)]
            assert np.abs(np.median(patch, axis=0) - colour).max() <= 40, (number, bp, patch, colour)
            checked += 1
    assert checked, "no keypoint above pcutoff inside the frame in the clip's window"


def test_the_clip_holds_exactly_the_window_s_frames(tmp_path: Path) -> None:
    """Each frame of a synthetic video is grey at 5 x its number: the clip of frames 10-20 of a
    stride-2 analysis holds frames 10, 12, ..., 20, played at 15 fps, with the keypoint drawn."""
    import cv2

    from dlcrun.clips import write_clip
    from dlcrun.inference import KeypointTable

    video = tmp_path / "grey.mp4"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for number in range(40):
        out.write(np.full((48, 64, 3), 5 * number, np.uint8))
    out.release()
    h5 = tmp_path / "grey.h5"
    table = KeypointTable(h5, "DLC_test", ["nose"], 1, chunk=4)
    for number in range(0, 40, 2):
        table.add([number], [{"bodyparts": np.array([[[10.0 + number, 20.0, 0.9]]])}])
    table.close()
    cfg = {"pcutoff": 0.5, "dotsize": 6, "colormap": "rainbow"}
    clip = write_clip(video, h5, {"start": 10, "end": 20}, cfg, None, tmp_path / "clip.mp4", stride=2)

    source = decoded(video)  # mp4v moves the greys a little: compare with what a decoder reads
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    frames = decoded(clip)
    assert len(frames) == 6
    for frame, number in zip(frames, range(10, 21, 2)):
        assert abs(np.median(frame) - np.median(source[number])) <= 2, number  # neighbours are 5 apart
        dot = frame[19:22, 9 + number : 12 + number].reshape(-1, 3).mean(axis=0)
        assert np.abs(dot - [127, 0, 255]).max() <= 40, (number, dot)  # one bodypart: rainbow at 0, purple


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB, as ints."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1].astype(int))
    cap.release()
    return frames
