"""Quality numbers gathered while keypoints stream to the .h5, against a hand computation.

Real parts: ``inference.KeypointTable`` writing a real DLC-format .h5 in small chunks (so runs
under pcutoff and the worst window cross chunk boundaries), read back with pandas; the hand
computation is plain numpy over the whole table. Also: the two settings, the record's new
fields, and the done-check of ``--filter`` outputs at a local destination.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlcrun.errors import ConfigError
from dlcrun.inference import KeypointTable
from dlcrun.ledger import Record, Run
from dlcrun.manifest import Manifest
from dlcrun.outputs import Plan, claim_at_destination, complete_at_destination
from dlcrun.quality import QualityAccumulator, quality_of, window_rows
from dlcrun.settings import load_settings, render_template

BODYPARTS = ["snout", "ear", "tail"]
PCUTOFF = 0.6
WINDOW = 30


def keypoints(rows: int = 1000, seed: int = 3) -> np.ndarray:
    """(rows, 9): x, y, likelihood per bodypart. ``ear`` is under pcutoff on rows 150-260 (111
    rows, across the chunk boundary at 200) and 500-519; every bodypart dips on rows 385-414
    (across the boundary at 400), the worst 30-row window."""
    rng = np.random.default_rng(seed)
    values = np.empty((rows, 3 * len(BODYPARTS)))
    values[:, 0::3] = 320 + rng.normal(0, 3, (rows, 3)).cumsum(axis=0)
    values[:, 1::3] = 240 + rng.normal(0, 3, (rows, 3)).cumsum(axis=0)
    p = rng.uniform(0.7, 1.0, (rows, 3))
    p[:, 2] = rng.uniform(0.0, 1.0, rows)  # tail: anything
    p[150:261, 1] = rng.uniform(0.0, 0.5, 111)[: max(0, rows - 150)]
    p[500:520, 1] = rng.uniform(0.0, 0.5, 20)[: max(0, rows - 500)]
    p[385:415, :] = rng.uniform(0.0, 0.1, (30, 3))[: max(0, rows - 385)]
    values[:, 2::3] = p
    return values


def write_h5(path: Path, frames: np.ndarray, values: np.ndarray, chunk: int, batch: int = 7) -> dict:
    """Through KeypointTable as an engine feeds it (batches of ``batch`` rows); its quality numbers."""
    acc = QualityAccumulator(BODYPARTS, PCUTOFF, WINDOW)
    table = KeypointTable(path, "DLC_test", BODYPARTS, 1, expected_rows=len(frames), chunk=chunk, quality=acc)
    for start in range(0, len(frames), batch):
        rows = values[start : start + batch]
        table.add(list(frames[start : start + batch]), [{"bodyparts": r.reshape(1, -1, 3)} for r in rows])
    table.close()
    return acc.result()


def longest_run(flags: np.ndarray) -> int:
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


def by_hand(frames: np.ndarray, values: np.ndarray, window: int = WINDOW) -> dict:
    """The numbers with numpy over the whole table (exact percentiles, no histograms)."""
    x, y, p = values[:, 0::3], values[:, 1::3], np.nan_to_num(values[:, 2::3], nan=0.0)
    parts = {}
    for i, name in enumerate(BODYPARTS):
        ok = p[:, i] >= PCUTOFF
        jumps = np.hypot(np.diff(x[:, i]), np.diff(y[:, i]))[ok[1:] & ok[:-1]]
        parts[name] = {
            "mean": p[:, i].mean(),
            "p05": np.percentile(p[:, i], 5),
            "p25": np.percentile(p[:, i], 25),
            "median": np.percentile(p[:, i], 50),
            "below": np.mean(p[:, i] < PCUTOFF),
            "longest_below": longest_run(p[:, i] < PCUTOFF),
            "jump_median": np.median(jumps) if jumps.size else None,
            "jump_p95": np.percentile(jumps, 95) if jumps.size else None,
            "jump_max": jumps.max() if jumps.size else None,
            "hist": np.histogram(p[:, i], bins=20, range=(0.0, 1.0))[0].tolist(),
        }
    means = p.mean(axis=1)
    w = min(window, len(means))
    windows = np.lib.stride_tricks.sliding_window_view(means, w).mean(axis=1)
    j = int(np.argmin(windows))
    return {
        "score": float(np.mean([1 - parts[n]["below"] for n in BODYPARTS])),
        "bodyparts": parts,
        "worst": {"start": int(frames[j]), "end": int(frames[j + w - 1]), "mean": float(windows[j])},
    }


def assert_matches(ours: dict, hand: dict, rows: int) -> None:
    assert ours["version"] == 1 and ours["pcutoff"] == PCUTOFF and ours["frames"] == rows
    assert ours["score"] == pytest.approx(hand["score"], abs=1e-12)
    assert ours["worst"]["start"] == hand["worst"]["start"] and ours["worst"]["end"] == hand["worst"]["end"]
    assert ours["worst"]["mean"] == pytest.approx(hand["worst"]["mean"], abs=1e-12)
    assert list(ours["bodyparts"]) == BODYPARTS
    for name in BODYPARTS:
        got, want = ours["bodyparts"][name], hand["bodyparts"][name]
        assert got["mean"] == pytest.approx(want["mean"], abs=1e-12), name
        for q in ("p05", "p25", "median"):  # a 1e-4 histogram: within half a bin
            assert abs(got[q] - want[q]) <= 5e-5 + 1e-12, (name, q, got[q], want[q])
        assert got["below"] == pytest.approx(want["below"], abs=1e-12)
        assert got["longest_below"] == want["longest_below"], name
        assert got["hist"] == want["hist"] and sum(got["hist"]) == rows
        if want["jump_max"] is None:
            assert got["jump_median"] is got["jump_p95"] is got["jump_max"] is None
            continue
        assert got["jump_max"] == want["jump_max"]
        for q in ("jump_median", "jump_p95"):  # log bins 1.16 % wide: within 0.6 %
            assert got[q] == pytest.approx(want[q], rel=0.006), (name, q)


@pytest.mark.parametrize("chunk", [100, 1, 4096])
def test_numbers_from_the_stream_equal_a_hand_computation_on_the_h5(tmp_path: Path, chunk: int) -> None:
    """Chunks of 100 rows (runs and the worst window cross boundaries), of one row (every row a
    boundary), and the whole table in one chunk."""
    values = keypoints()
    frames = np.arange(len(values)) * 2  # a stride of 2: the video's own frame numbers
    ours = write_h5(tmp_path / "v.h5", frames, values, chunk)

    table = pd.read_hdf(tmp_path / "v.h5", "df_with_missing")
    assert np.array_equal(table.index.to_numpy(), frames) and np.array_equal(table.to_numpy(), values)
    hand = by_hand(table.index.to_numpy(), table.to_numpy())
    assert_matches(ours, hand, len(values))
    # what the table was built to hold, so the comparison has power
    assert ours["bodyparts"]["ear"]["longest_below"] == 111
    assert ours["worst"] == {"start": 770, "end": 828, "mean": pytest.approx(hand["worst"]["mean"])}
    assert ours["bodyparts"]["snout"]["below"] == pytest.approx(30 / 1000)


def test_a_table_read_back_gives_the_same_numbers_as_its_stream(tmp_path: Path) -> None:
    values = keypoints(seed=11)
    frames = np.arange(len(values))
    streamed = write_h5(tmp_path / "v.h5", frames, values, chunk=64)
    table = pd.read_hdf(tmp_path / "v.h5", "df_with_missing")
    again = quality_of(table.index.to_numpy(), table.to_numpy(), BODYPARTS, PCUTOFF, WINDOW, chunk=333)
    assert_same(again, streamed)


def assert_same(a: object, b: object, where: str = "") -> None:
    """Equal, floats to 1e-12 (sums taken in other chunks round differently)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-12), where
    else:
        assert a == b, where


def test_a_table_shorter_than_the_window_is_its_own_worst_window() -> None:
    values = keypoints(rows=12)
    frames = np.arange(12) + 100
    ours = quality_of(frames, values, BODYPARTS, PCUTOFF, window=50, chunk=5)
    assert_matches(ours, by_hand(frames, values, window=50), 12)
    assert ours["worst"]["start"] == 100 and ours["worst"]["end"] == 111


def test_no_two_rows_above_pcutoff_means_no_jumps_and_nan_counts_as_missing() -> None:
    values = keypoints(rows=200)
    values[:, 5] = 0.31  # ear never above pcutoff
    values[10:20, 8] = np.nan  # tail likelihood missing: counts as 0
    frames = np.arange(200)
    ours = quality_of(frames, values, BODYPARTS, PCUTOFF, window=10, chunk=64)
    assert_matches(ours, by_hand(frames, values, window=10), 200)
    ear = ours["bodyparts"]["ear"]
    assert ear["jump_median"] is None and ear["jump_max"] is None and ear["longest_below"] == 200
    assert ours["bodyparts"]["tail"]["hist"][0] >= 10


def test_the_window_is_five_seconds_or_five_percent_of_the_rows() -> None:
    assert window_rows(30.0, 1, 100_000) == 150
    assert window_rows(30.0, 1, 1000) == 50  # 5 % of a 33 s video
    assert window_rows(30.0, 3, 100_000) == 50  # 5 s of a stride-3 analysis
    assert window_rows(30.0, 300, 100_000) == 1
    assert window_rows(0.0, 1, None) == 150  # no frame rate, no frame count
    assert window_rows(25.0, 1, 10) == 1


def test_filter_and_qc_clips_settings(tmp_path: Path) -> None:
    assert load_settings(None).filter is None and load_settings(None).qc_clips is False
    assert load_settings(None, filter="none").filter is None
    assert load_settings(None, filter="Spline").filter == "spline"
    assert load_settings(None, filter="median", qc_clips=True).qc_clips is True
    with pytest.raises(ConfigError, match=r"^--filter gauss: .*'median', 'arima' or 'spline'"):
        load_settings(None, flags={"filter": "--filter"}, filter="gauss")
    toml = tmp_path / "dlcrun.toml"
    toml.write_text(render_template())  # dlcrun init's file, unedited, loads (filter = "" is none)
    assert '# filter = ""' in toml.read_text() and "qc_clips = false" in toml.read_text()
    toml.write_text('filter = ""\nqc_clips = true\n')
    loaded = load_settings(toml)
    assert loaded.filter is None and loaded.qc_clips is True


def test_older_records_load_without_quality_or_clip(tmp_path: Path) -> None:
    old = {"index": 3, "video": "a.mp4", "state": "done", "frames": 10}
    record = Record.from_dict(old)
    assert record.quality == {} and record.clip == ""
    numbers = quality_of(np.arange(10), keypoints(rows=10), BODYPARTS, PCUTOFF, 5)
    record.quality, record.clip = numbers, "clips/3-a.mp4"
    run = make_run(tmp_path, filter=None)
    run.write_record(record)
    back = run.record(3)
    assert back is not None and back.quality == numbers and back.clip == "clips/3-a.mp4"


SPEC = {
    "project": "/p",
    "shuffle": 1,
    "trainingsetindex": 0,
    "snapshot": "/p/snapshot-5.pt",
    "scorer": "DLC_test",
    "bodyparts": BODYPARTS,
    "net_type": "resnet_50",
    "default_batch_size": 1,
}


def make_run(tmp_path: Path, **overrides: object) -> Run:
    settings = load_settings(None, dest=str(tmp_path / "dest"), runs_dir=tmp_path / "runs", **overrides)
    manifest = Manifest(entries=[str(tmp_path / f"videos/v{i}.mp4") for i in range(4)])
    return Run.create(tmp_path / "runs", settings, manifest, SPEC, name="quality")


def test_filtered_outputs_join_the_set_before_the_h5(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert [Path(u).name for u in Plan(make_run(tmp_path / "a", filter="median", save_csv=True), 0).outputs] == [
        "v0DLC_test_meta.pickle",
        "v0DLC_test.csv",
        "v0DLC_test_filtered.csv",
        "v0DLC_test_filtered.h5",
        "v0DLC_test.h5",
    ]
    plan = Plan(make_run(tmp_path, filter="spline", stride=5), 1)
    assert [Path(u).name for u in plan.outputs] == [
        "v1DLC_test_stride5_meta.pickle",
        "v1DLC_test_stride5_filtered.h5",
        "v1DLC_test_stride5.h5",
    ]
    assert Path(plan.outputs[0]).parent == dest


def publish(plan: Plan, used_filter: str | None, filtered: bool = True) -> None:
    """What a finished index leaves at a local dest: its _meta.pickle (naming the filter it ran),
    the .h5 (one row per frame), and the _filtered.h5."""
    dest = Path(plan.dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    source = {"location": plan.video, "size": 10, "hashes": {"sha256": "ab"}}
    meta = {
        "data": {"nframes": 10, "fps": 30.0},
        "dlcrun": {"source": source, "model": {"snapshot": plan.spec.snapshot}, "frames_decoded": 10, "stride": 1},
    }
    meta["dlcrun"]["filter"] = used_filter
    meta["dlcrun"]["quality"] = {"version": 1, "score": 0.5}
    with open(dest / Path(plan.outputs[0]).name, "wb") as fh:
        pickle.dump(meta, fh)
    h5 = dest / Path(plan.outputs[-1]).name
    write_h5(h5, np.arange(10), keypoints(rows=10), chunk=4)
    for uri in plan.outputs[1:-1]:
        (dest / Path(uri).name).unlink(missing_ok=True)
        if filtered:
            shutil.copyfile(h5, dest / Path(uri).name)


def done(plan: Plan, tmp_path: Path) -> bool:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    claim = claim_at_destination(plan, work)
    assert claim is not None and claim.source is not None
    return complete_at_destination(plan, claim, work) is not None


def test_a_filtered_run_counts_a_video_done_only_with_its_filtered_file(tmp_path: Path) -> None:
    filtered = Plan(make_run(tmp_path, filter="median"), 0)
    publish(filtered, "median")
    assert done(filtered, tmp_path)
    work = tmp_path / "work"
    assert claim_at_destination(filtered, work).quality == {"version": 1, "score": 0.5}  # type: ignore[union-attr]

    publish(filtered, "median", filtered=False)  # the filtered file is missing
    assert not done(filtered, tmp_path)

    publish(filtered, "spline")  # a _filtered.h5 made by another filter
    assert not done(filtered, tmp_path)

    publish(filtered, None)  # left by an earlier run without --filter: not vouched for
    assert not done(filtered, tmp_path)

    plain = Plan(make_run(tmp_path / "plain", filter=None), 0)
    publish(plain, "median")  # a run without --filter does not care what else is there
    assert done(plain, tmp_path)


def test_the_done_check_reads_a_meta_pickle_without_importing_what_it_names(tmp_path: Path) -> None:
    """DLC's own block names DLC's enums; the done-check reads the plain values without importing
    them (an import there raced the model's import of DLC in the main thread: a deadlock error,
    and a video of this run refused as another's)."""
    import enum
    import sys
    import types

    plan = Plan(make_run(tmp_path, filter="median"), 0)
    publish(plan, "median")
    module = types.ModuleType("dlcrun_test_absent")
    module.NetType = enum.Enum("NetType", {"RESNET_50": "resnet_50"})  # type: ignore[attr-defined]
    module.NetType.__module__ = "dlcrun_test_absent"
    sys.modules["dlcrun_test_absent"] = module
    meta_path = Path(plan.dest_dir) / Path(plan.outputs[0]).name
    meta = pickle.loads(meta_path.read_bytes())
    meta["data"]["net_type"] = module.NetType.RESNET_50
    meta_path.write_bytes(pickle.dumps(meta))
    del sys.modules["dlcrun_test_absent"]  # as if DLC were not importable here

    with pytest.raises(ModuleNotFoundError):
        pickle.loads(meta_path.read_bytes())
    assert done(plan, tmp_path)
