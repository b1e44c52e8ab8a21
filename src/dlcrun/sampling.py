"""A reproducible, stratified random sample of videos for labelling.

Labels should cover every camera (or tank, or day) rather than the one with the most video,
so the sample is split as evenly as the strata allow. Randomness comes from hashing each
video's location with the seed, not from a random-number generator: the same seed gives the
same sample on any machine and Python version, and adding videos to a folder later does not
reshuffle the ones already drawn.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from dlcrun.errors import ManifestError
from dlcrun.manifest import Manifest
from dlcrun.names import normal_name
from dlcrun.videos import Video

DAY = "day"


@dataclass
class Stratum:
    key: str
    available: int
    chosen: int


@dataclass
class Sample:
    videos: list[Video]
    strata: list[Stratum]
    header: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def manifest(self, source: Sequence[str] = ()) -> Manifest:
        """The sample as a manifest; ``source`` (the sheet's header lines) comes first."""
        return Manifest(entries=[v.uri for v in self.videos], header=[*source, *self.header])


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{text}".encode()).hexdigest()


def stratum_of(video: Video, per: str) -> str:
    """The value of ``per`` for a video: a sheet column, 'folder', a name field, or 'day'."""
    wanted = normal_name(per)
    for key, value in video.fields.items():
        if normal_name(key) == wanted:
            return value
    if wanted == DAY and video.start is not None:
        return video.start.date().isoformat()
    known = sorted({*video.fields, DAY} if video.start is not None else set(video.fields))
    raise ManifestError(f"--per {per}: no such column or name field for {video.uri} (known: {', '.join(known)})")


def allocate(sizes: dict[str, int], n: int, seed: int) -> dict[str, int]:
    """Split ``n`` as evenly as the strata allow; a small stratum's unused share goes to the others.

    When the remainder cannot be split evenly, which strata get one more is decided by the seed.
    """
    alloc = dict.fromkeys(sizes, 0)
    remaining = n
    while remaining > 0:
        open_ = sorted((k for k in sizes if alloc[k] < sizes[k]), key=lambda k: _rank(seed, f"stratum\0{k}"))
        if not open_:
            break
        share, extra = divmod(remaining, len(open_))
        if share == 0:
            for k in open_[:extra]:
                alloc[k] += 1
            break
        for k in open_:
            give = min(share, sizes[k] - alloc[k])
            alloc[k] += give
            remaining -= give
    return alloc


def draw(
    videos: Sequence[Video],
    n: int,
    *,
    seed: int = 0,
    per: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Sample:
    """``n`` videos from those starting in [since, until], spread evenly over the ``per`` strata."""
    if n < 1:
        raise ManifestError(f"--count must be at least 1, not {n}")
    warnings = []
    pool = list(videos)
    if since is not None or until is not None:
        undated = [v for v in pool if v.start is None]
        if undated:
            warnings.append(
                f"{len(undated)} video(s) have no start time (no date column, name does not match the pattern) "
                f"and were left out of the --since/--until window: {', '.join(v.uri for v in undated[:3])}"
            )
        pool = [
            v
            for v in pool
            if v.start is not None and (since is None or v.start >= since) and (until is None or v.start <= until)
        ]
    groups: dict[str, list[Video]] = {}
    for v in pool:
        groups.setdefault(stratum_of(v, per) if per else "", []).append(v)
    if len(pool) < n:
        where = " in the --since/--until window" if since is not None or until is not None else ""
        raise ManifestError(f"--count {n}: only {len(pool)} videos{where} to sample from; ask for fewer")
    alloc = allocate({k: len(g) for k, g in groups.items()}, n, seed)
    chosen: list[Video] = []
    strata = []
    for key in sorted(groups):
        picked = sorted(groups[key], key=lambda v: _rank(seed, v.uri))[: alloc[key]]
        chosen += sorted(picked, key=lambda v: (v.start or dt.datetime.min, v.uri))
        strata.append(Stratum(key=key, available=len(groups[key]), chosen=alloc[key]))
    span = "".join(f" {name}={when:%Y-%m-%dT%H:%M:%S}" for name, when in (("since", since), ("until", until)) if when)
    header = [f"sample: count={n} seed={seed}" + f" per={per}" * bool(per) + span]
    header += [f"stratum {s.key or '(blank)'}: {s.chosen} of {s.available}" for s in strata if per]
    return Sample(videos=chosen, strata=strata, header=header, warnings=warnings)


__all__ = ["Sample", "Stratum", "allocate", "draw", "stratum_of"]
