"""A short labelled clip of a video's worst-tracked stretch, drawn as DLC draws its labelled videos.

``--qc-clips`` asks each array index, while its video is still on scratch, for the few seconds
that ``quality.worst`` names, so a report can show what "worst" looked like without anyone
fetching the video. The keypoints are drawn by DLC's own ``CreateVideo`` (what
``deeplabcut.create_labeled_video`` runs in its default fast mode), with the project's
``pcutoff``, ``dotsize`` and ``colormap``, no skeleton, coloured by bodypart; only the frames fed
to it and the file it writes are dlcrun's:

- frames are decoded from the start and kept from the window's first row (seeking is inexact on
  variable-GOP H.264, and a wrong frame under the right keypoints would mislead); with a stride,
  the clip holds the analysed frames only, played at ``fps / stride``.
- the clip is H.264 in MP4 (PyAV's libx264, which browsers play), else OpenCV's ``mp4v``.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dlcrun.errors import InferenceError


def write_clip(
    video: Path,
    h5: Path,
    worst: dict[str, Any],
    cfg: dict[str, Any],
    crop: tuple[int, int, int, int] | None,
    out: Path,
    stride: int = 1,
) -> Path:
    """Write frames ``worst["start"]..worst["end"]`` of ``video`` with the keypoints of ``h5``
    drawn on them to ``out``; ``crop`` is DLC's (x1, x2, y1, y2) cropping of the analysis (its
    keypoints are in the cropped frame; they are drawn on the whole one, as DLC does)."""
    import pandas as pd
    from deeplabcut.utils.make_labeled_video import CreateVideo

    start, end = int(worst["start"]), int(worst["end"])
    df = pd.read_hdf(h5, "df_with_missing", where=f"index >= {start} & index <= {end}")
    if df.empty:
        raise InferenceError(f"{h5.name}: no rows in frames {start}-{end} for the clip")
    out.parent.mkdir(parents=True, exist_ok=True)
    clip = _window_class()(video, out, [int(i) for i in df.index], stride)
    try:
        width, height = clip.width, clip.height
        x1, x2, y1, y2 = crop if crop is not None else (0, width, 0, height)
        bodyparts = list(df.columns.get_level_values("bodyparts").unique())
        CreateVideo(
            clip,
            df,
            cfg.get("pcutoff", 0.6),
            cfg.get("dotsize", 8),
            cfg.get("colormap", "rainbow"),
            bodyparts,
            0,  # trailpoints
            (x1, x2, y1, y2) != (0, width, 0, height),
            x1,
            x2,
            y1,
            y2,
            None,  # no skeleton: create_labeled_video's default
            "k",
            False,
            False,  # displaycropped
            "bodypart",
        )
    finally:
        clip.close()
    if clip.written != len(df):
        out.unlink(missing_ok=True)
        raise InferenceError(f"{video.name}: the clip got {clip.written} of {len(df)} frames ({start}-{end})")
    return out


@functools.cache
def _window_class() -> type:
    """DLC's OpenCV video processor, reading only the window's frames and writing H.264 (built on
    first use: DeepLabCut is imported only where a clip is made)."""
    from deeplabcut.utils.video_processor import VideoProcessorCV

    class Window(VideoProcessorCV):
        def __init__(self, video: Path, out: Path, numbers: list[int], stride: int):
            self._numbers = list(numbers)
            self._position = 0  # the frame the reader decodes next
            self._writer: Any = None
            self._out = out
            self.written = 0
            super().__init__(fname=str(video))
            if self.vid is None or not self.vid.isOpened():
                raise InferenceError(f"{video.name}: cannot open it for the clip")
            self.nframes = len(self._numbers)
            self._rate = max(float(self.fps or 30.0) / max(stride, 1), 1.0)

        def _read_frame(self) -> np.ndarray | None:
            if not self._numbers:
                return None
            target = self._numbers.pop(0)
            while self._position < target:
                if not self.vid.grab():
                    return None
                self._position += 1
            ok, frame = self.vid.read()
            self._position += 1
            return np.flip(frame, 2) if ok else None  # RGB, as VideoProcessorCV reads

        def save_frame(self, frame: np.ndarray | None) -> None:
            if frame is None:
                return
            if self._writer is None:
                self._writer = _writer(self._out, frame.shape[1], frame.shape[0], self._rate)
            self._writer.write(frame)
            self.written += 1

        def close(self) -> None:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            super().close()

    return Window


def _writer(path: Path, width: int, height: int, fps: float) -> Any:
    try:
        return _H264(path, width, height, fps)
    except Exception:  # noqa: BLE001 - no PyAV or no libx264 here: OpenCV's mp4v still plays in players
        return _Mp4v(path, width, height, fps)


class _H264:
    """RGB frames to H.264 in MP4 (yuv420p, so odd sizes get one black row or column)."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        import av

        self.container = av.open(str(path), mode="w")
        try:
            self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            self.stream.width, self.stream.height = width + width % 2, height + height % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "23", "preset": "veryfast"}
        except Exception:
            self.container.close()
            path.unlink(missing_ok=True)
            raise
        self.pad = ((0, height % 2), (0, width % 2), (0, 0))

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.pad(rgb, self.pad)), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class _Mp4v:
    def __init__(self, path: Path, width: int, height: int, fps: float):
        import cv2

        self.out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), True)
        if not self.out.isOpened():
            raise InferenceError(f"{path.name}: neither H.264 (PyAV) nor mp4v (OpenCV) can be written here")

    def write(self, rgb: np.ndarray) -> None:
        self.out.write(np.ascontiguousarray(np.flip(rgb, 2)))

    def close(self) -> None:
        self.out.release()
