"""The 'local' scheduler: this machine runs the array, ``max_running`` indices at a time.

A detached supervisor process (its own session, so closing the terminal does not stop it)
starts one ``dlcrun task`` subprocess per array index, exactly what a cluster array index
runs, and keeps a small state file that ``status`` reads.

The job id names the supervisor as ``local-<pid>-<start>-<boot>``: its PID, its start time
(clock ticks since boot, field 22 of /proc/<pid>/stat) and the first 8 hex digits of the boot
id (/proc/sys/kernel/random/boot_id). PIDs are reused: a process counts as the array's, for
``status`` and for ``cancel``'s signal, only while all three still match. A bare ``local-<pid>``
(written by an older dlcrun) counts only while that PID runs this module for this run.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dlcrun.files import Damaged, read_object, write_json
from dlcrun.ledger import Run, Submission
from dlcrun.schedulers import JobPlan, TaskLog, register, task_argv
from dlcrun.settings import Resources


def _state_file(run: Run, submission: int) -> Path:
    return run.path / "submissions" / f"{submission:03d}.local.json"


class LocalScheduler:
    name = "local"

    def plan(self, run: Run, submission: int, size: int, max_running: int | None) -> list[JobPlan]:
        cmd = [sys.executable, "-m", "dlcrun.schedulers.local", str(run.path), str(submission), str(size)]
        return [JobPlan(cmd + ["--max-running", str(max_running or 1)])]

    def submit(self, run: Run, submission: int, size: int, max_running: int | None) -> list[str]:
        (plan,) = self.plan(run, submission, size, max_running)
        return [job_id(_detach(plan.argv, run.path / "logs" / f"local-{submission:03d}.log"))]

    def submit_training(self, workdir: Path, argv: list[str], resources: Resources, prelude: Sequence[str] = ()) -> str:
        """Here, now; the prelude is for cluster nodes (this machine's environment is already set)."""
        return f"local-{_detach(argv, workdir / 'logs' / 'train.out')}"

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        out: dict[tuple[int, int], str] = {}
        for sub in submissions:
            path = _state_file(run, sub.number)
            try:
                state = read_object(path)
            except FileNotFoundError:
                state = {}
            except Damaged as exc:
                run.warn(path, f"damaged ({exc}); while its array runs, all its indices count as queued")
                state = {}
            if not (sub.job_ids and all(ours(j, run) for j in sub.job_ids)):  # its supervisor is gone
                continue
            for k in range(run.array_size(len(sub.indices))):
                s = state.get(str(k), "pending")
                if s in ("pending", "running"):
                    out[(sub.number, k)] = s
        return out

    def task_log(self, run: Run, sub: Submission, array_index: int, job_id: str) -> TaskLog:
        """``logs/<submission>_<array index>.out``: the file the supervisor opens for each task;
        the job id, without a record's, as the supervisor gives it (``local-<pid>_<k>``)."""
        found = _JOB.fullmatch(sub.job_ids[0]) if sub.job_ids and not job_id else None
        job_id = f"local-{found.group(1)}_{array_index}" if found else job_id
        return TaskLog(job_id, run.path / "logs" / f"{sub.number:03d}_{array_index}.out")

    def cancel(self, run: Run, job_ids: list[str]) -> None:
        """SIGTERM to each array's supervisor and its tasks, only while the PID is still ours."""
        for job in job_ids:
            found = _JOB.fullmatch(job)
            if found and ours(job, run):
                try:
                    os.killpg(int(found.group(1)), signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _detach(argv: list[str], log_path: Path) -> int:
    """Start ``argv`` in its own session (closing the terminal does not stop it); its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        except OSError:
            if log.tell() == 0:  # nothing started: leave no empty log behind
                log_path.unlink(missing_ok=True)
            raise
    return proc.pid


_JOB = re.compile(r"local-(\d+)(?:-(\d+)-([0-9a-f]*))?")


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of process ``pid``; None if none."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()  # the command name may hold ") "
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip().replace("-", "")[:8]
    except OSError:
        return ""


def job_id(pid: int) -> str:
    """The job id of the process ``pid`` now: PID, start time and boot; ``local-<pid>`` without /proc."""
    found = _stat(pid)
    return f"local-{pid}-{found[1]}-{_boot_id()}" if found else f"local-{pid}"


def ours(job: str, run: Run) -> bool:
    """Whether ``job`` still runs, as the very process it named (never a later one given its PID)."""
    found = _JOB.fullmatch(job)
    if not found:
        return False
    pid = int(found.group(1))
    if not os.path.exists("/proc/self/stat"):  # no /proc (not Linux): only the PID can be asked about
        return _exists(pid)
    now = _stat(pid)
    if now is None or now[0] in "ZX":  # gone, or finished and not yet reaped
        return False
    if found.group(2) is not None:
        return now[1] == found.group(2) and _boot_id() == found.group(3)
    return _supervises(pid, run)  # an older dlcrun's id: no start time to compare


def _supervises(pid: int, run: Run) -> bool:
    """Whether ``pid`` runs this module for ``run`` (what an id without a start time can be checked by)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return "dlcrun.schedulers.local" in args and any(Path(a).name == run.id for a in args if a)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@register("local")
def _factory() -> LocalScheduler:
    return LocalScheduler()


def supervise(run_path: Path, submission: int, size: int, max_running: int) -> int:
    """Run array indices 0..size-1, ``max_running`` at once; SIGTERM stops and forwards."""
    run = Run(run_path)
    state: dict[str, str | int] = {str(k): "pending" for k in range(size)}
    state_path = _state_file(run, submission)
    write_json(state_path, state)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    threads = run.settings.threads or max(1, (os.cpu_count() or 1) // max(1, max_running))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    running: dict[int, subprocess.Popen[bytes]] = {}
    pending = list(range(size))
    failures = 0
    while pending or running:
        while pending and len(running) < max_running and not stopping:
            k = pending.pop(0)
            out = open(run.path / "logs" / f"{submission:03d}_{k}.out", "ab")
            cmd = task_argv(run, submission) + ["--array-index", str(k)]
            env["DLCRUN_LOCAL_JOB"] = f"local-{os.getpid()}_{k}"
            running[k] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
            out.close()
            state[str(k)] = "running"
            write_json(state_path, state)
        if stopping:
            for proc in running.values():
                proc.terminate()
            pending.clear()
        time.sleep(0.2)
        for k, proc in list(running.items()):
            code = proc.poll()
            if code is not None:
                del running[k]
                state[str(k)] = code
                failures += code != 0
                write_json(state_path, state)
    return 1 if failures or stopping else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("submission", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("--max-running", type=int, default=1)
    args = parser.parse_args()
    sys.exit(supervise(args.run, args.submission, args.size, args.max_running))
