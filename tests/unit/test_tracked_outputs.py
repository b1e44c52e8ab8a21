"""A multi-animal run's outputs: named as analyze_videos(auto_track=True) names them, the
stitched tracks last, and counted done only when the tracks' table is whole."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from dlcrun.inference import ModelSpec
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest
from dlcrun.outputs import Plan, claim_at_destination, complete_at_destination
from dlcrun.settings import load_settings

SPEC = ModelSpec(
    project="/p",
    shuffle=1,
    trainingsetindex=0,
    snapshot="/p/snapshot-5.pt",
    scorer="DLC_test",
    bodyparts=["nose", "tail"],
    net_type="resnet_50",
    default_batch_size=1,
    multi_animal=True,
    individuals=["mouse1", "mouse2"],
    track_method="box",
)


def make_run(tmp_path: Path, spec: ModelSpec = SPEC, **overrides: object) -> Run:
    settings = load_settings(None, dest=str(tmp_path / "dest"), runs_dir=tmp_path / "runs", **overrides)
    manifest = Manifest(entries=[str(tmp_path / f"videos/v{i}.mp4") for i in range(2)])
    return Run.create(tmp_path / "runs", settings, manifest, spec.to_dict(), name="animals")


def test_a_multi_animal_video_leaves_dlcs_tracked_files_tracks_last(tmp_path: Path) -> None:
    names = [Path(u).name for u in Plan(make_run(tmp_path, save_csv=True), 1).outputs]
    assert names == [
        "v1DLC_test_meta.pickle",
        "v1DLC_test_full.pickle",
        "v1DLC_test_assemblies.pickle",
        "v1DLC_test_bx.pickle",
        "v1DLC_test_bx.csv",
        "v1DLC_test_bx.h5",
    ]
    single = ModelSpec(**{**SPEC.to_dict(), "multi_animal": False})
    assert [Path(u).name for u in Plan(make_run(tmp_path / "s", single), 0).outputs] == [
        "v0DLC_test_meta.pickle",
        "v0DLC_test.h5",
    ]
    assert ModelSpec.from_dict(SPEC.to_dict()) == SPEC  # what model.json keeps, and pin_in_image sends


def tracks(rows: int) -> pd.DataFrame:
    """A stitched tracks table as DLC's TrackletStitcher writes it: up to the last tracked frame."""
    columns = pd.MultiIndex.from_product(
        [["DLC_test"], SPEC.individuals, SPEC.bodyparts, ["x", "y", "likelihood"]],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    return pd.DataFrame(np.random.default_rng(0).random((rows, len(columns))), columns=columns, index=range(rows))


def publish(plan: Plan, frames: int, rows: int) -> None:
    dest = Path(plan.dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    meta = {
        "data": {"nframes": frames, "fps": 30.0},
        "dlcrun": {
            "source": {"location": plan.video, "size": 10, "hashes": {"sha256": "ab"}},
            "model": {"snapshot": plan.spec.snapshot},
            "frames_decoded": frames,
            "stride": 1,
        },
    }
    (dest / Path(plan.outputs[0]).name).write_bytes(pickle.dumps(meta))
    for uri in plan.outputs[1:-1]:
        (dest / Path(uri).name).write_bytes(b"pickle")
    tracks(rows).to_hdf(dest / Path(plan.outputs[-1]).name, key="tracks", format="table", mode="w")


def done(plan: Plan, tmp_path: Path) -> bool:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    claim = claim_at_destination(plan, work)
    assert claim is not None and claim.source is not None
    return complete_at_destination(plan, claim, work) is not None


def test_tracks_up_to_the_last_tracked_frame_are_whole(tmp_path: Path) -> None:
    plan = Plan(make_run(tmp_path), 0)
    publish(plan, frames=40, rows=40)
    assert done(plan, tmp_path)
    publish(plan, frames=40, rows=31)  # no animal after frame 30: DLC's table ends there
    assert done(plan, tmp_path)
    publish(plan, frames=40, rows=41)  # more rows than frames: not this video's tracks
    assert not done(plan, tmp_path)
    (Path(plan.dest_dir) / Path(plan.outputs[2]).name).unlink()  # the assemblies are gone
    publish(plan, frames=40, rows=40)
    (Path(plan.dest_dir) / Path(plan.outputs[2]).name).unlink()
    assert not done(plan, tmp_path)


def test_rows_whole() -> None:
    assert SPEC.rows_whole(10, 10) and SPEC.rows_whole(3, 10) and not SPEC.rows_whole(0, 10)
    single = ModelSpec(**{**SPEC.to_dict(), "multi_animal": False})
    assert single.rows_whole(10, 10) and not single.rows_whole(3, 10)
    assert (SPEC.table_key, single.table_key) == ("tracks", "df_with_missing")
