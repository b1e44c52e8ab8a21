"""What a selection yields: candidate videos, and for a selection sheet its rows.

A list sheet, a selection sheet and a folder listing all give the same ``Video``, so that
``dlcrun sample`` treats them alike. ``selection`` and ``listing`` make these and ``sampling``
draws from them; they live below all three (plain data over the manifest format), so that
``selection`` can use ``listing`` without either importing the other in a circle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from dlcrun.manifest import Manifest
from dlcrun.sheets import SheetKind


@dataclass(frozen=True)
class Video:
    """One candidate video: where it is, when it started, and what it can be grouped by.

    ``fields`` holds the sheet row's cells, the folder and the name pattern's fields (camera),
    so sampling can stratify by any of them. ``timed_by`` is 'name', 'mtime' or 'sheet'.
    """

    uri: str
    start: dt.datetime | None
    row: int
    size: int | None = None
    duration: float | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    timed_by: str = "name"
    before_window: bool = False


@dataclass
class RowResult:
    """A selection row after listing: its window and the videos it selected, in start order."""

    number: int
    folder: str
    start: dt.datetime
    end: dt.datetime
    videos: list[Video]

    @property
    def bytes(self) -> int:
        return sum(v.size or 0 for v in self.videos)


@dataclass
class Selection:
    """The videos a sheet or listing names, deduplicated, in order; plus what the user should hear.

    ``sheet_rows`` is how many non-blank rows the sheet had (0 for a folder listing).
    """

    kind: SheetKind
    videos: list[Video]
    header: list[str]
    rows: list[RowResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sheet_rows: int = 0

    def manifest(self) -> Manifest:
        return Manifest(entries=[v.uri for v in self.videos], header=list(self.header))

    @property
    def total_bytes(self) -> int:
        return sum(v.size or 0 for v in self.videos)

    @property
    def known_hours(self) -> tuple[float, int]:
        """Hours of video over the videos whose duration is known, and how many those are."""
        known = [v.duration for v in self.videos if v.duration is not None]
        return sum(known) / 3600, len(known)
