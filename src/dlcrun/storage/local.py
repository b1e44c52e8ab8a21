"""Local disks and shared filesystems (NFS, GPFS, Lustre, DartFS): plain paths and file:// URIs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from dlcrun.errors import StorageError, VerificationError
from dlcrun.files import sha256_file, staged
from dlcrun.storage import StoredObject, register


def to_path(uri: str) -> Path:
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri)


def copy_atomic(src: Path, target: Path) -> tuple[int, str]:
    """Copy to a temporary name beside ``target``, fsync, check the size, then rename.

    Returns the size and the SHA-256 of the bytes read, hashed on the way (one read, not two).
    """
    digest = hashlib.sha256()
    with staged(target) as tmp:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(1 << 22):
                digest.update(block)
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        expected, got = src.stat().st_size, tmp.stat().st_size
        if expected != got:
            raise VerificationError(f"{target}: copied {got} bytes of {expected}; nothing was published")
    return got, digest.hexdigest()


class LocalStorage:
    def fetch(self, uri: str, local: Path) -> StoredObject:
        src = to_path(uri)
        if not src.is_file():
            raise StorageError(f"{uri}: no such file")
        try:
            size, digest = copy_atomic(src, local)
        except OSError as exc:
            raise StorageError(f"{uri} -> {local}: {exc.strerror or exc}") from None
        return StoredObject(
            uri=uri, size=size, mtime=src.stat().st_mtime, sha256=digest, content_hash=f"sha256:{digest}"
        )

    def put(self, local: Path, uri: str) -> StoredObject:
        target = to_path(uri)
        digest = sha256_file(local)
        try:
            size, _ = copy_atomic(local, target)
        except OSError as exc:
            raise StorageError(f"{local} -> {uri}: {exc.strerror or exc}") from None
        if sha256_file(target) != digest:
            target.unlink(missing_ok=True)
            raise VerificationError(f"{uri}: content changed in transit; removed, retry the index")
        return StoredObject(uri=uri, size=size, mtime=target.stat().st_mtime, sha256=digest)

    def fingerprint(self, uri: str) -> str | None:
        """SHA-256 of the file, read in place (a local read, no copy)."""
        path = to_path(uri)
        try:
            return f"sha256:{sha256_file(path)}"
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{uri}: {exc.strerror or exc}") from None

    def stat(self, uri: str) -> StoredObject | None:
        path = to_path(uri)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        return StoredObject(uri=uri, size=st.st_size, mtime=st.st_mtime)

    def list(self, uri: str, recursive: bool = False) -> Iterator[StoredObject]:
        root = to_path(uri)
        if not root.is_dir():
            raise StorageError(f"{uri}: no such folder")
        paths = root.rglob("*") if recursive else root.iterdir()
        for path in sorted(paths):
            if path.is_file() and not path.name.startswith("."):
                st = path.stat()
                yield StoredObject(uri=str(path), size=st.st_size, mtime=st.st_mtime)

    def delete(self, uri: str) -> None:
        to_path(uri).unlink(missing_ok=True)


@register("file")
def _factory() -> LocalStorage:
    return LocalStorage()
