"""What a run's keypoints look like, from its ledger alone: the content of ``dlcrun report``.

After thousands of videos the first questions are visual (did tracking work, on which videos
did it fail, where are the low-likelihood stretches?), and they must be answered on a login
node, without DeepLabCut and without a second pass over thousands of ``.h5`` files: each done
record carries the quality numbers its array index computed while the keypoints were in memory
(``Record.quality``: per bodypart likelihood percentiles, the fraction of frames under the
project's ``pcutoff``, the longest stretch under it, frame-to-frame jumps, a 20-bin likelihood
histogram; a score, the mean over bodyparts of the fraction of frames at or above ``pcutoff``).

From those numbers: the run's summary (``report.summarize``: counts, failures grouped by reason,
throughput; plus wall time and GPU/CPU-hours), the likelihood distribution of each bodypart over
the whole run (the sum of the histograms), every video ranked worst first by its score, and the
worst few in detail. Only those few have their ``.h5`` read (``track``, fetched through the
storage seam), and only where PyTables is importable; a login node without it still gets every
number. ``report_page`` draws and writes the page.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcrun import batch
from dlcrun.errors import DlcrunError, one_line, redact
from dlcrun.ledger import Record, Run
from dlcrun.locations import basename
from dlcrun.report import Group, Throughput, summarize
from dlcrun.storage import storage_for

WORST = 12  # videos shown in detail unless --worst says otherwise
BINS = 20  # likelihood histogram bins of 0.05, as the records hold them
PCUTOFF = 0.6  # DeepLabCut's default, shown when no record says the project's
NO_PYTABLES = "the trajectory and likelihood plots read the .h5, which needs PyTables (pip install tables)"


@dataclass
class Summary:
    """The run at a glance: what was asked, what came of it, what it cost."""

    run_id: str
    videos: int  # manifest lines
    counts: dict[str, int]  # videos by state
    frames: int  # rows of the done videos' keypoints (found done ones included)
    throughput: Throughput  # frames/s and videos/h of the videos analysed by this run
    wall_seconds: float | None  # first start to last finish (or to now while indices run)
    index_hours: float  # the records' own wall times (started to finished), summed
    gpus: int  # per array index, as submitted
    cpus: int
    scorer: str
    snapshot: str
    finished: bool  # no index is queued or running

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.index_hours

    @property
    def cpu_hours(self) -> float:
        return self.cpus * self.index_hours


@dataclass
class Bodypart:
    """One bodypart over every video with numbers."""

    name: str
    hist: list[int]  # rows per likelihood bin of 0.05, summed over videos
    rows: int  # frames counted
    below: float  # fraction of those under pcutoff (weighted by each video's frames)
    mean: float  # mean likelihood (weighted likewise)


@dataclass
class Ranked:
    """A done video with quality numbers, in the ranking (worst first)."""

    index: int
    video: str
    score: float
    frames: int
    quality: dict[str, Any]
    clip: str  # a labelled clip in the run directory, as recorded; "" when none
    record: Record

    def bodyparts(self, order: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """The video's numbers per bodypart, in ``order`` (the run's), then any others by name:
        records are written with sorted keys, which is not the project's order."""
        parts = {n: q for n, q in self.quality["bodyparts"].items() if isinstance(q, dict)}
        return [(n, parts[n]) for n in order if n in parts] + sorted((n, q) for n, q in parts.items() if n not in order)

    def weakest(self, order: list[str]) -> str:
        """The bodypart most often under pcutoff (the first in ``order`` on a tie)."""
        parts = self.bodyparts(order)
        return max(parts, key=lambda part: number(part[1].get("below")), default=("", {}))[0]

    @property
    def worst(self) -> dict[str, Any]:
        """The worst stretch: ``start``, ``end`` (video frame numbers) and its mean likelihood."""
        found = self.quality.get("worst")
        return found if isinstance(found, dict) else {}


@dataclass
class Results:
    """Everything the report shows, for thousands of videos: aggregates, and ``worst`` in detail."""

    summary: Summary
    groups: list[Group]  # failures by reason, largest first (report.summarize's)
    pcutoff: float
    bodyparts: list[Bodypart]
    ranking: list[Ranked]  # every done video with numbers, worst first
    without_numbers: list[int] = field(default_factory=list)  # done videos whose record has none
    damaged_numbers: dict[int, str] = field(default_factory=dict)  # index -> why its numbers were not read
    worst: int = WORST
    warnings: list[str] = field(default_factory=list)

    @property
    def shown(self) -> list[Ranked]:
        """The videos shown in detail: the ``worst`` lowest scores."""
        return self.ranking[: self.worst]


def gather(run: Run, worst: int = WORST, now: dt.datetime | None = None) -> Results:
    """The report's content for ``run``: its status (the ledger, and the scheduler where it can be
    asked) and the records' quality numbers. Reads no ``.h5``."""
    if worst < 0:
        raise DlcrunError(f"--worst {worst}: give 0 or more videos to show in detail")
    current = batch.status(run)
    summed = summarize(current, now)
    ranking: list[Ranked] = []
    without: list[int] = []
    damaged: dict[int, str] = {}
    for i, rec in sorted(current.records.items()):
        if current.states.get(i) != "done":
            continue
        quality, why = read_quality(rec.quality)
        if quality is None:
            if why:
                damaged[i] = why
            without.append(i)
            continue
        ranking.append(
            Ranked(
                index=i,
                video=rec.video or run.manifest.entries[i],
                score=number(quality["score"]),
                frames=int(number(quality.get("frames"))),
                quality=quality,
                clip=rec.clip,
                record=rec,
            )
        )
    ranking.sort(key=lambda r: (r.score, r.index))
    cutoffs = sorted({number(r.quality.get("pcutoff"), PCUTOFF) for r in ranking})
    warnings = list(current.warnings)
    if len(cutoffs) > 1:
        warnings.append(
            f"the records hold {len(cutoffs)} pcutoffs ({', '.join(f'{c:g}' for c in cutoffs)}); shown: {cutoffs[0]:g}"
        )
    return Results(
        summary=_summary(current, summed.throughput, now),
        groups=summed.groups,
        pcutoff=cutoffs[0] if cutoffs else PCUTOFF,
        bodyparts=_bodyparts(ranking, list(run.model.get("bodyparts") or [])),
        ranking=ranking,
        without_numbers=without,
        damaged_numbers=damaged,
        worst=worst,
        warnings=warnings,
    )


def read_quality(data: object) -> tuple[dict[str, Any] | None, str]:
    """A record's quality numbers when they can be shown, else None and why ("" for none at all:
    a video analysed by an older dlcrun, here or in the outputs found done at the destination).
    A newer version's numbers are read as long as the fields this report uses are there."""
    if not data:
        return None, ""
    if not isinstance(data, dict):
        return None, f"quality is a {type(data).__name__}, not an object"
    parts = data.get("bodyparts")
    if not isinstance(parts, dict) or not parts:
        return None, "quality has no bodyparts"
    if not math.isfinite(number(data.get("score"), math.nan)):
        return None, "quality has no score"
    for name, numbers in parts.items():
        hist = numbers.get("hist") if isinstance(numbers, dict) else None
        if not isinstance(hist, list) or len(hist) != BINS or not all(isinstance(h, (int, float)) for h in hist):
            return None, f"quality of bodypart {name} has no {BINS}-bin histogram"
    return data, ""


def number(value: object, default: float = 0.0) -> float:
    """A number from a record; ``default`` for anything else (a hand-edited or damaged value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def _bodyparts(ranking: list[Ranked], order: list[str]) -> list[Bodypart]:
    """Per bodypart, the histograms summed and the below/mean fractions weighted by frames; in the
    model's order, then any the model does not name (an identity, a unique bodypart)."""
    hist: dict[str, np.ndarray] = {}
    weighted: dict[str, list[float]] = {}
    for r in ranking:
        frames = max(r.frames, 0)
        for name, numbers in r.quality["bodyparts"].items():
            hist.setdefault(name, np.zeros(BINS, dtype=np.int64))
            hist[name] += np.asarray(numbers["hist"], dtype=np.int64)
            sums = weighted.setdefault(name, [0.0, 0.0, 0.0])
            sums[0] += frames
            sums[1] += frames * number(numbers.get("below"))
            sums[2] += frames * number(numbers.get("mean"))
    names = [n for n in order if n in hist] + sorted(n for n in hist if n not in order)
    out = []
    for name in names:
        rows, below, mean = weighted[name]
        out.append(
            Bodypart(
                name=name,
                hist=[int(v) for v in hist[name]],
                rows=int(rows),
                below=below / rows if rows else 0.0,
                mean=mean / rows if rows else 0.0,
            )
        )
    return out


def _when(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _summary(current: batch.Status, throughput: Throughput, now: dt.datetime | None) -> Summary:
    """Counts, frames, the wall time of the run and the hours its indices held their resources:
    each record's started-to-finished time, times the GPUs (CPUs) each array index asked for."""
    settings = current.settings
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    index_seconds = 0.0
    frames = 0
    for i, rec in current.records.items():
        started, ended = _when(rec.started), _when(rec.finished)
        if started is not None and (first is None or started < first):
            first = started
        if ended is not None and (last is None or ended > last):
            last = ended
        if started is not None and ended is not None and ended > started:
            index_seconds += (ended - started).total_seconds()
        if current.states.get(i) == "done":
            frames += rec.frames
    finished = current.finished
    end = last if finished else (now or dt.datetime.now(dt.timezone.utc))
    if end is not None and last is not None and last > end:
        end = last
    model = current.run.model
    return Summary(
        run_id=current.run.id,
        videos=len(current.run),
        counts=dict(current.counts),
        frames=frames,
        throughput=throughput,
        wall_seconds=(end - first).total_seconds() if first is not None and end is not None else None,
        index_hours=index_seconds / 3600,
        gpus=settings.resources.gpus,
        cpus=settings.resources.cpus,
        scorer=str(model.get("scorer", "")),
        snapshot=str(model.get("snapshot", "")),
        finished=finished,
    )


# ------------------------------------------------------------------ the worst videos' keypoints


@dataclass
class Track:
    """One video's keypoints as the plots need them (read from its published ``.h5``)."""

    frames: np.ndarray  # the video's frame numbers, one per row
    x: dict[str, np.ndarray]  # by bodypart ("individual/bodypart" for a multi-animal project)
    y: dict[str, np.ndarray]
    likelihood: dict[str, np.ndarray]


def pytables() -> bool:
    """Whether ``.h5`` files can be read here (a login node's install may lack PyTables)."""
    return importlib.util.find_spec("tables") is not None


def h5_output(rec: Record) -> str:
    """The record's published keypoints ``.h5`` (not a filtered copy, whose likelihoods are the same)."""
    found = [o.uri for o in rec.outputs if o.uri.endswith(".h5")]
    plain = [u for u in found if not u.endswith("_filtered.h5")]
    return (plain or found or [""])[0]


def track(rec: Record, workdir: Path) -> Track | str:
    """``rec``'s keypoints, fetched through the storage seam into ``workdir``; or why not, in a
    few words (no PyTables here, no .h5 recorded, the fetch or the read failed)."""
    if not pytables():
        return NO_PYTABLES
    uri = h5_output(rec)
    if not uri:
        return "no .h5 in the record's outputs"
    local = Path(workdir) / f"{rec.index:06d}-{basename(uri)}"
    try:
        storage_for(uri).fetch(uri, local)
    except DlcrunError as exc:
        return f"could not fetch {uri}: {one_line(redact(exc), 200)}"
    try:
        return read_track(local)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"could not read {uri}: {one_line(redact(exc), 200)}"
    finally:
        local.unlink(missing_ok=True)


def read_track(h5: Path) -> Track:
    """A DeepLabCut ``.h5`` (scorer / [individuals /] bodyparts / coords columns) as a ``Track``."""
    import pandas as pd

    df = pd.read_hdf(h5)
    if not isinstance(df, pd.DataFrame) or df.columns.nlevels < 3:
        raise ValueError("not a DeepLabCut keypoints table")
    names = list(df.columns.names)
    coords = df.columns.get_level_values(names.index("coords") if "coords" in names else -1)
    part_levels = [k for k, n in enumerate(names) if n in ("individuals", "bodyparts")] or [df.columns.nlevels - 2]
    labels = ["/".join(str(col[k]) for k in part_levels) for col in df.columns]
    values = df.to_numpy(dtype=np.float64, copy=False)
    x: dict[str, np.ndarray] = {}
    y: dict[str, np.ndarray] = {}
    p: dict[str, np.ndarray] = {}
    for k, (label, coord) in enumerate(zip(labels, coords)):
        {"x": x, "y": y, "likelihood": p}.get(str(coord), {})[label] = values[:, k]
    return Track(frames=np.asarray(df.index, dtype=np.int64), x=x, y=y, likelihood=p)
