"""The storage seam: where videos come from and keypoints go, chosen by URI scheme.

A backend registers itself for one or more schemes; task code only ever calls
``storage_for(uri)`` and the four verbs of ``Storage``, so a new backend (Dropbox, rclone)
slots in without touching it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from dlcrun.errors import StorageError


@dataclass(frozen=True)
class StoredObject:
    """One file in storage. ``sha256`` is set only where the backend knows it cheaply.

    ``content_hash`` is the backend's own fingerprint of the bytes, tagged with its kind
    (``sha256:<hex>`` for local files, ``dropbox:<hex>`` for Dropbox's block hash): what
    identifies a video across runs, so that an output can be tied to the exact video it came
    from without trusting names.
    """

    uri: str
    size: int
    mtime: float | None = None
    sha256: str | None = None
    content_hash: str | None = None


@runtime_checkable
class Storage(Protocol):
    """What every backend offers. Each call either completes or raises StorageError."""

    def fetch(self, uri: str, local: Path) -> StoredObject:
        """Copy ``uri`` to ``local`` (written under a temporary name, verified, then moved)."""
        ...

    def put(self, local: Path, uri: str) -> StoredObject:
        """Publish ``local`` at ``uri`` atomically: a reader sees the whole file or nothing."""
        ...

    def stat(self, uri: str) -> StoredObject | None:
        """The object at ``uri``, or None when there is none."""
        ...

    def list(self, uri: str, recursive: bool = False) -> Iterator[StoredObject]:
        """Files under the folder ``uri``, in name order."""
        ...

    def delete(self, uri: str) -> None:
        """Remove ``uri`` if present."""
        ...

    def fingerprint(self, uri: str) -> str | None:
        """``uri``'s content hash (as ``StoredObject.content_hash``) without downloading it, or
        None where only a download can tell (the caller then hashes the downloaded copy)."""
        ...


_REGISTRY: dict[str, Callable[[], Storage]] = {}


def register(*schemes: str) -> Callable[[Callable[[], Storage]], Callable[[], Storage]]:
    def wrap(factory: Callable[[], Storage]) -> Callable[[], Storage]:
        for scheme in schemes:
            _REGISTRY[scheme] = factory
        return factory

    return wrap


def scheme_of(uri: str) -> str:
    """'file' for plain paths and file:// URIs, else the part before the first colon."""
    if uri.startswith("/") or uri.startswith("file:") or "://" not in uri and ":" not in uri:
        return "file"
    return uri.split(":", 1)[0]


def storage_for(uri: str) -> Storage:
    _load_backends()
    scheme = scheme_of(uri)
    try:
        return _REGISTRY[scheme]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise StorageError(f"{uri}: no storage backend for '{scheme}:' (known: {known})") from None


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


# One token per process: with the pid it makes this process's hidden part names unique (two
# attempts at one output never share one) yet known in advance, so a publish that is cut short
# can list, and a later attempt remove, every part it may have left.
_PROCESS_TOKEN = secrets.token_hex(3)
PART_MARK = ".dlcrun-part-"
_MAX_PID = 4194304  # Linux's pid_max ceiling


def part_name(name: str, pid: int | None = None) -> str:
    """The hidden name a backend writes ``name`` under before moving it into place."""
    return f".{name}{PART_MARK}{os.getpid() if pid is None else pid}-{_PROCESS_TOKEN}"


def part_uri(uri: str) -> str:
    """``part_name`` beside ``uri``, keeping its scheme and folder."""
    head, sep, name = uri.rpartition("/")
    if not sep:  # "rclone:remote:name" or "dropbox:name"
        head, sep, name = uri.rpartition(":")
    return f"{head}{sep}{part_name(name)}"


# Bytes a part name adds to a file name: a name longer than NAME_MAX minus this fails only
# when it is written, after the inference it would have published.
PART_NAME_EXTRA = len(part_name("", pid=_MAX_PID))
NAME_MAX = 255


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A hidden, process-tagged name beside ``target`` to write to: renamed onto ``target`` when
    the block ends normally, removed when it raises, so ``target`` is whole or absent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(part_name(target.name))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _load_backends() -> None:
    # Importing a backend module registers it; optional SDKs are imported lazily inside them.
    from dlcrun.storage import local, rclone  # noqa: F401

    try:
        from dlcrun.storage import dropbox  # noqa: F401
    except ImportError:  # the backend arrives with its own issue
        pass


__all__ = [
    "NAME_MAX",
    "PART_NAME_EXTRA",
    "Storage",
    "StoredObject",
    "basename",
    "join",
    "part_name",
    "part_uri",
    "register",
    "scheme_of",
    "sha256_file",
    "staged",
    "storage_for",
]
