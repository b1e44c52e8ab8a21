"""``dlcrun status`` at 5,000 videos: failures grouped by reason with a few examples, each
example's job id and log as its job script names it, throughput and ETA from the records,
``--json`` for scripts, the ledger alone when the scheduler's client is missing, and all of it
fast.

Real parts: run directories written by ledger.Run, batch.status, report.summarize, the views and
the CLI; the Slurm and PBS backends with canned client replies (their arrays files, offsets and
job ids as a real submission writes them). The scheduler's live view is a fake registered under
a test-only name where only the ledger matters.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dlcrun import batch, report
from dlcrun.cli import app, views
from dlcrun.errors import SubmissionError
from dlcrun.ledger import Record, Run, Submission
from dlcrun.manifest import Manifest
from dlcrun.report import GONE, reason_key
from dlcrun.schedulers import register
from dlcrun.schedulers.pbs import PRO, PbsScheduler
from dlcrun.schedulers.slurm import SlurmScheduler
from dlcrun.settings import load_settings

FAKE = "report-fake"
T0 = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.timezone.utc)


class FakeScheduler:
    """A scheduler that knows only the live states it is given (no ``task_log``: logs cannot be told)."""

    def __init__(self, live: dict[tuple[int, int], str]):
        self.name = FAKE
        self.live = live

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        return dict(self.live)


def fake(live: dict[tuple[int, int], str] | None = None) -> None:
    made = FakeScheduler(live or {})
    register(FAKE)(lambda: made)


def canned(name: str, replies: dict[str, str], pbs: bool = False) -> None:
    """A real backend under a test-only name whose clients answer from ``replies``; sbatch/qsub
    hand out job ids 10, 11, ... (qsub: ``10[].srv`` for an array, ``10.srv`` for a plain job)."""
    issued = iter(range(10, 100))

    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        if argv[0] == "sbatch":
            return subprocess.CompletedProcess(argv, 0, f"{next(issued)}\n", "")
        if argv[0] == "qsub":
            array = "#PBS -J " in Path(argv[-1]).read_text()  # qsub reads the script's directives
            return subprocess.CompletedProcess(argv, 0, f"{next(issued)}{'[]' if array else ''}.srv\n", "")
        return subprocess.CompletedProcess(argv, 0, replies.get(argv[0], ""), "")

    def made() -> SlurmScheduler | PbsScheduler:
        scheduler = PbsScheduler(PRO, runner) if pbs else SlurmScheduler(runner)
        scheduler.name = name
        return scheduler

    register(name)(made)


def make_run(tmp_path: Path, n: int, scheduler: str = FAKE, **overrides: object) -> Run:
    settings = load_settings(
        None,
        project=tmp_path / "project",
        dest=str(tmp_path / "out"),
        runs_dir=tmp_path / "runs",
        scheduler=scheduler,
        **overrides,
    )
    manifest = Manifest(entries=[f"/videos/cam{i % 4}/v{i}.mp4" for i in range(n)])
    return Run.create(tmp_path / "runs", settings, manifest, {"scorer": "DLC_test"}, name="report")


def add_submission(run: Run, indices: list[int], scheduler: str = FAKE) -> Submission:
    number = run.next_submission_number()
    run.write_indices(number, indices)
    return run.add_submission(number, scheduler, [str(100 * number)], indices, None)


def record(run: Run, i: int, state: str, submission: int | None = 1, error: str = "", **fields: object) -> None:
    run.write_record(
        Record(index=i, video=run.manifest.entries[i], state=state, submission=submission, error=error, **fields)
    )


def done(run: Run, i: int, minute: int, **fields: object) -> None:
    """Index ``i`` done: started ``minute`` minutes after T0, 9,000 frames in 30 s of inference."""
    start = T0 + dt.timedelta(minutes=minute)
    record(
        run,
        i,
        "done",
        started=start.isoformat(),
        finished=(start + dt.timedelta(seconds=40)).isoformat(),
        frames=9000,
        seconds={"fetch": 2.0, "load": 1.0, "infer": 30.0, "upload": 0.5},
        **fields,
    )


def rendered(shown: list[object]) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    for item in shown:
        console.print(item, highlight=False, soft_wrap=True)
    return buffer.getvalue()


# ---------------------------------------------------------------- grouping


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("no such video /videos/cam0/v1.mp4", "no such video /videos/cam3/v2718.mp4"),
        ("dropbox://lab/cam1/v7.mp4: HTTP 409 path/not_found", "dropbox://lab/cam2/v9.mp4: HTTP 409 path/not_found"),
        (
            "/scratch/dlcrun-r-11-1011/v11.mp4: cannot open as video (moov atom not found)",
            "/tmp/dlcrun-r-2000-77/v2000.mp4: cannot open as video (moov atom not found)",
        ),
        (
            "v1.h5: 8990 rows for 9000 analysed frames; not published",
            "v2.h5: 12 rows for 13 analysed frames; not published",
        ),
        ("sha256 mismatch: 3fa9c2e01b7d45aa", "sha256 mismatch: 0be1d2c3a4f5e6d7"),
    ],
)
def test_reasons_differing_in_their_video_paths_and_numbers_share_a_key(a: str, b: str) -> None:
    """Each reason with its own video (the manifest line; its name may appear inside a scratch path)."""
    assert reason_key(a, _video_in(a)) == reason_key(b, _video_in(b))
    assert reason_key(a, "") == reason_key(b, "")  # a reason that does not name its own video


def _video_in(reason: str) -> str:
    word = next((w.rstrip(":") for w in reason.split() if ".mp4" in w), "")
    return f"/videos/{Path(word).name}" if word.startswith("/scratch") or word.startswith("/tmp") else word


def test_different_reasons_keep_different_keys() -> None:
    keys = {
        reason_key(r, "/videos/v1.mp4")
        for r in (
            "no such video /videos/v1.mp4",
            "cannot open as video (moov atom not found)",
            "stopped by signal 15 (time limit, preemption or cancel)",
            "CUDA out of memory",
        )
    }
    assert len(keys) == 4


def test_failures_group_by_state_and_reason_largest_first_with_three_examples(tmp_path: Path) -> None:
    fake()
    run = make_run(tmp_path, 30)
    add_submission(run, list(range(30)))
    for i in range(0, 20, 2):  # 10: the video's own location in the reason
        record(run, i, "failed", error=f"no such video {run.manifest.entries[i]}")
    for i in (1, 3, 5, 7):  # 4: scratch paths with pids and numbers
        record(run, i, "failed", error=f"/scratch/dlcrun-x-{i}-{900 + i}/v{i}.mp4: cannot open as video")
    for i in (9, 11):
        record(run, i, "interrupted", error="stopped by signal 15 (time limit, preemption or cancel)")
    record(run, 13, "running")  # its job is gone: lost, with the reason status gives it
    # 15, 17, 19, 20: queued, gone without a record: lost
    for i in range(21, 30):
        done(run, i, minute=i)

    shown = report.summarize(batch.status(Run(run.path)))

    summary = [(g.state, g.count, [e.index for e in g.examples]) for g in shown.groups]
    assert summary == [
        ("failed", 10, [0, 10, 18]),  # the first, middle and last
        ("failed", 4, [1, 5, 7]),
        ("lost", 4, [15, 19, 20]),
        ("interrupted", 2, [9, 11]),
        ("lost", 1, [13]),
    ]
    first = shown.groups[0]
    assert first.reason == "no such video /videos/cam0/v0.mp4"  # the first example's real text
    assert [e.video for e in first.examples] == ["/videos/cam0/v0.mp4", "/videos/cam2/v10.mp4", "/videos/cam2/v18.mp4"]
    assert first.examples[1].error == "no such video /videos/cam2/v10.mp4"
    assert shown.groups[2].reason == GONE
    assert "stopped without recording a result" in shown.groups[4].reason

    text = rendered(views.status(shown))
    assert "failures by reason (21 videos, 5 reasons):" in text
    assert "failed 10: no such video /videos/cam0/v0.mp4" in text
    assert "#10 /videos/cam2/v10.mp4" in text and "#2 " not in text  # three examples, not ten
    assert "log: cannot tell where" in text  # a scheduler that cannot say how it names logs
    assert f"rerun them with: dlcrun resubmit {run.id}" in text


def test_three_hundred_failures_print_a_handful_of_lines(tmp_path: Path) -> None:
    fake()
    run = make_run(tmp_path, 300)
    add_submission(run, list(range(300)))
    for i in range(300):
        record(run, i, "failed", error=f"no such video {run.manifest.entries[i]}")
    text = rendered(views.status(report.summarize(batch.status(Run(run.path)))))
    assert text.count("no such video") == 1 and len(text.splitlines()) < 15, text


def test_many_reasons_print_the_largest_and_say_how_many_more(tmp_path: Path) -> None:
    fake()
    run = make_run(tmp_path, 12)
    add_submission(run, list(range(12)))
    for i in range(12):
        record(run, i, "failed", error=f"reason {'abcdefghijkl'[i]}")
    shown = report.summarize(batch.status(Run(run.path)))
    text = rendered(views.status(shown))
    assert len(shown.groups) == 12 and f"... and {12 - views.GROUPS_SHOWN} more reasons" in text


# ---------------------------------------------------------------- job ids and logs


def test_slurm_logs_of_split_arrays_from_the_record_or_the_arrays_file(tmp_path: Path) -> None:
    """Arrays 10 (indices 0-1), 11 (2-3), 12 (4): manifest index 3 logs to 11_1.out, which nobody
    can guess; an index gone without a record gets its job id and log from the arrays file."""
    canned("report-slurm", {"squeue": ""})
    run = make_run(tmp_path, 5, scheduler="report-slurm", max_array_size=2)
    sub = batch.submit(run)
    assert sub.job_ids == ["10", "11", "12"]
    record(run, 1, "failed", submission=1, error="CUDA out of memory", job_id="10_1")
    record(run, 3, "failed", submission=1, error="CUDA out of memory", job_id="11_1")
    (run.path / "logs" / "10_1.out").write_text("dlcrun: job 10_1\n")
    # index 4 has no record: lost, and its log is that of array 12's task 0

    shown = report.summarize(batch.status(Run(run.path)))

    gone, oom = shown.groups  # largest first
    assert [(e.index, e.job_id, e.log, e.log_found) for e in oom.examples] == [
        (1, "10_1", run.path / "logs" / "10_1.out", True),
        (3, "11_1", run.path / "logs" / "11_1.out", False),
    ]
    assert [(e.index, e.scheduler, e.job_id, e.log) for e in gone.examples] == [
        (0, "report-slurm", "10_0", run.path / "logs" / "10_0.out"),
        (2, "report-slurm", "11_0", run.path / "logs" / "11_0.out"),
        (4, "report-slurm", "12_0", run.path / "logs" / "12_0.out"),
    ]
    text = rendered(views.status(shown))
    assert f"#1 /videos/cam1/v1.mp4  (job 10_1, log {run.path / 'logs' / '10_1.out'})" in text
    assert "#3 /videos/cam3/v3.mp4  (job 11_1, log 11_1.out (not there))" in text  # beside the one above


def test_the_sacct_hint_names_a_slurm_job(tmp_path: Path) -> None:
    canned("report-sacct", {"squeue": ""})
    text = rendered(views.status(_one_failure(tmp_path, "report-sacct", "100")))
    assert "how the scheduler saw a job (exit code, memory, node): sacct -j 100_0" in text
    assert "sacct -j" not in rendered(views.status(_one_failure(tmp_path / "b", "local", "local-4242-1-ab")))


def _one_failure(tmp_path: Path, scheduler: str, job: str) -> report.Report:
    run = make_run(tmp_path, 1, scheduler=scheduler)
    run.write_indices(1, [0])
    run.add_submission(1, scheduler, [job], [0], None)
    record(run, 0, "failed", error="boom")
    return report.summarize(batch.status(Run(run.path)))


def test_an_index_gone_without_a_record_shows_the_last_line_of_its_log(tmp_path: Path) -> None:
    """A job that could not start dlcrun leaves no record, only its log (written by the real job
    script under bash): status shows that log's last line next to the lost video."""
    from dlcrun.schedulers.scripts import render

    canned("report-gone", {"squeue": ""})
    run = make_run(tmp_path, 2, scheduler="report-gone")
    run.write_indices(1, [0, 1])
    run.add_submission(1, "report-gone", ["100"], [0, 1], None)
    record(run, 1, "failed", error="boom", job_id="100_1")
    script = tmp_path / "job.slurm"
    script.write_text(render("array.slurm", ["/nowhere/bin/dlcrun", "task"], environment=[("DLCRUN_RUN", "r")]))
    log = run.path / "logs" / "100_0.out"
    with open(log, "w") as out:
        environ = {"PATH": "/usr/bin:/bin", "DLCRUN_SUBMISSION": "1", "SLURM_ARRAY_TASK_ID": "0"}
        ran = subprocess.run(["bash", str(script)], env=environ, stdout=out, stderr=subprocess.STDOUT, timeout=60)
    assert ran.returncode == 127
    shown = report.summarize(batch.status(Run(run.path)))
    (gone,) = [g for g in shown.groups if g.state == "lost"]
    (example,) = gone.examples
    assert example.last_words.startswith("dlcrun: /nowhere/bin/dlcrun not found on ")
    text = rendered(views.status(shown))
    assert "its log ends: dlcrun: /nowhere/bin/dlcrun not found on" in text
    failed = next(g for g in shown.groups if g.state == "failed")
    assert failed.examples[0].last_words == "", "a record that says why is not second-guessed by its log"


def test_pbs_logs_name_the_job_sequence_and_the_subjob_index(tmp_path: Path) -> None:
    """Arrays 10[] (0-1), 11[] (2-3) and the plain job 12 (4): ``logs/<seq>_<index>.out``."""
    canned("report-pbs", {"qstat": ""}, pbs=True)
    run = make_run(tmp_path, 5, scheduler="report-pbs", max_array_size=2)
    sub = batch.submit(run)
    assert sub.job_ids == ["10[].srv", "11[].srv", "12.srv"]
    record(run, 3, "failed", submission=1, error="boom", job_id="11[3].srv")
    shown = report.summarize(batch.status(Run(run.path)))
    boom, gone = sorted(shown.groups, key=lambda g: g.state)
    assert [(e.job_id, e.log) for e in boom.examples] == [("11[3].srv", run.path / "logs" / "11_3.out")]
    assert [(e.index, e.job_id, e.log) for e in gone.examples] == [
        (0, "10[0].srv", run.path / "logs" / "10_0.out"),
        (2, "11[2].srv", run.path / "logs" / "11_2.out"),
        (4, "12.srv", run.path / "logs" / "12_4.out"),  # one index left: a plain job, given index 4
    ]
    assert not any(e.log_found or e.inspect for e in gone.examples)


def test_local_logs_and_a_resubmission_s_array_index(tmp_path: Path) -> None:
    """A resubmission of [1, 4]: index 4 is its array index 1; a record names the array it ran under."""
    run = make_run(tmp_path, 5, scheduler="local")
    run.write_indices(1, list(range(5)))
    run.add_submission(1, "local", ["local-4242-1-ab"], list(range(5)), None)
    run.write_indices(2, [1, 4])
    run.add_submission(2, "local", ["local-4343-1-ab"], [1, 4], None)
    record(run, 1, "failed", submission=1, error="boom", job_id="local-4242_1")
    record(run, 4, "failed", submission=2, error="boom", job_id="local-4343_1")
    record(run, 2, "failed", submission=None, error="boom")  # dlcrun task --index: no array
    for i in (0, 3):
        done(run, i, minute=i)
    (group,) = report.summarize(batch.status(Run(run.path))).groups
    assert [(e.index, e.scheduler, e.job_id, e.log) for e in group.examples] == [
        (1, "local", "local-4242_1", run.path / "logs" / "001_1.out"),
        (2, "", "", None),
        (4, "local", "local-4343_1", run.path / "logs" / "002_1.out"),
    ]
    text = rendered(views.status(report.summarize(batch.status(Run(run.path)))))
    assert "#2 /videos/cam2/v2.mp4  (no array (dlcrun task --index)" in text


# ---------------------------------------------------------------- throughput and ETA


def test_throughput_and_eta_from_the_records(tmp_path: Path) -> None:
    """Six videos done over the first hour (9,000 frames in 30 s of inference each), one found
    done already (no inference: not in frames/s), 12 running or queued: 7 videos/h, 1 h 43 min left."""
    fake({(1, 7): "running", **{(1, k): "pending" for k in range(8, 19)}})
    run = make_run(tmp_path, 20)
    add_submission(run, list(range(20)))
    for i in range(6):
        done(run, i, minute=10 * i)
    record(run, 6, "done", started=(T0 + dt.timedelta(minutes=55)).isoformat(), frames=9000)  # found done already
    record(run, 19, "failed", error="boom", started=(T0 + dt.timedelta(minutes=5)).isoformat())

    shown = report.summarize(batch.status(Run(run.path)), now=T0 + dt.timedelta(hours=1))

    t = shown.throughput
    assert (t.done, t.inferred, t.frames, t.infer_seconds) == (7, 6, 54000, 180.0)
    assert t.frames_per_second == pytest.approx(300.0)
    assert t.first_start == T0 and t.wall_hours == pytest.approx(1.0)
    assert t.videos_per_hour == pytest.approx(7.0)
    assert t.stage_seconds == {"fetch": 2.0, "load": 1.0, "infer": 30.0, "upload": 0.5}
    assert shown.eta is not None and shown.eta.videos == 12
    assert shown.eta.seconds == pytest.approx(12 / 7 * 3600)
    text = rendered(views.status(shown))
    assert "300.0 frames/s of inference (7 videos done, 1 found done already, 54,000 frames analysed)" in text
    assert "7.0 videos/h since the first start (2024-03-01 08:00 UTC)" in text
    assert "ETA: about 1 h 43 min for the 12 videos running or queued (an estimate:" in text


def test_no_eta_when_nothing_is_left_or_nothing_is_done(tmp_path: Path) -> None:
    fake({(1, 1): "running"})
    run = make_run(tmp_path, 2)
    add_submission(run, [0, 1])
    record(run, 0, "failed", error="boom")
    shown = report.summarize(batch.status(Run(run.path)))
    assert shown.eta is None and shown.throughput.frames_per_second is None
    assert "throughput: nothing done yet" in rendered(views.status(shown))


# ---------------------------------------------------------------- --json

JSON_KEYS = {
    "schema",
    "run",
    "path",
    "dest",
    "videos",
    "counts",
    "finished",
    "failures",
    "throughput",
    "eta",
    "unseen",
    "warnings",
}
EXAMPLE_KEYS = {"index", "video", "error", "scheduler", "job_id", "log", "log_found", "last_words"}
THROUGHPUT_KEYS = {
    "done",
    "analysed",
    "frames",
    "infer_seconds",
    "frames_per_second",
    "videos_per_hour",
    "first_start",
    "wall_hours",
    "stage_seconds",
}


def test_status_json_is_one_object_with_stable_keys(tmp_path: Path) -> None:
    canned("report-json", {"squeue": "10|2|RUNNING\n10|3|PENDING\n"})
    run = make_run(tmp_path, 5, scheduler="report-json")
    batch.submit(run)
    done(run, 0, minute=0)
    record(run, 1, "failed", error=f"no such video {run.manifest.entries[1]}", job_id="10_1")
    run.record_path(4).write_text("")  # damaged: a warning, and a failure saying so

    result = CliRunner().invoke(app, ["status", str(run.path), "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == JSON_KEYS and data["schema"] == 1
    assert data["counts"] == {
        "done": 1,
        "running": 1,
        "queued": 1,
        "pending": 0,
        "failed": 2,
        "interrupted": 0,
        "lost": 0,
        "cancelled": 0,
        "unknown": 0,
    }
    assert (data["run"], data["path"], data["videos"], data["finished"]) == (run.id, str(run.path), 5, False)
    first = data["failures"][0]
    assert set(first) == {"state", "reason", "count", "examples"}
    assert (first["state"], first["count"], first["reason"]) == ("failed", 1, "no such video /videos/cam1/v1.mp4")
    (example,) = first["examples"]
    assert set(example) == EXAMPLE_KEYS
    assert (example["index"], example["job_id"], example["log"]) == (1, "10_1", str(run.path / "logs" / "10_1.out"))
    assert set(data["throughput"]) == THROUGHPUT_KEYS and data["throughput"]["frames_per_second"] == 300.0
    assert set(data["eta"]) == {"seconds", "videos", "videos_per_hour", "basis"} and data["eta"]["videos"] == 2
    assert data["unseen"] == {} and any("000004.json: damaged" in w for w in data["warnings"])
    damaged = data["failures"][1]  # its array index's log, from the arrays file
    assert damaged["reason"] == batch.DAMAGED and damaged["examples"][0]["job_id"] == "10_4"


# ---------------------------------------------------------------- no squeue here


def test_without_the_scheduler_s_client_status_shows_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """squeue not on PATH: final records of the latest array count as they say, everything else
    submitted reads unknown, one warning line says why; never a traceback. Resubmit and cancel,
    which act on what is queued, still refuse in one line."""
    register("report-slurm-here")(lambda: _named(SlurmScheduler(), "report-slurm-here"))  # the real run_command
    run = make_run(tmp_path, 7, scheduler="report-slurm-here")
    add_submission(run, [0, 1, 2, 3, 4], scheduler="report-slurm-here")
    add_submission(run, [4], scheduler="report-slurm-here")
    done(run, 0, minute=0)
    record(run, 1, "failed", error="boom")
    record(run, 2, "running")  # running, or killed: nothing tells which
    # 3: no record: queued, or gone
    done(run, 4, minute=1)  # an older array's record while the newer one queued it again
    record(run, 5, "failed", submission=None, error="boom")  # dlcrun task --index, never submitted
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    current = batch.status(Run(run.path))

    assert current.states == {
        0: "done",
        1: "failed",
        2: "unknown",
        3: "unknown",
        4: "unknown",
        5: "failed",
        6: "pending",
    }
    assert not current.finished
    (warning,) = current.unseen_warnings
    assert warning.startswith("squeue: command not found") and "3 videos" in warning and "unknown" in warning
    assert warning in current.warnings
    assert [c.finished for c in batch.watch(Run(run.path), every=0)] == [False]  # does not wait forever

    shown = CliRunner().invoke(app, ["status", str(run.path)])
    assert shown.exit_code == 0 and "Traceback" not in shown.output, shown.output
    assert "unknown (no squeue here)" in shown.stdout and "done " in shown.stdout
    assert [line for line in shown.stderr.splitlines() if line.startswith("warning:")] == [f"warning: {warning}"]

    data = json.loads(CliRunner().invoke(app, ["status", str(run.path), "--json"]).stdout)
    assert data["counts"]["unknown"] == 3 and data["unseen"]["report-slurm-here"]["missing"] == "squeue"

    with pytest.raises(SubmissionError, match="squeue: command not found"):
        batch.resubmit(Run(run.path))
    cancelled = CliRunner().invoke(app, ["cancel", str(run.path)])
    assert cancelled.exit_code == 1 and "squeue: command not found" in cancelled.output


def _named(scheduler: SlurmScheduler, name: str) -> SlurmScheduler:
    scheduler.name = name
    return scheduler


# ---------------------------------------------------------------- 5,000 videos


def test_status_of_five_thousand_videos_renders_in_under_two_seconds(tmp_path: Path) -> None:
    """A run of 5,000 videos in five chained Slurm arrays (MaxArraySize 1001): 4,400 done, 300
    failed over three reasons, 30 interrupted, 20 lost, 250 queued or running. Status, the report,
    the text and the JSON together take well under 2 s (a login node reads thousands of records
    over NFS: records are read once, and nothing is opened per video but the examples' logs)."""
    # array 14 holds indices 4004-4999: its tasks 746-995 are indices 4750-4999
    squeue = "".join(f"14|{k}|{'RUNNING' if k < 796 else 'PENDING'}\n" for k in range(746, 996))
    canned("report-5k", {"squeue": squeue})
    n = 5000
    run = make_run(tmp_path, n, scheduler="report-5k", max_array_size=1001)
    sub = batch.submit(run)
    assert sub.job_ids == ["10", "11", "12", "13", "14"]
    reasons = [
        lambda i, v: f"no such video {v}",
        lambda i, v: f"/scratch/dlcrun-r-{i}-{3000 + i}/{Path(v).name}: cannot open as video (moov atom not found)",
        lambda i, v: "CUDA out of memory. Tried to allocate 2.00 GiB",
    ]
    failed = 0
    expected = Counter({"running": 50, "queued": 200})
    for i in range(4750):
        array, task = divmod(i, 1001)
        job = f"{10 + array}_{task}"
        if i % 15 == 7 and failed < 300:
            record(run, i, "failed", error=reasons[failed % 3](i, run.manifest.entries[i]), job_id=job)
            failed += 1
            expected["failed"] += 1
        elif i % 150 == 1:
            record(run, i, "interrupted", error="stopped by signal 15 (time limit, preemption or cancel)", job_id=job)
            expected["interrupted"] += 1
        elif i % 250 == 3:
            record(run, i, "running", job_id=job)  # its job is gone: lost
            expected["lost"] += 1
        else:
            done(run, i, minute=i // 50, job_id=job)
            expected["done"] += 1

    clock = time.perf_counter()
    current = batch.status(Run(run.path))
    shown = report.summarize(current, now=T0 + dt.timedelta(minutes=100))
    text = rendered(views.status(shown))
    data = json.loads(views.status_json(shown))
    took = time.perf_counter() - clock

    assert took < 2.0, f"{took:.2f} s"
    assert current.counts == expected and expected["failed"] == 300
    assert [(g.state, g.count) for g in shown.groups] == [
        ("failed", 100),
        ("failed", 100),
        ("failed", 100),
        ("interrupted", expected["interrupted"]),
        ("lost", expected["lost"]),
    ]
    assert len(text.splitlines()) < 45, text
    assert "sacct -j 10_7" in text and data["counts"]["done"] == expected["done"]
    print(f"\n{text}\n(status + report + text + JSON: {took:.3f} s)")
