"""The 'local' scheduler: this machine runs the array, ``max_running`` indices at a time.

A detached supervisor process (its own session, so closing the terminal does not stop it)
starts one ``dlcrun task`` subprocess per array index, exactly what a cluster array index
runs, and keeps a small state file that ``status`` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlcrun.ledger import Run, read_json, write_json
from dlcrun.schedulers import JobPlan, register, task_argv
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
        return [_detach(plan.argv, run.path / "logs" / f"local-{submission:03d}.log")]

    def submit_training(self, workdir: Path, argv: list[str], resources: Resources) -> str:
        return _detach(_here(argv), workdir / "logs" / "train.out")

    def states(self, run: Run, job_ids: list[str]) -> dict[int, str]:
        out: dict[int, str] = {}
        for sub in run.submissions():
            if sub.scheduler != self.name or not set(sub.job_ids) & set(job_ids):
                continue
            try:
                state = read_json(_state_file(run, sub.number))
            except (FileNotFoundError, json.JSONDecodeError):
                state = {}
            alive = all(_alive(j) for j in sub.job_ids)
            for k in range(run.array_size(len(sub.indices))):
                s = state.get(str(k), "pending")
                if s in ("pending", "running") and alive:
                    out.update((i, s) for i in run.task_group(sub.indices, k))
        return out

    def cancel(self, run: Run, job_ids: list[str]) -> None:
        for job in job_ids:
            pid = _pid(job)
            if pid and _alive(job):
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _detach(argv: list[str], log_path: Path) -> str:
    """Start ``argv`` in its own session (closing the terminal does not stop it); its job id."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    return f"local-{proc.pid}"


def _pid(job_id: str) -> int | None:
    try:
        return int(job_id.removeprefix("local-"))
    except ValueError:
        return None


def _alive(job_id: str) -> bool:
    pid = _pid(job_id)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of this process is a zombie until reaped; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


@register("local")
def _factory() -> LocalScheduler:
    return LocalScheduler()


def _here(argv: list[str]) -> list[str]:
    """A bare ``dlcrun`` runs in this interpreter, whether or not dlcrun is on PATH; a command
    that starts with the image's prefix is left as it is (the image has its own dlcrun)."""
    return [sys.executable, "-m", "dlcrun", *argv[1:]] if argv[0] == "dlcrun" else argv


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
            cmd = _here(task_argv(run, submission)) + ["--array-index", str(k)]
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
