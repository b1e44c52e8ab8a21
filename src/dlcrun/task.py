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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlcrun.errors import DlcrunError, InferenceError, StorageError, VerificationError
from dlcrun.inference import Analyzer, ModelSpec, count_rows, quiet_environment
from dlcrun.ledger import Output, Record, Run, now
from dlcrun.manifest import output_folders
from dlcrun.settings import default_scratch
from dlcrun.storage import basename, join, storage_for

log = logging.getLogger(__name__)

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
        self.dest_dir = join(settings.dest, output_folders(entries)[index])
        prefix = self.stem + self.spec.scorer
        names = [f"{prefix}_meta.pickle"] + [f"{prefix}.csv"] * settings.save_csv + [f"{prefix}.h5"]
        self.outputs = [join(self.dest_dir, n) for n in names]  # .h5 last: its presence implies the rest


def run_index(run: Run, index: int, analyzer: Analyzer | None = None) -> Record:
    """Process manifest index ``index`` of ``run`` and return its final record."""
    settings = run.settings
    plan = Plan(run, index)
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
    scratch_root = settings.scratch or default_scratch()
    workdir = scratch_root / f"dlcrun-{run.id}-{index}-{os.getpid()}"
    quiet_environment(workdir)
    try:
        workdir.mkdir(parents=True)
        done = _verified_at_destination(plan, workdir)
        if done is not None:
            log.info("index %d: verified outputs already at %s; not analysed again", index, plan.dest_dir)
            record.outputs, record.frames = done
        else:
            _process(run, plan, record, workdir, analyzer)
        record.state = "done"
        record.error = ""
    except Interrupted as exc:
        record.state, record.error = "interrupted", str(exc)
        raise
    except DlcrunError as exc:
        record.state, record.error = "failed", _one_line(str(exc))
    except Exception as exc:  # an index must always leave a record; the traceback goes to its log
        log.exception("index %d: unexpected error", index)
        record.state, record.error = "failed", _one_line(f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        record.finished = now()
        run.write_record(record)
    return record


def _process(run: Run, plan: Plan, record: Record, workdir: Path, analyzer: Analyzer | None) -> None:
    settings = run.settings
    source = storage_for(plan.video)
    info = source.stat(plan.video)
    if info is None:
        raise StorageError(f"{plan.video}: no such video")
    free = shutil.disk_usage(workdir).free
    if info.size + SCRATCH_MARGIN > free:
        raise StorageError(
            f"{workdir.parent}: {free / 1e9:.1f} GB free, the video needs {info.size / 1e9:.1f} GB; "
            "point scratch at a larger disk"
        )
    clock = time.monotonic()
    local_video = workdir / basename(plan.video)
    record.bytes_in = source.fetch(plan.video, local_video).size
    record.seconds["fetch"] = round(time.monotonic() - clock, 3)

    clock = time.monotonic()
    if analyzer is None:
        analyzer = Analyzer(plan.spec, settings.batch_size, settings.device, settings.threads)
    record.seconds["load"] = round(time.monotonic() - clock, 3)
    analysis = analyzer.analyze(local_video, workdir / "out", settings.save_csv, stem=plan.stem)
    record.seconds["infer"] = round(analysis.seconds, 3)
    local_video.unlink()

    h5 = next(f for f in analysis.files if f.suffix == ".h5")
    rows = count_rows(h5)
    if rows != analysis.frames:
        raise VerificationError(f"{h5.name}: {rows} rows for {analysis.frames} decoded frames; not published")
    record.frames = analysis.frames

    clock = time.monotonic()
    dest = storage_for(plan.dest_dir)
    by_name = {f.name: f for f in analysis.files}
    for uri in plan.outputs:
        stored = dest.put(by_name[basename(uri)], uri)
        record.outputs.append(Output(uri=uri, size=stored.size, sha256=stored.sha256 or ""))
    record.seconds["upload"] = round(time.monotonic() - clock, 3)


def _still_published(record: Record) -> bool:
    """A done record counts only while every output it lists is still there, same size."""
    if not record.outputs:
        return False
    for out in record.outputs:
        found = storage_for(out.uri).stat(out.uri)
        if found is None or found.size != out.size:
            return False
    return True


def _verified_at_destination(plan: Plan, workdir: Path) -> tuple[list[Output], int] | None:
    """Outputs left by an earlier run with the same snapshot: accepted only if they check out.

    The .h5 must hold one row per frame that its _meta.pickle says the video has; a short or
    unreadable file is analysed again (DLC itself would skip it forever, issue 3101).
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
            expected = int(pickle.load(fh)["data"]["nframes"])
        rows = count_rows(h5)
    except (InferenceError, OSError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        return None
    finally:
        shutil.rmtree(check, ignore_errors=True)
    if rows != expected:
        return None
    outputs = [Output(uri=f.uri, size=f.size, sha256=f.sha256 or "") for f in found if f is not None]
    return outputs, rows


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
