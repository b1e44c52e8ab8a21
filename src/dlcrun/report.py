"""What a run's status adds up to at 5,000 videos: failures grouped by reason, where each example
ran and logged, throughput and an estimate of the time left.

Read from a ``batch.Status`` (the ledger merged with the scheduler's view) and the run's ledger
files only: the scheduler is not asked again, and nothing is opened per video but the few
examples' log files (whether they exist). ``cli/views.py`` turns a ``Report`` into text or JSON.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dlcrun.batch import FINAL, Status
from dlcrun.errors import one_line, redact
from dlcrun.ledger import Record
from dlcrun.locations import basename
from dlcrun.schedulers import TaskLog, scheduler_for

FAILED = ("failed", "interrupted", "lost")
EXAMPLES = 3  # videos shown per group
GONE = "queued, then gone without a record (see its log)"  # a lost index that never wrote one
NO_REASON = "no reason recorded"


@dataclass
class Example:
    """One video of a group: where it ran and where its output went."""

    index: int
    video: str
    error: str  # its own reason, as recorded (redacted)
    scheduler: str = ""  # of the array that ran it; "" for dlcrun task --index
    job_id: str = ""  # the scheduler's id of its array index; "" when it cannot be told
    log: Path | None = None  # its job's stdout/stderr; None when it cannot be told
    log_found: bool = False  # whether that file exists now
    inspect: str = ""  # the scheduler's command that shows how it saw the job (Slurm: sacct -j ID)
    # For an index gone without a record: the last line its log holds (redacted), often the why:
    # "dlcrun: ... not found on node7", Slurm's "CANCELLED ... DUE TO TIME LIMIT", an OOM kill.
    last_words: str = ""


@dataclass
class Group:
    """The videos that ended in one state for one reason (numbers and locations aside)."""

    state: str
    reason: str  # the first example's reason, as recorded
    key: str  # what the group was formed on: the reason with its video, paths and numbers replaced
    count: int = 0
    examples: list[Example] = field(default_factory=list)  # its first, middle and last video by index


@dataclass
class Throughput:
    """From the records alone: what the run has done so far, and how fast."""

    done: int  # videos done
    inferred: int  # of them, analysed by this run (not found done already): frames/s counts these
    frames: int
    infer_seconds: float
    stage_seconds: dict[str, float]  # mean seconds per inferred video: fetch, load, infer, upload
    first_start: dt.datetime | None  # the earliest record's start
    wall_hours: float | None  # from the first start to now (or the last finish, if a node's clock is ahead)

    @property
    def frames_per_second(self) -> float | None:
        return self.frames / self.infer_seconds if self.infer_seconds > 0 else None

    @property
    def videos_per_hour(self) -> float | None:
        return self.done / self.wall_hours if self.done and self.wall_hours else None


@dataclass
class Eta:
    """An estimate, never a promise: the videos still running or queued at the rate so far."""

    seconds: float
    videos: int  # running + queued
    videos_per_hour: float
    basis: str = "videos done per hour of wall time since the run's first start"


@dataclass
class Report:
    status: Status
    groups: list[Group]  # largest first
    throughput: Throughput
    eta: Eta | None  # None when nothing is running or queued, or nothing is done yet


_VIDEO = "<video>"
# A location: a URI (dropbox://..., s3:/...) or an absolute path; not "fetch/infer" inside a word.
_LOCATION = re.compile(r"(?<![\w.<])(?:[A-Za-z][A-Za-z0-9+.-]*:/{1,2}|/)[^\s'\"<>,;()]*[^\s'\"<>,;():.]")
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def reason_key(reason: str, video: str) -> str:
    """``reason`` with the video's own location and name, other locations, hashes and numbers
    replaced by placeholders: 300 ``no such video /v/1.mp4`` ... are one group."""
    text = reason
    for own in (video, basename(video)):
        if own:
            text = text.replace(own, _VIDEO)
    text = _LOCATION.sub("<path>", text)
    text = _HEX.sub("<hex>", text)
    return _NUMBER.sub("<n>", text)


def summarize(current: Status, now: dt.datetime | None = None) -> Report:
    """The report of ``current``: groups of failures, throughput, and an ETA when work is left."""
    groups = _groups(current)
    for group in groups:
        for example in group.examples:
            _place(current, example)
    throughput = _throughput(current, now or dt.datetime.now(dt.timezone.utc))
    left = current.counts["running"] + current.counts["queued"]
    rate = throughput.videos_per_hour
    eta = Eta(seconds=left / rate * 3600, videos=left, videos_per_hour=rate) if left and rate else None
    return Report(status=current, groups=groups, throughput=throughput, eta=eta)


def _groups(current: Status) -> list[Group]:
    """Failed, interrupted and lost indices by (state, reason key). The examples are the first,
    middle and last of a group: a reason that spans several arrays shows it."""
    entries = current.run.manifest.entries
    found: dict[tuple[str, str], tuple[Group, list[Example]]] = {}
    for i, state in sorted(current.states.items()):
        if state not in FAILED:
            continue
        rec = current.records.get(i)
        video = rec.video if rec is not None and rec.video else entries[i]
        reason = redact(rec.error) if rec is not None and rec.error else (GONE if rec is None else NO_REASON)
        key = reason_key(reason, video)
        group, members = found.setdefault((state, key), (Group(state=state, reason=reason, key=key), []))
        group.count += 1
        members.append(Example(index=i, video=video, error=reason))
    for group, members in found.values():
        picks = sorted({0, len(members) // 2, len(members) - 1}) if len(members) > EXAMPLES else range(len(members))
        group.examples = [members[k] for k in picks]
    order = {s: n for n, s in enumerate(FAILED)}
    groups = [group for group, _ in found.values()]
    return sorted(groups, key=lambda g: (-g.count, order[g.state], g.examples[0].index))


def _place(current: Status, example: Example) -> None:
    """The example's scheduler, job id and log, as its array's job script names them."""
    rec = current.records.get(example.index)
    sub = current.submission_for(example.index)
    example.job_id = rec.job_id if rec is not None else ""
    if sub is None:
        return
    example.scheduler = sub.scheduler
    per_task = current.run.videos_per_task
    try:
        array_index = sub.indices.index(example.index) // per_task
    except ValueError:
        return
    locate = getattr(scheduler_for(sub.scheduler), "task_log", None)  # a scheduler added at run time may not know
    found = locate(current.run, sub, array_index, example.job_id) if locate else TaskLog(example.job_id, None)
    example.job_id, example.log, example.inspect = found.job_id, found.path, found.inspect
    example.log_found = found.path is not None and found.path.is_file()
    if example.log_found and found.path is not None and (rec is None or rec.state not in FINAL):
        example.last_words = last_line(found.path)


LOG_TAIL = 4096  # bytes read from the end of a log: its last line, whatever the log's size


def last_line(path: Path) -> str:
    """The last non-empty line of a log (redacted, at most 200 characters); "" if unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - LOG_TAIL))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return one_line(redact(lines[-1]), 200) if lines else ""


def _when(text: str) -> dt.datetime | None:
    """A record's ISO time (UTC when it names no zone); None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _throughput(current: Status, now: dt.datetime) -> Throughput:
    """Sums over the records: frames and inference seconds of the videos done by inference here,
    and the wall time since the first start. Compute nodes' clocks are only compared with each
    other and with this one's to size a rate, never to decide a state."""
    done = inferred = frames = 0
    infer = 0.0
    stages: Counter[str] = Counter()
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    for i, rec in current.records.items():
        started = _when(rec.started)
        if started is not None and (first is None or started < first):
            first = started
        if current.states.get(i) != "done":
            continue
        done += 1
        finished = _when(rec.finished)
        if finished is not None and (last is None or finished > last):
            last = finished
        if _ran(rec):
            inferred += 1
            frames += rec.frames
            infer += rec.seconds["infer"]
            stages.update(rec.seconds)
    wall = None
    if first is not None:
        end = max(now, last) if last is not None else now
        wall = (end - first).total_seconds() / 3600 or None
    return Throughput(
        done=done,
        inferred=inferred,
        frames=frames,
        infer_seconds=infer,
        stage_seconds={k: v / inferred for k, v in stages.items()} if inferred else {},
        first_start=first,
        wall_hours=wall,
    )


def _ran(rec: Record) -> bool:
    """Whether a done record's video was analysed here (not found done at the destination)."""
    return rec.frames > 0 and rec.seconds.get("infer", 0) > 0
