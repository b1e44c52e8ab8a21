"""How well a video was tracked, in numbers gathered while its keypoints stream to the .h5.

A batch of thousands of videos needs one glance per video: which bodyparts the network lost,
for how long, and where. Reading thousands of .h5 files back to find out costs another pass
over terabytes, so :class:`QualityAccumulator` takes each chunk of rows as the array index
writes it (``inference.KeypointTable``) and keeps only fixed-size state: histograms, counts,
the run under ``pcutoff`` still open at the chunk's end, the last row, and the tail of the
sliding window. RAM is the same for a minute of video as for a month.

The numbers (``QUALITY_VERSION`` 1; frame numbers are the video's own, as in the .h5 index):

- ``pcutoff`` (the project's), ``frames`` (rows analysed), ``score``: the mean over bodyparts of
  the fraction of rows at or above ``pcutoff`` (1 is best).
- per bodypart: ``mean`` likelihood (exact); ``p05``, ``p25``, ``median`` from a histogram of
  10,000 bins over [0, 1], within 5e-5 of numpy's (linear) percentiles; ``below``, the fraction
  of rows under ``pcutoff``; ``longest_below``, the rows in the longest run under it (across
  chunk boundaries); ``hist``, rows per likelihood bin of 0.05 ([0, 0.05), ..., [0.95, 1]).
- jumps, per bodypart: the displacement in pixels between two consecutive analysed rows where
  both are at or above ``pcutoff`` (with a stride, rows are ``stride`` frames apart). ``jump_max``
  is exact; ``jump_median`` and ``jump_p95`` come from a logarithmic histogram (200 bins per
  decade from 0.01 px to 1e5 px), within 0.6 % (0.005 px below 0.01 px). All three are None
  when no two consecutive rows qualify.
- ``worst``: the window of ``window_rows`` rows (about 5 s, or 5 % of the rows if that is
  shorter) with the lowest mean likelihood over bodyparts: its first and last frame and that
  mean (the earliest, on a tie; the whole table when it is shorter than the window).

A likelihood that is NaN counts as 0 (missing). numpy only: a login node reads these from the
records without DeepLabCut.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

QUALITY_VERSION = 1
FINE_BINS = 10_000  # likelihood histogram for percentiles: 1e-4 wide, estimates within 5e-5
COARSE_BINS = 20  # the stored histogram: bins of 0.05
JUMP_FLOOR = 0.01  # px: jumps below this share bin 0
JUMP_PER_DECADE = 200  # log bins: each 10**(1/200) = 1.16 % wide, estimates within 0.6 %
JUMP_DECADES = 7  # 0.01 px .. 1e5 px; larger jumps share the overflow bin (jump_max stays exact)
JUMP_BINS = 2 + JUMP_PER_DECADE * JUMP_DECADES
WORST_SECONDS = 5.0
WORST_FRACTION = 0.05


def window_rows(fps: float, stride: int, expected_rows: int | None) -> int:
    """Rows in the ``worst`` window: about 5 s of analysed rows, or 5 % of the rows if fewer.

    From what is known before the first frame (the header's frame rate and frame count): the
    window must be fixed while rows stream. No frame rate: 150 rows (5 s at 30 fps)."""
    seconds = round(WORST_SECONDS * fps / max(stride, 1)) if fps and fps > 0 else 150
    rows = max(1, seconds)
    if expected_rows:
        rows = min(rows, max(1, math.ceil(WORST_FRACTION * expected_rows)))
    return rows


class QualityAccumulator:
    """Quality numbers of one keypoint table, fed chunk by chunk in frame order.

    ``add(frames, values)``: the rows' frame numbers and their values as the .h5 holds them,
    (rows, 3 * bodyparts) in (x, y, likelihood) order per bodypart. ``result()`` gives the
    dictionary described in the module's docstring.
    """

    def __init__(self, bodyparts: list[str], pcutoff: float, window: int):
        n = len(bodyparts)
        self.bodyparts = list(bodyparts)
        self.pcutoff = float(pcutoff)
        self.window = max(1, int(window))
        self.rows = 0
        self._sum = np.zeros(n)
        self._below = np.zeros(n, dtype=np.int64)
        self._fine = np.zeros((n, FINE_BINS), dtype=np.int64)
        self._coarse = np.zeros((n, COARSE_BINS), dtype=np.int64)
        self._run = np.zeros(n, dtype=np.int64)  # rows under pcutoff up to the last row seen
        self._longest = np.zeros(n, dtype=np.int64)
        self._jumps = np.zeros((n, JUMP_BINS), dtype=np.int64)
        self._jump_count = np.zeros(n, dtype=np.int64)
        self._jump_max = np.full(n, -np.inf)
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # x, y, ok of the last row
        self._tail_means = np.zeros(0)  # the last window-1 rows' mean likelihood, and their frames
        self._tail_frames = np.zeros(0, dtype=np.int64)
        self._worst: tuple[int, int, float] | None = None  # first frame, last frame, window sum

    def add(self, frames: Any, values: Any) -> None:
        frames = np.asarray(frames, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        rows = len(frames)
        if rows == 0:
            return
        n = len(self.bodyparts)
        values = values.reshape(rows, -1)[:, : 3 * n]
        x, y = values[:, 0::3], values[:, 1::3]
        p = np.nan_to_num(values[:, 2::3], nan=0.0)
        self.rows += rows
        self._sum += p.sum(axis=0)
        under = p < self.pcutoff
        self._below += under.sum(axis=0)
        column = np.arange(n)
        fine = np.clip(np.floor(p * FINE_BINS), 0, FINE_BINS - 1).astype(np.int64)
        self._fine += np.bincount((fine + column * FINE_BINS).ravel(), minlength=n * FINE_BINS).reshape(n, -1)
        coarse = np.clip(np.floor(p * COARSE_BINS), 0, COARSE_BINS - 1).astype(np.int64)
        self._coarse += np.bincount((coarse + column * COARSE_BINS).ravel(), minlength=n * COARSE_BINS).reshape(n, -1)
        self._runs(under)
        self._add_jumps(x, y, ~under)
        self._slide(frames, p.mean(axis=1))

    def _runs(self, under: np.ndarray) -> None:
        """Longest run under pcutoff; a run open at the chunk's start continues from ``_run``."""
        rows = len(under)
        index = np.arange(rows)[:, None]
        last_reset = np.maximum.accumulate(np.where(under, -1, index), axis=0)  # last row at or above
        length = np.where(last_reset >= 0, index - last_reset, index + 1 + self._run[None, :])
        length = np.where(under, length, 0)
        self._longest = np.maximum(self._longest, length.max(axis=0))
        self._run = length[-1]

    def _add_jumps(self, x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> None:
        if self._last is not None:
            lx, ly, lok = self._last
            x, y, ok = np.vstack([lx, x]), np.vstack([ly, y]), np.vstack([lok, ok])
        self._last = (x[-1:], y[-1:], ok[-1:])
        if len(x) < 2:
            return
        step = np.hypot(np.diff(x, axis=0), np.diff(y, axis=0))
        both = ok[1:] & ok[:-1] & np.isfinite(step)
        for bp in range(step.shape[1]):
            d = step[both[:, bp], bp]
            if d.size == 0:
                continue
            self._jump_count[bp] += d.size
            self._jump_max[bp] = max(self._jump_max[bp], float(d.max()))
            self._jumps[bp] += np.bincount(_jump_bin(d), minlength=JUMP_BINS)

    def _slide(self, frames: np.ndarray, means: np.ndarray) -> None:
        """The worst window so far, over the rows carried from the last chunk and these."""
        w = self.window
        m = np.concatenate([self._tail_means, means])
        f = np.concatenate([self._tail_frames, frames])
        if len(m) >= w:
            sums = np.convolve(m, np.ones(w), mode="valid")
            j = int(np.argmin(sums))
            if self._worst is None or sums[j] < self._worst[2]:
                self._worst = (int(f[j]), int(f[j + w - 1]), float(sums[j]))
        start = max(0, len(m) - (w - 1))  # the rows a later window may still start at
        self._tail_means, self._tail_frames = m[start:], f[start:]

    def result(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        rows = self.rows
        for i, name in enumerate(self.bodyparts):
            count = int(self._jump_count[i])
            parts[name] = {
                "mean": float(self._sum[i] / rows) if rows else None,
                "p05": _fine_percentile(self._fine[i], 0.05),
                "p25": _fine_percentile(self._fine[i], 0.25),
                "median": _fine_percentile(self._fine[i], 0.5),
                "below": float(self._below[i] / rows) if rows else None,
                "longest_below": int(self._longest[i]),
                "jump_median": _jump_percentile(self._jumps[i], 0.5, self._jump_max[i]) if count else None,
                "jump_p95": _jump_percentile(self._jumps[i], 0.95, self._jump_max[i]) if count else None,
                "jump_max": float(self._jump_max[i]) if count else None,
                "hist": [int(v) for v in self._coarse[i]],
            }
        score = float(np.mean(1.0 - self._below / rows)) if rows and self.bodyparts else None
        return {
            "version": QUALITY_VERSION,
            "pcutoff": self.pcutoff,
            "frames": rows,
            "score": score,
            "bodyparts": parts,
            "worst": self._worst_window(),
        }

    def _worst_window(self) -> dict[str, Any] | None:
        if self._worst is not None:
            start, end, total = self._worst
            return {"start": start, "end": end, "mean": total / self.window}
        if len(self._tail_means) == 0:
            return None
        # fewer rows than the window: the whole table (the tail holds every row)
        return {
            "start": int(self._tail_frames[0]),
            "end": int(self._tail_frames[-1]),
            "mean": float(self._tail_means.sum() / len(self._tail_means)),
        }


def quality_of(
    frames: Any, values: Any, bodyparts: list[str], pcutoff: float, window: int, chunk: int = 65536
) -> dict[str, Any]:
    """The numbers of a whole table at hand (a published .h5 read back), through the same
    accumulator, ``chunk`` rows at a time."""
    acc = QualityAccumulator(bodyparts, pcutoff, window)
    frames, values = np.asarray(frames), np.asarray(values)
    for start in range(0, len(frames), chunk):
        acc.add(frames[start : start + chunk], values[start : start + chunk])
    return acc.result()


def _jump_bin(d: np.ndarray) -> np.ndarray:
    out = np.zeros(d.shape, dtype=np.int64)
    big = d >= JUMP_FLOOR
    out[big] = 1 + np.floor(np.log10(d[big] / JUMP_FLOOR) * JUMP_PER_DECADE).astype(np.int64)
    return np.clip(out, 0, JUMP_BINS - 1)


def _jump_value(b: int) -> float:
    """A jump bin's representative: its geometric centre (bin 0: half the floor)."""
    if b == 0:
        return JUMP_FLOOR / 2
    return JUMP_FLOOR * 10 ** ((b - 0.5) / JUMP_PER_DECADE)


def _order_statistic_bins(hist: np.ndarray, q: float) -> tuple[int, int, float] | None:
    """The bins holding order statistics floor(h) and floor(h)+1, h = q (n - 1), and h's fraction
    (numpy's ``linear`` percentile interpolates between those two values)."""
    n = int(hist.sum())
    if n == 0:
        return None
    h = q * (n - 1)
    low = int(math.floor(h))
    cum = np.cumsum(hist)
    first = int(np.searchsorted(cum, low + 1))
    second = int(np.searchsorted(cum, min(low + 1, n - 1) + 1))
    return first, second, h - low


def _fine_percentile(hist: np.ndarray, q: float) -> float | None:
    found = _order_statistic_bins(hist, q)
    if found is None:
        return None
    first, second, frac = found
    a, b = (first + 0.5) / FINE_BINS, (second + 0.5) / FINE_BINS
    return float(a + frac * (b - a))


def _jump_percentile(hist: np.ndarray, q: float, largest: float) -> float | None:
    """Never above the exact maximum; the overflow bin (over 1e5 px) stands at the maximum."""
    found = _order_statistic_bins(hist, q)
    if found is None:
        return None
    first, second, frac = found
    a, b = (min(_jump_value(i), largest) if i < JUMP_BINS - 1 else largest for i in (first, second))
    return float(a + frac * (b - a))
