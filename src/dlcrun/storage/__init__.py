"""The storage seam: where videos come from and keypoints go, chosen by URI scheme.

A backend registers itself for one or more schemes; task code only ever calls
``storage_for(uri)`` and the four verbs of ``Storage``, so a new backend (Dropbox, rclone)
slots in without touching it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from dlcrun.errors import StorageError
from dlcrun.locations import scheme_of


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


def storage_for(uri: str) -> Storage:
    _load_backends()
    scheme = scheme_of(uri)
    try:
        return _REGISTRY[scheme]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise StorageError(f"{uri}: no storage backend for '{scheme}:' (known: {known})") from None


def _load_backends() -> None:
    # Importing a backend module registers it; optional SDKs are imported lazily inside them.
    from dlcrun.storage import local, rclone  # noqa: F401

    try:
        from dlcrun.storage import dropbox  # noqa: F401
    except ImportError:  # the backend arrives with its own issue
        pass
