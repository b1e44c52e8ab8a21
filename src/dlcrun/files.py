"""Files that readers on shared storage never see torn: atomic writes, tolerant JSON reads, hashes.

Run directories live on NFS and Lustre and are read by the CLI while array indices write them,
and a Dropbox token file must never exist with loose permissions; so every file dlcrun writes
goes to a hidden name first and is renamed into place (atomic on POSIX filesystems, NFS
included). Reads tolerate damage: a file that is empty, torn, not JSON or not the shape
expected raises ``Damaged`` with a few words on why, for the caller to turn into one line.
The hidden part names are shared with the storage backends, so that a publish cut short can
list, and a later attempt remove, every part it may have left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Temp file + fsync + rename: readers see the old or the new file, never a torn one.

    ``mode`` creates the file with those permissions from the start (0o600 for secrets), so
    there is no moment at which others could read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        if mode is not None:
            os.fchmod(fd, mode)  # the umask cannot widen what was asked
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any, mode: int | None = None) -> None:
    """``data`` as indented JSON, written as ``write_text`` writes (atomically, ``mode`` from the start)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", mode)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class Damaged(ValueError):
    """A ledger file that does not hold what it should; the message says why in a few words."""


def why(exc: BaseException) -> str:
    """A few words on why a file could not be read or validated (no path, no traceback)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg}: line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "value"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return " ".join(str(exc).split())[:200]


def _load(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if not raw.strip():
            raise Damaged("empty")
        return json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Damaged(str(exc) if isinstance(exc, Damaged) else why(exc)) from None


def _kind(data: Any) -> str:
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(data), type(data).__name__)


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; Damaged (saying why) when the file is empty, torn, not JSON,
    not an object or unreadable. A missing file is FileNotFoundError, as for ``open``."""
    data = _load(path)
    if not isinstance(data, dict):
        raise Damaged(f"a JSON {_kind(data)}, not an object")
    return data


def read_object_list(path: Path) -> list[dict[str, Any]]:
    """The JSON list of objects in ``path``; Damaged or FileNotFoundError as for ``read_object``."""
    data = _load(path)
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise Damaged(f"a JSON {_kind(data)}, not a list of objects")
    return data


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
