"""What the cluster backends share: job script templates, rendering, the command runner, chunks.

The templates live in ``dlcrun/jobs/`` (``jobs/`` at the top of a checkout points there). Each
is a plain, commented bash script with one ``TASK=(...)`` line and three marker lines that
rendering fills in: ``# @directives`` (the ``#SBATCH`` / ``#PBS`` lines: every resource, the
array and its throttle, the log paths), ``# @environment`` (the run's variables, exported) and
``# @prelude`` (the lines settings.prelude gives: module load, conda activate). The rendered
script is what a cluster user would write by hand: ``sbatch FILE`` / ``qsub FILE`` runs it with
nothing on the command line but a dependency. It is kept in the run directory, so a run records
what its jobs executed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from dlcrun.errors import ClientMissing, ConfigError, SubmissionError, one_line
from dlcrun.files import Damaged, read_object_list
from dlcrun.ledger import Run
from dlcrun.schedulers import PREVIOUS, JobPlan
from dlcrun.settings import MEMORY

JOBS = Path(__file__).resolve().parent.parent / "jobs"
_TASK_LINE = re.compile(r"^TASK=\(.*\)$", re.MULTILINE)
_MARKER = re.compile(r"^# @(directives|environment|prelude)\n", re.MULTILINE)

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a scheduler client (sbatch, squeue, qsub, ...); its absence is a one-line error."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ClientMissing(argv[0]) from None
    except subprocess.TimeoutExpired:
        raise SubmissionError(f"{argv[0]} did not answer in 120 s; is the scheduler up?") from None


def checked(runner: Runner, argv: list[str]) -> str:
    """stdout of ``argv``, or a SubmissionError quoting the client's own complaint."""
    done = runner(argv)
    if done.returncode != 0:
        said = one_line(done.stderr or done.stdout or "", 300) or f"exit status {done.returncode}"
        raise SubmissionError(f"{argv[0]} failed: {said}")
    return done.stdout


def render(
    template: str,
    task: list[str],
    directives: Sequence[str] = (),
    environment: Sequence[tuple[str, str]] = (),
    prelude: Sequence[str] = (),
) -> str:
    """The job script ``template`` with its TASK line set to ``task`` and its markers filled:
    ``directives`` (whole ``#SBATCH ...`` lines), ``environment`` (NAME, value: exported) and
    ``prelude`` (shell lines run before the task, with unset variables allowed: conda's and
    environment modules' scripts read some)."""
    path = JOBS / template
    text = path.read_text()
    found = _TASK_LINE.findall(text)
    if len(found) != 1:
        raise ConfigError(f"{path}: needs exactly one 'TASK=(...)' line (found {len(found)}); restore it")
    blocks = {
        "directives": "".join(f"{line}\n" for line in directives),
        "environment": "".join(f"export {name}={shlex.quote(value)}\n" for name, value in environment),
        "prelude": _prelude(prelude),
    }
    text = _MARKER.sub(lambda m: blocks[m.group(1)], text)
    return _TASK_LINE.sub(lambda _: f"TASK=({shlex.join(task)})", text)


def _prelude(lines: Sequence[str]) -> str:
    if not lines:
        return '# prelude: none (dlcrun.toml: prelude = ["module load ..."] adds lines here)\n'
    body = "".join(f"{line}\n" for line in lines)
    return f"# prelude (dlcrun.toml: prelude)\nset +u\n{body}set -u\n"


def directive_lines(prefix: str, options: Iterable[str | tuple[str, str]], extra: Sequence[str] = ()) -> list[str]:
    """``#SBATCH --time=04:00:00`` / ``#PBS -l walltime=04:00:00`` lines: one per option, given as
    a word or as (flag, value); then ``extra`` (settings' resources.extra), where a word that does
    not start with ``-`` continues the line before it (``["-W", "group_list=x"]``).

    A value with a space or a newline cannot be written on such a line (the schedulers split on
    spaces): refused in one line naming it, rather than a job asking for something else.
    """
    lines = []
    for option in options:
        flag, value = (option, "") if isinstance(option, str) else option
        if re.search(r"\s", value) or re.search(r"\s", flag):
            raise ConfigError(
                f"'{f'{flag} {value}'.strip()}': cannot go on a {prefix} line (it holds a space); "
                "use a path or value without spaces"
            )
        lines.append(f"{prefix} {flag} {value}".rstrip())
    words: list[str] = []
    for word in extra:
        if "\n" in word:
            raise ConfigError(f"resources.extra '{word}': one directive per item, no newlines")
        if word.startswith("-") or not words:
            words.append(word)
        else:
            words[-1] += f" {word}"
    return lines + [f"{prefix} {line}" for line in words]


def write_script(path: Path, text: str) -> None:
    """Write an executable job script atomically (a half-written script is never submitted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def chunks(size: int, limit: int) -> list[tuple[int, int]]:
    """(first index, count) of consecutive arrays of at most ``limit`` indices covering 0..size-1."""
    if size < 1:
        raise SubmissionError("nothing to submit: the array is empty")
    return [(start, min(limit, size - start)) for start in range(0, size, limit)]


def job_name(prefix: str, run_id: str) -> str:
    """A job name every scheduler accepts (PBS: 236 chars, no spaces; Torque once cut at 15)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{prefix}-{run_id}")[:200]


def memory(value: str) -> tuple[int, str]:
    """``16G`` / ``16gb`` / ``500M`` -> (16, 'g'); anything else names the setting to fix."""
    found = MEMORY.fullmatch(value)
    if not found:
        raise ConfigError(f"resources.mem = '{value}': use a whole number and a unit, e.g. 16G or 500M")
    return int(found.group(1)), (found.group(2) or "m").lower()


def submit_in_order(
    runner: Runner,
    plans: Sequence[tuple[JobPlan, int, int]],
    parse_job_id: Callable[[str], str],
    cancel: str,
) -> list[tuple[str, int, int]]:
    """Submit the arrays of one submission in order, each chained to the previous; all or none.

    Returns (job id, first array index, count) per array. If a later submit is refused, the
    arrays already queued are cancelled: the ledger would not know them.
    """
    queued: list[tuple[str, int, int]] = []
    try:
        for plan, first, count in plans:
            assert plan.script is not None and plan.script_path is not None
            write_script(plan.script_path, plan.script)
            previous = queued[-1][0] if queued else ""
            job = parse_job_id(checked(runner, [a.replace(PREVIOUS, previous) for a in plan.argv]))
            queued.append((job, first, count))
    except SubmissionError:
        if queued:
            runner([cancel, *(job for job, _, _ in queued)])
        raise
    return queued


def read_arrays(run: Run, path: Path, job_ids: list[str], key: str) -> list[tuple[str, int]]:
    """(job id, first array index's offset) of each array of a submission, from its arrays file
    (``key`` names the offset: ``offset`` for Slurm, ``first`` for PBS/Torque); from its job ids
    alone (offset 0) when the file is missing (an older dlcrun) or damaged (with a warning)."""
    try:
        return [(str(a["job"]), int(a[key])) for a in read_object_list(path)]
    except FileNotFoundError:
        pass
    except (Damaged, KeyError, TypeError, ValueError) as exc:
        run.warn(path, f"damaged ({exc}); its arrays are taken from the submission's job ids")
    return [(j, 0) for j in job_ids]
