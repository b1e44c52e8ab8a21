"""How far bf16/fp16 (and channels_last) move keypoints from fp32, per bodypart.

    python benchmarks/precision.py --project TRAINED_PROJECT --video VIDEO --frames 40

Use a trained model: random weights give flat heatmaps whose argmax says nothing about how a
real model's keypoints move. Prints, per setting and bodypart, the mean and max Euclidean
distance (px) to the fp32 keypoints and the max likelihood difference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--snapshot", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--settings", default="fp32:nchw,bf16,fp16", help="precision[:nchw], comma separated")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dlcrun-precision-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    import numpy as np
    import pandas as pd
    from bench_inference import cut  # noqa: E402  (same folder)

    from dlcrun.engines import pin_model
    from dlcrun.engines.pytorch import PytorchAnalyzer

    video = cut(args.video, args.frames, work / "clip.mp4") if args.frames else args.video
    spec = pin_model(args.project, snapshot=args.snapshot)
    print(f"{spec.scorer}, {Path(spec.snapshot).name}, {args.frames or 'all'} frames of {args.video.name}")

    def analyse(precision: str, channels_last: bool) -> tuple[pd.DataFrame, float]:
        analyzer = PytorchAnalyzer(
            spec, batch_size=args.batch_size, device=args.device, precision=precision, channels_last=channels_last
        )
        clock = time.monotonic()
        analysis = analyzer.analyze(video, work / f"{precision}-{channels_last}")
        return pd.read_hdf(analysis.files[0]), time.monotonic() - clock

    reference, ref_seconds = analyse("fp32", True)
    confidence = reference.xs("likelihood", axis=1, level="coords").mean()
    print(
        f"\nfp32 channels_last (reference): {len(reference) / ref_seconds:.2f} frames/s; mean likelihood "
        + ", ".join(f"{bp} {v:.2f}" for (_, bp), v in confidence.items())
    )
    print("\n| setting | bodypart | mean px | max px | max likelihood diff | frames/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for setting in args.settings.split(","):
        precision, _, layout = setting.partition(":")
        ours, seconds = analyse(precision, layout != "nchw")
        for bodypart in reference.columns.get_level_values("bodyparts").unique():
            a = reference.xs(bodypart, axis=1, level="bodyparts")
            b = ours.xs(bodypart, axis=1, level="bodyparts")
            dist = np.hypot(
                a.xs("x", axis=1, level="coords").to_numpy() - b.xs("x", axis=1, level="coords").to_numpy(),
                a.xs("y", axis=1, level="coords").to_numpy() - b.xs("y", axis=1, level="coords").to_numpy(),
            )
            lik = np.abs(
                a.xs("likelihood", axis=1, level="coords").to_numpy()
                - b.xs("likelihood", axis=1, level="coords").to_numpy()
            )
            print(
                f"| {setting} | {bodypart} | {dist.mean():.3g} | {dist.max():.3g} | {lik.max():.2g} "
                f"| {len(ours) / seconds:.2f} |"
            )


if __name__ == "__main__":
    main()
