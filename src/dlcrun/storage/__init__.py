"""The storage seam: where videos come from and keypoints go, chosen by URI scheme.

A backend registers itself for one or more schemes; task code only ever calls
``storage_for(uri)`` and the four verbs of ``Storage``, so a new backend (Dropbox, rclone)
slots in without touching it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from dlcrun.errors import StorageError


@dataclass(frozen=True)
class StoredObject:
    """One file in storage. ``sha256`` is set only where the backend knows it cheaply."""

    uri: str
    size: int
    mtime: float | None = None
    sha256: str | None = None


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


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A hidden, pid-tagged name beside ``target`` to write to: renamed onto ``target`` when the
    block ends normally, removed when it raises, so ``target`` is whole or absent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.dlcrun-part-{os.getpid()}")
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
    "Storage",
    "StoredObject",
    "basename",
    "join",
    "register",
    "scheme_of",
    "sha256_file",
    "staged",
    "storage_for",
]
