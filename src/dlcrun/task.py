"""One array index: stage in, infer, verify, stage out, record. What every scheduler runs.

Idempotent by design: an index whose verified output is already at the destination is not
analysed again (a re-run costs GPU hours). Outputs are written on node-local scratch and only
published once checked, .h5 last, each through the storage backend's atomic put; a killed
index therefore leaves either complete outputs or none at the destination.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlcrun.errors import DlcrunError, InferenceError, StorageError, VerificationError, one_line
from dlcrun.inference import Analyzer, ModelSpec, Sampling, count_rows, open_analyzer, quiet_environment
from dlcrun.ledger import Output, Record, Run, now
from dlcrun.manifest import output_folders
from dlcrun.settings import default_scratch
from dlcrun.storage import basename, join, storage_for

log = logging.getLogger(__name__)

T = TypeVar("T")
SCRATCH_MARGIN = 256 * 1024 * 1024  # room for outputs and decoder buffers beside the video


class Interrupted(BaseException):
    """SIGTERM: the scheduler's time limit or a preemption; unwinds through every cleanup."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        # Once only: the job script passes on the SIGTERM the scheduler also sends the task
        # directly, and a second Interrupted raised inside the cleanup would lose the record.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(f"stopped by signal {signum} (time limit, preemption or cancel)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def job_id_from_environment() -> str:
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "DLCRUN_LOCAL_JOB"):
        if var in env:
            return env[var]
    return ""


class Plan:
    """Where one index's inputs come from and its outputs go, derived from the run alone."""

    def __init__(self, run: Run, index: int):
        settings = run.settings
        entries = run.manifest.entries
        if not 0 <= index < len(entries):
            raise DlcrunError(f"{run.path}: index {index} out of range 0-{len(entries) - 1}")
        if not settings.dest:
            raise DlcrunError(f"{run.path}: the run has no destination (dest)")
        self.index = index
        self.video = entries[index]
        self.stem = Path(basename(self.video)).stem
        self.spec = ModelSpec.from_dict(run.model)
        self.sampling = Sampling(stride=settings.stride, every=settings.every_seconds)
        self.dest_dir = join(settings.dest, output_folders(entries)[index])
        prefix = self.stem + self.spec.scorer + self.sampling.suffix
        names = [f"{prefix}_meta.pickle"] + [f"{prefix}.csv"] * settings.save_csv + [f"{prefix}.h5"]
        self.outputs = [join(self.dest_dir, n) for n in names]  # .h5 last: its presence implies the rest


def run_index(run: Run, index: int, analyzer: Analyzer | None = None) -> Record:
    """Process manifest index ``index`` of ``run`` and return its final record."""
    return run_indices(run, [index], analyzer)[0]


def run_indices(run: Run, indices: list[int], analyzer: Analyzer | None = None) -> list[Record]:
    """Process manifest lines in order with one loaded model; one final record per line.

    Video i+1 downloads while video i is analysed and video i-1 uploads, so the model waits
    neither for the network nor for a model load between videos. Scratch holds at most the
    video being analysed and the next one: the next download waits until there is room.
    """
    return _Pipeline(run, analyzer).run(indices)


@dataclass
class _Job:
    plan: Plan
    record: Record
    workdir: Path
    room: threading.Event = field(default_factory=threading.Event)  # set: scratch may hold this video
    lock: threading.Lock = field(default_factory=threading.Lock)
    final: bool = False


@dataclass
class _Staged:
    video: Path | None = None  # on scratch, to analyse
    verified: tuple[list[Output], int, int] | None = None  # outputs already at the destination


class _Pipeline:
    def __init__(self, run: Run, analyzer: Analyzer | None):
        self.run_ = run
        self.settings = run.settings
        self.analyzer = analyzer
        self._load_error: DlcrunError | None = None
        self._load_seconds = 0.0

    def run(self, indices: list[int]) -> list[Record]:
        records: dict[int, Record] = {}
        jobs: list[_Job] = []
        fetching: tuple[_Job, Future[_Staged]] | None = None
        publishing: tuple[_Job, Future[None]] | None = None
        queue = list(indices)
        try:
            while queue or fetching is not None:
                if fetching is None:
                    fetching = self._start_next(queue, records, jobs)
                    if fetching is None:
                        continue
                job, staged_future = fetching
                fetching = None
                _wait(staged_future)
                try:
                    staged = staged_future.result()
                except Exception as exc:
                    job.room.set()
                    self._settle(job, exc)
                    records[job.plan.index] = job.record
                    continue
                fetching = self._start_next(queue, records, jobs, after=job)
                try:
                    outputs = self._analyse(job, staged)
                except Exception as exc:
                    self._settle(job, exc)
                    records[job.plan.index] = job.record
                    continue
                finally:
                    if staged.video is not None:
                        staged.video.unlink(missing_ok=True)
                    if fetching is not None:
                        fetching[0].room.set()
                if publishing is not None:
                    _wait(publishing[1])
                publishing = (job, _background(self._publish, job, outputs))
                records[job.plan.index] = job.record
            if publishing is not None:
                _wait(publishing[1])
        except (Interrupted, KeyboardInterrupt) as exc:
            if publishing is not None:
                _wait(publishing[1], timeout=20)  # a nearly finished upload is worth keeping
            for job in jobs:
                self._settle(job, exc)
            raise
        return [records[i] for i in indices]

    def _start_next(
        self, queue: list[int], records: dict[int, Record], jobs: list[_Job], after: _Job | None = None
    ) -> tuple[_Job, Future[_Staged]] | None:
        """Open the record of the next index that needs work and start its download."""
        while queue:
            index = queue.pop(0)
            job = self._begin(index)
            if isinstance(job, Record):
                records[index] = job
                continue
            jobs.append(job)
            if after is None:
                job.room.set()  # nothing else on scratch
            return job, _background(self._stage_in, job)
        return None

    def _begin(self, index: int) -> _Job | Record:
        run = self.run_
        try:
            plan = Plan(run, index)
        except DlcrunError as exc:
            record = Record(
                index=index,
                video="",
                state="failed",
                error=one_line(str(exc)),
                started=now(),
                finished=now(),
                job_id=job_id_from_environment(),
                host=socket.gethostname(),
            )
            if 0 <= index < len(run):
                record.video = run.manifest.entries[index]
                run.write_record(record)
            return record
        previous = run.record(index)
        if previous is not None and previous.state == "done" and _still_published(previous):
            log.info("index %d: already done (%s), nothing to do", index, previous.outputs[-1].uri)
            return previous
        record = Record(
            index=index,
            video=plan.video,
            attempts=(previous.attempts if previous else 0) + 1,
            job_id=job_id_from_environment(),
            host=socket.gethostname(),
            started=now(),
            scorer=plan.spec.scorer,
        )
        run.write_record(record)
        scratch_root = self.settings.scratch or default_scratch()
        workdir = scratch_root / f"dlcrun-{run.id}-{index}-{os.getpid()}"
        quiet_environment(workdir)
        return _Job(plan=plan, record=record, workdir=workdir)

    def _stage_in(self, job: _Job) -> _Staged:
        """Background: outputs already verified at the destination, or the video on scratch."""
        plan, record = job.plan, job.record
        job.workdir.mkdir(parents=True)
        done = _verified_at_destination(plan, job.workdir)
        if done is not None:
            log.info("index %d: verified outputs already at %s; not analysed again", plan.index, plan.dest_dir)
            return _Staged(verified=done)
        source = storage_for(plan.video)
        info = source.stat(plan.video)
        if info is None:
            raise StorageError(f"{plan.video}: no such video")
        while True:
            free = shutil.disk_usage(job.workdir).free
            if info.size + SCRATCH_MARGIN <= free:
                break
            if job.room.is_set():
                raise StorageError(
                    f"{job.workdir.parent}: {free / 1e9:.1f} GB free, the video needs {info.size / 1e9:.1f} GB; "
                    "point scratch at a larger disk"
                )
            job.room.wait()  # the video before it leaves scratch once analysed
        clock = time.monotonic()
        local_video = job.workdir / basename(plan.video)
        record.bytes_in = source.fetch(plan.video, local_video).size
        record.seconds["fetch"] = round(time.monotonic() - clock, 3)
        return _Staged(video=local_video)

    def _model(self) -> Analyzer:
        if self.analyzer is None:
            if self._load_error is not None:
                raise self._load_error
            settings = self.settings
            clock = time.monotonic()
            try:
                self.analyzer = open_analyzer(
                    ModelSpec.from_dict(self.run_.model),
                    settings.batch_size,
                    settings.device,
                    settings.threads,
                    precision=settings.precision,
                    decoder=settings.decoder,
                )
            except DlcrunError as exc:
                self._load_error = exc
                raise
            self._load_seconds = round(time.monotonic() - clock, 3)
        return self.analyzer

    def _analyse(self, job: _Job, staged: _Staged) -> list[tuple[Path, str]] | None:
        """Main thread: the model's part. Returns (local file, destination) pairs to publish."""
        plan, record = job.plan, job.record
        if staged.verified is not None:
            record.outputs, record.frames, record.stride = staged.verified
            return None
        assert staged.video is not None
        first_load = self.analyzer is None
        analyzer = self._model()
        record.seconds["load"] = self._load_seconds if first_load else 0.0
        analysis = analyzer.analyze(
            staged.video, job.workdir / "out", self.settings.save_csv, stem=plan.stem, sampling=plan.sampling
        )
        record.seconds["infer"] = round(analysis.seconds, 3)
        record.frames, record.stride = analysis.frames, analysis.stride
        h5 = next(f for f in analysis.files if f.suffix == ".h5")
        rows = count_rows(h5)
        if rows != analysis.rows:
            raise VerificationError(f"{h5.name}: {rows} rows for {analysis.rows} analysed frames; not published")
        by_name = {f.name: f for f in analysis.files}
        return [(by_name[basename(uri)], uri) for uri in plan.outputs]

    def _publish(self, job: _Job, outputs: list[tuple[Path, str]] | None) -> None:
        """Background: upload (.h5 last), then the final record."""
        try:
            if outputs is not None:
                clock = time.monotonic()
                dest = storage_for(job.plan.dest_dir)
                for local, uri in outputs:
                    if job.final:
                        return
                    stored = dest.put(local, uri)
                    job.record.outputs.append(Output(uri=uri, size=stored.size, sha256=stored.sha256 or ""))
                job.record.seconds["upload"] = round(time.monotonic() - clock, 3)
        except BaseException as exc:
            self._settle(job, exc)
        else:
            self._settle(job, None)

    def _settle(self, job: _Job, exc: BaseException | None) -> None:
        """Write the job's final record once (whoever comes first) and clear its scratch."""
        with job.lock:
            if job.final:
                return
            job.final = True
            record = job.record
            if exc is None:
                record.state, record.error = "done", ""
            elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
                record.state, record.error = "interrupted", str(exc)
            elif isinstance(exc, DlcrunError):
                record.state, record.error = "failed", one_line(str(exc))
            else:  # an index must always leave a record; the traceback goes to its log
                log.error("index %d: unexpected error", job.plan.index, exc_info=exc)
                record.state, record.error = "failed", one_line(f"{type(exc).__name__}: {exc}")
            shutil.rmtree(job.workdir, ignore_errors=True)
            record.finished = now()
            self.run_.write_record(record)


def _background(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Run ``fn`` in a daemon thread: a SIGTERM'd task exits without waiting for a download."""
    future: Future[T] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name=f"dlcrun-{fn.__name__.strip('_')}", daemon=True).start()
    return future


def _wait(future: Future[Any], timeout: float | None = None) -> None:
    """Wait in short steps, so that SIGTERM's handler runs in the main thread meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not future.done():
        if deadline is not None and time.monotonic() > deadline:
            return
        try:
            future.exception(timeout=0.2)
        except FutureTimeout:
            pass


def _still_published(record: Record) -> bool:
    """A done record counts only while every output it lists is still there, same size."""
    if not record.outputs:
        return False
    for out in record.outputs:
        found = storage_for(out.uri).stat(out.uri)
        if found is None or found.size != out.size:
            return False
    return True


def _verified_at_destination(plan: Plan, workdir: Path) -> tuple[list[Output], int, int] | None:
    """Outputs left by an earlier run with the same snapshot and sampling, if they check out:
    (outputs, frames in the video, stride).

    The .h5 must hold one row per analysed frame of the video as its _meta.pickle describes it
    (all frames, or one in ``stride``), and that stride must be the one this run asks for; a
    short or unreadable file is analysed again (DLC itself would skip it forever, issue 3101).
    """
    dest = storage_for(plan.dest_dir)
    found = [dest.stat(uri) for uri in plan.outputs]
    if any(f is None for f in found):
        return None
    h5_uri, meta_uri = plan.outputs[-1], plan.outputs[0]
    check = workdir / "check"
    h5 = check / basename(h5_uri)
    meta = check / basename(meta_uri)
    dest.fetch(h5_uri, h5)
    dest.fetch(meta_uri, meta)
    try:
        with open(meta, "rb") as fh:
            metadata = pickle.load(fh)
        data, ours = metadata["data"], metadata.get("dlcrun", {})  # no "dlcrun": DLC wrote it, full rate
        frames = int(ours.get("frames_decoded", data["nframes"]))
        stride = int(ours.get("stride", 1))
        wanted = plan.sampling.stride_for(float(data.get("fps") or 0))
        rows = count_rows(h5)
    except (InferenceError, OSError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        return None
    finally:
        shutil.rmtree(check, ignore_errors=True)
    if stride != wanted or rows != -(-frames // stride):
        return None
    outputs = [Output(uri=f.uri, size=f.size, sha256=f.sha256 or "") for f in found if f is not None]
    return outputs, frames, stride
