"""What a job process knows about itself: its scheduler job id, and SIGTERM as an exception.

Array indices and training jobs are stopped by SIGTERM (a time limit, a preemption, a cancel);
turning it into ``Interrupted`` lets every ``finally`` run, so scratch is cleaned, a half
publish undone and the record written before the process ends.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager


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
