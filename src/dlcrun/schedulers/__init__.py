"""The scheduler seam: one array per submission, whatever runs it.

Every backend runs the same entry point per array index (``dlcrun task --run R --submission S
--array-index K``); array index K maps to manifest indices through the submission's
``.indices`` file, so a resubmission of scattered failures is still one dense array. A backend
speaks only of (submission, array index): which manifest lines those are, ``batch`` alone says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dlcrun.errors import ConfigError
from dlcrun.ledger import Run, Submission
from dlcrun.settings import Resources, known_scheduler

PREVIOUS = "{previous}"  # in a plan's argv: the job id of the plan before it, known once submitted


@dataclass(frozen=True)
class JobPlan:
    """One submit command, and the job script it submits (written before ``argv`` runs)."""

    argv: list[str]
    script: str | None = None
    script_path: Path | None = None


@dataclass(frozen=True)
class TaskLog:
    """Where one array index of a submission ran: its scheduler job id ("" when it cannot be
    told), the file its stdout/stderr went to (None when it cannot be told), and the command that
    shows how the scheduler saw that job ("" when there is none to suggest)."""

    job_id: str
    path: Path | None
    inspect: str = ""


class Scheduler(Protocol):
    name: str

    def plan(self, run: Run, submission: int, size: int, max_running: int | None) -> list[JobPlan]:
        """What ``submit`` would write and run: each job script (with its path) and the command
        that submits it. Writes nothing; ``dlcrun submit --dry-run`` keeps both in a run
        directory marked as a dry run."""
        ...

    def submit(self, run: Run, submission: int, size: int, max_running: int | None) -> list[str]:
        """Queue array indices 0..size-1 of ``submission``; return the job id(s)."""
        ...

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        """Live state ('pending' or 'running') of the array indices of ``submissions`` (the run's
        submissions made through this scheduler, as the caller has read them) that the scheduler
        still knows, keyed by (submission number, array index K within that submission). K is
        what the task is given: a split submission's offsets are applied. Indices that ended are
        left out: their records say how."""
        ...

    def task_log(self, run: Run, sub: Submission, array_index: int, job_id: str) -> TaskLog:
        """The job id and log file of array index ``array_index`` of ``sub``, as its job script
        names them; ``job_id`` is what the index's record says it ran as ("" without a record,
        e.g. an index lost before it started). Reads the ledger only, never the scheduler."""
        ...

    def cancel(self, run: Run, job_ids: list[str]) -> None:
        """Stop queued and running indices; running ones get SIGTERM and record 'interrupted'."""
        ...

    def submit_training(self, workdir: Path, argv: list[str], resources: Resources, prelude: Sequence[str] = ()) -> str:
        """One job running ``argv`` (``dlcrun train-task``) after the ``prelude`` lines, asking for
        ``resources``, output in ``workdir``/logs; its id."""
        ...


def follows(scheduler: str, wait: bool | None) -> bool:
    """Whether submit, resubmit and train follow progress until the end: as ``--wait/--no-wait``
    says, else only on the local scheduler, whose work runs on this machine now; a cluster's
    queue can hold an array for hours."""
    return wait if wait is not None else scheduler == "local"


def task_argv(run: Run, submission: int) -> list[str]:
    """The command every array index runs (the array index comes from the scheduler's env):
    this dlcrun by absolute path, or the image's inside the image."""
    from dlcrun.container import dlcrun_command, exec_prefix

    program = dlcrun_command(run.settings.image)
    return exec_prefix(run) + program + ["task", "--run", str(run.path), "--submission", str(submission)]


def unreachable(run: Run) -> tuple[str, str] | None:
    """(path, why) when a cluster's nodes may not start what the run's job scripts call (this
    dlcrun, or the image), else None; asked at submit: a job that cannot start dlcrun dies
    before it can record anything."""
    from dlcrun.container import dlcrun_command, reach, runs_here

    settings = run.settings
    if settings.scheduler == "local":
        return None
    program = dlcrun_command(settings.image)[0] if runs_here(settings.image) else str(settings.image)
    why = reach(program, executable=runs_here(settings.image))
    return None if why is None else (program, why)


_REGISTRY: dict[str, Callable[[], Scheduler]] = {}


def register(name: str) -> Callable[[Callable[[], Scheduler]], Callable[[], Scheduler]]:
    """A backend under ``name``; the settings then take ``scheduler = name`` (the built-in names
    are known to them before any backend is imported)."""

    def wrap(factory: Callable[[], Scheduler]) -> Callable[[], Scheduler]:
        _REGISTRY[name] = factory
        known_scheduler(name)
        return factory

    return wrap


def scheduler_for(name: str) -> Scheduler:
    from dlcrun.schedulers import local  # noqa: F401  (registers on import)

    for optional in ("slurm", "pbs"):
        try:
            __import__(f"dlcrun.schedulers.{optional}")
        except ImportError:
            pass
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ConfigError(f"unknown scheduler '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None
