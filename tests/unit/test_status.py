"""batch.status, table-driven: what the ledger's records, the run's submissions and the scheduler's
live view add up to, per manifest index.

Real parts: a run directory written by ledger.Run (manifest, settings, submission and record
files as dlcrun writes them, damaged ones as a full disk leaves them) and the whole of batch.
The scheduler is outside dlcrun: a fake registered under a test-only name reports the live
states a row gives, keyed as every backend reports them, (submission, array index). The split
arrays of a real backend (offsets) go through the Slurm backend with canned squeue replies.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dlcrun import batch
from dlcrun.ledger import Record, Run, Submission
from dlcrun.manifest import Manifest
from dlcrun.schedulers import register
from dlcrun.schedulers.slurm import SlurmScheduler
from dlcrun.settings import load_settings

FAKE = "status-fake"


class FakeScheduler:
    """The live view a scheduler reports (only ``states`` is asked by status), as the row gives it."""

    def __init__(self, name: str, live: dict[tuple[int, int], str]):
        self.name = name
        self.live = live
        self.asked: list[list[int]] = []  # the submission numbers of each call

    def states(self, run: Run, submissions: list[Submission]) -> dict[tuple[int, int], str]:
        self.asked.append([s.number for s in submissions])
        mine = {s.number for s in submissions}
        return {key: state for key, state in self.live.items() if key[0] in mine}


def fake(live: dict[tuple[int, int], str], name: str = FAKE) -> FakeScheduler:
    made = FakeScheduler(name, live)
    register(name)(lambda: made)
    return made


def make_run(tmp_path: Path, n: int, scheduler: str = FAKE, **overrides: object) -> Run:
    settings = load_settings(
        None,
        project=tmp_path / "project",
        dest=str(tmp_path / "out"),
        runs_dir=tmp_path / "runs",
        scheduler=scheduler,
        **overrides,
    )
    manifest = Manifest(entries=[f"/videos/v{i}.mp4" for i in range(n)])
    return Run.create(tmp_path / "runs", settings, manifest, {"scorer": "DLC_test"}, name="status")


def add_submission(run: Run, indices: list[int], cancelled: bool = False, scheduler: str = FAKE) -> Submission:
    number = run.next_submission_number()
    run.write_indices(number, indices)
    sub = run.add_submission(number, scheduler, [str(100 * number)], indices, None)  # job ids 100, 200, ...
    return run.mark_cancelled(sub) if cancelled else sub


def write_record(run: Run, index: int, state: str, submission: int | None, job_id: str = "") -> None:
    video = run.manifest.entries[index]
    run.write_record(Record(index=index, video=video, state=state, attempts=1, submission=submission, job_id=job_id))


@dataclass
class Row:
    n: int
    subs: list[list[int]]  # the manifest indices of submissions 1, 2, ...
    records: dict[int, tuple[str, int | None] | tuple[str, int | None, str]]  # (state, submission[, job id])
    live: dict[tuple[int, int], str]  # (submission, array index) -> pending / running
    expected: str  # one state per manifest index, space-separated
    cancelled: set[int] = field(default_factory=set)  # submissions `dlcrun cancel` stopped
    damaged: set[int] = field(default_factory=set)  # manifest indices whose record file is empty
    videos_per_task: int = 1


ROWS = {
    "done": Row(1, [[0]], {0: ("done", 1)}, {}, "done"),
    "failed": Row(1, [[0]], {0: ("failed", 1)}, {}, "failed"),
    "interrupted, job gone": Row(1, [[0]], {0: ("interrupted", 1)}, {}, "interrupted"),
    "interrupted, requeued by the scheduler": Row(1, [[0]], {0: ("interrupted", 1)}, {(1, 0): "pending"}, "queued"),
    "interrupted, requeued and running": Row(1, [[0]], {0: ("interrupted", 1)}, {(1, 0): "running"}, "running"),
    "running": Row(1, [[0]], {0: ("running", 1)}, {(1, 0): "running"}, "running"),
    "queued": Row(2, [[0, 1]], {}, {(1, 0): "running", (1, 1): "pending"}, "running queued"),
    "pending: never submitted": Row(2, [[0]], {0: ("done", 1)}, {}, "done pending"),
    "lost: record running, job gone": Row(1, [[0]], {0: ("running", 1)}, {}, "lost"),
    "lost: submitted, no record, job gone": Row(1, [[0]], {}, {}, "lost"),
    "cancelled before it started": Row(2, [[0, 1]], {0: ("done", 1)}, {}, "done cancelled", cancelled={1}),
    "cancelled while running, no result": Row(1, [[0]], {0: ("running", 1)}, {}, "cancelled", cancelled={1}),
    "cancelled, but the index had finished": Row(1, [[0]], {0: ("failed", 1)}, {}, "failed", cancelled={1}),
    "an older submission's record while a newer one queues it again": Row(
        2, [[0, 1], [0]], {0: ("failed", 1), 1: ("done", 1)}, {(2, 0): "pending"}, "queued done"
    ),
    "an older submission's record, the newer array has ended": Row(1, [[0], [0]], {0: ("failed", 1)}, {}, "failed"),
    "the newer submission's own record while its array still shows": Row(
        1, [[0], [0]], {0: ("done", 2)}, {(2, 0): "running"}, "done"
    ),
    "a live index of an older array does not supersede a newer record": Row(
        1, [[0], [0]], {0: ("done", 2)}, {(1, 0): "running"}, "done"
    ),
    "damaged record, index not live": Row(2, [[0, 1]], {0: ("done", 1)}, {}, "done failed", damaged={1}),
    "damaged record, index queued again": Row(
        2, [[0, 1], [1]], {0: ("done", 1)}, {(2, 0): "pending"}, "done queued", damaged={1}
    ),
    "damaged record, index running": Row(1, [[0]], {}, {(1, 0): "running"}, "running", damaged={0}),
    "task --index record, no array": Row(2, [], {0: ("done", None), 1: ("failed", None)}, {}, "done failed"),
    "task --index record yields to the live array": Row(
        2, [[0, 1]], {0: ("done", None), 1: ("done", None)}, {(1, 0): "running"}, "running done"
    ),
    "an older dlcrun's record, placed by its job id": Row(
        2,
        [[0, 1], [0, 1]],
        {0: ("done", None, "100_0"), 1: ("done", None, "200_1")},
        {(2, 0): "pending", (2, 1): "running"},
        "queued done",
    ),
    "a resubmission's array index k is its k-th index": Row(
        5,
        [[0, 1, 2, 3, 4], [1, 4]],
        {0: ("done", 1), 1: ("failed", 1), 4: ("failed", 1)},
        {(2, 1): "running"},
        "done failed lost lost running",
    ),
    "split arrays: array indices past the first array's (offsets applied)": Row(
        5,
        [[0, 1, 2, 3, 4]],
        {0: ("done", 1), 1: ("done", 1)},
        {(1, 3): "running", (1, 4): "pending"},
        "done done lost running queued",
    ),
    "videos_per_task 2: an array index stands for two lines": Row(
        5,
        [[0, 1, 2, 3, 4]],
        {0: ("done", 1), 1: ("done", 1)},
        {(1, 1): "running", (1, 2): "pending"},
        "done done running running queued",
        videos_per_task=2,
    ),
    "videos_per_task 2, a resubmission of scattered lines": Row(
        5,
        [[0, 1, 2, 3, 4], [1, 3, 4]],
        {0: ("done", 1), 1: ("failed", 1), 2: ("done", 1), 3: ("failed", 1), 4: ("failed", 1)},
        {(2, 0): "running", (2, 1): "pending"},
        "done running done running queued",
        videos_per_task=2,
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_status_per_index(tmp_path: Path, row: Row) -> None:
    scheduler = fake(row.live)
    run = make_run(tmp_path, row.n, videos_per_task=row.videos_per_task)
    for number, indices in enumerate(row.subs, start=1):
        add_submission(run, indices, cancelled=number in row.cancelled)
    for index, (state, submission, *job) in row.records.items():
        write_record(run, index, state, submission, *job)
    for index in row.damaged:
        run.record_path(index).write_text("")  # a full disk: created, never filled

    current = batch.status(Run(run.path))

    assert " ".join(current.states[i] for i in range(row.n)) == row.expected
    assert current.counts == {s: row.expected.split().count(s) for s in set(row.expected.split())}
    assert scheduler.asked == ([list(range(1, len(row.subs) + 1))] if row.subs else [])  # once, every submission


def test_what_status_says_of_lost_and_damaged_indices(tmp_path: Path) -> None:
    """A lost index gets a reason; a damaged record is a failure saying so, with one warning line."""
    fake({})
    run = make_run(tmp_path, 3)
    add_submission(run, [0, 1, 2])
    write_record(run, 0, "running", 1)
    run.record_path(2).write_text("")
    current = batch.status(Run(run.path))
    assert current.states == {0: "lost", 1: "lost", 2: "failed"}
    assert "stopped without recording a result" in current.records[0].error
    assert 1 not in current.records  # no record: nothing to say but its state
    assert current.records[2].error == batch.DAMAGED
    assert [r.index for r in current.failures] == [0, 2]
    (warning,) = current.warnings
    assert "000002.json: damaged (" in warning
    assert current.finished


def test_each_scheduler_is_asked_once_about_its_own_submissions(tmp_path: Path) -> None:
    """A run whose later arrays went to another scheduler: each is asked only about its own."""
    first = fake({(1, 0): "running"}, name="status-fake-a")
    second = fake({(2, 0): "pending", (1, 1): "running"}, name="status-fake-b")  # (1, 1) is not its array
    run = make_run(tmp_path, 2, scheduler="status-fake-a")
    add_submission(run, [0, 1], scheduler="status-fake-a")
    add_submission(run, [1], scheduler="status-fake-b")
    assert batch.status(run).states == {0: "running", 1: "queued"}
    assert (first.asked, second.asked) == ([[1]], [[2]])


def _canned_slurm(squeue: str) -> None:
    """Slurm's clients for a test-only scheduler name: sbatch hands out ids 10, 11, ...; squeue says ``squeue``."""
    issued = iter(range(10, 100))

    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        reply = {"sbatch": f"{next(issued)}\n", "squeue": squeue}[argv[0]]
        return subprocess.CompletedProcess(argv, 0, reply, "")

    def made() -> SlurmScheduler:
        scheduler = SlurmScheduler(runner)
        scheduler.name = "status-slurm"
        return scheduler

    register("status-slurm")(made)


@pytest.mark.parametrize(
    ("videos_per_task", "squeue", "expected"),
    [
        # arrays 10 (indices 0-1), 11 (2-3) and 12 (4): 11's task 1 is array index 3
        (1, "11|1|RUNNING\n12|0|PENDING\n", "done failed lost running queued"),
        # array indices 0-2 (two lines each): arrays 10 (0-1) and 11 (2)
        (2, "10|1|RUNNING\n11|0|PENDING\n", "done failed running running queued"),
    ],
)
def test_split_arrays_through_the_slurm_backend(
    tmp_path: Path, videos_per_task: int, squeue: str, expected: str
) -> None:
    """A submission split at max_array_size 2 (batch.submit, the Slurm backend's arrays file and
    its offsets, squeue's rows as Slurm prints them): each row lands on its manifest lines."""
    _canned_slurm(squeue)
    run = make_run(tmp_path, 5, scheduler="status-slurm", max_array_size=2, videos_per_task=videos_per_task)
    sub = batch.submit(run)
    write_record(run, 0, "done", sub.number)
    write_record(run, 1, "failed", sub.number)
    current = batch.status(Run(run.path))
    assert " ".join(current.states[i] for i in range(5)) == expected
