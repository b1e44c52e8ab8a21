"""One array index: stage in, infer, verify, stage out, record. What every scheduler runs.

Idempotent by design: an index whose verified output is already at the destination is not
analysed again (a re-run costs GPU hours), but only when that output provably came from this
video (same content hash, recorded in its ``_meta.pickle``) and this snapshot and sampling; a
same-named output of another video is never accepted and never overwritten. Outputs are written
on node-local scratch and only published once checked, .h5 last, each through the storage
backend's atomic put; a failed or interrupted publish removes what it had moved into place and
its hidden parts, and lists in the record whatever it could not, for the next attempt to remove.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlcrun.engines import open_analyzer
from dlcrun.errors import DlcrunError, StorageError, VerificationError, one_line
from dlcrun.files import part_uri, sha256_file
from dlcrun.inference import Analyzer, ModelSpec, count_rows, quiet_environment
from dlcrun.ledger import Output, Record, Run, now
from dlcrun.locations import basename
from dlcrun.outputs import (
    Plan,
    SourceIdentity,
    claim_at_destination,
    complete_at_destination,
    remove_leftovers,
    still_published,
    tagged_hash,
)
from dlcrun.runtime import Interrupted, job_id_from_environment, sigterm_unwinds
from dlcrun.settings import default_scratch
from dlcrun.storage import StoredObject, storage_for

log = logging.getLogger(__name__)

T = TypeVar("T")
SCRATCH_MARGIN = 256 * 1024 * 1024  # room for outputs and decoder buffers beside the video


def run_task(run: Run, index: int | None, submission: int | None, array_index: int | None) -> list[Record]:
    """What ``dlcrun task`` runs: manifest line ``index`` (``--index``), or the lines array index
    ``array_index`` of ``submission`` processes (a split array's offset already added).

    SIGTERM (a time limit, a preemption, a cancel) unwinds through every cleanup and raises
    Interrupted naming the indices, once their records say 'interrupted'.
    """
    if index is not None:
        indices = [index]
    elif array_index is None:
        raise DlcrunError("task needs --index, or --submission with --array-index")
    else:
        indices = run.manifest_indices(submission, array_index)
    try:
        with sigterm_unwinds():
            return run_indices(run, indices, submission=None if index is not None else submission)
    except Interrupted as exc:
        raise Interrupted(f"indices {', '.join(map(str, indices))}: {exc}") from None


def run_index(run: Run, index: int, analyzer: Analyzer | None = None, submission: int | None = None) -> Record:
    """Process manifest index ``index`` of ``run`` and return its final record."""
    return run_indices(run, [index], analyzer, submission)[0]


def run_indices(
    run: Run, indices: list[int], analyzer: Analyzer | None = None, submission: int | None = None
) -> list[Record]:
    """Process manifest lines in order with one loaded model; one final record per line.

    Video i+1 downloads while video i is analysed and video i-1 uploads, so the model waits
    neither for the network nor for a model load between videos. Scratch holds at most the
    video being analysed and the next one: the next download waits until there is room.
    """
    return _Pipeline(run, analyzer, submission).run(indices)


@dataclass
class _Job:
    plan: Plan
    record: Record
    workdir: Path
    room: threading.Event = field(default_factory=threading.Event)  # set: scratch may hold this video
    lock: threading.Lock = field(default_factory=threading.Lock)
    final: bool = False
    uploading: bool = False  # a put may still land: what was listed stays listed


@dataclass
class _Staged:
    video: Path | None = None  # on scratch, to analyse
    identity: SourceIdentity | None = None  # of that video
    verified: tuple[list[Output], int, int] | None = None  # outputs already at the destination
    quality: dict[str, Any] = field(default_factory=dict)  # theirs, from their _meta.pickle


class _Pipeline:
    def __init__(self, run: Run, analyzer: Analyzer | None, submission: int | None = None):
        self.run_ = run
        self.submission = submission
        self.settings = run.settings
        self.analyzer = analyzer
        self._load_error: Exception | None = None
        self._load_seconds = 0.0  # reported by the first video analysed with the model

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
                self._warm()
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
                submission=self.submission,
            )
            if 0 <= index < len(run):
                record.video = run.manifest.entries[index]
                run.write_record(record)
            return record
        previous = run.record(index)
        if previous is not None and previous.state == "done" and still_published(previous):
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
            submission=self.submission,
            # What an interrupted publish may have left: removed before this attempt writes.
            publishing=list(previous.publishing) if previous is not None and previous.state != "done" else [],
        )
        run.write_record(record)
        scratch_root = self.settings.scratch or default_scratch()
        workdir = scratch_root / f"dlcrun-{run.id}-{index}-{os.getpid()}"
        quiet_environment(workdir)
        return _Job(plan=plan, record=record, workdir=workdir)

    def _stage_in(self, job: _Job) -> _Staged:
        """Background: outputs already verified at the destination, or the video on scratch.

        Outputs already at the destination count only when their _meta.pickle names this
        video's content (and this snapshot and sampling): a same-named output of another video
        fails the index with both named, and is left as it is.
        """
        plan, record = job.plan, job.record
        job.workdir.mkdir(parents=True)
        remove_leftovers(plan, record)
        source = storage_for(plan.video)
        info = source.stat(plan.video)
        if info is None:
            raise StorageError(f"{plan.video}: no such video")
        claim = claim_at_destination(plan, job.workdir)
        if claim is None:
            return self._fetch(job, source, info)
        if claim.source is None:
            raise VerificationError(
                f"{plan.outputs[-1]}: already there, but not written by dlcrun for a known video (no source "
                f"record in its _meta.pickle), so it cannot be told apart from keypoints of another video; "
                f"move it away or choose another dest, then resubmit {plan.video}"
            )
        # Dropbox's stat already carries its content hash: no second round trip for it.
        same = claim.source.matches(info.size, tagged_hash(info.content_hash or source.fingerprint(plan.video)))
        staged: _Staged | None = None
        if same is None:  # the backend has no hash of its own: only the bytes can tell
            staged = self._fetch(job, source, info)
            assert staged.identity is not None
            same = claim.source.matches(staged.identity.size, staged.identity.hashes)
        if not same:
            if staged is not None and staged.video is not None:
                staged.video.unlink(missing_ok=True)
            raise VerificationError(
                f"{plan.outputs[-1]}: holds keypoints of {claim.source.location}, a different video from "
                f"{plan.video} (other content); left as it is: move those outputs away or choose another dest, "
                "then resubmit"
            )
        done = complete_at_destination(plan, claim, job.workdir)
        if done is not None:
            log.info("index %d: outputs of this video already at %s; not analysed again", plan.index, plan.dest_dir)
            if staged is not None and staged.video is not None:
                staged.video.unlink(missing_ok=True)
            return _Staged(verified=done, quality=claim.quality)
        # This video's, but partial, short or of another snapshot/sampling: analysed again and replaced.
        return staged if staged is not None else self._fetch(job, source, info)

    def _fetch(self, job: _Job, source: Any, info: StoredObject) -> _Staged:
        """The video to scratch (waiting for room), and its identity from the bytes fetched."""
        plan, record = job.plan, job.record
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
        fetched = source.fetch(plan.video, local_video)
        record.bytes_in = fetched.size
        hashes = tagged_hash(fetched.content_hash)
        hashes.setdefault("sha256", fetched.sha256 or sha256_file(local_video))
        identity = SourceIdentity(location=plan.video, size=fetched.size, hashes=hashes)
        record.source = identity.to_dict()
        record.seconds["fetch"] = round(time.monotonic() - clock, 3)
        return _Staged(video=local_video, identity=identity)

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
                    detector_batch_size=settings.detector_batch_size,
                )
            except Exception as exc:  # kept: every video of the index fails on it, none loads again
                self._load_error = exc
                raise
            self._load_seconds = round(time.monotonic() - clock, 3)
        return self.analyzer

    def _warm(self) -> None:
        """Load the model while the first video downloads, rather than after: the two took turns,
        seconds of every index's start-up. A failure waits for the first video that needs the model."""
        if self.analyzer is None and self._load_error is None:
            try:
                self._model()
            except Exception:  # noqa: BLE001 - kept in _load_error, raised for that video
                pass

    def _analyse(self, job: _Job, staged: _Staged) -> list[tuple[Path, str]] | None:
        """Main thread: the model's part. Returns (local file, destination) pairs to publish."""
        plan, record = job.plan, job.record
        if staged.verified is not None:
            record.outputs, record.frames, record.stride = staged.verified
            record.quality = staged.quality
            return None
        assert staged.video is not None and staged.identity is not None
        analyzer = self._model()
        record.seconds["load"], self._load_seconds = self._load_seconds, 0.0
        provenance = {
            "source": staged.identity.to_dict(),
            "model": {
                "snapshot": plan.spec.snapshot,
                "scorer": plan.spec.scorer,
                "shuffle": plan.spec.shuffle,
                **({"detector": plan.spec.detector_snapshot} if plan.spec.top_down else {}),
            },
        }
        analysis = analyzer.analyze(
            staged.video,
            job.workdir / "out",
            self.settings.save_csv,
            stem=plan.stem,
            sampling=plan.sampling,
            provenance=provenance,
            filtertype=plan.filter,
            clip=self.settings.qc_clips,
        )
        record.seconds["infer"] = round(analysis.seconds, 3)
        record.seconds.update(analysis.timings)
        record.frames, record.stride = analysis.frames, analysis.stride
        record.quality = analysis.quality
        if analysis.clip is not None:
            record.clip = self._keep_clip(analysis.clip, plan)
        h5 = next(f for f in analysis.files if f.suffix == ".h5")
        rows = count_rows(h5, plan.spec.table_key)
        if not plan.spec.rows_whole(rows, analysis.rows):
            raise VerificationError(f"{h5.name}: {rows} rows for {analysis.rows} analysed frames; not published")
        by_name = {f.name: f for f in analysis.files}
        return [(by_name[basename(uri)], uri) for uri in plan.outputs]

    def _keep_clip(self, clip: Path, plan: Plan) -> str:
        """The QC clip into the run directory (``clips/<index>-<stem>.mp4``, written under a
        hidden name and renamed); its path relative to the run directory, "" (and a warning in
        the log) when it cannot be kept: the keypoints stand without it."""
        name = f"clips/{plan.index}-{plan.stem}.mp4"
        final = self.run_.path / name
        part = final.with_name(f".{final.name}.part")
        try:
            final.parent.mkdir(exist_ok=True)
            shutil.copyfile(clip, part)
            os.replace(part, final)
        except OSError as exc:
            log.warning("index %d: QC clip not kept in %s (%s)", plan.index, final.parent, exc)
            part.unlink(missing_ok=True)
            return ""
        return name

    def _publish(self, job: _Job, outputs: list[tuple[Path, str]] | None) -> None:
        """Background: upload (.h5 last), then the final record. All or nothing: every location
        it may write (final and hidden part names) is in the record before the first byte, and
        a failure removes them again."""
        try:
            if outputs is not None:
                clock = time.monotonic()
                dest = storage_for(job.plan.dest_dir)
                record = job.record
                record.publishing = [u for _, u in outputs] + [part_uri(u) for _, u in outputs]
                self.run_.write_record(record)
                job.uploading = True
                for local, uri in outputs:
                    if job.final:
                        return
                    stored = dest.put(local, uri)
                    record.outputs.append(Output(uri=uri, size=stored.size, sha256=stored.sha256 or ""))
                job.uploading = False
                record.seconds["upload"] = round(time.monotonic() - clock, 3)
                record.publishing = []
        except BaseException as exc:
            job.uploading = False
            self._settle(job, exc)
        else:
            self._settle(job, None)

    def _unpublish(self, job: _Job) -> None:
        """Remove what a failed or interrupted publish wrote; what cannot be removed stays listed
        in ``record.publishing`` for the next attempt."""
        record = job.record
        if not record.publishing:
            return
        left: list[str] = []
        for uri in record.publishing:
            try:
                storage_for(uri).delete(uri)
            except Exception as exc:  # noqa: BLE001 - one unremovable file must not hide the others
                log.warning("%s: could not remove (%s); the next attempt will", uri, one_line(exc))
                left.append(uri)
        # An upload still running in its thread (SIGTERM) may land after this: keep it all listed.
        record.publishing = list(record.publishing) if job.uploading else left
        record.outputs = []

    def _settle(self, job: _Job, exc: BaseException | None) -> None:
        """Write the job's final record once (whoever comes first) and clear its scratch."""
        with job.lock:
            if job.final:
                return
            job.final = True
            record = job.record
            if exc is not None:
                self._unpublish(job)
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
