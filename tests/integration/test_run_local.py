"""End to end on this machine: manifest -> local array -> DLC -> published keypoints.

Real parts throughout: DeepLabCut 3 models, real videos (the openfield fixture's own video
where ../shared is present), subprocess array indices started by the local scheduler.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from waiting import wait_for

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.ledger import Run
from dlcrun.manifest import Manifest, write_manifest
from dlcrun.settings import load_settings

pytestmark = pytest.mark.slow


def start(tmp_path: Path, project: Path, videos: list[Path], dest: Path | None = None, **overrides: object) -> Run:
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None,
        project=project,
        dest=str(dest or tmp_path / "keypoints"),
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        **overrides,
    )
    run, _ = batch.start_run(manifest, settings)
    return run


def test_openfield_keypoints_equal_analyze_videos(
    tmp_path: Path, openfield_project: Path, openfield_clip: Path
) -> None:
    """Same snapshot, same real video: dlcrun's .h5 is DLC's .h5 (<= 1e-3 px)."""
    import deeplabcut

    video = tmp_path / "videos" / openfield_clip.name
    video.parent.mkdir()
    shutil.copy(openfield_clip, video)
    run = start(tmp_path, openfield_project, [video], batch_size=4)
    batch.submit(run)
    final = wait_for(run)
    assert final.counts["done"] == 1, final.records

    ref = tmp_path / "reference"
    scorer = deeplabcut.analyze_videos(
        str(openfield_project / "config.yaml"), [str(video)], batch_size=4, destfolder=str(ref)
    )
    assert scorer == run.model["scorer"]
    ours_h5 = tmp_path / "keypoints" / f"{video.stem}{scorer}.h5"
    ref_h5 = ref / ours_h5.name
    ours, theirs = pd.read_hdf(ours_h5, "df_with_missing"), pd.read_hdf(ref_h5, "df_with_missing")
    assert ours.columns.equals(theirs.columns) and ours.index.equals(theirs.index)
    assert list(ours.columns.names) == ["scorer", "bodyparts", "coords"]
    xy = ours.columns.get_level_values("coords") != "likelihood"
    assert len(ours) == 6
    assert np.abs(ours.loc[:, xy].to_numpy() - theirs.loc[:, xy].to_numpy()).max() <= 1e-3
    assert np.abs(ours.to_numpy() - theirs.to_numpy()).max() <= 1e-3
    assert ours.loc[:, xy].to_numpy().std(axis=0).max() > 0  # random weights still move: the check has power

    with open(tmp_path / "keypoints" / f"{video.stem}{scorer}_meta.pickle", "rb") as fh:
        ours_meta = pickle.load(fh)["data"]
    with open(ref / f"{video.stem}{scorer}_meta.pickle", "rb") as fh:
        ref_meta = pickle.load(fh)["data"]
    assert ours_meta.keys() == ref_meta.keys()
    assert ours_meta["nframes"] == ref_meta["nframes"] and ours_meta["Scorer"] == ref_meta["Scorer"]

    record = run.record(0)
    assert record.frames == 6 and record.outputs[-1].uri == str(ours_h5)
    assert record.outputs[-1].sha256 and record.bytes_in == video.stat().st_size
    assert video.exists(), "the source video must never be touched"
    assert not list((tmp_path / "scratch").iterdir()), "scratch is cleaned after the index"


def test_corrupt_video_fails_alone_rerun_does_no_inference(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    videos = tiny_videos(tmp_path / "videos", ["a.mp4", "b.mp4", "c.mp4"])
    videos[1].write_bytes(os.urandom(4096))  # b.mp4: not a video at all
    run = start(tmp_path, demo_project, videos, max_running=2, save_csv=True)
    batch.submit(run)
    final = wait_for(run)
    assert final.states == {0: "done", 1: "failed", 2: "done"}
    assert "b.mp4" in final.records[1].error and "cannot open as video" in final.records[1].error
    published = sorted(p.name for p in (tmp_path / "keypoints").iterdir())
    assert len(published) == 6 and not any(n.startswith("b") for n in published)
    assert {Path(n).suffix for n in published} == {".h5", ".csv", ".pickle"}

    result = CliRunner().invoke(app, ["status", str(run.path)])
    assert result.exit_code == 0
    assert "done" in result.output and "failed" in result.output
    assert "#1" in result.output and "cannot open as video" in result.output

    # Re-running finished indices does no inference and rewrites nothing.
    before = {i: run.record(i) for i in (0, 2)}
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "keypoints").iterdir()}
    sub = batch.resubmit(run)
    assert sub is not None and sub.indices == [1]
    wait_for(run)
    assert {i: run.record(i) for i in (0, 2)} == before
    assert run.record(1).attempts == 2 and run.record(1).state == "failed"
    for i in (0, 2):
        done = subprocess.run(
            [sys.executable, "-m", "dlcrun", "task", "--run", str(run.path), "--index", str(i)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert {i: run.record(i) for i in (0, 2)} == before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "keypoints").iterdir()} == mtimes

    # A new run over the same destination verifies what is there instead of re-analysing.
    again = start(tmp_path / "second", demo_project, [videos[0], videos[2]], dest=tmp_path / "keypoints", save_csv=True)
    batch.submit(again)
    final = wait_for(again)
    assert final.counts["done"] == 2
    for rec in final.records.values():
        assert "infer" not in rec.seconds and rec.frames == 8
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "keypoints").iterdir()} == mtimes


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_task_leaves_no_partial_output(tmp_path: Path, demo_project: Path, sig: signal.Signals) -> None:
    from dlcrun.demo import write_video

    # Long enough that inference is still running 3 s after staging, even on a warm, idle machine.
    video = write_video(tmp_path / "videos" / "long.mp4", frames=2400, size=(160, 120))
    run = start(tmp_path, demo_project, [video])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcrun", "task", "--run", str(run.path), "--index", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "scratch").glob("*/long.mp4")):  # staged: inference is next
        assert proc.poll() is None and time.monotonic() < deadline, "task ended before it could be killed"
        time.sleep(0.1)
    time.sleep(3)
    assert proc.poll() is None
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    dest = tmp_path / "keypoints"
    assert not dest.exists() or not any(dest.rglob("*")), "nothing, not even a partial file, is published"
    record = run.record(0)
    if sig == signal.SIGTERM:
        assert record.state == "interrupted" and "signal 15" in record.error
        assert not list((tmp_path / "scratch").iterdir()), "SIGTERM cleans scratch"
        assert batch.status(run).states[0] == "interrupted"
    else:
        assert record.state == "running"
        assert batch.status(run).states[0] == "lost"
    assert video.exists()


def test_cancel_interrupts_the_running_index_and_marks_the_queued_one_cancelled(
    tmp_path: Path, demo_project: Path
) -> None:
    from dlcrun.demo import write_video

    long = write_video(tmp_path / "videos" / "long.mp4", frames=600, size=(160, 120))
    short = write_video(tmp_path / "videos" / "short.mp4", frames=8)
    run = start(tmp_path, demo_project, [long, short], max_running=1)
    batch.submit(run)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "scratch").glob("*/long.mp4")):  # staged: inference is next
        assert time.monotonic() < deadline, batch.status(run).counts
        time.sleep(0.1)
    assert batch.status(run).states == {0: "running", 1: "queued"}
    assert batch.cancel(run) == 2
    final = wait_for(run)
    assert final.states == {0: "interrupted", 1: "cancelled"}, final.records
    assert 1 not in final.records and final.failures == [final.records[0]]
    shown = CliRunner().invoke(app, ["status", str(run.path)]).output
    assert "cancelled" in shown and f"rerun them with: dlcrun resubmit {run.id}" in shown
