"""Trust at 10,000 videos: the ledger heals, a refused resubmit changes nothing, status never
compares two machines' clocks, cancel signals only what is ours, a dry run shows the real array.

Real parts: run directories on disk written as dlcrun writes them (then damaged as a full disk,
a crash or a newer dlcrun would leave them), the `dlcrun` CLI, the local scheduler with real
processes and real signals. Slurm's clients are stood in for by a command runner with canned
replies (registered through the scheduler registry, as test_pbs_emulation does for PBS).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from waiting import wait_for

from dlcrun import batch
from dlcrun.cli import app
from dlcrun.errors import RunError
from dlcrun.files import write_json
from dlcrun.ledger import Record, Run
from dlcrun.manifest import Manifest
from dlcrun.schedulers import local, register
from dlcrun.schedulers.scripts import Runner
from dlcrun.schedulers.slurm import SlurmScheduler
from dlcrun.settings import load_settings

runner = CliRunner()


def model(tmp_path: Path) -> dict[str, object]:
    """A pinned model as model.json holds it (no snapshot behind it: nothing here runs inference)."""
    return {
        "project": str(tmp_path / "project"),
        "shuffle": 1,
        "trainingsetindex": 0,
        "snapshot": str(tmp_path / "project" / "snapshot-1.pt"),
        "scorer": "DLC_resnet50_fakeJan1shuffle1_1",
        "bodyparts": ["nose"],
        "net_type": "resnet_50",
        "default_batch_size": 1,
        "engine": "pytorch",
    }


def make_run(tmp_path: Path, n: int = 3, **overrides: object) -> Run:
    """A run over ``n`` videos that do not exist (an index that runs fails fast: no such video)."""
    settings = load_settings(
        None,
        project=tmp_path / "project",
        dest=str(tmp_path / "out"),
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        **overrides,
    )
    manifest = Manifest(entries=[str(tmp_path / "videos" / f"v{i}.mp4") for i in range(n)])
    return Run.create(tmp_path / "runs", settings, manifest, model(tmp_path), name="batch")


def add_submission(run: Run, scheduler: str, jobs: list[str], indices: list[int]) -> int:
    number = run.next_submission_number()
    run.write_indices(number, indices)
    run.add_submission(number, scheduler, jobs, indices, None)
    return number


def record(run: Run, index: int, state: str, **fields: object) -> None:
    run.write_record(Record(index=index, video=run.manifest.entries[index], state=state, attempts=1, **fields))


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def lines_naming(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if name in line]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


GONE = "local-999999999"  # a local array whose supervisor is long gone (no such PID)


# ---------------------------------------------------------------- 1. a ledger that heals


def test_damaged_records_and_submissions_are_one_line_each_and_resubmit_heals_them(tmp_path: Path) -> None:
    """Guarantee 1: status, resubmit and cancel print one line per damaged ledger file (no
    traceback); a damaged record counts as not done (failed, with the reason), a damaged
    submission file is left out and the rest still shows; resubmit reruns the damaged indices,
    and their tasks write fresh records over the damaged files."""
    run = make_run(tmp_path, n=5)
    add_submission(run, "local", [GONE], [0, 1, 2, 3, 4])
    record(run, 0, "done", submission=1)
    record(run, 4, "failed", submission=1, error="no such video")
    records = run.path / "records"
    (records / "000001.json").write_text("")  # a full disk: created, never filled
    (records / "000002.json").write_text('{"index": 2, "video": "/v')  # torn
    (records / "000003.json").write_text("[3]")  # JSON, not a record
    (run.path / "submissions" / "002.json").write_text('{"number": 2, "sched')
    (run.path / "submissions" / "002.indices").write_text("1\n")

    code, shown = invoke("status", str(run.path))
    assert code == 0, shown
    for name, why in [("000001.json", "empty"), ("000002.json", "Unterminated string"), ("000003.json", "list")]:
        (line,) = lines_naming(shown, name)
        assert line.startswith("warning:") and "damaged (" in line and why in line and "not done" in line, line
    (line,) = lines_naming(shown, "submissions/002.json")
    assert line.startswith("warning:") and "damaged (" in line, line
    current = batch.status(run)
    assert current.states == {0: "done", 1: "failed", 2: "failed", 3: "failed", 4: "failed"}
    assert "record is damaged" in current.records[1].error
    assert [s.number for s in current.submissions] == [1]
    assert run.record(1) is None  # what a task starting index 1 sees: nothing to keep, it writes anew

    code, shown = invoke("cancel", str(run.path))
    assert code == 0 and "nothing to cancel" in shown, shown
    assert all(len(lines_naming(shown, f"{i:06d}.json")) == 1 for i in (1, 2, 3)), shown

    code, shown = invoke("resubmit", str(run.path), "--no-wait")
    assert code == 0, shown
    assert all(len(lines_naming(shown, f"{i:06d}.json")) == 1 for i in (1, 2, 3)), shown
    (_, again) = Run(run.path).submissions()
    assert again.number == 3 and again.indices == [1, 2, 3, 4]  # after 001 and the damaged 002
    final = wait_for(Run(run.path), timeout=180)
    assert final.states == {0: "done", 1: "failed", 2: "failed", 3: "failed", 4: "failed"}
    healed = Run(run.path)
    for i in (1, 2, 3):
        fresh = healed.record(i)
        assert fresh is not None and fresh.attempts == 1 and "no such video" in fresh.error, fresh
    assert healed.record(4).attempts == 2
    assert [w for w in batch.status(healed).warnings if "/records/" in w] == []


def test_damaged_settings_or_model_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    """Guarantee 1: a damaged settings.json or model.json (nothing runs without them) is one
    line naming the file, in the CLI and for the task, never a traceback."""
    run = make_run(tmp_path, n=1)
    settings = run.path / "settings.json"
    settings.write_text(settings.read_text()[:40])
    code, shown = invoke("status", str(run.path))
    assert code == 1 and len(shown.strip().splitlines()) == 1, shown
    assert shown.startswith("error:") and "settings.json: damaged (" in shown, shown
    code, shown = invoke("task", "--run", str(run.path), "--index", "0")
    assert code == 1 and "settings.json: damaged (" in shown, shown

    settings.write_text('{"scheduler": 7}')  # JSON, wrong type
    code, shown = invoke("status", str(run.path))
    assert code == 1 and "settings.json: damaged (scheduler: " in shown, shown

    other = make_run(tmp_path / "other", n=1)
    (other.path / "model.json").write_text("\x00\x00\x00")
    with pytest.raises(RunError, match=r"model\.json: damaged \("):
        _ = other.model
    code, shown = invoke("task", "--run", str(other.path), "--index", "0")  # the index fails, saying why
    assert code == 1 and "model.json: damaged (" in shown, shown
    assert "model.json: damaged (" in other.record(0).error


def test_keys_a_newer_dlcrun_wrote_are_ignored_everywhere(tmp_path: Path) -> None:
    """Guarantee 1: records, their outputs, submissions and the frozen settings.json written by
    a newer dlcrun (keys this one does not know) load, the unknown keys ignored (settings: with
    one warning line), and rewriting settings.json keeps them."""
    run = make_run(tmp_path, n=2)
    add_submission(run, "local", [GONE], [0, 1])
    sub_path = run.path / "submissions" / "001.json"
    write_json(sub_path, {**json.loads(sub_path.read_text()), "priority": "high"})
    record(run, 0, "done", submission=1)
    data = json.loads(run.record_path(0).read_text())
    data["gpu_model"] = "H200"
    data["outputs"] = [{"uri": "/out/a.h5", "size": 3, "sha256": "ab", "etag": "x"}]
    write_json(run.record_path(0), data)
    settings_path = run.path / "settings.json"
    frozen = json.loads(settings_path.read_text())
    frozen["tracker"] = {"kind": "new"}
    frozen["resources"]["gpu_model"] = "h200"
    write_json(settings_path, frozen)

    code, shown = invoke("status", str(run.path))
    assert code == 0, shown
    (line,) = lines_naming(shown, "settings.json")
    assert line.startswith("warning:") and "tracker" in line and "resources.gpu_model" in line, line
    current = batch.status(run)
    assert current.states == {0: "done", 1: "lost"} and current.records[0].outputs[0].uri == "/out/a.h5"
    run.write_settings(run.scheduling({"time": "12:00:00"}))
    kept = json.loads(settings_path.read_text())
    assert kept["tracker"] == {"kind": "new"} and kept["resources"]["gpu_model"] == "h200"
    assert kept["resources"]["time"] == "12:00:00"


# ---------------------------------------------------------------- 2. a refused resubmit changes nothing


def _refusing_slurm(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """squeue and sbatch as a cluster answers that has purged the run's old array and refuses a
    new one (the partition does not exist)."""
    if argv[0] == "squeue":
        return subprocess.CompletedProcess(argv, 1, "", "slurm_load_jobs error: Invalid job id specified\n")
    assert argv[0] == "sbatch", argv
    return subprocess.CompletedProcess(argv, 1, "", "sbatch: error: Batch job submission failed: Invalid partition\n")


def _named(name: str, runner: Runner) -> SlurmScheduler:
    made = SlurmScheduler(runner=runner)
    made.name = name  # what the run's settings and submissions call it
    return made


def test_an_invalid_resubmit_value_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Guarantee 2: `resubmit --mem 32GiB` (sbatch refuses that spelling: 'Invalid --mem
    specification') or `--time 12x` is refused before anything is written, whatever the
    scheduler (the local one ignores both and would have run with them)."""
    run = make_run(tmp_path, n=2)
    add_submission(run, "local", [GONE], [0, 1])
    record(run, 0, "done", submission=1)
    record(run, 1, "failed", submission=1, error="no such video")
    before = snapshot(run.path)
    code, shown = invoke("resubmit", str(run.path), "--mem", "32GiB")
    assert code == 1 and "--mem 32GiB: not a memory size" in shown, shown  # blamed on the flag
    assert len(shown.strip().splitlines()) == 1, shown
    code, shown = invoke("resubmit", str(run.path), "--time", "12x")
    assert code == 1 and "--time 12x: not a wall time" in shown, shown
    assert snapshot(run.path) == before


def test_a_resubmit_the_scheduler_refuses_leaves_no_trace(tmp_path: Path) -> None:
    """Guarantee 2: when sbatch refuses the new array, settings.json keeps the old resources
    (the new ones are written only once an array is queued), and the .indices file and job
    script written for it are removed: the run directory is byte for byte as before."""
    register("slurm-refusing")(lambda: _named("slurm-refusing", _refusing_slurm))
    refused = make_run(tmp_path / "slurm", n=2, scheduler="slurm-refusing", max_array_size=1000)
    add_submission(refused, "slurm-refusing", ["4242"], [0, 1])  # long finished: squeue no longer knows it
    record(refused, 0, "done", submission=1)
    record(refused, 1, "interrupted", submission=1, error="stopped by signal 15")
    before = snapshot(refused.path)
    code, shown = invoke("resubmit", str(refused.path), "--time", "12:00:00", "--mem", "32G", "--max-running", "5")
    assert code == 1 and "Invalid partition" in shown, shown
    assert snapshot(refused.path) == before, "settings.json, .indices and the job script are as before"


# ---------------------------------------------------------------- 3. status never compares clocks


def test_status_decides_by_submission_numbers_not_clocks(tmp_path: Path) -> None:
    """Guarantee 3: whether a record still counts while its index is queued again is decided by
    the submission it ran under, never by comparing a compute node's clock (the record's
    `finished`) with the login node's (the submission's `submitted`). Records without a
    submission: an older dlcrun's are placed by their job id; `task --index` ones yield to the
    live array."""
    squeue = "200|0|PENDING\n200|1|RUNNING\n200|2|PENDING\n200|3|RUNNING\n"

    def canned(argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert argv[0] == "squeue", argv
        return subprocess.CompletedProcess(argv, 0, squeue, "")

    register("slurm-canned")(lambda: _named("slurm-canned", canned))
    run = make_run(tmp_path, n=5, scheduler="slurm-canned")
    add_submission(run, "slurm-canned", ["100"], [0, 1, 2, 3, 4])
    add_submission(run, "slurm-canned", ["200"], [0, 1, 2, 4])  # array indices 0..3
    ahead, behind = "2999-01-01T00:00:00+00:00", "2000-01-01T00:00:00+00:00"  # compute nodes' clocks
    record(run, 0, "failed", submission=1, finished=ahead, job_id="100_0")  # superseded: queued again
    record(run, 1, "done", submission=2, finished=behind, job_id="200_1")  # this array's own result
    record(run, 2, "done", submission=None, finished=behind)  # dlcrun task --index: the array decides
    record(run, 3, "done", submission=None, finished=ahead, job_id="100_3")  # an older dlcrun's record
    record(run, 4, "done", submission=None, finished=behind, job_id="200_3")  # older dlcrun, this array
    assert batch.status(run).states == {0: "queued", 1: "done", 2: "queued", 3: "done", 4: "done"}


# ---------------------------------------------------------------- 4. cancel only what is ours


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "120"], start_new_session=True)


def identity(pid: int) -> tuple[str, str]:
    """(start time in clock ticks since boot, boot id's first 8 hex digits) of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return stat[19], Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]


def test_cancel_signals_only_processes_that_are_still_ours(tmp_path: Path) -> None:
    """Guarantee 4: a local array's job id names its supervisor's PID with its start time and
    boot; `dlcrun cancel` signals a PID only while it is still that process. Here arrays 1 and 2
    finished long ago and their PIDs now belong to unrelated processes (real `sleep`s): one under
    an older dlcrun's bare `local-<pid>` id, one under an id with another start time. Neither is
    signalled nor marked cancelled; array 3, a live process that is ours, is."""
    run = make_run(tmp_path, n=3)
    reused_bare, reused, live = _sleeper(), _sleeper(), _sleeper()
    try:
        first = add_submission(run, "local", [f"local-{reused_bare.pid}"], [0])
        write_json(run.path / "submissions" / f"{first:03d}.local.json", {"0": "running"})  # supervisor SIGKILLed
        record(run, 0, "running", submission=1)
        start, boot = identity(reused.pid)
        second = add_submission(run, "local", [f"local-{reused.pid}-{int(start) + 1}-{boot}"], [1])
        write_json(run.path / "submissions" / f"{second:03d}.local.json", {"0": "pending"})
        start, boot = identity(live.pid)
        third = add_submission(run, "local", [f"local-{live.pid}-{start}-{boot}"], [2])
        write_json(run.path / "submissions" / f"{third:03d}.local.json", {"0": "pending"})

        assert batch.status(run).states == {0: "lost", 1: "lost", 2: "queued"}
        code, shown = invoke("cancel", str(run.path))
        assert code == 0 and "1 indices were queued or running" in shown, shown
        assert live.wait(timeout=10) == -signal.SIGTERM
        time.sleep(0.5)
        assert reused_bare.poll() is None and reused.poll() is None, "someone else's process was signalled"
        assert [s.cancelled is not None for s in run.submissions()] == [False, False, True]
        assert batch.status(run).states == {0: "lost", 1: "lost", 2: "cancelled"}

        code, shown = invoke("cancel", str(run.path))  # everything has finished now
        assert code == 0 and "nothing to cancel" in shown, shown
        assert reused_bare.poll() is None and reused.poll() is None
    finally:
        for proc in (reused_bare, reused, live):
            proc.kill()
            proc.wait()


def test_local_job_id_names_the_process_start_time_and_boot(tmp_path: Path) -> None:
    """Guarantee 4: the job id the local scheduler records is the supervisor's PID, its start
    time (field 22 of /proc/<pid>/stat) and boot id; a finished supervisor is not ours."""
    proc = _sleeper()
    try:
        job = local.job_id(proc.pid)
        start, boot = identity(proc.pid)
        assert job == f"local-{proc.pid}-{start}-{boot}"
        run = make_run(tmp_path, n=1)
        assert local.ours(job, run)
    finally:
        proc.kill()
        proc.wait()
    assert not local.ours(job, run)
    assert os.path.exists("/proc/self/stat")


# ---------------------------------------------------------------- 5. a dry run shows the real array


def test_dry_run_plans_the_array_that_would_run(tmp_path: Path) -> None:
    """Guarantee 5: with --videos-per-task 2, five videos are an array of 3 indices, and so is the
    dry run's plan; split at max_array_size 2, the chained arrays cover exactly those 3 indices
    (0-1, then 0-0 at offset 2 waiting on the first) and every video once."""
    run = make_run(tmp_path, n=5, scheduler="slurm", videos_per_task=2, max_array_size=1000)
    (one,) = batch.plan(run)
    assert one.script is not None and "#SBATCH --array=0-2\n" in one.script

    split = make_run(tmp_path / "split", n=5, scheduler="slurm", videos_per_task=2, max_array_size=2, max_running=2)
    plans = batch.plan(split)
    scripts = [p.script or "" for p in plans]
    arrays = [next(x for x in s.splitlines() if x.startswith("#SBATCH --array=")) for s in scripts]
    assert arrays == ["#SBATCH --array=0-1%2", "#SBATCH --array=0-0%2"]
    assert "--dependency=afterany:{previous}" in plans[1].argv
    covered = []
    for script, array in zip(scripts, arrays):
        offset = int(script.partition("export DLCRUN_ARRAY_OFFSET=")[2].partition("\n")[0] or 0)
        last = int(array.removeprefix("#SBATCH --array=0-").partition("%")[0])
        covered += [i for k in range(last + 1) for i in split.task_group(list(range(5)), offset + k)]
    assert covered == [0, 1, 2, 3, 4]
    assert not list((split.path / "submissions").iterdir()), "a plan writes nothing"


@pytest.mark.slow
def test_submit_dry_run_prints_the_array_that_would_run(tmp_path: Path, demo_project: Path, tiny_videos) -> None:
    """Guarantee 5, through `dlcrun submit --dry-run --videos-per-task 2` over five videos (the
    model is pinned for real): `--array=0-2`, not 0-4; split into chained arrays, each array's job
    script is kept in the dry run's directory and the commands file feeds the later array the
    earlier one's job id."""
    videos = tiny_videos(tmp_path / "videos", [f"v{i}.mp4" for i in range(5)])
    manifest = tmp_path / "batch.txt"
    manifest.write_text("".join(f"{v}\n" for v in videos))
    config = tmp_path / "dlcrun.toml"
    common = ["submit", str(manifest), "--project", str(demo_project), "--dest", str(tmp_path / "out")]
    common += ["--runs-dir", str(tmp_path / "runs"), "--scheduler", "slurm", "--videos-per-task", "2"]
    common += ["--max-running", "2", "--device", "cpu", "--dry-run"]  # cpu said: no GPU asked for
    for size, expected in [(1000, ["--array=0-2%2"]), (2, ["--array=0-1%2", "--array=0-0%2"])]:
        config.write_text(f"max_array_size = {size}\n")
        known = set((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else set()
        code, shown = invoke(*common, "-c", str(config))
        assert code == 0, shown
        (path,) = set((tmp_path / "runs").glob("*")) - known
        run = Run(path)
        assert run.dry is not None and f"run {run.id} kept in {path}" in shown
        scripts = [p.script_path for p in batch.plan(run)]
        assert all(s is not None and s.is_file() for s in scripts), "each array's script is kept"
        arrays = [next(w for w in s.read_text().split() if w.startswith("--array=")) for s in scripts if s]
        assert arrays == expected
        assert "#!/bin/bash" not in shown, "the scripts are named, not printed"
        commands = (path / "submissions" / "001.submit.sh").read_text()
        if size == 2:
            assert "DLCRUN_ARRAY_OFFSET=2" in scripts[1].read_text()  # type: ignore[union-attr]
            assert 'afterany:"$previous"' in commands and "each array waits for the one before it" in shown
        assert not list((path / "submissions").glob("*.json")), "nothing was queued"
