"""Folder listings as dated videos: ``manifest --folder`` and the folders of a selection sheet.

Any storage backend's listing goes through here, so a local disk and a ``dropbox:`` folder
behave alike: only video files count, Dropbox conflicted copies and names holding a control
character (a newline would split a manifest line) are set aside with a warning, and each name
is dated through the lab's name pattern (or by the storage's own modification time).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dlcrun.dates import bounds
from dlcrun.errors import ManifestError
from dlcrun.locations import basename, resolve_location, shown
from dlcrun.names import ISPY_PATTERN, VIDEO_EXTENSIONS, NamePattern, is_conflicted_copy, is_video
from dlcrun.storage import StoredObject, storage_for
from dlcrun.videos import Selection, Video

# A listed video: (start time, the object, the name pattern's fields, how it was timed).
Dated = tuple[dt.datetime, StoredObject, dict[str, str], str]


def first_of(names: Sequence[str], limit: int = 10) -> str:
    """The first ``limit`` names and how many more: a warning about 3,000 files stays one line."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclass
class FolderScan:
    """One listed folder: dated videos in start order, and what was set aside."""

    videos: list[Dated]
    unmatched: list[str]
    conflicted: list[str]
    unsafe: list[str] = field(default_factory=list)

    def warnings(self, source: str, pattern: str) -> list[str]:
        """What was set aside, one line per reason, naming the folder."""
        out = []
        if self.unmatched:
            out.append(
                f"{source}: {len(self.unmatched)} video name(s) do not match '{pattern}' and were left out: "
                f"{first_of(self.unmatched)} (--name-pattern to fit them, --mtime-fallback to use file times)"
            )
        if self.conflicted:
            out.append(
                f"{source}: skipped {len(self.conflicted)} Dropbox conflicted copies: {first_of(self.conflicted, 3)}"
            )
        if self.unsafe:
            out.append(unsafe_warning(source, self.unsafe))
        return out


def videos_only(
    objects: Iterable[StoredObject], conflicted: list[str], unsafe: list[str]
) -> Iterator[tuple[StoredObject, str]]:
    """Video files of a listing with their names; Dropbox conflicted copies go to ``conflicted``,
    and locations holding a control character (a newline would split a manifest line) to ``unsafe``."""
    for obj in objects:
        name = basename(obj.uri)
        if not is_video(name):
            continue
        if shown(obj.uri) != obj.uri:  # a control character, shown escaped
            unsafe.append(f"'{shown(obj.uri)}'")
            continue
        if is_conflicted_copy(name):
            conflicted.append(name)
            continue
        yield obj, name


def unsafe_warning(source: str, unsafe: Sequence[str]) -> str:
    return (
        f"{source}: skipped {len(unsafe)} video(s) whose names hold a control character (a newline, a tab); "
        f"rename them to include them: {first_of(list(unsafe), 3)}"
    )


def scan(objects: Iterable[StoredObject], pattern: NamePattern, mtime_fallback: bool) -> FolderScan:
    """A folder's videos dated by their names (or, with ``mtime_fallback``, by modification time)."""
    videos: list[Dated] = []
    unmatched: list[str] = []
    conflicted: list[str] = []
    unsafe: list[str] = []
    for obj, name in videos_only(objects, conflicted, unsafe):
        hit = pattern.match(name)
        if hit is not None:
            videos.append((hit[0], obj, hit[1], "name"))
        elif mtime_fallback and obj.mtime is not None:
            videos.append((dt.datetime.fromtimestamp(obj.mtime), obj, {}, "mtime"))
        else:
            unmatched.append(name)
    videos.sort(key=lambda v: (v[0], v[1].uri))
    return FolderScan(videos, unmatched, conflicted, unsafe)


def from_listing(
    objects: Iterable[StoredObject],
    *,
    source: str,
    since: str | None = None,
    until: str | None = None,
    dates: str = "modified",
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
) -> Selection:
    """The videos of a folder listing (any storage backend), in name order, optionally in a window.

    ``dates`` says what ``since``/``until`` compare with: ``modified``, the storage's own time
    (Dropbox's server_modified, a file's mtime), read in this machine's time zone; or ``name``,
    the start time that ``pattern`` reads from the file name. Dropbox conflicted copies are left
    out with a warning, and with a window every video must have a time, or the listing fails
    naming the ones without.
    """
    if dates not in ("modified", "name"):
        raise ManifestError(f"--dates: '{dates}' is not one of modified, name")
    lo, hi = bounds(since, until, dayfirst, flags=("--since", "--until"))
    name_pattern = NamePattern.compile(pattern)
    videos: list[Video] = []
    undated: list[str] = []
    conflicted: list[str] = []
    unsafe: list[str] = []
    seen = 0
    for obj, name in videos_only(objects, conflicted, unsafe):
        seen += 1
        hit = name_pattern.match(name)
        if dates == "name":
            start = hit[0] if hit else None
        else:
            start = dt.datetime.fromtimestamp(obj.mtime) if obj.mtime is not None else None
        if start is None and (lo or hi):
            undated.append(name)
            continue
        if start is not None and ((lo and start < lo) or (hi and start > hi)):
            continue
        parent = obj.uri.rstrip("/").rsplit("/", 1)[0]
        fields = {**(hit[1] if hit else {}), "folder": basename(parent)}
        timed_by = "name" if dates == "name" else "mtime"
        videos.append(Video(uri=obj.uri, start=start, row=0, size=obj.size, fields=fields, timed_by=timed_by))
    if undated:
        hint = f"; they do not match --name-pattern '{pattern}'" if dates == "name" else ""
        raise ManifestError(f"{source}: no start time for {first_of(undated, 3)}{hint}")
    if not videos:
        what = f"{seen} videos, none in the date range" if seen else f"no videos ({', '.join(VIDEO_EXTENSIONS)})"
        if unsafe:
            what += f"; {len(unsafe)} skipped for a control character in their names: {first_of(unsafe, 3)}"
        raise ManifestError(f"{source}: {what}")
    warnings = [unsafe_warning(source, unsafe)] if unsafe else []
    if conflicted:
        warnings.append(f"{source}: skipped {len(conflicted)} Dropbox conflicted copies: {first_of(conflicted, 3)}")
    window_text = f" since={since}" * bool(since) + f" until={until}" * bool(until)
    by = f" by {dates}" + (f" name_pattern={pattern}" if dates == "name" else "") if window_text else ""
    header = [f"listing: {source}{window_text}{by}"]
    videos.sort(key=lambda v: v.uri)
    return Selection(kind="list", videos=videos, header=header, warnings=warnings)


def from_folder(
    location: str,
    *,
    recursive: bool = False,
    since: str | None = None,
    until: str | None = None,
    dates: str = "modified",
    pattern: str = ISPY_PATTERN,
    dayfirst: bool = False,
) -> Selection:
    """List a folder (a path, relative to here, or a URI such as dropbox:/Videos) into a Selection."""
    folder = resolve_location(location, os.getcwd())
    listing = storage_for(folder).list(folder, recursive=recursive)
    found = from_listing(
        listing, source=folder, since=since, until=until, dates=dates, pattern=pattern, dayfirst=dayfirst
    )
    if recursive:
        found.header[0] += " recursive"
    return found
