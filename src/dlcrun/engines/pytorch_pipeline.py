"""The PyTorch engine's batched forward pass: a decoder thread feeds DLC's model through a buffer pool.

DLC's ``analyze_videos`` decodes, pre-processes, runs the model and post-processes frame by
frame (a small producer thread at best), and keeps every prediction until the video ends.
Here a decoder thread decodes and fills whole batches into a fixed pool of (pinned, on CUDA)
host buffers; the main thread copies a batch to the device on a side stream, runs the model
and hands the predictions to DLC's own post-processor while the next batch decodes. Host RAM
is the pool (``slots`` batches), whatever the video's length.

Pre-processing is DLC's: for the usual bottom-up model (load, normalise, to tensor) the
per-pixel normalisation is tabulated once by running DLC's own pre-processor on every uint8
value, checked bit for bit against DLC on the first frame, and applied on the device to uint8
batches (four times less to copy); any other pre-processor runs per frame, as DLC runs it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlcrun.decoders import VideoStream
from dlcrun.errors import InferenceError

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
_END = object()


@dataclass
class Batch:
    seq: int  # order in the video
    frames: list[int]  # original frame numbers
    slot: int  # buffer in the pool
    contexts: list[dict[str, Any]]  # DLC pre-processing context, one per frame


Sink = Callable[[list[int], list[dict[str, np.ndarray]]], None]


class BufferPool:
    """``slots`` reusable host buffers; taking one blocks, which is what bounds host RAM.

    On CUDA a buffer goes back to the pool with the event of its host-to-device copy and is
    reused only once that copy has finished.
    """

    def __init__(self, slots: int, shape: tuple[int, ...], dtype: torch.dtype, pin: bool):
        self.buffers = [torch.empty(shape, dtype=dtype, pin_memory=pin) for _ in range(slots)]
        self._events: list[Any] = [None] * slots
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(slots):
            self._free.put(i)

    def take(self, stop: threading.Event) -> int | None:
        while not stop.is_set():
            try:
                slot = self._free.get(timeout=0.1)
            except queue.Empty:
                continue
            if self._events[slot] is not None:
                self._events[slot].synchronize()
            return slot
        return None

    def give(self, slot: int, event: Any = None) -> None:
        self._events[slot] = event
        self._free.put(slot)


class Pipeline:
    """One loaded model with DLC's pre/post-processors, run over video streams.

    ``runner`` is DLC's ``PoseInferenceRunner`` (its model, preprocessor and postprocessor are
    used; its own batching loop is not).
    """

    def __init__(
        self,
        runner: Any,
        device: str,
        batch_size: int,
        precision: str = "fp32",
        channels_last: bool = True,
        slots: int = 3,
        tabulate: bool = True,
        workers: int | None = None,
    ):
        if precision not in PRECISIONS:
            raise InferenceError(f"precision '{precision}' unknown (use fp32, fp16 or bf16)")
        self.model = runner.model
        self.preprocessor = runner.preprocessor
        self.postprocessor = runner.postprocessor
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.precision = precision
        self.channels_last = channels_last
        self.slots = max(2, slots)
        self.cuda = self.device.type == "cuda"
        self.tabulate = tabulate
        if workers is None:  # CPU: one single-threaded model stream per core given to torch
            workers = 1 if self.device.type != "cpu" else torch.get_num_threads()
        self.workers = max(1, workers) if self.device.type == "cpu" else 1
        self._lut: torch.Tensor | None = None
        self._lut_device: torch.Tensor | None = None
        self._copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.eval()

    # -- pre-processing -------------------------------------------------------------------

    def _dlc_preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        tensor, context = self.preprocessor(rgb, {})
        if tensor.ndim != 4 or tensor.shape[0] != 1:
            raise InferenceError(
                f"the model's pre-processor makes {tuple(tensor.shape)} inputs per frame; only bottom-up "
                "models (one input per frame) are supported"
            )
        context.pop("model_kwargs", None)
        return tensor[0], context

    def _normalisation_table(self) -> torch.Tensor | None:
        """(3, 256) float32: DLC's pre-processing of each uint8 value per channel, if it is per-pixel."""
        components = [type(c).__name__ for c in getattr(self.preprocessor, "components", [])]
        if components != ["LoadImage", "AugmentImage", "ToTensor", "ToBatch"]:
            return None
        probe = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # (256, 1, 3)
        tensor, _ = self._dlc_preprocess(np.ascontiguousarray(probe))
        if tuple(tensor.shape) != (3, 256, 1) or tensor.dtype != torch.float32:
            return None  # a resize or crop: not a per-pixel function
        return tensor[:, :, 0].contiguous()

    def _fast_path(self, rgb: np.ndarray) -> tuple[bool, torch.Tensor, dict[str, Any]]:
        """DLC's tensor and context for the first frame, and whether the table reproduces it exactly."""
        reference, context = self._dlc_preprocess(rgb)
        if not self.tabulate:
            return False, reference, context
        if self._lut is None:
            self._lut = self._normalisation_table()
        if self._lut is None:
            return False, reference, context
        tabulated = _apply_table(torch.from_numpy(np.ascontiguousarray(rgb))[None], self._lut)[0]
        return bool(torch.equal(tabulated, reference)), reference, context

    # -- the pipeline ---------------------------------------------------------------------

    def run(self, stream: VideoStream, stride: int, sink: Sink, progress: Callable[[int], None] | None = None) -> int:
        """Analyse every ``stride``-th frame of ``stream``; ``sink(frames, predictions)`` gets each
        batch's DLC post-processed predictions in frame order. Returns frames analysed."""
        ready: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        state: dict[str, Any] = {}
        producer = threading.Thread(
            target=self._produce, args=(stream, stride, ready, stop, state), name="dlcrun-decoder", daemon=True
        )
        producer.start()
        try:
            if self.workers > 1:
                return self._run_workers(ready, stop, state, producer, sink, progress)
            return self._run_here(ready, state, producer, sink, progress)
        finally:
            stop.set()
            producer.join(timeout=10)

    def _run_here(
        self,
        ready: queue.Queue[Any],
        state: dict[str, Any],
        producer: threading.Thread,
        sink: Sink,
        progress: Callable[[int], None] | None,
    ) -> int:
        """One model stream (GPU, or CPU with one worker): batch k is post-processed while the
        device computes batch k+1."""
        analysed = 0
        pending: tuple[Batch, dict[str, Any], Any] | None = None
        while True:
            item = next_from(ready, producer)
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            outputs, done = self._forward(item, state)
            if pending is not None:
                analysed += self._finish(*pending, sink)
                if progress:
                    progress(analysed)
            pending = (item, outputs, done)
        if pending is not None:
            analysed += self._finish(*pending, sink)
        return analysed

    def _run_workers(
        self,
        ready: queue.Queue[Any],
        stop: threading.Event,
        state: dict[str, Any],
        producer: threading.Thread,
        sink: Sink,
        progress: Callable[[int], None] | None,
    ) -> int:
        """CPU throughput mode: ``workers`` threads, each running whole batches single-threaded
        (``threads // workers`` torch threads). On a few cores this beats one forward pass
        split over all of them, which waits at every op for its slowest thread; the arithmetic
        per frame is the same. Results are put back in frame order here."""
        results: queue.Queue[Any] = queue.Queue()
        threads = max(1, torch.get_num_threads() // self.workers)
        workers = [
            threading.Thread(
                target=self._work, args=(ready, results, stop, state, threads), daemon=True, name=f"dlcrun-model-{i}"
            )
            for i in range(self.workers)
        ]
        for worker in workers:
            worker.start()
        analysed, expected, finished = 0, 0, 0
        waiting: dict[int, tuple[Batch, dict[str, Any]]] = {}
        try:
            while finished < len(workers):
                try:
                    item = results.get(timeout=1.0)
                except queue.Empty:
                    if not any(w.is_alive() for w in workers) and results.empty():
                        raise InferenceError("the model threads stopped without a result") from None
                    continue
                if item is _END:
                    finished += 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                batch, outputs = item
                waiting[batch.seq] = (batch, outputs)
                while expected in waiting:
                    batch, outputs = waiting.pop(expected)
                    analysed += self._finish(batch, outputs, None, sink)
                    expected += 1
                    if progress:
                        progress(analysed)
            if waiting:
                raise InferenceError(f"batches {sorted(waiting)} came back without batch {expected}")
            return analysed
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=30)

    def _work(
        self,
        ready: queue.Queue[Any],
        results: queue.Queue[Any],
        stop: threading.Event,
        state: dict[str, Any],
        threads: int,
    ) -> None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)  # this thread's OpenMP team only
        try:
            while not stop.is_set():
                try:
                    item = ready.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _END or isinstance(item, BaseException):
                    ready.put(item)  # for the other workers
                    results.put(item if isinstance(item, BaseException) else _END)
                    return
                outputs, _ = self._forward(item, state)
                results.put((item, outputs))
        except BaseException as exc:
            results.put(exc)
        finally:
            torch.set_num_threads(previous)

    def _produce(
        self, stream: VideoStream, stride: int, ready: queue.Queue[Any], stop: threading.Event, state: dict[str, Any]
    ) -> None:
        try:
            frames: list[int] = []
            contexts: list[dict[str, Any]] = []
            slot: int | None = None
            pool: BufferPool | None = None
            fast = False
            shared: dict[str, Any] = {}
            seq = 0
            for number, rgb in stream.frames(stride):
                if pool is None:
                    fast, first, shared = self._fast_path(rgb)
                    shape = (self.batch_size, *rgb.shape) if fast else (self.batch_size, *first.shape)
                    pool = BufferPool(
                        self.slots + self.workers - 1, shape, torch.uint8 if fast else torch.float32, pin=self.cuda
                    )
                    state.update(pool=pool, fast=fast)
                    log.debug("pre-processing %s", "tabulated (uint8 to the device)" if fast else "per frame (DLC)")
                if slot is None:
                    slot = pool.take(stop)
                    if slot is None:
                        return
                row = pool.buffers[slot][len(frames)]
                if fast:
                    row.numpy()[...] = rgb
                    contexts.append(dict(shared))
                else:
                    tensor, context = self._dlc_preprocess(rgb)
                    row.copy_(tensor)
                    contexts.append(context)
                frames.append(number)
                if len(frames) == self.batch_size:
                    ready.put(Batch(seq, frames, slot, contexts))
                    frames, contexts, slot, seq = [], [], None, seq + 1
                if stop.is_set():
                    return
            if frames and slot is not None:
                ready.put(Batch(seq, frames, slot, contexts))
            ready.put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(exc)

    def _forward(self, batch: Batch, state: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """Launch copy + model for one batch; return device outputs and a 'done' event (CUDA)."""
        pool: BufferPool = state["pool"]
        host = pool.buffers[batch.slot][: len(batch.frames)]
        if self.cuda:
            assert self._copy_stream is not None
            with torch.cuda.stream(self._copy_stream):
                x = host.to(self.device, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record(self._copy_stream)
            torch.cuda.current_stream(self.device).wait_event(copied)
            x.record_stream(torch.cuda.current_stream(self.device))
            pool.give(batch.slot, copied)
        else:
            x = host
        with torch.inference_mode():
            if state["fast"]:
                if self._lut_device is None:
                    assert self._lut is not None
                    self._lut_device = self._lut.to(self.device)
                x = _apply_table(x, self._lut_device)  # (B, 3, H, W), channels_last strides
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = x.contiguous()
            dtype = PRECISIONS[self.precision]
            autocast = torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
            with autocast:
                outputs = self.model(x)
            if dtype is not None:
                outputs = {h: {k: v.float() for k, v in d.items()} for h, d in outputs.items()}
            predictions = self.model.get_predictions(outputs)
            if not self.cuda:
                pool.give(batch.slot)  # the model has read it (CPU ops are synchronous)
            host_predictions = {
                head: {name: t.to("cpu", non_blocking=self.cuda) for name, t in preds.items()}
                for head, preds in predictions.items()
            }
        done = None
        if self.cuda:
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
        return host_predictions, done

    def _finish(self, batch: Batch, outputs: dict[str, Any], done: Any, sink: Sink) -> int:
        """DLC's post-processing, frame by frame, as ``InferenceRunner._extract_results`` does it."""
        if done is not None:
            done.synchronize()
        arrays = {head: {name: t.numpy() for name, t in preds.items()} for head, preds in outputs.items()}
        results = []
        for b, context in enumerate(batch.contexts):
            frame_predictions = [{head: {name: a[b] for name, a in preds.items()} for head, preds in arrays.items()}]
            if self.postprocessor is not None:
                processed, _ = self.postprocessor(frame_predictions, context)
            else:
                processed = frame_predictions[0]
            results.append(processed)
        sink(batch.frames, results)
        return len(batch.frames)


def next_from(ready: queue.Queue[Any], producer: threading.Thread) -> Any:
    """The decoder thread's next item; an InferenceError once it has died without one."""
    while True:
        try:
            return ready.get(timeout=1.0)
        except queue.Empty:
            if not producer.is_alive() and ready.empty():
                raise InferenceError("the decoder thread stopped without a result") from None


def _apply_table(frames: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) via the (3, 256) table; the result is a
    permuted view of a (B, H, W, 3) tensor, i.e. already channels_last in memory."""
    offsets = torch.arange(3, device=frames.device, dtype=torch.long) * 256
    index = frames.long() + offsets
    return table.reshape(-1)[index].permute(0, 3, 1, 2)
