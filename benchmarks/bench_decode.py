"""Decoder-only throughput: decode + RGB conversion, frames/s, for each dlcrun decoder.

What a model on a fast GPU would be fed at best. Each decoder reads the same frames of the same
video, alternating (opencv, pyav, opencv, ...) so that a change of load on a shared machine
hits both; each at one decoding thread and at FFmpeg's/OpenCV's automatic thread count (the
cores this process may use). Frames/s = frames handed to the caller per second of wall time;
opening the file is excluded.

    PYTHONPATH=src python benchmarks/bench_decode.py --video ../shared/fixtures/openfield/videos/m3v1mp4.mp4 \
        --frames 600 --rounds 3 [--pix-fmt yuv420p]

``--pix-fmt`` first re-encodes the frames with libx264 in that pixel format (cameras write
yuv420p; the fixture is yuv444p). Before timing, the first frames of both decoders are compared
(``--check N``): run it on a video of your own cameras to see that pyav gives OpenCV's pixels.

Not part of the test suite; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

Frames = Callable[[Path, int], Iterator[np.ndarray]]


def opencv_frames(threads: int) -> Frames:
    """dlcrun's OpenCV stream; with ``threads`` set, the same read + cvtColor loop on a capture
    opened with that many FFmpeg threads (OpenCV's default is one per CPU)."""
    import cv2

    def frames(video: Path, count: int) -> Iterator[np.ndarray]:
        if threads == 0:
            from dlcrun.decoders import decoder_for

            stream = decoder_for("opencv").open(video)
            for _, (_, rgb) in zip(range(count), stream.frames()):
                yield rgb
            stream.close()
            return
        previous = cv2.getNumThreads()
        cv2.setNumThreads(threads)  # cvtColor's threads too
        cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
        try:
            for _ in range(count):
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
            cv2.setNumThreads(previous)

    return frames


def pyav_frames(threads: int) -> Frames:
    def frames(video: Path, count: int) -> Iterator[np.ndarray]:
        from dlcrun.decoders.pyav import PyAVStream

        stream = PyAVStream(video, None, threads=threads)
        for _, (_, rgb) in zip(range(count), stream.frames()):
            yield rgb
        stream.close()

    return frames


def rate(frames: Frames, video: Path, count: int) -> float:
    it = frames(video, count)
    first = next(it)  # the file is open and the first frame decoded: start the clock
    start, n = time.perf_counter(), 0
    checksum = int(first[0, 0, 0])
    for rgb in it:
        n += 1
        checksum += int(rgb[0, 0, 0])
    return n / (time.perf_counter() - start)


def reencode(video: Path, frames: int, pix_fmt: str, dst: Path) -> Path:
    import av

    with av.open(str(video)) as src, av.open(str(dst), "w") as out:
        stream = src.streams.video[0]
        enc = out.add_stream("libx264", rate=stream.guessed_rate or 30)
        enc.width, enc.height, enc.pix_fmt = stream.width, stream.height, pix_fmt
        for i, frame in enumerate(src.decode(stream)):
            if i == frames:
                break
            out.mux(enc.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(enc.encode())
    return dst


def compare(video: Path, count: int) -> str:
    """Max and mean absolute difference of pyav's RGB frames from opencv's (DLC's)."""
    diffs = [
        np.abs(a.astype(np.int16) - b) for a, b in zip(opencv_frames(0)(video, count), pyav_frames(0)(video, count))
    ]
    stacked = np.stack(diffs)
    return f"{len(diffs)} frames: pyav - opencv max |diff| {stacked.max()}, mean {stacked.mean():.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decoders", default="opencv,pyav")
    parser.add_argument("--threads", default="1,0", help="decoder threads to try; 0 = automatic")
    parser.add_argument("--pix-fmt", help="re-encode the frames with libx264 in this pixel format first")
    parser.add_argument("--check", type=int, default=100, help="compare this many frames first (0: none)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dlcrun-decode-"))
    try:
        if args.pix_fmt:
            args.video = reencode(
                args.video, args.frames + 1, args.pix_fmt, tmp / f"{args.video.stem}-{args.pix_fmt}.mp4"
            )
        if args.check:
            print(compare(args.video, args.check))
        measure(args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace) -> None:
    makers = {"opencv": opencv_frames, "pyav": pyav_frames}
    configs = [(d, int(t)) for t in args.threads.split(",") for d in args.decoders.split(",")]
    results: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    load = []
    for _ in range(args.rounds):
        for decoder, threads in configs:
            results[(decoder, threads)].append(rate(makers[decoder](threads), args.video, args.frames))
            load.append(os.getloadavg()[0])
    print(
        f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; "
        f"{args.video.name}, {args.frames} frames x {args.rounds} rounds; load average {min(load):.1f}-{max(load):.1f}"
    )
    for (decoder, threads), fps in results.items():
        label = "auto" if threads == 0 else str(threads)
        print(
            f"{decoder:7s} threads={label:4s} median {statistics.median(fps):7.1f} frames/s  "
            f"(rounds: {', '.join(f'{f:.1f}' for f in fps)})"
        )


if __name__ == "__main__":
    main()
