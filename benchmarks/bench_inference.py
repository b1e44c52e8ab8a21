"""dlcrun's engine against deeplabcut.analyze_videos: same snapshot, same video, one process.

Runs are alternated (DLC, dlcrun, DLC, dlcrun, ...) so that a machine whose load changes
during the benchmark penalises both alike, and each side is timed by its own inference clock
(DLC: ``run_duration`` in its _meta.pickle; dlcrun: the engine's run), model loading
excluded on both sides. analyze_videos is tried at several batch sizes and compared at its
fastest. Keypoints of every dlcrun fp32 run are checked against DLC's.

    python benchmarks/bench_inference.py --project PROJECT --video VIDEO --frames 40
    python benchmarks/bench_inference.py --fixture ../shared/fixtures/openfield --frames 40

Not part of the test suite (minutes of compute); results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")


def build_fixture_project(fixture: Path, workdir: Path) -> Path:
    """The openfield fixture as a DLC 3 project with a random-initialised ResNet-50 snapshot
    (inference cost does not depend on the weights)."""
    from dlcrun.demo import project_from_example

    return project_from_example(fixture, workdir)


def cut(video: Path, frames: int, dst: Path) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        out.write(frame)
    out.release()
    cap.release()
    return dst


class GpuBusy:
    """Fraction of samples (10 Hz) in which the GPU was busy, via NVML; None without it."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        import torch

        if torch.cuda.is_available():
            try:
                torch.cuda.utilization()
            except Exception:  # no pynvml: report n/a
                return self
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        import torch

        while not self._stop.wait(0.1):
            self.samples.append(torch.cuda.utilization() / 100)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def fraction(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def run_dlc(config: Path, video: Path, batch_size: int, device: str, out: Path) -> tuple[float, Path, Any]:
    import deeplabcut

    shutil.rmtree(out, ignore_errors=True)
    with GpuBusy() as busy:
        deeplabcut.analyze_videos(
            str(config), [str(video)], batch_size=batch_size, destfolder=str(out), device=device, overwrite=True
        )
    meta = next(out.glob("*_meta.pickle"))
    with open(meta, "rb") as fh:
        seconds = pickle.load(fh)["data"]["run_duration"]
    return seconds, next(out.glob("*.h5")), busy.fraction


def run_ours(analyzer: Any, video: Path, out: Path) -> tuple[float, Path, Any]:
    shutil.rmtree(out, ignore_errors=True)
    with GpuBusy() as busy:
        analysis = analyzer.analyze(video, out)
    return analysis.seconds, analysis.files[0], busy.fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="DLC project folder (with a trained PyTorch shuffle)")
    parser.add_argument("--fixture", type=Path, help="or: build a project from the openfield fixture")
    parser.add_argument("--video", type=Path, help="video (default: the fixture's)")
    parser.add_argument("--frames", type=int, default=40, help="cut the video to its first N frames (0: whole)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dlc-batch-sizes", default="1,4,8", help="analyze_videos batch sizes to try")
    parser.add_argument("--batch-sizes", default="1,4,8", help="dlcrun batch sizes to try")
    parser.add_argument("--precisions", default="fp32", help="dlcrun precisions to try, e.g. fp32,bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--decoders", default="opencv", help="dlcrun decoders to try, e.g. opencv,pyav")
    args = parser.parse_args()

    import torch

    from dlcrun.engines import pin_model
    from dlcrun.engines.pytorch import PytorchAnalyzer
    from dlcrun.inference import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="dlcrun-bench-"))
    try:
        if args.project is None:
            if args.fixture is None:
                parser.error("give --project or --fixture")
            args.project = build_fixture_project(args.fixture.resolve(), work / "project")
        video = args.video or next((args.fixture or Path()).glob("videos/*.mp4"))
        if args.frames:
            video = cut(video, args.frames, work / f"{video.stem}-{args.frames}.mp4")
        device = resolve_device(args.device)
        spec = pin_model(args.project)
        config = Path(spec.project) / "config.yaml"
        import cv2

        cap = cv2.VideoCapture(str(video))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        cap.release()

        ours = {
            (b, p, d): PytorchAnalyzer(spec, batch_size=b, device=device, precision=p, decoder=d)
            for d in args.decoders.split(",")
            for p in args.precisions.split(",")
            for b in map(int, args.batch_sizes.split(","))
        }
        dlc_sizes = list(map(int, args.dlc_batch_sizes.split(",")))
        times: dict[str, list[float]] = {}
        busy: dict[str, list[float]] = {}
        worst_px = 0.0
        import numpy as np
        import pandas as pd

        print(f"{spec.scorer} ({spec.net_type}) on {device}, {frames} frames {size}, {torch.get_num_threads()} threads")
        for r in range(args.rounds):
            for b in dlc_sizes:
                key = f"analyze_videos batch {b}"
                seconds, ref_h5, gpu = run_dlc(config, video, b, device, work / "dlc")
                times.setdefault(key, []).append(seconds)
                if gpu is not None:
                    busy.setdefault(key, []).append(gpu)
                reference = pd.read_hdf(ref_h5)
                for (ob, p, d), analyzer in ours.items():
                    key = f"dlcrun batch {ob} {p}" + (f" {d}" if d != "opencv" else "")
                    seconds, h5, gpu = run_ours(analyzer, video, work / "ours")
                    times.setdefault(key, []).append(seconds)
                    if gpu is not None:
                        busy.setdefault(key, []).append(gpu)
                    if p == "fp32":
                        diff = np.abs(pd.read_hdf(h5).to_numpy(float) - reference.to_numpy(float)).max()
                        worst_px = max(worst_px, float(diff))
            print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)

        fps = {k: frames / statistics.median(v) for k, v in times.items()}
        best_dlc = max((k for k in fps if k.startswith("analyze")), key=fps.get)
        print(f"\n| run | median fps | vs {best_dlc} | GPU busy |")
        print("| --- | ---: | ---: | ---: |")
        for k, v in fps.items():
            gpu = f"{statistics.mean(busy[k]):.0%}" if busy.get(k) else "n/a"
            print(f"| {k} | {v:.2f} | {v / fps[best_dlc]:.2f}x | {gpu} |")
        print(f"\nfp32 keypoints vs analyze_videos: max abs diff {worst_px:.2e} (x, y, likelihood)")
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
            + (f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else "")
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
