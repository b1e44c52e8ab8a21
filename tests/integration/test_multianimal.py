"""Multi-animal (DLC's tracking) and top-down (detector + pose) models, equal to analyze_videos.

The projects are synthetic but real: two rendered animals, DLC's own project and training-set
functions, a network trained a few epochs on CPU from random weights (``tests/support/
multianimal.py``; built once per session, see the fixtures' docstrings for the time). The same
video goes through ``deeplabcut.analyze_videos(auto_track=True)`` and through dlcrun's engine;
every file DLC writes must be written under the same name, with the same content: keypoints
within 1e-3 px (fp32), the same assemblies, tracklets and individuals.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlcrun.engines import open_analyzer, pin_model
from dlcrun.engines.pytorch import PytorchAnalyzer
from dlcrun.errors import ConfigError
from dlcrun.inference import ModelSpec
from dlcrun.settings import load_settings

pytestmark = pytest.mark.slow

TOLERANCE = 1e-3  # px, fp32


def analyze_with_dlc(project: Path, video: Path, out: Path) -> set[str]:
    """analyze_videos as a lab runs it, into ``out``; the names of the files it wrote."""
    import deeplabcut

    out.mkdir(parents=True)
    deeplabcut.analyze_videos(
        str(project / "config.yaml"), [str(video)], destfolder=str(out), device="cpu", auto_track=True
    )
    return {p.name for p in out.iterdir()}


def analyze_with_dlcrun(spec: ModelSpec, video: Path, out: Path, exact: bool = False) -> set[str]:
    analyzer = exact_analyzer(spec) if exact else open_analyzer(spec, device="cpu")
    analysis = analyzer.analyze(video, out, stem=video.stem)
    assert {p.name for p in analysis.files} == {p.name for p in out.iterdir() if p.is_file()}
    assert analysis.quality["bodyparts"], "quality numbers of the tracked individuals"
    return {p.name for p in out.iterdir() if p.is_file()}


def exact_analyzer(spec: ModelSpec) -> PytorchAnalyzer:
    """dlcrun's engine doing the model's arithmetic exactly as DLC's runner does (DLC's memory
    layout, one model stream on all threads), for untrained models: their flat outputs turn a
    last-bit rounding difference (channels_last, a thread per batch) into another assembly."""
    analyzer = PytorchAnalyzer(spec, device="cpu", channels_last=False)
    if not spec.top_down:
        analyzer.pipeline.workers = 1
    return analyzer


def load(path: Path) -> object:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def assert_close(ours: object, theirs: object, where: str) -> None:
    """Nested dicts/lists/tuples/arrays equal, numbers within TOLERANCE (NaN where NaN)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), f"{where}: keys {set(ours) ^ set(theirs)}"
        for key in theirs:
            assert_close(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)) and not isinstance(theirs, str):
        assert len(ours) == len(theirs), f"{where}: length {len(ours)} != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(theirs, (np.ndarray, float, np.floating)):
        a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        np.testing.assert_allclose(a, b, atol=TOLERANCE, rtol=0, err_msg=where)
    elif hasattr(theirs, "data") and hasattr(theirs, "affinity"):  # DLC's Assembly
        assert_close(np.asarray(ours.data), np.asarray(theirs.data), f"{where}.data")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def assert_movement_loads(tracks: Path, individuals: list[str]) -> None:
    """movement (its own venv) reads the tracks with their individuals; its from_dlc_file takes
    key df_with_missing only, so DLC's ``tracks`` table goes through its DataFrame reader."""
    from movement_check import load_with_movement, movement_python

    if not movement_python().is_file():
        pytest.skip("no movement venv here: make install-movement (equality with DLC was checked above)")
    loaded = load_with_movement(tracks, reader="dataframe")
    assert loaded["individuals"] == individuals and loaded["finite"] > 0, loaded


def assert_equal_to_dlc(ours_dir: Path, dlc_dir: Path, spec: ModelSpec, trained: bool = True) -> Path:
    """Every file DLC wrote, equal; returns our tracks file."""
    prefix = next(p.name for p in dlc_dir.glob("*_meta.pickle")).removesuffix("_meta.pickle")
    suffix = spec.tracker_suffix
    # the tracks: same individuals, bodyparts, frames; keypoints within 1e-3 px
    theirs = pd.read_hdf(dlc_dir / f"{prefix}{suffix}.h5", key="tracks")
    ours = pd.read_hdf(ours_dir / f"{prefix}{suffix}.h5", key="tracks")
    assert list(ours.columns) == list(theirs.columns)
    assert list(ours.index) == list(theirs.index)
    single = ["single"] if spec.unique_bodyparts else []  # DLC's "individual" of the unique bodyparts
    assert ours.columns.get_level_values("individuals").unique().tolist() == spec.individuals + single
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=TOLERANCE, rtol=0)
    if trained:
        assert np.isfinite(theirs.to_numpy()).mean() > 0.5, "the model tracks both animals in most frames"
    # the pickles: every frame's detections, the assemblies, the tracklets
    full, full_dlc = load(ours_dir / f"{prefix}_full.pickle"), load(dlc_dir / f"{prefix}_full.pickle")
    assert_close(full, full_dlc, "_full.pickle")
    assemblies, assemblies_dlc = (load(d / f"{prefix}_assemblies.pickle") for d in (ours_dir, dlc_dir))
    assert_close(assemblies, assemblies_dlc, "_assemblies.pickle")
    if trained:
        assert sum(len(v) for k, v in assemblies_dlc.items() if k != "single") > 0, "non-empty assemblies"
    tracklets, tracklets_dlc = (load(d / f"{prefix}{suffix}.pickle") for d in (ours_dir, dlc_dir))
    assert list(tracklets["header"]) == list(tracklets_dlc["header"])
    assert_close(
        {k: v for k, v in tracklets.items() if k != "header"},
        {k: v for k, v in tracklets_dlc.items() if k != "header"},
        "tracklets",
    )
    # DLC's own metadata block, beside dlcrun's provenance
    meta, meta_dlc = load(ours_dir / f"{prefix}_meta.pickle"), load(dlc_dir / f"{prefix}_meta.pickle")
    skip = {"start", "stop", "run_duration"}  # when it ran
    assert {k: v for k, v in meta["data"].items() if k not in skip} == {
        k: v for k, v in meta_dlc["data"].items() if k not in skip
    }
    return ours_dir / f"{prefix}{suffix}.h5"


def test_multi_animal_bottom_up_equals_analyze_videos(
    multianimal_project: Path, animals_clip: Path, tmp_path: Path
) -> None:
    spec = pin_model(multianimal_project)
    assert spec.multi_animal and not spec.top_down and spec.individuals == ["mouse1", "mouse2"]
    assert spec.track_method == "ellipse" and spec.tracker_suffix == "_el"
    dlc = analyze_with_dlc(multianimal_project, animals_clip, tmp_path / "dlc")
    ours = analyze_with_dlcrun(spec, animals_clip, tmp_path / "ours")
    assert ours == dlc, f"file names differ: {ours ^ dlc}"
    assert {n.removeprefix(animals_clip.stem + spec.scorer) for n in ours} == {
        "_meta.pickle",
        "_full.pickle",
        "_assemblies.pickle",
        "_el.pickle",
        "_el.h5",
    }
    assert_movement_loads(assert_equal_to_dlc(tmp_path / "ours", tmp_path / "dlc", spec), spec.individuals)


def test_top_down_equals_analyze_videos(topdown_project: Path, animals_clip: Path, tmp_path: Path) -> None:
    spec = pin_model(topdown_project)
    assert spec.top_down and spec.detector_snapshot.endswith(".pt") and "detector_" in spec.scorer
    dlc = analyze_with_dlc(topdown_project, animals_clip, tmp_path / "dlc")
    # detector batches of 2 and a chunk of 4 frames: boxes and crops cross chunk and batch edges
    analyzer = open_analyzer(spec, device="cpu", detector_batch_size=2)
    analyzer.pipeline.max_chunk = 4
    analysis = analyzer.analyze(animals_clip, tmp_path / "ours", stem=animals_clip.stem)
    ours = {p.name for p in analysis.files}
    assert ours == dlc, f"file names differ: {ours ^ dlc}"
    tracks = assert_equal_to_dlc(tmp_path / "ours", tmp_path / "dlc", spec)
    full = load(next((tmp_path / "ours").glob("*_full.pickle")))
    assert sum(len(v.get("bboxes", [])) for k, v in full.items() if k != "metadata") > 0, "the detector found them"
    assert_movement_loads(tracks, spec.individuals)


def test_a_video_without_animals_fails_with_the_reason(multianimal_project: Path, tmp_path: Path) -> None:
    """Nothing to track: DLC's stitcher has no tracklet ("Tracklets are empty."), where
    analyze_videos stops too; the index fails saying so and no tracks file is left to publish."""
    from multianimal import write_animals_video

    from dlcrun.errors import InferenceError

    video = write_animals_video(tmp_path / "empty.mp4", blank=True)  # the arena, no animal
    analyzer = open_analyzer(pin_model(multianimal_project), device="cpu")
    with pytest.raises(InferenceError, match="no animal tracked") as caught:
        analyzer.analyze(video, tmp_path / "ours", stem="empty")
    assert "\n" not in str(caught.value)
    assert not list((tmp_path / "ours").glob("*.h5"))


def test_submit_refuses_what_these_models_cannot_do(
    multianimal_project: Path, topdown_project: Path, tmp_path: Path
) -> None:
    """At the settings check, before anything is queued: one line starting with the flag."""
    from dlcrun import batch

    for project, overrides, flag in (
        (multianimal_project, {"stride": 10}, "--stride 10"),
        (multianimal_project, {"every": "2s"}, "--every 2s"),
        (multianimal_project, {"filter": "median"}, "--filter median"),
        (multianimal_project, {"qc_clips": True}, "--qc-clips"),
        (multianimal_project, {"detector_batch_size": 8}, "--detector-batch-size 8"),
        (topdown_project, {"precision": "bf16"}, "--precision bf16"),
    ):
        settings = load_settings(None, project=project, dest=str(tmp_path / "k"), **overrides)
        with pytest.raises(ConfigError) as caught:
            batch.pin(settings)
        assert str(caught.value).startswith(flag), caught.value
        assert "\n" not in str(caught.value)
    settings = load_settings(None, project=topdown_project, dest=str(tmp_path / "k"), detector_batch_size=8)
    assert batch.pin(settings).top_down


# One model of each other kind DLC 3 trains for a multi-animal project, untrained (random weights,
# seconds to build): the path (DLC's pre- and post-processing, assembly, detector and crops) is
# what is under test, not accuracy. DLC may find nothing with random weights, and then stops at
# "Tracklets are empty.": dlcrun must then fail the same way, having written the same pickles.
BACKBONES = [
    "dekr_w18",  # bottom-up, no part-affinity fields: keypoints grouped by offsets
    "dlcrnet_stride16_ms5",  # bottom-up, DLCRNet (multi-scale, part-affinity fields)
    "rtmpose_s",  # top-down: CSPNeXt backbone with an RTMCC head, behind the SSDLite detector
    "top_down_hrnet_w18",  # top-down HRNet (a bottom-up HRNet untrained: minutes of assembling noise)
    "resnet_50+lamp",  # bottom-up with a unique bodypart (the "single" individual's columns)
]


@pytest.mark.parametrize("net_type", BACKBONES)
def test_every_kind_of_model_writes_what_analyze_videos_writes(
    net_type: str, animals_clip: Path, tmp_path: Path
) -> None:
    from multianimal import make_multianimal_project

    from dlcrun.errors import InferenceError

    net_type, _, unique = net_type.partition("+")
    top_down = net_type.startswith(("rtmpose", "top_down"))
    crop = 256 if net_type.startswith("rtmpose") else 64  # RTMPose's head is built for its 256 px crops
    project = make_multianimal_project(
        tmp_path / "project",
        net_type,
        top_down=top_down,
        epochs=0,
        crop=crop,
        unique_bodyparts=(unique,) if unique else (),
    ).parent
    spec = pin_model(project)
    assert spec.top_down == top_down and spec.multi_animal and spec.unique_bodyparts == ([unique] if unique else [])
    try:
        dlc = analyze_with_dlc(project, animals_clip, tmp_path / "dlc")
        tracked = True
    except OSError as exc:  # DLC's stitcher: nothing tracked with these random weights
        assert "Tracklets are empty" in str(exc)
        dlc, tracked = {p.name for p in (tmp_path / "dlc").iterdir()}, False
    if tracked:
        assert analyze_with_dlcrun(spec, animals_clip, tmp_path / "ours", exact=True) == dlc
        assert_equal_to_dlc(tmp_path / "ours", tmp_path / "dlc", spec, trained=False)
        return
    analyzer = exact_analyzer(spec)
    with pytest.raises(InferenceError, match="no animal tracked"):
        analyzer.analyze(animals_clip, tmp_path / "ours", stem=animals_clip.stem)
    ours = {p.name for p in (tmp_path / "ours").iterdir() if p.is_file()}
    assert ours == dlc - {n for n in dlc if n.endswith("_meta.pickle")}  # dlcrun writes it last, with the tracks
    prefix = animals_clip.stem + spec.scorer
    for name in ("_full.pickle", "_assemblies.pickle"):
        assert_close(load(tmp_path / "ours" / f"{prefix}{name}"), load(tmp_path / "dlc" / f"{prefix}{name}"), name)
