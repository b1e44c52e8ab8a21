"""A local-disk storage backend with faults, for the all-or-nothing publishing tests.

``faulty:/path`` is the local filesystem at ``/path`` through dlcrun's own LocalStorage, except
that an upload whose name ends in ``DLCRUN_TEST_FAULT_SUFFIX`` (e.g. ``.h5``) writes half its
bytes to its hidden part name and then either fails as a full disk does
(``DLCRUN_TEST_FAULT=enospc``) or crawls (``DLCRUN_TEST_FAULT=slow``: the rest arrives over
``DLCRUN_TEST_FAULT_SECONDS``), so a test can send a real SIGTERM while it is under way.

Run as a script it is the ``dlcrun`` command with this backend registered, so a real task
process (real signals, real exit) publishes through it: ``python tests/support/fault_storage.py task ...``.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from dlcrun.errors import StorageError
from dlcrun.files import staged
from dlcrun.storage import StoredObject, register
from dlcrun.storage.local import LocalStorage

SCHEME = "faulty:"


def _path(uri: str) -> str:
    return uri.removeprefix(SCHEME)


def _back(obj: StoredObject | None) -> StoredObject | None:
    if obj is None:
        return None
    return StoredObject(SCHEME + obj.uri, obj.size, obj.mtime, obj.sha256, obj.content_hash)


class FaultyStorage(LocalStorage):
    def fetch(self, uri: str, local: Path) -> StoredObject:
        return _back(super().fetch(_path(uri), local))  # type: ignore[return-value]

    def stat(self, uri: str) -> StoredObject | None:
        return _back(super().stat(_path(uri)))

    def fingerprint(self, uri: str) -> str | None:
        return super().fingerprint(_path(uri))

    def delete(self, uri: str) -> None:
        super().delete(_path(uri))

    def list(self, uri: str, recursive: bool = False):  # type: ignore[override]
        for obj in super().list(_path(uri), recursive):
            yield _back(obj)

    def put(self, local: Path, uri: str) -> StoredObject:
        fault = os.environ.get("DLCRUN_TEST_FAULT", "")
        if not fault or not uri.endswith(os.environ.get("DLCRUN_TEST_FAULT_SUFFIX", ".h5")):
            return _back(super().put(local, _path(uri)))  # type: ignore[return-value]
        data = Path(local).read_bytes()
        target = Path(_path(uri))
        with staged(target) as tmp, open(tmp, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            if fault == "enospc":
                err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise StorageError(f"{local} -> {uri}: {err.strerror}")
            time.sleep(float(os.environ.get("DLCRUN_TEST_FAULT_SECONDS", "60")))
            out.write(data[len(data) // 2 :])
        return StoredObject(uri=uri, size=len(data), mtime=target.stat().st_mtime)


@register("faulty")
def _factory() -> FaultyStorage:
    return FaultyStorage()


if __name__ == "__main__":
    from dlcrun.cli import main

    main()
