"""PyAV (FFmpeg) decoding: the frames OpenCV gives DeepLabCut, decoded by FFmpeg's own threads.

OpenCV's FFmpeg backend converts each decoded picture to BGR with swscale (``SWS_BICUBIC``)
and DLC reverses the channels. Here swscale converts straight to RGB with the same flags: at
unchanged size swscale takes the same unscaled YUV->RGB path either way, so the pixels are
equal (checked on yuv420p, yuv422p, yuv444p and full-range MJPEG; ``tests/test_decoders.py``).
Like OpenCV, a display-matrix rotation is applied and undecodable packets are skipped.

Why it exists: FFmpeg decodes with frame/slice threads on every core it is given
(``thread_type = "AUTO"``), and PyAV gives the frame to Python without OpenCV's extra BGR->RGB
pass; see docs/benchmarks.md for when that matters (a GPU waiting on one decoder thread).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dlcrun.decoders import VideoInfo, dlc_crop_box, register
from dlcrun.errors import InferenceError


class PyAVStream:
    def __init__(self, path: Path, crop: tuple[int, int, int, int] | None, threads: int = 0):
        path = Path(path)
        if not path.is_file():
            raise InferenceError(f"{path}: no such video file")
        try:
            self._container = av.open(str(path), mode="r")
        except av.FFmpegError as exc:
            raise InferenceError(
                f"{path.name}: cannot open as video (PyAV: {exc.__class__.__name__}); the file is corrupt or not a video"
            ) from None
        try:
            self._start(path, crop, threads)
        except BaseException:
            self._container.close()
            raise

    def _start(self, path: Path, crop: tuple[int, int, int, int] | None, threads: int) -> None:
        if not self._container.streams.video:
            raise InferenceError(f"{path.name}: cannot open as video (PyAV: no video stream); the file is not a video")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads
        self._stream.thread_count = threads  # 0: FFmpeg's choice, the cores this process may use
        self._threads = threads
        self._rgb = VideoReformatter()  # one swscale context for the stream, not one per frame
        self._packets = self._container.demux(self._stream)
        self._decoded = 0
        self._pending: list[Any] = []
        self._ended = False
        first = self._next_frame()  # decoded now: the rotation (hence width, height) is the frame's
        if first is not None:
            self._pending.append(first)
            self._quarter_turns = round((first.rotation or 0) / 90) % 4
            width, height = first.width, first.height
        else:
            self._quarter_turns = 0
            width, height = self._stream.codec_context.width, self._stream.codec_context.height
        if self._quarter_turns % 2:
            width, height = height, width
        self._box = dlc_crop_box(crop, width, height)
        fps = _fps(self._stream)
        self.info = VideoInfo(
            fps=round(fps, 2),
            width=width,
            height=height,
            header_frames=_header_frames(self._container, self._stream, fps),
        )

    @property
    def decoded(self) -> int:
        return self._decoded

    def frames(self, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        x1, x2, y1, y2 = self._box
        while True:
            frame = self._pending.pop() if self._pending else self._next_frame()
            if frame is None:
                return
            number = self._decoded
            self._decoded += 1
            if number % stride:
                continue
            rgb = self._rgb.reformat(
                frame,
                format="rgb24",
                interpolation="BICUBIC",
                threads=self._threads,  # OpenCV's swscale flags
            ).to_ndarray()
            if self._quarter_turns:
                rgb = np.rot90(rgb, self._quarter_turns)  # counter-clockwise, as OpenCV's auto-orientation
            yield number, np.ascontiguousarray(rgb[y1:y2, x1:x2])

    def _next_frame(self) -> Any:
        """The next decoded frame, or None at the end. A packet the decoder rejects is skipped
        (OpenCV skips it too); a container that fails mid-file ends the stream, and the short
        ``decoded`` count then shows it."""
        while not self._pending:
            if self._ended:
                return None
            try:
                packet = next(self._packets)
            except (StopIteration, av.FFmpegError):
                packet, self._ended = None, True
            try:
                self._pending = list(reversed(self._stream.codec_context.decode(packet)))
            except av.FFmpegError:
                continue
            if packet is None or packet.size == 0:  # demux's last packet flushes the decoder
                self._ended = True
        return self._pending.pop()

    def close(self) -> None:
        self._pending.clear()
        self._container.close()


def _fps(stream: Any) -> float:
    """OpenCV's CAP_PROP_FPS: FFmpeg's guessed frame rate, else 1 / the codec's time base."""
    rate = stream.guessed_rate
    if rate and float(rate) > 1e-6:
        return float(rate)
    base = stream.codec_context.time_base
    return 1.0 / float(base) if base else 0.0


def _header_frames(container: Any, stream: Any, fps: float) -> int:
    """OpenCV's CAP_PROP_FRAME_COUNT: the stream's frame count, else duration x fps rounded."""
    if stream.frames:
        return int(stream.frames)
    seconds = (container.duration or 0) / av.time_base
    if seconds < 1e-6 and stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    return int(math.floor(seconds * fps + 0.5))


class PyAVDecoder:
    name = "pyav"

    def open(self, path: Path, crop: tuple[int, int, int, int] | None = None) -> PyAVStream:
        return PyAVStream(path, crop)


@register("pyav")
def _factory() -> PyAVDecoder:
    return PyAVDecoder()
