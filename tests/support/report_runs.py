"""Runs for ``dlcrun report`` tests and its benchmark: run directories written by ``ledger.Run``,
keypoint ``.h5`` files in DeepLabCut's layout (written as DLC writes them: pandas, key
``df_with_missing``, table format), and records holding quality numbers computed from those files
by hand (numpy, the record schema's definitions), as an array index records them.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dlcrun.ledger import Output, Record, Run
from dlcrun.manifest import Manifest
from dlcrun.settings import load_settings

SCORER = "DLC_Resnet50_testNov30shuffle1_snapshot_200"
BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]
T0 = dt.datetime(2026, 10, 2, 14, 12, tzinfo=dt.timezone.utc)


def make_run(tmp_path: Path, n: int, gpus: int = 1, cpus: int = 4, name: str = "report") -> Run:
    """A run of ``n`` videos on the local scheduler (no array submitted: the records say it all)."""
    settings = load_settings(
        None,
        project=tmp_path / "project",
        dest=str(tmp_path / "keypoints"),
        runs_dir=tmp_path / "runs",
        resources={"gpus": gpus, "cpus": cpus},
    )
    manifest = Manifest(entries=[f"/videos/cam{i % 4}/mouse{i:04d}.mp4" for i in range(n)])
    model = {"scorer": SCORER, "snapshot": "/project/dlc-models/snapshot-200.pt", "bodyparts": BODYPARTS}
    return Run.create(tmp_path / "runs", settings, manifest, model, name=name)


def keypoints(frames: int, seed: int, dips: list[tuple[int, int]] = (), base: float = 0.95) -> dict[str, np.ndarray]:
    """Columns ``x``, ``y``, ``likelihood`` per bodypart: a mouse walking a circle, likelihood
    ``base`` with noise, near 0 inside each ``dips`` stretch [start, end)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    out: dict[str, np.ndarray] = {}
    for k, part in enumerate(BODYPARTS):
        angle = t / 40 + k * 0.3
        out[f"{part}/x"] = 320 + 150 * np.cos(angle) + rng.normal(0, 1.5, frames)
        out[f"{part}/y"] = 240 + 120 * np.sin(angle) + rng.normal(0, 1.5, frames)
        p = np.clip(base + rng.normal(0, 0.03, frames), 0, 1)
        for start, end in dips:
            p[start:end] = rng.uniform(0, 0.2, max(0, min(end, frames) - start))
        out[f"{part}/likelihood"] = p
    return out


def write_h5(path: Path, columns: dict[str, np.ndarray]) -> Path:
    """``columns`` as DeepLabCut's keypoints table: (scorer, bodyparts, coords) columns, one row
    per frame, key ``df_with_missing``."""
    import pandas as pd

    index = pd.MultiIndex.from_tuples(
        [(SCORER, *name.split("/")) for name in columns], names=["scorer", "bodyparts", "coords"]
    )
    df = pd.DataFrame(np.column_stack(list(columns.values())), columns=index)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_hdf(path, key="df_with_missing", format="table", mode="w")
    return path


def longest_run(mask: np.ndarray) -> int:
    best = current = 0
    for flag in mask:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


def quality(columns: dict[str, np.ndarray], pcutoff: float = 0.6, window: int = 30) -> dict[str, Any]:
    """The record's quality numbers for ``columns``, by the schema's definitions."""
    parts: dict[str, Any] = {}
    frames = len(next(iter(columns.values())))
    mean_p = np.zeros(frames)
    for part in BODYPARTS:
        p = columns[f"{part}/likelihood"]
        xy = np.column_stack([columns[f"{part}/x"], columns[f"{part}/y"]])
        jumps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        below = p < pcutoff
        parts[part] = {
            "mean": float(p.mean()),
            "p05": float(np.percentile(p, 5)),
            "p25": float(np.percentile(p, 25)),
            "median": float(np.median(p)),
            "below": float(below.mean()),
            "longest_below": longest_run(below),
            "jump_median": float(np.median(jumps)),
            "jump_p95": float(np.percentile(jumps, 95)),
            "jump_max": float(jumps.max()),
            "hist": np.histogram(p, bins=20, range=(0, 1))[0].astype(int).tolist(),
        }
        mean_p += p / len(BODYPARTS)
    window = min(window, frames)
    sums = np.convolve(mean_p, np.ones(window), "valid") / window
    start = int(np.argmin(sums))
    return {
        "version": 1,
        "pcutoff": pcutoff,
        "frames": frames,
        "score": float(np.mean([1 - parts[p]["below"] for p in BODYPARTS])),
        "bodyparts": parts,
        "worst": {"start": start, "end": start + window, "mean": float(sums[start])},
    }


def synthetic_quality(seed: int, frames: int = 9000, pcutoff: float = 0.6) -> dict[str, Any]:
    """Plausible quality numbers without a file behind them (for thousands of records)."""
    rng = np.random.default_rng(seed)
    score_base = rng.beta(8, 1.5)
    parts = {}
    for part in BODYPARTS:
        below = float(np.clip(1 - score_base + rng.normal(0, 0.05), 0, 1))
        hist = rng.multinomial(frames, np.r_[np.full(12, below / 12), np.full(8, (1 - below) / 8)]).tolist()
        parts[part] = {
            "mean": 1 - below * 0.8,
            "p05": 0.05,
            "p25": 0.5,
            "median": 0.9,
            "below": below,
            "longest_below": int(below * frames / 4),
            "jump_median": 1.5,
            "jump_p95": 6.0,
            "jump_max": 40.0,
            "hist": hist,
        }
    start = int(rng.integers(0, frames - 30))
    return {
        "version": 1,
        "pcutoff": pcutoff,
        "frames": frames,
        "score": float(np.mean([1 - p["below"] for p in parts.values()])),
        "bodyparts": parts,
        "worst": {"start": start, "end": start + 30, "mean": 0.1},
    }


def write_record(
    run: Run, index: int, state: str = "done", minute: float = 0.0, durable: bool = True, **fields: Any
) -> Record:
    """A record as an array index writes it (``quality`` and ``clip`` among ``fields``); not
    ``durable``: the same JSON without the atomic write's fsync (thousands of records in seconds)."""
    start = T0 + dt.timedelta(minutes=minute)
    base = {
        "started": start.isoformat(),
        "finished": (start + dt.timedelta(seconds=40)).isoformat(),
        "frames": 9000 if state == "done" else 0,
        "seconds": {"fetch": 2.0, "load": 1.0, "infer": 30.0, "upload": 0.5} if state == "done" else {},
    }
    rec = Record(index=index, video=run.manifest.entries[index], state=state, attempts=1, **{**base, **fields})
    if durable:
        run.write_record(rec)
    else:
        run.record_path(index).write_text(json.dumps(asdict(rec)))
    return rec


def done_with_h5(run: Run, index: int, columns: dict[str, np.ndarray], minute: float = 0.0, **fields: Any) -> Path:
    """Index ``index`` done: its keypoints published at the run's dest, quality numbers recorded."""
    stem = Path(run.manifest.entries[index]).stem
    h5 = write_h5(Path(run.settings.dest or "") / f"{stem}{SCORER}.h5", columns)
    frames = len(next(iter(columns.values())))
    write_record(
        run,
        index,
        minute=minute,
        frames=frames,
        outputs=[Output(uri=str(h5), size=h5.stat().st_size, sha256="")],
        quality=quality(columns),
        **fields,
    )
    return h5
