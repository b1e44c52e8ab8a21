"""PBS Pro / OpenPBS ('pbs') and Torque ('torque'): one ``qsub`` array per submission.

The two share everything but spelling, kept in one ``Flavor`` each:

- PBS Pro: ``-J 0-N%M`` (the ``%M`` sets the array's ``max_run_subjobs``, OpenPBS 20 / PBS Pro
  2020 and later; older servers reject it, so leave ``max_running`` empty there and let a
  queue's ``max_run`` pace the array), ``$PBS_ARRAY_INDEX``, ``-l select=1:ncpus=..:mem=..``.
  An array needs two or more subjobs: one index is submitted as a plain job.
- Torque: ``-t 0-N%M`` (the slot limit), ``$PBS_ARRAYID``, ``-l nodes=1:ppn=..``.

Live states come from ``qstat -f -t`` (no accounting needed; the run's records say how finished
indices ended). Arrays larger than ``settings.max_array_size`` (default 10000, PBS Pro's
``max_array_size``) are split into consecutive index ranges, each waiting for the previous one
when throttled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

DEFAULT_MAX_ARRAY_SIZE = 10000
# What the job needs from the submitting shell to find the same dlcrun. Not -V: PBS lists a job's
# variables in `qstat -f`, which other users of the cluster can often read.
SOFTWARE_ENV = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "RCLONE_CONFIG")  # paths, never secrets
_PENDING = set("QHWTSU")
_RUNNING = set("R")
_GONE = re.compile(r"Unknown Job Id|Job has finished|finished job", re.IGNORECASE)


def _pro_resources(res: Resources, mem: str) -> list[tuple[str, str]]:
    """A PBS Pro chunk; a constraint is a host resource (``name=value``) of that chunk."""
    select = f"select=1:ncpus={res.cpus}:mem={mem}" + (f":ngpus={res.gpus}" if res.gpus else "")
    select += f":{res.constraint}" if res.constraint else ""
    return [("-l", select), ("-l", f"walltime={res.time}")]


def _torque_resources(res: Resources, mem: str) -> list[tuple[str, str]]:
    """Torque's nodes spec; a constraint is a node property (``nodes=1:ppn=4:h100``)."""
    nodes = f"nodes=1:ppn={res.cpus}" + (f":gpus={res.gpus}" if res.gpus else "")
    nodes += f":{res.constraint}" if res.constraint else ""
    return [("-l", nodes), ("-l", f"mem={mem}"), ("-l", f"walltime={res.time}")]


@dataclass(frozen=True)
class Flavor:
    """How one PBS family spells the same things."""

    name: str  # the scheduler name (registry, ledger, file suffixes)
    template: str
    array_flag: str  # -J (PBS Pro) or -t (Torque)
    depend: str  # dependency type on a whole array
    min_array: int  # smallest array qsub accepts; smaller submissions are plain jobs
    resource_words: Callable[[Resources, str], list[tuple[str, str]]]

    def resources(self, res: Resources) -> list[tuple[str, str]]:
        """The #PBS options for ``res`` (qos is refused when settings load: PBS has none)."""
        amount, unit = memory(res.mem)
        opts = self.resource_words(res, f"{amount}{unit}b")
        if res.partition:
            opts.append(("-q", res.partition))
        if res.account:
            opts.append(("-A", res.account))
        return opts

    def array_range(self, first: int, count: int, max_running: int | None) -> str:
        span = f"{first}-{first + count - 1}" if count > 1 else str(first)
        return span + (f"%{max_running}" if max_running else "")


PRO = Flavor("pbs", "array.pbs", "-J", "afterany", 2, _pro_resources)
TORQUE = Flavor("torque", "array.torque", "-t", "afteranyarray", 1, _torque_resources)


def _arrays_file(run: Run, submission: int, flavor: Flavor) -> Path:
    return run.path / "submissions" / f"{submission:03d}.{flavor.name}.json"


class PbsScheduler:
    def __init__(self, flavor: Flavor = PRO, runner: Runner = run_command):
        self.flavor = flavor
        self.name = flavor.name
        self.runner = runner

    def plan(self, run: Run, submission: int, size: int, max_running: int | None) -> list[JobPlan]:
        return [plan for plan, _, _ in self._plan(run, submission, size, max_running)]

    def _plan(self, run: Run, submission: int, size: int, max_running: int | None) -> list[tuple[JobPlan, int, int]]:
        flavor, settings = self.flavor, run.settings
        plans = []
        limit = settings.max_array_size or DEFAULT_MAX_ARRAY_SIZE
        for part, (first, count) in enumerate(chunks(size, limit)):
            environment = [("DLCRUN_RUN", str(run.path)), ("DLCRUN_SUBMISSION", str(submission)), *software_env()]
            options: list[str | tuple[str, str]] = [("-N", job_name("dlcrun", run.id))]
            if count >= flavor.min_array:
                options.append((flavor.array_flag, flavor.array_range(first, count, max_running)))
            else:  # a plain job: told the index PBS Pro would set in a subjob
                environment.append(("PBS_ARRAY_INDEX", str(first)))
            options += [
                ("-r", "y"),
                ("-j", "oe"),
                ("-o", f"{run.path / 'logs'}/"),
                *flavor.resources(settings.resources),
            ]
            directives = directive_lines("#PBS", options, settings.resources.extra)
            script = render(flavor.template, task_argv(run, submission), directives, environment, settings.prelude)
            suffix = f"-{part + 1}" if part else ""
            script_path = run.path / "submissions" / f"{submission:03d}{suffix}.{flavor.name}"
            chained = ["-W", f"depend={flavor.depend}:{PREVIOUS}"] if first and max_running else []
            plans.append((JobPlan(["qsub", *chained, str(script_path)], script, script_path), first, count))
        return plans

    def submit(self, run: Run, submission: int, size: int, max_running: int | None) -> list[str]:
        queued = submit_in_order(self.runner, self._plan(run, submission, size, max_running), parse_job_id, "qdel")
        arrays = [{"job": job, "first": first, "count": count} for job, first, count in queued]
        write_json(_arrays_file(run, submission, self.flavor), arrays)
        return [str(a["job"]) for a in arrays]

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        known: dict[str, tuple[int, int]] = {}  # job sequence number -> (submission, its first index)
        wanted: list[str] = []
        for sub in submissions:
            path = _arrays_file(run, sub.number, self.flavor)
            for job, first in read_arrays(run, path, sub.job_ids, "first"):
                if job in sub.job_ids:
                    known[_sequence(job)] = (sub.number, first)
                    wanted.append(job)
        if not wanted:
            return {}
        done = self.runner(["qstat", "-f", "-t", *wanted])
        if done.returncode != 0 and not _only_gone(done.stderr):
            raise SubmissionError(f"qstat failed: {one_line(done.stderr, 300)}")
        out: dict[tuple[int, int], str] = {}
        for job_id, state in parse_qstat(done.stdout):
            found = re.match(r"(\d+)(?:\[(\d*)\])?", job_id)
            if not found or found.group(1) not in known or found.group(2) == "":  # "" = the array itself
                continue
            number, first = known[found.group(1)]
            # A subjob's index is the array index itself (ranges start at the array's first); a
            # plain job (one index) has none and stands for its first.
            k = int(found.group(2)) if found.group(2) is not None else first
            if state in _PENDING | _RUNNING:
                out[(number, k)] = "running" if state in _RUNNING else "pending"
        return out

    def task_log(self, run: Run, sub: Submission, array_index: int, job_id: str) -> TaskLog:
        """``logs/<job>_<index>.out``, as the job script names it: the job's sequence number (its id
        up to the first ``[`` or ``.``) and the subjob index, which is the array index itself (a
        plain one-index job is given its array's first). Without a record's job id, the array
        holding ``array_index`` is found from the arrays file."""
        if not re.match(r"\d+", job_id):
            path = _arrays_file(run, sub.number, self.flavor)
            holding = [
                (first, job) for job, first in read_arrays(run, path, sub.job_ids, "first") if first <= array_index
            ]
            if not holding:
                return TaskLog(job_id, None)
            _, job = max(holding)
            job_id = job.replace("[]", f"[{array_index}]")
        return TaskLog(job_id, run.path / "logs" / f"{_sequence(job_id)}_{array_index}.out")

    def cancel(self, run: Run, job_ids: list[str]) -> None:
        if not job_ids:
            return
        done = self.runner(["qdel", *job_ids])
        if done.returncode != 0 and not _only_gone(done.stderr):
            raise SubmissionError(f"qdel failed: {one_line(done.stderr, 300)}")

    def submit_training(self, workdir: Path, argv: list[str], resources: Resources, prelude: Sequence[str] = ()) -> str:
        script_path = workdir / "train.pbs"
        options = [
            ("-N", job_name("dlcrun-train", workdir.name)),
            ("-j", "oe"),
            ("-o", f"{workdir / 'logs'}/"),
            *self.flavor.resources(resources),
        ]
        directives = directive_lines("#PBS", options, resources.extra)
        environment = [("DLCRUN_TRAIN", str(workdir)), *software_env()]
        write_script(script_path, render("train.pbs", argv, directives, environment, prelude))
        return parse_job_id(checked(self.runner, ["qsub", str(script_path)]))


def software_env() -> list[tuple[str, str]]:
    """(NAME, value) of the SOFTWARE_ENV variables set here, for the job script to export."""
    return [(name, value) for name in SOFTWARE_ENV if (value := os.environ.get(name))]


def _sequence(job_id: str) -> str:
    found = re.match(r"\d+", job_id)
    return found.group(0) if found else job_id


def _only_gone(stderr: str) -> bool:
    """qstat/qdel complain about jobs that have ended; that is an answer, not a failure."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return all(_GONE.search(line) for line in lines)


def parse_job_id(stdout: str) -> str:
    """qsub prints ``123[].server`` for an array, ``123.server`` for a job."""
    text = stdout.strip()
    if not re.fullmatch(r"\d+(\[\])?(\.\S+)?", text):
        raise SubmissionError(f"qsub printed no job id: {text[:200]!r}")
    return text


def parse_qstat(stdout: str) -> list[tuple[str, str]]:
    """(job id, job_state letter) for each block of ``qstat -f`` output (PBS Pro and Torque)."""
    rows: list[tuple[str, str]] = []
    job: str | None = None
    for line in stdout.splitlines():
        head = re.match(r"\s*Job Id:\s*(\S+)", line)
        if head:
            job = head.group(1)
            continue
        state = re.match(r"\s*job_state\s*=\s*(\w)", line)
        if state and job is not None:
            rows.append((job, state.group(1).upper()))
            job = None
    return rows


@register("pbs")
def _pro() -> PbsScheduler:
    return PbsScheduler(PRO)


@register("torque")
def _torque() -> PbsScheduler:
    return PbsScheduler(TORQUE)
