"""OpenCV (FFmpeg) decoding, frame for frame what DeepLabCut's ``VideoReader`` returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dlcrun.decoders import VideoInfo, dlc_crop_box, register
from dlcrun.errors import InferenceError


class OpenCVStream:
    def __init__(self, path: Path, crop: tuple[int, int, int, int] | None):
        import cv2

        if not Path(path).is_file():
            raise InferenceError(f"{path}: no such video file")
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise InferenceError(
                f"{Path(path).name}: cannot open as video (OpenCV); the file is corrupt or not a video"
            )
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._box = dlc_crop_box(crop, width, height)
        self.info = VideoInfo(
            fps=round(self._cap.get(cv2.CAP_PROP_FPS), 2),  # as DLC's VideoReader rounds it
            width=width,
            height=height,
            header_frames=int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
        self._decoded = 0

    @property
    def decoded(self) -> int:
        return self._decoded

    def frames(self, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        x1, x2, y1, y2 = self._box
        while True:
            number = self._decoded
            if number % stride:
                if not self._cap.grab():
                    return
                self._decoded += 1
                continue
            ok, bgr = self._cap.read()
            if not ok:
                return
            self._decoded += 1
            yield number, cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2RGB)  # = DLC's frame[..., ::-1]

    def close(self) -> None:
        self._cap.release()


class OpenCVDecoder:
    name = "opencv"

    def open(self, path: Path, crop: tuple[int, int, int, int] | None = None) -> OpenCVStream:
        return OpenCVStream(path, crop)


@register("opencv")
def _factory() -> OpenCVDecoder:
    return OpenCVDecoder()
