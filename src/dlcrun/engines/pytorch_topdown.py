"""A top-down model's frame loop: DLC's detector over a chunk of frames, then DLC's pose model
over the crops of every detection in that chunk.

DLC's ``analyze_videos`` runs the detector over the whole video, keeps every frame's boxes, then
decodes the video a second time for the pose model. Here a decoder thread fills chunks of
frames (a few hundred MB at most) while the main thread runs both of DLC's own runners on the
previous chunk: the detector in batches of ``detector_batch_size`` frames, then the pose model
in batches of ``batch_size`` crops, crops of all detections of the chunk's frames together
(DLC's ``InferenceRunner`` fills its batches across frames). Pre- and post-processing are the
runners' own, so boxes and keypoints are DLC's for the same frames; the video is decoded once.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable
from typing import Any

from dlcrun.decoders import VideoStream
from dlcrun.engines.pytorch_pipeline import next_from
from dlcrun.errors import InferenceError

CHUNK_BYTES = 256 * 1024 * 1024  # decoded frames held per chunk (two chunks in flight)
_END = object()


class TopDownPipeline:
    """DLC's detector runner then DLC's pose runner, a chunk of frames at a time."""

    def __init__(self, detector: Any, pose: Any, detector_batch_size: int, max_chunk: int = 512):
        self.detector = detector
        self.pose = pose
        self.detector_batch_size = detector_batch_size
        self.max_chunk = max_chunk

    def chunk_frames(self, frame_bytes: int) -> int:
        """Frames per chunk: whole detector batches, within CHUNK_BYTES and ``max_chunk``."""
        fit = max(1, min(self.max_chunk, CHUNK_BYTES // max(1, frame_bytes)))
        batch = max(1, self.detector_batch_size)
        return max(batch, fit // batch * batch)

    def run(self, stream: VideoStream, stride: int, sink: Callable[..., None], progress: Any = None) -> int:
        """Analyse every ``stride``-th frame; ``sink(frames, predictions)`` gets each chunk's
        DLC post-processed predictions in frame order. Returns frames analysed."""
        ready: queue.Queue[Any] = queue.Queue(maxsize=1)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(stream, stride, ready, stop), name="dlcrun-decoder", daemon=True
        )
        producer.start()
        analysed = 0
        try:
            while True:
                item = next_from(ready, producer)
                if item is _END:
                    return analysed
                if isinstance(item, BaseException):
                    raise item
                numbers, frames = item
                boxes = self.detector.inference(images=frames)
                if len(boxes) != len(frames):
                    raise InferenceError(f"the detector returned {len(boxes)} results for {len(frames)} frames")
                predictions = self.pose.inference(images=[(f, copy.deepcopy(b)) for f, b in zip(frames, boxes)])
                if len(predictions) != len(frames):
                    raise InferenceError(f"the pose model returned {len(predictions)} results for {len(frames)} frames")
                sink(numbers, predictions)
                analysed += len(numbers)
                if progress:
                    progress(analysed)
        finally:
            stop.set()
            producer.join(timeout=10)

    def _put(self, ready: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, stream: VideoStream, stride: int, ready: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            numbers: list[int] = []
            frames: list[Any] = []
            size = 0
            for number, rgb in stream.frames(stride):
                if not size:
                    size = self.chunk_frames(rgb.nbytes)
                numbers.append(number)
                frames.append(rgb)
                if len(frames) == size:
                    if not self._put(ready, (numbers, frames), stop):
                        return
                    numbers, frames = [], []
            if frames and not self._put(ready, (numbers, frames), stop):
                return
            self._put(ready, _END, stop)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(ready, exc, stop)
