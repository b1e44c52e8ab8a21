"""Manifests: the file format, and where one goes by default.

A manifest is the contract between ``submit`` and every array index: one video location per
line, in a fixed order, so that array index *i* always means the same video. It is plain text
so a cluster user can read, diff and edit it; ``#`` lines are comments. Which videos go into
one is the selection wing's business; this module only writes and reads them.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlcrun.errors import ManifestError
from dlcrun.files import write_text
from dlcrun.locations import check_text, normalize_location, shown

# Where `dlcrun manifest` and `dlcrun sample` write when no --output is given (under the cwd).
MANIFESTS = Path("manifests")
# What `dlcrun manifest` reads, not what `submit` takes: refused by read_manifest naming the fix.
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".tsv")
# xlsx, xlsm and ods are zip archives; xls is an OLE2 compound file.
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
FIRST_LINE = "# dlcrun manifest"  # what write_manifest starts every manifest with


@dataclass
class Manifest:
    entries: list[str]
    header: list[str] = field(default_factory=list)


def default_manifest_path(sheet: Path | None = None, *, listing: str | None = None, sample: bool = False) -> Path:
    """manifests/<sheet's stem>.txt (<stem>-sample.txt for a sample), or for a folder listing
    manifests/<the folder's name>.txt (listing.txt when the location names no folder, as '.')."""
    if listing is not None:
        name = listing.rstrip("/").rsplit("/", 1)[-1].split(":")[-1]
        return MANIFESTS / f"{name if name not in ('', '.', '..') else 'listing'}.txt"
    if sheet is None:
        raise ValueError("default_manifest_path needs a sheet or a listing")
    return MANIFESTS / f"{Path(sheet).stem}{'-sample' * sample}.txt"


def write_manifest(path: Path, manifest: Manifest) -> Path:
    """Write atomically: a reader, or a crash, never sees half a manifest.

    Entries are written normalised (``normalize_location``); one holding a control character, or
    the same location twice once normalised, is refused before anything is written.
    """
    from dlcrun import __version__

    path = Path(path)
    entries = _checked_entries(path, manifest.entries, "entry")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"{FIRST_LINE}, written {stamp} by dlcrun {__version__}"]
    lines += [f"# {shown(h)}" for h in manifest.header]  # a newline in a header would make an entry
    lines.append(f"# videos: {len(entries)}")
    lines += entries
    write_text(path, "\n".join(lines) + "\n")
    return path


def read_manifest(path: Path) -> Manifest:
    """A manifest's entries, normalised as ``write_manifest`` writes them (a hand-written one too).

    A spreadsheet (by its extension, unless ``write_manifest`` wrote it, or by its content) is
    refused naming the command that makes a manifest of it, as is any other binary file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest (dlcrun manifest SHEET -o {path} writes one)") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: a folder, not a manifest (dlcrun manifest writes one)") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    ours = data.removeprefix(b"\xef\xbb\xbf").startswith(FIRST_LINE.encode())
    if data.startswith(WORKBOOK_MAGIC) or (path.suffix.lower() in SPREADSHEETS and not ours):
        raise ManifestError(
            f"{path} is a spreadsheet: `dlcrun manifest {shlex.quote(str(path))}` writes the manifest to submit"
        )
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 is said below
        raise ManifestError(
            f"{path}: binary data, not a manifest (one video per line; `dlcrun manifest SHEET` writes one)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    lines: list[tuple[int, str]] = []
    header = []
    # split("\n"), not splitlines(): that also splits at \x0b, \x0c, \x1c-\x1e, which are refused instead.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            header.append(line[1:].strip())
            continue
        lines.append((number, line))
    if not lines:
        raise ManifestError(f"{path}: the manifest lists no video")
    numbers = [n for n, _ in lines]
    entries = _checked_entries(path, [line for _, line in lines], "line", numbers)
    return Manifest(entries=entries, header=header)


def _checked_entries(path: Path, entries: Sequence[str], what: str, numbers: Sequence[int] | None = None) -> list[str]:
    """Entries normalised; a control character, a climb above the top, or a duplicate (once
    normalised: /w/A/../B/x.mp4 is /w/B/x.mp4) is refused naming its line (or entry number)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        number = numbers[i] if numbers is not None else i + 1
        try:
            check_text(entry, "the entry")
            normal = normalize_location(entry)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {what} {number}: {exc}") from None
        if normal in seen:
            raise ManifestError(f"{path}: {what} {number}: duplicate of {what} {seen[normal]} ({shown(entry)})")
        seen[normal] = number
        out.append(normal)
    return out
