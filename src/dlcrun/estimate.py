"""How long a new run's indices will take, from what an earlier run of the same model measured.

A dry run asks before a user picks ``--time`` and spends an allocation: a guess would be worse
than none, so an estimate comes only from a rate that was measured, and names where it came
from. The rate is the ledger of the newest earlier run under the same ``runs_dir`` with the same
pinned model (scorer and snapshot file), the same sampling (stride or every) and precision, and
at least one video analysed: per analysed video, the seconds its index spent fetching, inferring
and uploading it per GB of video (the median over videos: one stuck upload does not move it),
and the model load each index pays once (``seconds["load"]`` of its first video; see
``task.py``). The stages are added, not overlapped, so with several videos per index (where the
next download overlaps the inference) it errs long, the side ``--time`` wants.

With the sizes of the new run's videos (``batch.check_sources``), each index's wall time is
``load + its GB x seconds per GB``; GPU-hours (or CPU-hours when no GPU is asked for) are those
summed over indices times what each index holds.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcrun.errors import RunError
from dlcrun.files import Damaged, read_object
from dlcrun.ledger import Record, Run
from dlcrun.settings import CLUSTERS, Settings

GB = 1e9
MARGIN = 1.2  # a suggested --time is the longest index plus this much, in whole quarter hours
QUARTER_HOUR = 900


@dataclass(frozen=True)
class Rate:
    """What an earlier run measured: the basis of an estimate, named wherever one is shown."""

    run: str  # the earlier run's id
    videos: int  # analysed videos it was measured on
    seconds_per_gb: float  # median over them of (fetch + infer + upload) seconds per GB of video
    load_seconds: float  # median model load per index (0 when none was timed)
    hosts: list[str] = field(default_factory=list)  # where they ran, most videos first


@dataclass(frozen=True)
class Estimate:
    """Wall time per index and the hours a run will hold, or why there is no estimate."""

    rate: Rate | None
    missing: str = ""  # when rate is None or the videos' sizes are unknown: why, and what to do
    scheduler: str = ""
    indices: int = 0
    index_seconds: float = 0.0  # mean over indices
    longest_seconds: float = 0.0  # the index that decides --time
    longest_index: int = 0  # its array index
    index_hours: float = 0.0  # summed over indices
    per_index: int = 0  # GPUs (CPUs when no GPU is asked for) each index holds
    unit: str = "GPU"
    max_running: int = 1  # indices at once (the local scheduler's pace)
    limit: str = ""  # resources.time, as set
    limit_seconds: float | None = None  # None: a form this cannot read, or no limit applies (local)

    @property
    def charged_hours(self) -> float:
        """GPU-hours (or CPU-hours): what the allocation is charged."""
        return self.index_hours * self.per_index

    @property
    def over_limit(self) -> bool:
        return self.limit_seconds is not None and self.longest_seconds > self.limit_seconds

    @property
    def suggested_time(self) -> str:
        """``--time`` for the longest index with a margin, in whole quarter hours (HH:MM:SS)."""
        seconds = math.ceil(self.longest_seconds * MARGIN / QUARTER_HOUR) * QUARTER_HOUR
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:00"


def estimate(run: Run, sizes: Sequence[int] | None) -> Estimate:
    """The estimate for ``run`` (just created, its videos of ``sizes`` bytes in manifest order;
    None when they were not checked), from the newest earlier run that measured its model."""
    settings = run.settings
    rate, missing = measured_rate(run)
    if rate is None:
        return Estimate(rate=None, missing=missing)
    if sizes is None:
        return Estimate(rate=rate, missing="needs the videos' sizes: dry-run again without --no-check")
    if not sizes:
        return Estimate(rate=rate, missing="no videos to estimate")
    per_task = run.videos_per_task
    seconds = [
        rate.load_seconds + sum(sizes[start : start + per_task]) / GB * rate.seconds_per_gb
        for start in range(0, len(sizes), per_task)
    ]
    longest = max(range(len(seconds)), key=seconds.__getitem__)
    resources = settings.resources
    cluster = settings.scheduler in CLUSTERS
    return Estimate(
        rate=rate,
        scheduler=settings.scheduler,
        indices=len(seconds),
        index_seconds=sum(seconds) / len(seconds),
        longest_seconds=seconds[longest],
        longest_index=longest,
        index_hours=sum(seconds) / 3600,
        per_index=resources.gpus or resources.cpus,
        unit="GPU" if resources.gpus else "CPU",
        max_running=settings.max_running or 1,
        limit=resources.time,
        limit_seconds=wall_seconds(resources.time, settings.scheduler) if cluster else None,
    )


def measured_rate(run: Run) -> tuple[Rate | None, str]:
    """The rate of the newest earlier run of ``run``'s model, sampling and precision under its
    runs_dir that analysed a video; else None and one line saying why, and how to get one."""
    settings = run.settings
    model = run.model
    scorer, snapshot = model.get("scorer", ""), Path(str(model.get("snapshot", ""))).name
    runs_dir = settings.runs_dir
    otherwise = 0  # runs of this model with other sampling or precision: not comparable
    for path in sorted(Path(runs_dir).glob("*/model.json"), reverse=True):  # run ids start with the time
        if path.parent == run.path:
            continue
        try:
            theirs = read_object(path)
            if theirs.get("scorer") != scorer or Path(str(theirs.get("snapshot", ""))).name != snapshot:
                continue
            earlier = Run(path.parent)
            if not _comparable(earlier.settings, settings):
                otherwise += 1
                continue
            records = earlier.records().values()
        except (FileNotFoundError, Damaged, RunError):  # not a run, or one that cannot say
            continue
        timed = [r for r in records if _timed(r)]
        if timed:
            return _rate(earlier.id, timed), ""
    which = f"{scorer} ({snapshot})" if snapshot else scorer
    also = f" with {_sampling(settings)}" if otherwise else ""
    skipped = f" ({otherwise} of it with other sampling or precision left out)" if otherwise else ""
    return None, (
        f"no earlier run of {which}{also} analysed a video under {runs_dir}{skipped}: submit a small manifest "
        "(a few videos) first, then dry-run again for an estimate from its rate"
    )


def _comparable(theirs: Settings, ours: Settings) -> bool:
    """Whether a rate measured under ``theirs`` stands for ``ours``: the same frames analysed, at
    the same precision."""
    return (theirs.stride, theirs.every_seconds, theirs.precision) == (ours.stride, ours.every_seconds, ours.precision)


def _sampling(settings: Settings) -> str:
    step = f"every {settings.every}" if settings.every else f"stride {settings.stride}"
    return f"{step} at {settings.precision}"


def _timed(record: Record) -> bool:
    """A done video this run analysed itself (not found done already), with its size known."""
    return record.state == "done" and record.bytes_in > 0 and record.seconds.get("infer", 0) > 0


def _rate(run_id: str, records: Sequence[Record]) -> Rate:
    per_gb = [_video_seconds(r.seconds) / (r.bytes_in / GB) for r in records]
    loads = [r.seconds["load"] for r in records if r.seconds.get("load", 0) > 0]  # an index's first video
    hosts = Counter(r.host for r in records if r.host)
    return Rate(
        run=run_id,
        videos=len(records),
        seconds_per_gb=statistics.median(per_gb),
        load_seconds=statistics.median(loads) if loads else 0.0,
        hosts=[host for host, _ in hosts.most_common()],
    )


def _video_seconds(seconds: dict[str, Any]) -> float:
    return sum(float(seconds.get(stage, 0)) for stage in ("fetch", "infer", "upload"))


_SLURM_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?")


def wall_seconds(time: str, scheduler: str) -> float | None:
    """Seconds of a wall time as the scheduler reads it: Slurm's M, M:S, H:M:S, D-H, D-H:M,
    D-H:M:S; PBS's and Torque's S, M:S, H:M:S (a bare number is minutes to Slurm, seconds to PBS)."""
    found = _SLURM_TIME.fullmatch(time.strip())
    if not found:
        return None
    days, first, second, third = found.groups()
    if days is not None:  # D-H[:M[:S]]
        fields = [int(first), int(second or 0), int(third or 0)]
        return int(days) * 86400 + fields[0] * 3600 + fields[1] * 60 + fields[2]
    parts = [int(p) for p in (first, second, third) if p is not None]
    if len(parts) == 1:
        return parts[0] * (60 if scheduler == "slurm" else 1)
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]
