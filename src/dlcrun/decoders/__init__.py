"""The decoder seam: where frames come from, in order, as RGB uint8 arrays.

Every backend decodes sequentially and never seeks: seeking is inexact on variable-GOP
H.264, and a strided pass must keep the original frame numbers. Skipped frames are decoded
but not converted (``grab`` without ``retrieve`` in OpenCV), so a stride saves the model's
time and the colour conversion, not the decode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dlcrun.errors import ConfigError, InferenceError
from dlcrun.settings import DECODERS


@dataclass(frozen=True)
class VideoInfo:
    """What the container's header says: full frame size before any crop (as DLC's metadata
    records it); the frame count can lie (a truncated file), ``VideoStream.decoded`` cannot."""

    fps: float
    width: int
    height: int
    header_frames: int


class VideoStream(Protocol):
    info: VideoInfo

    def frames(self, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, cropped RGB uint8 frame)`` for frames 0, stride, 2*stride, ..."""
        ...

    @property
    def decoded(self) -> int:
        """Frames decoded so far, kept or skipped: after the last one, the true frame count."""
        ...

    def close(self) -> None: ...


class Decoder(Protocol):
    name: str

    def open(self, path: Path, crop: tuple[int, int, int, int] | None = None) -> VideoStream:
        """Open ``path``; ``crop`` is DLC's (x1, x2, y1, y2) in pixels. Raises InferenceError."""
        ...


_REGISTRY: dict[str, Callable[[], Decoder]] = {}


def register(name: str) -> Callable[[Callable[[], Decoder]], Callable[[], Decoder]]:
    def wrap(factory: Callable[[], Decoder]) -> Callable[[], Decoder]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def known_decoder(name: str) -> None:
    """``name`` must be a decoder dlcrun has (settings.DECODERS), installed here or not."""
    if name not in DECODERS:
        raise ConfigError(f"unknown decoder '{name}' (dlcrun has: {', '.join(DECODERS)})")


def check_decoder(name: str) -> None:
    """``name`` must be a decoder dlcrun has, and installed here (where indices run here)."""
    known_decoder(name)
    decoder_for(name)


def available() -> list[str]:
    _load_backends()
    return sorted(_REGISTRY)


def decoder_for(name: str) -> Decoder:
    _load_backends()
    try:
        return _REGISTRY[name]()
    except KeyError:
        if name in DECODERS:
            raise ConfigError(
                f"decoder '{name}' is not installed here (available here: {', '.join(available())})"
            ) from None
        raise ConfigError(f"unknown decoder '{name}' (available here: {', '.join(available())})") from None


def _load_backends() -> None:
    from dlcrun.decoders import opencv  # noqa: F401  (registers on import)

    try:  # optional: registers only where PyAV is installed
        from dlcrun.decoders import pyav  # noqa: F401
    except ImportError:
        pass


def dlc_crop_box(crop: tuple[int, int, int, int] | None, width: int, height: int) -> tuple[int, int, int, int]:
    """DLC's crop box, through the same relative round trip ``VideoReader.set_bbox`` makes."""
    if crop is None:
        return 0, width, 0, height
    x1, x2, y1, y2 = crop
    if x2 <= x1 or y2 <= y1:
        raise InferenceError(f"cropping {crop} is empty; check x1 < x2 and y1 < y2 in config.yaml")
    rel = [min(x1 / width, 1), min(x2 / width, 1), min(y1 / height, 1), min(y2 / height, 1)]
    return int(width * rel[0]), int(width * rel[1]), int(height * rel[2]), int(height * rel[3])
