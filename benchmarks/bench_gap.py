"""How long the model waits between consecutive videos of one array index (``--videos-per-task``).

Runs ``task.run_indices`` over K videos with one loaded model, exactly as an array index does
(local storage: fetch, analyse, verify, publish, record), and times every forward pass of
DLC's model with forward hooks. The gap between the last forward of video i and the first of
video i+1 is the time the accelerator would sit idle there: closing the ``.h5``, DLC's
metadata, publishing, opening the next video and decoding its first batch.

    PYTHONPATH=src python benchmarks/bench_gap.py --fixture ../shared/fixtures/openfield \
        --videos 4 --frames 6 --batch-size 2 --device cpu

On CUDA the hooks see kernel launches, not completions; ``torch.cuda.synchronize`` in the hooks
keeps the intervals true (and costs a little throughput). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=Path("../shared/fixtures/openfield"))
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=6, help="frames per video")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoder", default="opencv")
    parser.add_argument(
        "--gpu-fps",
        type=float,
        default=2500.0,
        help="frame rate used to express the gap as a fraction of a one-hour 30 fps video",
    )
    args = parser.parse_args()

    import torch
    from bench_inference import build_fixture_project, cut

    from dlcrun import batch
    from dlcrun.engines import open_analyzer, pin_model
    from dlcrun.manifest import Manifest, write_manifest
    from dlcrun.settings import load_settings
    from dlcrun.task import run_indices

    work = Path(tempfile.mkdtemp(prefix="dlcrun-gap-"))
    project = build_fixture_project(args.fixture, work / "project")
    source = args.fixture / "videos" / "m3v1mp4.mp4"
    (work / "videos").mkdir()
    videos = [cut(source, args.frames, work / "videos" / f"v{i}.mp4") for i in range(args.videos)]
    manifest = write_manifest(work / "batch.txt", Manifest(entries=[str(v) for v in videos]))
    settings = load_settings(
        None,
        project=project,
        dest=str(work / "out"),
        runs_dir=work / "runs",
        device=args.device,
        batch_size=args.batch_size,
        videos_per_task=args.videos,
        decoder=args.decoder,
    )
    run, _ = batch.start_run(manifest, settings)
    analyzer = open_analyzer(pin_model(project), args.batch_size, args.device, decoder=args.decoder)

    intervals: list[tuple[float, float]] = []
    started: dict[int, float] = {}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def before(module: torch.nn.Module, _inputs: object) -> None:
        sync()
        started[id(_inputs)] = time.perf_counter()

    def after(module: torch.nn.Module, _inputs: object, _outputs: object) -> None:
        sync()
        intervals.append((started.pop(id(_inputs)), time.perf_counter()))

    model = analyzer.pipeline.model
    model.register_forward_pre_hook(before)
    model.register_forward_hook(after)
    records = run_indices(run, list(range(args.videos)), analyzer)
    assert all(r.state == "done" for r in records), [r.state for r in records]

    per_video = args.frames // args.batch_size + bool(args.frames % args.batch_size)
    intervals.sort()
    assert len(intervals) == per_video * args.videos, (len(intervals), per_video * args.videos)
    # On CPU several model streams overlap (one per core): a video ends with the last of its
    # forwards to finish, and the model is idle only where no forward runs at all.
    videos_iv = [intervals[v * per_video : (v + 1) * per_video] for v in range(args.videos)]
    gaps = [videos_iv[v][0][0] - max(e for _, e in videos_iv[v - 1]) for v in range(1, args.videos)]
    busy = [_union(iv) / (max(e for _, e in iv) - iv[0][0]) for iv in videos_iv]
    forward = statistics.median(e - s for s, e in intervals)
    hour = 30 * 3600 / args.gpu_fps
    print(
        f"device {args.device}, decoder {args.decoder}, batch {args.batch_size}, {args.videos} videos x {args.frames} frames (640x480)"
    )
    print(f"forward pass (median): {forward * 1e3:.1f} ms")
    print("model busy within each video: " + ", ".join(f"{b:.1%}" for b in busy))
    print("gaps between videos: " + ", ".join(f"{g * 1e3:.1f} ms" for g in gaps))
    print(
        f"as a fraction of a one-hour 30 fps video at {args.gpu_fps:.0f} frames/s ({hour:.0f} s): "
        f"{max(gaps) / hour:.3%} (largest gap)"
    )


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


if __name__ == "__main__":
    main()
