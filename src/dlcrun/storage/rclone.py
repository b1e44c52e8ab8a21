"""Any rclone remote (Google Drive, Box, OneDrive, S3, SFTP, WebDAV, ...): ``rclone:REMOTE:path``.

``rclone:gdrive:lab/videos/cam1.mp4`` is ``gdrive:lab/videos/cam1.mp4`` to the ``rclone``
binary, which does the talking: a lab that already reaches its storage with rclone needs
nothing new, and every backend rclone has works the same way. Remotes come from the user's
rclone config (``rclone config``; ``RCLONE_CONFIG`` to point elsewhere) or from
``RCLONE_CONFIG_<NAME>_*`` variables.

Hundreds of array tasks share one rclone.conf. rclone rewrites that file whenever it refreshes
an OAuth token, so each process works on a private copy (mode 0600, removed at exit): the
shared file is only ever read, and no two tasks race to write it.

A video is downloaded under a temporary name, its size checked against the remote's, then
renamed. A result is uploaded under a hidden temporary name beside its final one, read back
and its SHA-256 compared with the local file, then moved into place (a server-side rename
where the remote has one), so readers never see half a file.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import json
import os
import posixpath
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlcrun.errors import StorageError, VerificationError
from dlcrun.storage import StoredObject, register, sha256_file, staged

PREFIX = "rclone:"
# rclone's exit codes for "directory not found" and "file not found".
NOT_FOUND = (3, 4)
FLAGS = ["--log-level", "ERROR", "--retries", "3", "--low-level-retries", "10"]
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+ ?: ?)?")


def to_remote(uri: str) -> str:
    """``rclone:gdrive:lab/a.mp4`` -> ``gdrive:lab/a.mp4``; the remote part is required."""
    remote = uri.removeprefix(PREFIX)
    if not uri.startswith(PREFIX) or ":" not in remote:
        raise StorageError(f"{uri}: an rclone location is rclone:REMOTE:path (e.g. rclone:gdrive:lab/videos)")
    return remote


def executable() -> str:
    found = shutil.which("rclone")
    if found is None:
        raise StorageError("rclone is not installed here (apt-get install rclone, or https://rclone.org/install)")
    return found


@functools.cache
def private_config() -> tuple[str, ...]:
    """``--config COPY`` for this process: a 0600 copy of the user's rclone.conf, or nothing
    when there is none (remotes from RCLONE_CONFIG_* variables, or an on-the-fly ``:type:``)."""
    shown = subprocess.run([executable(), "config", "file"], capture_output=True, text=True, timeout=60)
    source = Path((shown.stdout.strip().splitlines() or [""])[-1].strip())
    if not source.is_file():
        return ()
    fd, copy = tempfile.mkstemp(prefix="dlcrun-rclone-", suffix=".conf")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
    except OSError as exc:
        os.unlink(copy)
        raise StorageError(f"{source}: cannot read the rclone config ({exc.strerror or exc})") from None
    atexit.register(lambda: Path(copy).unlink(missing_ok=True))
    return ("--config", copy)


def last_error(stderr: str) -> str:
    """rclone's last log line, without its timestamp and level: the one that says why."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(args: list[str], timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
    """``rclone ARGS`` with this process's private config and dlcrun's flags (later flags in
    ``args`` win); a timeout is a StorageError."""
    argv = [executable(), *private_config(), *FLAGS, *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StorageError(f"rclone {args[0]} {args[-1]}: no answer in {timeout:.0f} s") from None


class RcloneStorage:
    def _fail(self, uri: str, what: str, done: subprocess.CompletedProcess[str]) -> StorageError:
        reason = last_error(done.stderr) or f"exit status {done.returncode}"
        return StorageError(f"{uri}: rclone {what} failed: {reason}")

    def stat(self, uri: str) -> StoredObject | None:
        done = run(["lsjson", "--stat", "--no-mimetype", to_remote(uri)])
        if done.returncode in NOT_FOUND:
            return None
        if done.returncode != 0:
            raise self._fail(uri, "lsjson", done)
        item = json.loads(done.stdout)
        return None if item.get("IsDir") else _stored(uri, item)

    def list(self, uri: str, recursive: bool = False) -> Iterator[StoredObject]:
        args = ["lsjson", "--files-only", "--no-mimetype", *(["-R"] if recursive else []), to_remote(uri)]
        done = run(args)
        if done.returncode in NOT_FOUND:
            raise StorageError(f"{uri}: no such folder")
        if done.returncode != 0:
            raise self._fail(uri, "lsjson", done)
        items = sorted(json.loads(done.stdout), key=lambda item: item["Path"])
        base = uri.rstrip("/")
        sep = "" if base.endswith(":") else "/"
        for item in items:
            if not any(part.startswith(".") for part in item["Path"].split("/")):
                yield _stored(f"{base}{sep}{item['Path']}", item)

    def delete(self, uri: str) -> None:
        if self.stat(uri) is None:
            return
        done = run(["deletefile", to_remote(uri)])
        if done.returncode != 0 and self.stat(uri) is not None:
            raise self._fail(uri, "deletefile", done)

    def fetch(self, uri: str, local: Path) -> StoredObject:
        found = self.stat(uri)
        if found is None:
            raise StorageError(f"{uri}: no such file")
        with staged(local) as tmp:
            done = run(["copyto", to_remote(uri), str(tmp)], timeout=None)
            if done.returncode != 0:
                raise self._fail(uri, "copyto", done)
            got = tmp.stat().st_size
            if got != found.size:
                raise VerificationError(f"{uri}: downloaded {got} bytes of {found.size}; retry the index")
        return found

    def put(self, local: Path, uri: str) -> StoredObject:
        remote = to_remote(uri)
        folder, name = posixpath.split(remote)
        if not name:
            raise StorageError(f"{uri}: names a folder, not a file")
        sep = "" if not folder or folder.endswith(":") else "/"
        hidden = f"{folder}{sep}.{name}.dlcrun-part-{os.getpid()}-{secrets.token_hex(3)}"
        digest = sha256_file(local)
        try:
            done = run(["copyto", str(local), hidden], timeout=None)
            if done.returncode != 0:
                raise self._fail(uri, "copyto", done)
            check = run(["hashsum", "sha256", "--download", hidden], timeout=None)
            if check.returncode != 0:
                raise self._fail(uri, "hashsum", check)
            if check.stdout.split()[:1] != [digest]:
                raise VerificationError(f"{uri}: content changed in transit; nothing was published, retry the index")
            done = run(["moveto", hidden, remote], timeout=None)
            if done.returncode != 0:
                raise self._fail(uri, "moveto", done)
        except BaseException:
            run(["deletefile", "--retries", "1", hidden])
            raise
        found = self.stat(uri)
        if found is None or found.size != local.stat().st_size:
            raise VerificationError(f"{uri}: not where it was moved; retry the index")
        return StoredObject(uri=uri, size=found.size, mtime=found.mtime, sha256=digest)


def _stored(uri: str, item: dict[str, Any]) -> StoredObject:
    return StoredObject(uri=uri, size=int(item["Size"]), mtime=_mtime(item.get("ModTime")))


def _mtime(text: str | None) -> float | None:
    """rclone's RFC 3339 times carry up to nine fractional digits; Python reads six."""
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@register("rclone")
def _factory() -> RcloneStorage:
    return RcloneStorage()
