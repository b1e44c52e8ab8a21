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
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlcrun.errors import ConfigError, StorageError, VerificationError, clean_credential, redact, register_secret
from dlcrun.files import part_name, sha256_file, staged
from dlcrun.storage import StoredObject, register

PREFIX = "rclone:"
# rclone's exit codes for "directory not found" and "file not found".
NOT_FOUND = (3, 4)
FLAGS = ["--log-level", "ERROR", "--retries", "3", "--low-level-retries", "10"]
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+ ?: ?)?")
# rclone options that hold credentials (pass, password, token, client_secret, secret_access_key,
# key, sas_url, service_account_credentials, ...), in the config file or as RCLONE_* variables.
_SECRET_OPTION = re.compile(r"(?i)pass|token|secret|key|credentials|sas_url")
_NOT_SECRET = re.compile(r"(?i)(_file|_command|(?<!sas)_url|^client_id|^config)$")


def _secret_option(name: str) -> bool:
    return bool(_SECRET_OPTION.search(name)) and not _NOT_SECRET.search(name)


def _register_value(value: str, where: str) -> str:
    """Check and register one credential; an rclone OAuth token is JSON: its tokens count too."""
    value = clean_credential(value, where)
    if value.startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            fields = {}
        for name, inner in fields.items() if isinstance(fields, dict) else ():
            if isinstance(inner, str) and ("token" in name or "secret" in name) and name != "token_type":
                register_secret(inner)
    return value


def register_config_secrets(text: str, where: str) -> None:
    """Register the credentials an rclone config holds, so that no message shows them. A
    control character inside one is a ConfigError naming ``where``, the remote and the key."""
    section = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        key, sep, value = stripped.partition("=")
        if sep and not stripped.startswith(("#", ";")) and _secret_option(key.strip()):
            _register_value(value, f"{where} [{section}] {key.strip()}")


def credential_environment() -> dict[str, str]:
    """RCLONE_* credential variables, checked and registered; those whose value had surrounding
    whitespace (a CRLF env file) come back stripped, for rclone's environment."""
    fixed = {}
    for name, value in os.environ.items():
        if name.startswith("RCLONE_") and _secret_option(name.removeprefix("RCLONE_")):
            clean = _register_value(value, name)
            if clean != value:
                fixed[name] = clean
    return fixed


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
        register_config_secrets(Path(copy).read_text(encoding="utf-8", errors="replace"), str(source))
    except OSError as exc:
        os.unlink(copy)
        raise StorageError(f"{source}: cannot read the rclone config ({exc.strerror or exc})") from None
    except ConfigError:
        os.unlink(copy)
        raise
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
    fixed = credential_environment()
    env = {**os.environ, **fixed} if fixed else None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        raise StorageError(f"rclone {args[0]} {args[-1]}: no answer in {timeout:.0f} s") from None


class RcloneStorage:
    def _fail(self, uri: str, what: str, done: subprocess.CompletedProcess[str]) -> StorageError:
        reason = last_error(done.stderr) or f"exit status {done.returncode}"
        return StorageError(redact(f"{uri}: rclone {what} failed: {reason}"))

    def fingerprint(self, uri: str) -> str | None:
        """None: remotes differ in the hashes they keep (none on WebDAV), so the video is
        downloaded and hashed with SHA-256 like any other when its identity is needed."""
        return None

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
        hidden = f"{folder}{sep}{part_name(name)}"
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
