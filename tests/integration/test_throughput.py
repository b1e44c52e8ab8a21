"""The pipelined engine, frame stride and several videos per array index, with real DLC models.

Equivalence is checked against ``deeplabcut.analyze_videos`` itself on the openfield fixture's
real video; batching, queueing and sampling on tiny synthetic videos (a real, randomly
initialised ResNet-50: the keypoints vary frame to frame, so equality checks have power).
"""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from waiting import wait_for

from dlcrun.errors import InferenceError

KEY = "df_with_missing"


def read(h5: Path) -> pd.DataFrame:
    return pd.read_hdf(h5, KEY)


def table_attrs(h5: Path) -> dict[str, object]:
    """How pandas stored the table (format, axes, columns), minus the row count."""
    with pd.HDFStore(h5, mode="r") as store:
        storer = store.get_storer(KEY)
        attrs = storer.attrs
        names = [n for n in attrs._v_attrnames if n not in ("nrows",)]
        return {n: repr(getattr(attrs, n)) for n in names} | {"pandas_type": storer.pandas_type}


def max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    return float(np.abs(a.to_numpy(dtype=float) - b.to_numpy(dtype=float)).max())


@pytest.fixture(scope="module")
def openfield_model(openfield_project: Path):
    from dlcrun.engines import pin_model

    return pin_model(openfield_project)


@pytest.fixture(scope="module")
def reference(openfield_project: Path, openfield_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """analyze_videos' own .h5 (and .csv) for the clip, at batch size 1 (its fastest on CPU)."""
    import deeplabcut

    out = tmp_path_factory.mktemp("dlc-reference")
    deeplabcut.analyze_videos(
        str(openfield_project / "config.yaml"),
        [str(openfield_clip)],
        batch_size=1,
        destfolder=str(out),
        save_as_csv=True,
        device="cpu",
    )
    return next(out.glob("*.h5"))


@pytest.fixture(scope="module")
def full_rate(openfield_model, openfield_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    """dlcrun's defaults (fp32, OpenCV, channels_last) at batch 4, which does not divide 6 frames."""
    from dlcrun.engines.pytorch import PytorchAnalyzer

    analyzer = PytorchAnalyzer(openfield_model, batch_size=4, device="cpu")
    return analyzer, analyzer.analyze(openfield_clip, tmp_path_factory.mktemp("ours"), save_csv=True)


@pytest.mark.slow
def test_fp32_equals_analyze_videos(full_rate, reference: Path) -> None:
    """Same name, same table format, same columns and index; keypoints within 1e-3 px."""
    _, analysis = full_rate
    h5 = analysis.files[0]
    assert h5.name == reference.name
    ours, theirs = read(h5), read(reference)
    assert ours.columns.equals(theirs.columns) and ours.index.equals(theirs.index)
    assert list(ours.dtypes.unique()) == list(theirs.dtypes.unique())
    assert max_diff(ours, theirs) <= 1e-3
    xy = ours.columns.get_level_values("coords") != "likelihood"
    assert ours.loc[:, xy].to_numpy().std(axis=0).max() > 2e-3, "the keypoints move more than the tolerance"
    assert table_attrs(h5) == table_attrs(reference)
    ours_csv, their_csv = (
        analysis.files[2].read_text().splitlines(),
        reference.with_suffix(".csv").read_text().splitlines(),
    )
    assert ours_csv[:3] == their_csv[:3] and len(ours_csv) == len(their_csv)
    assert analysis.rows == analysis.frames == 6 and analysis.stride == 1

    with open(analysis.files[1], "rb") as fh:
        meta = pickle.load(fh)
    with open(str(reference).replace(".h5", "_meta.pickle"), "rb") as fh:
        ref_meta = pickle.load(fh)
    assert meta["data"].keys() == ref_meta["data"].keys()
    assert meta["data"]["nframes"] == 6 and meta["data"]["batch_size"] == 4
    assert meta["dlcrun"]["stride"] == 1 and meta["dlcrun"]["precision"] == "fp32"


@pytest.mark.slow
def test_stride_rows_equal_full_rate_rows(full_rate, openfield_clip: Path, tmp_path: Path) -> None:
    from dlcrun.inference import Sampling

    analyzer, full = full_rate
    strided = analyzer.analyze(openfield_clip, tmp_path, sampling=Sampling(stride=4))
    h5 = strided.files[0]
    assert h5.name == full.files[0].name.replace(".h5", "_stride4.h5")
    ours, everything = read(h5), read(full.files[0])
    assert list(ours.index) == [0, 4], "the index holds the original frame numbers"
    assert ours.columns.equals(everything.columns)
    assert max_diff(ours, everything.loc[[0, 4]]) <= 1e-3
    assert (strided.rows, strided.frames, strided.stride) == (2, 6, 4)
    with open(strided.files[1], "rb") as fh:
        meta = pickle.load(fh)
    assert meta["dlcrun"]["stride"] == 4 and meta["dlcrun"]["frames_decoded"] == 6
    assert meta["data"]["nframes"] == 6


@pytest.fixture(scope="module")
def demo_analyzer(demo_project: Path):
    from dlcrun.engines import pin_model
    from dlcrun.engines.pytorch import PytorchAnalyzer

    return PytorchAnalyzer(pin_model(demo_project), batch_size=4, device="cpu")


@pytest.mark.slow
def test_batches_that_do_not_divide_the_video(demo_analyzer, tmp_path: Path) -> None:
    """Batch sizes 1, 5, 8 and 64 over 23 frames; tabulated and per-frame pre-processing; one
    model stream or three concurrent ones; a table written in chunks of 4 rows: all give the
    same .h5, in frame order."""
    from dlcrun.demo import write_video
    from dlcrun.engines.pytorch_pipeline import Pipeline
    from dlcrun.inference import KeypointTable

    video = write_video(tmp_path / "v.mp4", frames=23)
    results = []
    for batch_size, tabulate, chunk, workers in [
        (1, True, 4096, 1),
        (5, True, 4, 3),
        (1, True, 4096, 3),
        (8, False, 4096, 2),
        (64, False, 7, 1),
    ]:
        stream = demo_analyzer.decoder.open(video)
        h5 = tmp_path / f"out-{batch_size}-{workers}.h5"
        spec = demo_analyzer.spec
        table = KeypointTable(h5, spec.scorer, spec.bodyparts, 1, expected_rows=23, chunk=chunk)
        pipeline = Pipeline(demo_analyzer.runner, "cpu", batch_size, tabulate=tabulate, workers=workers)
        assert pipeline.run(stream, 1, table.add) == 23
        assert table.close() == 23 and stream.decoded == 23
        stream.close()
        results.append(h5)
    first = read(results[0])
    assert list(first.index) == list(range(23))
    for h5 in results[1:]:
        other = read(h5)
        assert other.index.equals(first.index) and other.columns.equals(first.columns)
        assert max_diff(other, first) <= 1e-3
        assert table_attrs(h5) == table_attrs(results[0])


@pytest.mark.slow
def test_every_duration_follows_the_frame_rate(demo_analyzer, tmp_path: Path) -> None:
    from dlcrun.demo import write_video
    from dlcrun.inference import Sampling

    video = write_video(tmp_path / "v.mp4", frames=10, fps=10)
    full = demo_analyzer.analyze(video, tmp_path / "full")
    every = demo_analyzer.analyze(video, tmp_path / "every", sampling=Sampling(every=0.3))
    assert every.stride == 3 and every.files[0].name.endswith("_every0.3s.h5")
    assert list(read(every.files[0]).index) == [0, 3, 6, 9]
    assert max_diff(read(every.files[0]), read(full.files[0]).loc[[0, 3, 6, 9]]) <= 1e-3


@pytest.mark.slow
def test_truncated_video_fails_clearly(demo_analyzer, tmp_path: Path) -> None:
    """A partial copy opens and claims 30 frames in its header but decodes fewer."""
    import cv2

    video = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for i in range(30):
        writer.write(np.full((96, 128, 3), i * 8, np.uint8))
    writer.release()
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    with pytest.raises(InferenceError, match=r"cut.avi: decoded \d+ of the 30 frames .* truncated"):
        demo_analyzer.analyze(video, tmp_path / "out")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 2048)
    with pytest.raises(InferenceError, match="garbage.mp4: cannot open as video"):
        demo_analyzer.analyze(garbage, tmp_path / "out")


def test_buffer_pool_bounds_what_the_decoder_holds() -> None:
    """The decoder can hold at most ``slots`` batches: a third take waits until one comes back."""
    import torch

    from dlcrun.engines.pytorch_pipeline import BufferPool

    pool = BufferPool(2, (4, 8, 8, 3), torch.uint8, pin=False)
    stop = threading.Event()
    assert {pool.take(stop), pool.take(stop)} == {0, 1}
    threading.Timer(0.3, pool.give, args=(1,)).start()
    clock = time.monotonic()
    assert pool.take(stop) == 1 and time.monotonic() - clock >= 0.25
    threading.Timer(0.3, stop.set).start()
    assert pool.take(stop) is None, "a stopped pipeline does not hang on a full pool"


@pytest.mark.slow
def test_videos_per_task_on_the_local_scheduler(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """5 videos, 2 per array index: an array of 3; one record per video; one model load per
    index; a broken video fails alone; a resubmission takes only it; scratch is left empty."""
    from dlcrun import batch
    from dlcrun.ledger import Run
    from dlcrun.manifest import Manifest, write_manifest
    from dlcrun.settings import load_settings

    videos = tiny_videos(tmp_path / "videos", [f"v{i}.mp4" for i in range(5)], frames=6)
    videos[3].write_bytes(videos[3].read_bytes()[:600])  # a partial download
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None,
        project=demo_project,
        dest=str(tmp_path / "kp"),
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        videos_per_task=2,
        stride=2,
    )
    run, _ = batch.start_run(manifest, settings)
    sub = batch.submit(run)
    assert run.array_size(len(sub.indices)) == 3
    assert [run.manifest_indices(sub.number, k) for k in range(3)] == [[0, 1], [2, 3], [4]]
    final = wait_for(run)
    assert final.states == {0: "done", 1: "done", 2: "done", 3: "failed", 4: "done"}
    assert "v3.mp4" in final.records[3].error
    records = final.records
    assert records[0].job_id == records[1].job_id != records[2].job_id == records[3].job_id
    assert records[0].seconds["load"] > 0 and records[1].seconds["load"] == 0, "one model load per index"
    assert records[2].seconds["load"] > 0  # v2 loaded it; v3 failed after
    for i in (0, 1, 2, 4):
        assert records[i].stride == 2 and records[i].frames == 6
        h5 = Path(records[i].outputs[-1].uri)
        assert h5.name.endswith("_stride2.h5") and list(read(h5).index) == [0, 2, 4]
    assert not list((tmp_path / "scratch").iterdir())

    again = batch.resubmit(Run(run.path))
    assert again is not None and again.indices == [3]
    assert wait_for(run).states[3] == "failed"
    assert run.record(3).attempts == 2 and run.record(0).attempts == 1


@pytest.mark.slow
def test_stride_is_part_of_done(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """A full-rate output at the destination is neither taken for, nor overwritten by, a
    strided one; a strided rerun over its own output verifies it and analyses nothing."""
    from dlcrun import batch
    from dlcrun.ledger import Run
    from dlcrun.manifest import Manifest, write_manifest
    from dlcrun.settings import load_settings
    from dlcrun.task import run_indices

    videos = tiny_videos(tmp_path / "videos", ["a.mp4"], frames=7)
    manifest = write_manifest(tmp_path / "batch.txt", Manifest(entries=[str(v) for v in videos]))

    def new_run(name: str, **sampling: object) -> Run:
        settings = load_settings(
            None,
            project=demo_project,
            dest=str(tmp_path / "kp"),
            runs_dir=tmp_path / name,
            scratch=tmp_path / "scratch",
            **sampling,
        )
        return batch.start_run(manifest, settings)[0]

    full = run_indices(new_run("full"), [0])[0]
    full_h5 = Path(full.outputs[-1].uri)
    before = full_h5.stat().st_mtime_ns
    strided = run_indices(new_run("strided", stride=3), [0])[0]
    assert strided.state == "done" and "infer" in strided.seconds, "analysed, not taken from the full one"
    assert Path(strided.outputs[-1].uri) != full_h5 and full_h5.stat().st_mtime_ns == before
    assert list(read(Path(strided.outputs[-1].uri)).index) == [0, 3, 6]

    again = run_indices(new_run("again", stride=3), [0])[0]
    assert again.state == "done" and "infer" not in again.seconds and again.stride == 3
    other = run_indices(new_run("other", stride=2), [0])[0]
    assert "infer" in other.seconds and list(read(Path(other.outputs[-1].uri)).index) == [0, 2, 4, 6]


def test_duration_and_sampling_settings() -> None:
    from dlcrun.errors import ConfigError
    from dlcrun.settings import load_settings, parse_duration

    assert [parse_duration(t) for t in ("10s", "2min", "500ms", "1h", "0.5")] == [10, 120, 0.5, 3600, 0.5]
    assert load_settings(None, every="10s").every_seconds == 10
    with pytest.raises(ConfigError, match="every 'ten': not a duration"):
        load_settings(None, every="ten")
    with pytest.raises(ConfigError, match="stride and every both set"):
        load_settings(None, every="10s", stride=5)
    with pytest.raises(ConfigError, match="precision"):
        load_settings(None, precision="fp8")


def test_unknown_decoder_names_the_known_ones() -> None:
    from dlcrun.decoders import decoder_for
    from dlcrun.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown decoder 'nvdec' \(available here: .*opencv"):
        decoder_for("nvdec")


@pytest.mark.slow
def test_bf16_runs_and_says_so(demo_project: Path, tmp_path: Path) -> None:
    """bf16 autocast: same rows and format; the metadata records the precision."""
    from dlcrun.demo import write_video
    from dlcrun.engines import pin_model
    from dlcrun.engines.pytorch import PytorchAnalyzer

    video = write_video(tmp_path / "v.mp4", frames=6)
    analysis = PytorchAnalyzer(pin_model(demo_project), batch_size=4, device="cpu", precision="bf16").analyze(
        video, tmp_path
    )
    frame = read(analysis.files[0])
    assert list(frame.index) == list(range(6)) and np.isfinite(frame.to_numpy()).all()
    assert frame.dtypes.unique().tolist() == [np.float32]
    with open(analysis.files[1], "rb") as fh:
        assert pickle.load(fh)["dlcrun"]["precision"] == "bf16"
