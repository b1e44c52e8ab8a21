"""Locations: the one spelling of a video's or output's place, local path or URI.

A location is a plain path, ``file:``, ``dropbox:/A/b.mp4`` or ``rclone:remote:a/b.mp4``. These
are pure string functions (no storage is touched), so the manifest, the ledger and the
storage backends agree on when two locations are the same and where an output goes.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable

from dlcrun.errors import ManifestError


def scheme_of(uri: str) -> str:
    """'file' for plain paths and file:// URIs, else the part before the first colon."""
    if uri.startswith("/") or uri.startswith("file:") or "://" not in uri and ":" not in uri:
        return "file"
    return uri.split(":", 1)[0]


def join(base: str, *parts: str) -> str:
    """Append path parts to a location, keeping its scheme."""
    out = base.rstrip("/") if base not in ("/", "") else base
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}" if out and not out.endswith(":") else f"{out}{part}"
    return out


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1].split(":")[-1]


# What may not appear in a location: one would split a manifest line, or hide in a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def resolve_location(text: str, base: str) -> str:
    """Absolute, normalised location for a sheet cell: URIs and absolute paths stay (normalised),
    the rest joins ``base``. A relative cell may not climb above a remote ``base`` (``../x.mp4``
    under ``dropbox:/Videos``); under a local one it is an ordinary path."""
    if scheme_of(text) != "file" or text.startswith("/") or text.startswith("file:"):
        return normalize_location(text)
    expanded = os.path.expanduser(text)
    if os.path.isabs(expanded):
        return normalize_location(expanded)
    if scheme_of(base) == "file":
        return normalize_location(os.path.join(base, expanded))
    relative, climbs = _collapse(expanded)
    if climbs:
        raise ManifestError(f"'{shown(text)}' climbs above the root {shown(base)}")
    return normalize_location(join(base, relative))


def shown(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\t``, ``\\x01``), so a message stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def check_text(text: str, what: str) -> None:
    """Refuse a location (or a folder) holding a control character: a newline would split it
    into two manifest lines, and none of them belongs in a file name."""
    found = _CONTROL.search(text)
    if found is not None:
        char = repr(found.group())[1:-1]
        raise ManifestError(f"{what} holds a control character ({char}): '{shown(text)}'")


def normalize_location(text: str) -> str:
    """The one spelling of a location, so that equal locations compare equal.

    ``.``, ``..`` and doubled slashes are collapsed in the path (``/w/A/../B/x.mp4`` ->
    ``/w/B/x.mp4``, ``rclone:remote:a/./b.mp4`` -> ``rclone:remote:a/b.mp4``), keeping the
    scheme and, for rclone, the remote. A URI whose ``..`` climbs above the top of its storage
    (``dropbox:/../x.mp4``) is refused; a plain path follows the OS (``/..`` is ``/``). Schemes
    dlcrun has no backend for are left as they are.
    """
    scheme = scheme_of(text)
    if scheme == "file":
        if not text.startswith("file:"):
            return _collapse(text)[0]
        rest = text[len("file:") :]
        authority = ""
        if rest.startswith("//"):  # file:///abs or file://host/abs
            cut = rest.find("/", 2)
            authority, rest = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
        return f"file:{authority}{_collapse(rest)[0] if rest else ''}"  # a local path: /.. is /
    if scheme == "dropbox":  # dropbox:/A/b.mp4, or dropbox://A/b.mp4 which the backend reads alike
        return "dropbox:" + _uri_path("/" + text.split(":", 1)[1].lstrip("/"), text)
    if scheme == "rclone":
        rest = text[len("rclone:") :]
        cut = rest.find(":", 1)  # 1: an on-the-fly remote (":s3,env_auth:bucket") starts with ':'
        if cut < 0 or "'" in rest or '"' in rest:  # not rclone:REMOTE:path, or quoted options: leave it
            return text
        path = _uri_path(rest[cut + 1 :], text) if rest[cut + 1 :] else ""
        return f"rclone:{rest[: cut + 1]}{'' if path == '.' else path}"
    return text


def _uri_path(path: str, whole: str) -> str:
    collapsed, climbs = _collapse(path)
    if climbs:
        raise ManifestError(f"'{shown(whole)}' climbs above the top of its storage ('..')")
    return collapsed


def _collapse(path: str) -> tuple[str, bool]:
    """``posixpath.normpath`` (a leading ``//`` too), and whether a ``..`` went above the start."""
    absolute = path.startswith("/")
    parts: list[str] = []
    climbs = False
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts and parts[-1] != "..":
            parts.pop()
        else:
            climbs = True
            if not absolute:
                parts.append("..")
    joined = "/".join(parts)
    return ("/" + joined if absolute else joined or "."), climbs


def output_folders(entries: Iterable[str]) -> list[str]:
    """Per entry, the sub-folder its keypoints go to under the destination.

    The folders below the entries' common parent are kept, so cam1/a.mp4 and cam2/a.mp4 never
    write the same output file; a batch from one folder lands flat in the destination.
    """
    parents = [posixpath.dirname(posixpath.normpath(_path_part(e))) for e in entries]
    try:
        common = posixpath.commonpath(parents)
    except ValueError:  # mixed absolute and relative locations: nothing in common to strip
        return ["" for _ in parents]
    return [posixpath.relpath(p, common) if p != common else "" for p in parents]


def _path_part(entry: str) -> str:
    if scheme_of(entry) == "file":
        return entry[len("file://") :] if entry.startswith("file://") else entry
    return entry.split(":", 1)[1]
