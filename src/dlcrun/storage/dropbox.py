"""Dropbox, through the official SDK: ``dropbox:/Videos/2026-10/cam1.mp4``.

Every transfer is verified against Dropbox's ``content_hash`` and every call is retried, a
bounded number of times, on what a shared lab account meets in practice: rate limits (429,
honouring Retry-After), 5xx, dropped connections, ``too_many_write_operations`` when many array
tasks write to one folder, and a body whose hash is wrong. Downloads resume with a Range request;
large uploads go through an upload session that resumes at the offset Dropbox reports. A file
is uploaded under a hidden temporary name, its hash checked, then moved into place, so readers
never see half a file.

Credentials and the connection (the SDK, its session, the endpoint overrides) are in
``storage/dropbox_auth.py``. One more variable tunes transfers:

- ``DLCRUN_DROPBOX_CHUNK_BYTES``: upload-session chunk size (default 32 MiB).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dlcrun.errors import ConfigError, DlcrunError, StorageError, one_line, redact
from dlcrun.files import part_name
from dlcrun.storage import StoredObject, register
from dlcrun.storage.dropbox_auth import (
    AUTH_HINT,
    ENV_ACCESS_TOKEN,
    ENV_API_HOST,
    ENV_APP_KEY,
    ENV_CA_BUNDLE,
    ENV_REFRESH_TOKEN,
    Credentials,
    http_session,
    load_credentials,
    sdk_module,
    token_path,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
T = TypeVar("T")

ENV_CHUNK_BYTES = "DLCRUN_DROPBOX_CHUNK_BYTES"
_ENV = (ENV_APP_KEY, ENV_REFRESH_TOKEN, ENV_ACCESS_TOKEN, ENV_API_HOST, ENV_CA_BUNDLE, ENV_CHUNK_BYTES)

BLOCK_SIZE = 4 * 1024 * 1024  # content_hash block, fixed by Dropbox
CHUNK_SIZE = 32 * 1024 * 1024  # per upload request: below Dropbox's 150 MiB cap, cheap to resend
ATTEMPTS = 6  # per call; 2+4+8+16+32 s of backoff (with jitter) before giving up
BACKOFF = 2.0
MAX_WAIT = 900.0  # the longest Retry-After honoured


class ContentHasher:
    """Dropbox's ``content_hash``: SHA-256 of the concatenated SHA-256 digests of 4 MiB blocks.

    Documented at https://www.dropbox.com/developers/reference/content-hash; incremental, so a
    download is hashed as it streams (and across a resumed download).
    """

    def __init__(self) -> None:
        self._overall = hashlib.sha256()
        self._block = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), BLOCK_SIZE - self._filled)
            self._block.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == BLOCK_SIZE:
                self._overall.update(self._block.digest())
                self._block, self._filled = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        overall = self._overall.copy()
        if self._filled:
            overall.update(self._block.digest())
        return overall.hexdigest()


def file_hashes(path: Path) -> tuple[str, str]:
    """(content_hash, sha256) of a local file, in one read."""
    content, plain = ContentHasher(), hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK_SIZE):
            content.update(block)
            plain.update(block)
    return content.hexdigest(), plain.hexdigest()


# --- credentials -------------------------------------------------------------------------------


# --- the SDK, its hosts and its TLS ------------------------------------------------------------


# --- Dropbox errors, as dlcrun sees them -------------------------------------------------------


def _nodes(error: Any) -> Iterator[Any]:
    """Every union and struct inside a route error, outermost first."""
    from dropbox import stone_base

    stack = [error]
    while stack:
        node = stack.pop(0)
        if isinstance(node, stone_base.Union):
            yield node
            stack.append(getattr(node, "_value", None))
        elif isinstance(node, stone_base.Struct):
            yield node
            stack.extend(getattr(node, name, None) for name in sorted(node._all_field_names_))


def _tags(error: Any) -> list[str]:
    from dropbox import stone_base

    return [n._tag for n in _nodes(error) if isinstance(n, stone_base.Union)]


def _summary(error: Any) -> str:
    return "/".join(_tags(error)) or type(error).__name__


def _correct_offset(error: Any) -> int | None:
    return next((int(n.correct_offset) for n in _nodes(error) if hasattr(n, "correct_offset")), None)


class _Transient(Exception):
    """A condition we detected ourselves (short read, hash mismatch) that a retry can fix."""


def _is_not_found(exc: Exception) -> bool:
    from dropbox.exceptions import ApiError

    return isinstance(exc, ApiError) and "not_found" in _tags(exc.error)


# --- the backend -------------------------------------------------------------------------------


def to_path(uri: str) -> str:
    """``dropbox:/A/b.mp4`` (or ``dropbox://A/b.mp4``) -> ``/A/b.mp4``; the root is ``""``."""
    rest = uri.split(":", 1)[1] if uri.startswith("dropbox:") else uri
    rest = "/" + rest.lstrip("/")
    return "" if rest == "/" else rest.rstrip("/")


def to_uri(path: str) -> str:
    return f"dropbox:{path}"


class DropboxStorage:
    """The ``Storage`` protocol over the Dropbox API (SDK retries off: this class owns them)."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        chunk_size: int | None = None,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        max_wait: float = MAX_WAIT,
    ):
        self._credentials = credentials
        self._client: Any = None
        self._source = credentials.source if credentials else ""
        self.chunk_size = chunk_size or _chunk_from_env()
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_wait = max_wait

    @property
    def client(self) -> Any:
        if self._client is None:
            sdk = sdk_module()
            creds = self._credentials or load_credentials()
            from dlcrun import __version__

            self._client = sdk.Dropbox(
                oauth2_access_token=creds.access_token or None,
                oauth2_refresh_token=creds.refresh_token or None,
                app_key=creds.app_key or None,
                max_retries_on_error=0,
                max_retries_on_rate_limit=0,
                user_agent=f"dlcrun/{__version__}",
                session=http_session(),
            )
            self._source = creds.source
        return self._client

    # -- Storage verbs

    def stat(self, uri: str) -> StoredObject | None:
        from dropbox.exceptions import ApiError
        from dropbox.files import FileMetadata

        path = to_path(uri)
        if not path:
            return None
        try:
            meta = self._retrying(uri, "stat", lambda: self.client.files_get_metadata(path))
        except ApiError as exc:
            if _is_not_found(exc):
                return None
            raise self._refused(uri, "stat", exc) from None
        return self._stored(meta) if isinstance(meta, FileMetadata) else None

    def list(self, uri: str, recursive: bool = False) -> Iterator[StoredObject]:
        from dropbox.exceptions import ApiError
        from dropbox.files import FileMetadata

        path = to_path(uri)
        found: list[StoredObject] = []
        try:
            page = self._retrying(uri, "list", lambda: self.client.files_list_folder(path, recursive=recursive))
            while True:
                found += [
                    self._stored(e) for e in page.entries if isinstance(e, FileMetadata) and not e.name.startswith(".")
                ]
                if not page.has_more:
                    break
                page = self._retrying(uri, "list", partial(self.client.files_list_folder_continue, page.cursor))
        except ApiError as exc:
            if _is_not_found(exc):
                raise StorageError(f"{uri}: no such folder on Dropbox") from None
            raise self._refused(uri, "list", exc) from None
        yield from sorted(found, key=lambda o: o.uri)

    def delete(self, uri: str) -> None:
        from dropbox.exceptions import ApiError

        path = to_path(uri)
        try:
            self._retrying(uri, "delete", lambda: self.client.files_delete_v2(path))
        except ApiError as exc:
            if not _is_not_found(exc):
                raise self._refused(uri, "delete", exc) from None

    def fingerprint(self, uri: str) -> str | None:
        """Dropbox's content_hash, from the metadata: no download needed."""
        found = self.stat(uri)
        return found.content_hash if found is not None else None

    def fetch(self, uri: str, local: Path) -> StoredObject:
        """Stream to a hidden temporary file beside ``local``, resuming after a drop; verify; rename."""
        from dropbox.exceptions import ApiError

        path = to_path(uri)
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(part_name(local.name))
        state: dict[str, Any] = {"got": 0, "rev": None, "hasher": ContentHasher()}

        def restart() -> None:
            state.update(got=0, hasher=ContentHasher())
            tmp.write_bytes(b"")

        def attempt() -> Any:
            while True:
                headers = {"Range": f"bytes={state['got']}-"} if state["got"] else None
                meta, resp = self.client.files_download(path, extra_headers=headers)
                with contextlib.closing(resp):
                    if state["got"] and (resp.status_code != 206 or meta.rev != state["rev"]):
                        restart()  # the server ignored Range, or the file changed: start over
                        continue
                    state["rev"] = meta.rev
                    with open(tmp, "ab") as fh:
                        for block in resp.iter_content(1 << 20):
                            fh.write(block)
                            state["hasher"].update(block)
                            state["got"] += len(block)
                        fh.flush()
                        os.fsync(fh.fileno())
                break
            if state["got"] != meta.size:
                raise _Transient(f"short download, {state['got']} of {meta.size} bytes")
            if state["hasher"].hexdigest() != meta.content_hash:
                restart()
                raise _Transient("content_hash mismatch")
            return meta

        try:
            restart()
            meta = self._retrying(uri, "download", attempt)
            os.replace(tmp, local)
        except ApiError as exc:
            if _is_not_found(exc):
                raise StorageError(f"{uri}: not found on Dropbox") from None
            raise self._refused(uri, "download", exc) from None
        except OSError as exc:
            raise StorageError(f"{uri} -> {local}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return self._stored(meta)

    def put(self, local: Path, uri: str) -> StoredObject:
        """Upload under a hidden temporary name, check Dropbox's content_hash, move into place."""
        from dropbox.exceptions import ApiError

        local = Path(local)
        final = to_path(uri)
        if not final:
            raise StorageError(f"{uri}: not a file location")
        parent, name = final.rsplit("/", 1)
        tmp = f"{parent}/{part_name(name)}"
        try:
            expected, sha256 = file_hashes(local)
            size = local.stat().st_size
        except OSError as exc:
            raise StorageError(f"{local}: {exc.strerror or exc}") from None
        try:
            for attempt in range(1, self.attempts + 1):
                meta = self._upload(local, size, tmp, uri)
                if meta is not None and meta.content_hash == expected and meta.size == size:
                    break
                problem = "the upload session was lost" if meta is None else "Dropbox holds a different content_hash"
                log.warning("%s: %s; upload again (%d/%d)", uri, problem, attempt, self.attempts)
                self._discard(tmp)
            else:
                raise StorageError(f"{uri}: upload failed {self.attempts} times ({problem}); not published")
            meta = self._move_into_place(tmp, final, uri, expected)
        except ApiError as exc:
            self._discard(tmp)
            raise self._refused(uri, "upload", exc) from None
        except Exception:
            self._discard(tmp)
            raise
        # An interrupt (SIGTERM at the time limit) skips the clean-up call, which could outlast the
        # scheduler's grace period; the hidden temporary name is ignored by list() and by readers.
        stored = self._stored(meta)
        return StoredObject(uri=uri, size=stored.size, mtime=stored.mtime, sha256=sha256)

    # -- transfers

    def _upload(self, local: Path, size: int, tmp: str, uri: str) -> Any:
        """One whole upload to ``tmp``: upload sessions above one chunk, resumed at the offset
        Dropbox reports when a retried request had in fact landed. None: start again."""
        from dropbox.exceptions import ApiError
        from dropbox.files import CommitInfo, UploadSessionCursor, WriteMode

        commit = CommitInfo(path=tmp, mode=WriteMode.overwrite, autorename=False, mute=True)
        with open(local, "rb") as fh:
            if size <= self.chunk_size:
                data = fh.read()
                return self._retrying(
                    uri,
                    "upload",
                    lambda: self.client.files_upload(data, tmp, mode=WriteMode.overwrite, autorename=False, mute=True),
                )
            first = fh.read(self.chunk_size)
            session = self._retrying(uri, "upload", lambda: self.client.files_upload_session_start(first)).session_id
            offset = len(first)
            while True:
                fh.seek(offset)
                chunk = fh.read(self.chunk_size)
                cursor = UploadSessionCursor(session_id=session, offset=offset)
                last = offset + len(chunk) >= size
                try:
                    if last:
                        finish = partial(self.client.files_upload_session_finish, chunk, cursor, commit)
                        return self._retrying(uri, "upload", finish)
                    self._retrying(uri, "upload", partial(self.client.files_upload_session_append_v2, chunk, cursor))
                    offset += len(chunk)
                except ApiError as exc:
                    correct = _correct_offset(exc.error)
                    if correct is not None and 0 <= correct <= size:
                        log.info("%s: resuming the upload session at byte %d", uri, correct)
                        offset = correct
                        continue
                    tags = _tags(exc.error)
                    if "not_found" in tags or "closed" in tags:
                        # A finish whose reply was lost committed the file; otherwise start over.
                        return self._metadata(tmp, uri) if last else None
                    raise

    def _metadata(self, path: str, uri: str) -> Any:
        from dropbox.exceptions import ApiError
        from dropbox.files import FileMetadata

        try:
            meta = self._retrying(uri, "stat", lambda: self.client.files_get_metadata(path))
        except ApiError as exc:
            if _is_not_found(exc):
                return None
            raise
        return meta if isinstance(meta, FileMetadata) else None

    def _move_into_place(self, tmp: str, final: str, uri: str, expected: str) -> Any:
        """Rename. Dropbox's move cannot overwrite, so a stale file is deleted first: a reader
        sees the old file, then none, then the new one, never part of one."""
        from dropbox.exceptions import ApiError

        for _ in range(3):
            try:
                return self._retrying(uri, "move", lambda: self.client.files_move_v2(tmp, final)).metadata
            except ApiError as exc:
                tags = _tags(exc.error)
                if "from_lookup" in tags and "not_found" in tags:
                    # A retried move whose first reply was lost: the file is already in place.
                    done = self._metadata(final, uri)
                    if done is not None and done.content_hash == expected:
                        return done
                if "conflict" not in tags:
                    raise
            self.delete(uri)
        raise StorageError(f"{uri}: another writer keeps replacing it; not published")

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(Exception):  # best effort: the upload already failed
            self.client.files_delete_v2(tmp)

    # -- retries and messages

    def _retrying(self, uri: str, what: str, call: Callable[[], T]) -> T:
        """``call()`` with bounded retries and jittered exponential backoff.

        Route errors that a retry cannot fix propagate as ApiError for the caller to interpret;
        everything else ends as a one-line StorageError without secrets.
        """
        import requests
        from dropbox.exceptions import (
            ApiError,
            AuthError,
            BadInputError,
            HttpError,
            InternalServerError,
            RateLimitError,
        )

        for attempt in range(1, self.attempts + 1):
            wait = min(self.max_wait, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            try:
                return call()
            except ApiError as exc:
                if "too_many_write_operations" not in _tags(exc.error) and "internal_error" not in _tags(exc.error):
                    raise
                reason = _summary(exc.error)
            except RateLimitError as exc:
                reason = "rate limited (429)"
                wait = max(wait, min(float(exc.backoff or 0), self.max_wait))
            except InternalServerError as exc:
                reason = f"HTTP {exc.status_code}"
            except AuthError as exc:
                raise self._auth_failed(uri, exc) from None
            except BadInputError as exc:
                raise StorageError(one_line(f"{uri}: Dropbox rejected the {what} request: {exc.message}")) from None
            except HttpError as exc:
                raise StorageError(f"{uri}: {what} failed: HTTP {exc.status_code}") from None
            except requests.exceptions.SSLError:
                raise StorageError(
                    f"{uri}: TLS verification failed talking to Dropbox (a proxy? set {ENV_CA_BUNDLE})"
                ) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                reason = f"connection lost ({type(exc).__name__})"
            except _Transient as exc:
                reason = str(exc)
            except DlcrunError:
                raise  # already a one-line message (no credentials, a bad setting)
            except Exception as exc:
                if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
                    raise  # the local disk: the caller names the file
                # Anything else (requests' InvalidHeader, InvalidURL, an SDK surprise) must not escape
                # as a traceback that quotes a header: one redacted line, the rest at debug level.
                log.debug("%s: %s raised", uri, what, exc_info=True)
                raise StorageError(one_line(f"{uri}: {what} failed: {type(exc).__name__}: {exc}")) from None
            if attempt == self.attempts:
                break
            log.warning("%s: %s: %s; retry %d/%d in %.1f s", uri, what, reason, attempt, self.attempts - 1, wait)
            time.sleep(wait)
        raise StorageError(redact(f"{uri}: {what} failed after {self.attempts} attempts ({reason})"))

    def _auth_failed(self, uri: str, exc: Any) -> StorageError:
        tags = _tags(exc.error) if exc.error is not None else []
        where = self._source or "the configured credentials"
        if "missing_scope" in tags:
            scope = next((n.required_scope for n in _nodes(exc.error) if hasattr(n, "required_scope")), "?")
            return StorageError(
                f"{uri}: the Dropbox app lacks the permission '{scope}': enable it in the App Console "
                "(Permissions tab), then run `dlcrun auth dropbox` again"
            )
        reason = "/".join(tags) or "unauthorized"
        return StorageError(f"{uri}: Dropbox refused the credentials from {where} ({reason}); {AUTH_HINT}")

    def _refused(self, uri: str, what: str, exc: Any) -> StorageError:
        return StorageError(redact(f"{uri}: Dropbox refused the {what} ({_summary(exc.error)})"))

    @staticmethod
    def _stored(meta: Any) -> StoredObject:
        modified = meta.server_modified.replace(tzinfo=dt.timezone.utc).timestamp()
        return StoredObject(
            uri=to_uri(meta.path_display or meta.path_lower),
            size=int(meta.size),
            mtime=modified,
            content_hash=f"dropbox:{meta.content_hash}" if getattr(meta, "content_hash", None) else None,
        )


def _chunk_from_env() -> int:
    raw = os.environ.get(ENV_CHUNK_BYTES, "")
    if not raw:
        return CHUNK_SIZE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 150 * 1024 * 1024:
        raise ConfigError(f"{ENV_CHUNK_BYTES}={raw}: expected a byte count from 1 to 157286400 (150 MiB)")
    return value


_INSTANCES: dict[tuple[str | None, ...], DropboxStorage] = {}


@register("dropbox")
def _factory() -> DropboxStorage:
    # One client per process and configuration: a manifest check stats thousands of entries
    # and must not refresh the access token for each.
    key = tuple(os.environ.get(name) for name in _ENV) + (str(token_path()),)
    if key not in _INSTANCES:
        _INSTANCES.clear()
        _INSTANCES[key] = DropboxStorage()
    return _INSTANCES[key]
