"""Slurm: one ``sbatch --array`` per submission, live states from ``squeue``, ``scancel``.

Nothing here needs accounting (``sacct``/slurmdbd): the run directory's records say how each
finished index ended, and ``squeue`` is asked only which indices are still queued or running.
An array larger than the cluster's ``MaxArraySize`` (from ``scontrol show config``; array
indices must stay below it) is split into consecutive arrays; each reads its offset from
``DLCRUN_ARRAY_OFFSET``, and with a throttle each waits for the previous one to end so that no
more than ``max_running`` indices ever run at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from dlcrun.errors import SubmissionError, one_line
from dlcrun.files import write_json
from dlcrun.ledger import Run, Submission
from dlcrun.schedulers import PREVIOUS, JobPlan, TaskLog, register, task_argv
from dlcrun.schedulers.scripts import (
    Runner,
    checked,
    chunks,
    directive_lines,
    job_name,
    memory,
    read_arrays,
    render,
    run_command,
    submit_in_order,
    write_script,
)
from dlcrun.settings import Resources

log = logging.getLogger(__name__)

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default
SIGNAL_BEFORE_LIMIT = "B:TERM@120"  # the batch shell passes it on: the index records 'interrupted'
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED", "RESV_DEL_HOLD"}
_RUNNING = {"RUNNING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"}


def _arrays_file(run: Run, submission: int) -> Path:
    return run.path / "submissions" / f"{submission:03d}.slurm.json"


def resource_options(resources: Resources) -> list[str]:
    """The #SBATCH options for ``resources``, in the order a person writes them."""
    amount, unit = memory(resources.mem)
    opts = [f"--cpus-per-task={resources.cpus}", f"--mem={amount}{unit.upper()}", f"--time={resources.time}"]
    if resources.gpus:
        opts.append(f"--gres=gpu:{resources.gpus}")
    for name in ("partition", "account", "qos", "constraint"):
        if value := getattr(resources, name):
            opts.append(f"--{name}={value}")
    return opts


def _script_path(run: Run, submission: int, part: int) -> Path:
    """``NNN.slurm``; the later arrays of a split submission ``NNN-2.slurm``, ``NNN-3.slurm``, ..."""
    suffix = f"-{part + 1}" if part else ""
    return run.path / "submissions" / f"{submission:03d}{suffix}.slurm"


class SlurmScheduler:
    name = "slurm"

    def __init__(self, runner: Runner = run_command):
        self.runner = runner

    def max_array_size(self, run: Run) -> int:
        """The setting when given, else the controller's MaxArraySize, else Slurm's default."""
        if run.settings.max_array_size:
            return run.settings.max_array_size
        try:
            config = checked(self.runner, ["scontrol", "show", "config"])
        except SubmissionError as exc:
            log.warning("%s; assuming MaxArraySize=%d", exc, DEFAULT_MAX_ARRAY_SIZE)
            return DEFAULT_MAX_ARRAY_SIZE
        found = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
        return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE

    def plan(self, run: Run, submission: int, size: int, max_running: int | None) -> list[JobPlan]:
        return [plan for plan, _, _ in self._plan(run, submission, size, max_running)]

    def _plan(self, run: Run, submission: int, size: int, max_running: int | None) -> list[tuple[JobPlan, int, int]]:
        settings = run.settings
        plans = []
        for part, (offset, count) in enumerate(chunks(size, self.max_array_size(run))):  # below MaxArraySize
            environment = [("DLCRUN_RUN", str(run.path)), ("DLCRUN_SUBMISSION", str(submission))]
            if offset:
                environment.append(("DLCRUN_ARRAY_OFFSET", str(offset)))
            options = [
                f"--job-name={job_name('dlcrun', run.id)}",
                f"--array=0-{count - 1}" + (f"%{max_running}" if max_running else ""),
                f"--output={run.path / 'logs' / '%A_%a.out'}",
                *resource_options(settings.resources),
                "--requeue",
                f"--signal={SIGNAL_BEFORE_LIMIT}",
                "--export=ALL",
            ]
            directives = directive_lines("#SBATCH", options, settings.resources.extra)
            script = render("array.slurm", task_argv(run, submission), directives, environment, settings.prelude)
            script_path = _script_path(run, submission, part)
            chained = [f"--dependency=afterany:{PREVIOUS}"] if offset and max_running else []
            argv = ["sbatch", "--parsable", *chained, str(script_path)]
            plans.append((JobPlan(argv, script, script_path), offset, count))
        return plans

    def submit(self, run: Run, submission: int, size: int, max_running: int | None) -> list[str]:
        queued = submit_in_order(self.runner, self._plan(run, submission, size, max_running), _parse_job_id, "scancel")
        arrays = [{"job": job, "offset": offset, "count": count} for job, offset, count in queued]
        write_json(_arrays_file(run, submission), arrays)
        return [str(a["job"]) for a in arrays]

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        arrays: dict[str, tuple[int, int]] = {}  # job id -> (submission, offset of its array index 0)
        for sub in submissions:
            for job, offset in read_arrays(run, _arrays_file(run, sub.number), sub.job_ids, "offset"):
                if job in sub.job_ids:
                    arrays[job] = (sub.number, offset)
        if not arrays:
            return {}
        argv = ["squeue", "--noheader", "--array", f"--jobs={','.join(arrays)}", "--format=%F|%K|%T"]
        done = self.runner(argv)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:  # every array has ended and been purged
                return {}
            raise SubmissionError(f"squeue failed: {one_line(done.stderr, 300)}")
        out: dict[tuple[int, int], str] = {}
        for array_job, task, state in parse_squeue(done.stdout):
            if array_job in arrays and state in _PENDING | _RUNNING:
                number, offset = arrays[array_job]
                out[(number, offset + task)] = "running" if state in _RUNNING else "pending"
        return out

    def task_log(self, run: Run, sub: Submission, array_index: int, job_id: str) -> TaskLog:
        """``logs/%A_%a.out`` (sbatch --output): the array's job id and the task id within it, which
        is what the record's job id is (``<array job>_<task>``). Without one, the array holding
        ``array_index`` is found from the arrays file (a split submission: offset applied)."""
        if not re.fullmatch(r"\d+_\d+", job_id):
            arrays = read_arrays(run, _arrays_file(run, sub.number), sub.job_ids, "offset")
            holding = [(offset, job) for job, offset in arrays if offset <= array_index]
            if not holding:
                return TaskLog(job_id, None)
            offset, job = max(holding)
            job_id = f"{job}_{array_index - offset}"
        # sacct needs Slurm's accounting (slurmdbd): a hint for the user, never asked here.
        return TaskLog(job_id, run.path / "logs" / f"{job_id}.out", inspect=f"sacct -j {job_id}")

    def cancel(self, run: Run, job_ids: list[str]) -> None:
        if not job_ids:
            return
        done = self.runner(["scancel", *job_ids])
        complaints = [line for line in (done.stderr or "").splitlines() if line.strip()]
        if done.returncode != 0 and not (complaints and all(_ENDED.search(line) for line in complaints)):
            said = one_line(done.stderr or done.stdout or "", 300) or f"exit status {done.returncode}"
            raise SubmissionError(f"scancel failed: {said}")

    def submit_training(self, workdir: Path, argv: list[str], resources: Resources, prelude: Sequence[str] = ()) -> str:
        script_path = workdir / "train.slurm"
        options = [
            f"--job-name={job_name('dlcrun-train', workdir.name)}",
            f"--output={workdir / 'logs' / 'train_%j.out'}",
            *resource_options(resources),
            "--export=ALL",
        ]
        directives = directive_lines("#SBATCH", options, resources.extra)
        write_script(script_path, render("train.slurm", argv, directives, [("DLCRUN_TRAIN", str(workdir))], prelude))
        return _parse_job_id(checked(self.runner, ["sbatch", "--parsable", str(script_path)]))


# scancel's words for an array that ended (and was purged) between status and cancel: not a failure.
_ENDED = re.compile(r"Invalid job id|already completing or completed|Job/step already completing", re.IGNORECASE)


def _parse_job_id(stdout: str) -> str:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
    first = stdout.strip().split(";")[0]
    if not first.isdigit():
        raise SubmissionError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return first


def parse_squeue(stdout: str) -> list[tuple[str, int, str]]:
    """(array job id, array task id, state) from ``squeue --array --format=%F|%K|%T`` lines."""
    rows = []
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3 or not parts[1].isdigit():  # a job that is not an array task
            continue
        rows.append((parts[0], int(parts[1]), parts[2].upper()))
    return rows


@register("slurm")
def _factory() -> SlurmScheduler:
    return SlurmScheduler()
