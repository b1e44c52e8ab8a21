"""An emulation of the Dropbox API over real HTTPS on 127.0.0.1, for the real ``dropbox`` SDK.

A pytest plugin (``pytest_plugins`` in conftest.py). It serves the routes dlcrun calls, with
Dropbox's wire rules (see ../shared/notes/dropbox-sdk.md): POST ``/2/<route>``, RPC JSON in and
out, upload arguments in ``Dropbox-API-Arg``, download metadata in ``Dropbox-API-Result``, route
errors as 409 JSON, per-request ``content_hash`` checks, 4 MiB block content hashes, Range on
downloads, OAuth2 PKCE and refresh-token grants, short-lived access tokens.

The SDK reads its hosts when it is imported, so ``pytest_configure`` binds the server and exports
``DLCRUN_DROPBOX_API_HOST`` / ``DLCRUN_DROPBOX_CA_BUNDLE`` (and the SDK's own variables) before any
test imports it; subprocesses (the CLI, local-scheduler tasks) inherit them.

Faults are queued per route with ``inject(route, kind)`` and consumed in order:
``429`` (Retry-After), ``500``, ``503``, ``expire`` (every access token expires first), ``cut``
(download: half the body, then the connection closes), ``bad_hash`` (download: one byte flipped),
``corrupt`` (upload: the stored file gets one byte flipped), ``drop_reply`` (the request is applied,
then the connection closes without a reply), ``too_many_write_operations`` (409).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any

import pytest

BLOCK = 4 * 1024 * 1024
TOKEN_LIFETIME = 14400


def content_hash(data: bytes) -> str:
    """Dropbox's block hash, written independently of dlcrun's so each checks the other."""
    digests = b"".join(hashlib.sha256(data[i : i + BLOCK]).digest() for i in range(0, len(data), BLOCK))
    return hashlib.sha256(digests).hexdigest()


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StoredFile:
    path: str  # display path, as first written
    data: bytes
    modified: dt.datetime
    rev: str = field(default_factory=lambda: secrets.token_hex(8))
    id: str = field(default_factory=lambda: "id:" + secrets.token_urlsafe(12))

    def metadata(self, tag: bool = True) -> dict[str, Any]:
        meta = {
            "name": self.path.rsplit("/", 1)[-1],
            "id": self.id,
            "client_modified": _stamp(self.modified),
            "server_modified": _stamp(self.modified),
            "rev": self.rev,
            "size": len(self.data),
            "path_lower": self.path.lower(),
            "path_display": self.path,
            "content_hash": content_hash(self.data),
            "is_downloadable": True,
        }
        return {".tag": "file", **meta} if tag else meta


class RouteError(Exception):
    def __init__(self, error: dict[str, Any]):
        self.error = error
        summary, node = [], error
        while isinstance(node, dict) and ".tag" in node:
            summary.append(node[".tag"])
            node = node.get(node[".tag"])
        self.summary = "/".join(summary) + "/"


def _tagged(*tags: str, **leaf: Any) -> dict[str, Any]:
    """_tagged('path', 'not_found') -> {'.tag': 'path', 'path': {'.tag': 'not_found'}}."""
    node: dict[str, Any] = {".tag": tags[-1], **leaf}
    for tag in reversed(tags[:-1]):
        node = {".tag": tag, tag: node}
    return node


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, **headers: str) -> Reply:
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **headers})

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **headers})


class DropboxEmulator:
    """State and routes; the HTTP plumbing is in _Handler."""

    RPC = {
        "files/get_metadata",
        "files/list_folder",
        "files/list_folder/continue",
        "files/move_v2",
        "files/delete_v2",
    }
    UPLOAD = {
        "files/upload",
        "files/upload_session/start",
        "files/upload_session/append_v2",
        "files/upload_session/finish",
    }

    def __init__(self, workdir: Path):
        import trustme

        ca = trustme.CA()
        self.ca_path = workdir / "dropbox-emulator-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.emulator = self
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.server.serve_forever, name="dropbox-emulator", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread = None
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.files: dict[str, StoredFile] = {}
            self.sessions: dict[str, dict[str, Any]] = {}
            self.cursors: dict[str, list[dict[str, Any]]] = {}
            self.apps: dict[str, str] = {}  # refresh token -> app key
            self.access: dict[str, tuple[str, dt.datetime]] = {}  # access token -> (refresh token, expiry)
            self.codes: dict[str, tuple[str, str]] = {}  # authorization code -> (app key, PKCE challenge)
            self.issued: list[str] = []  # every secret handed out, for the no-leak checks
            self.faults: list[tuple[str, str, dict[str, Any]]] = []
            self.stalled = threading.Event()  # set when a "stall" fault starts
            self.calls: list[str] = []
            self.ranges: list[str | None] = []  # the Range header of every download
            self.page_size = 2
            self.tls_failures = 0

    # -- what tests arrange and inspect

    def grant(self, app_key: str = "emu-app-key") -> tuple[str, str]:
        """A user who already authorized ``app_key``: returns (app key, refresh token)."""
        refresh = "emu-refresh-" + secrets.token_urlsafe(24)
        with self.lock:
            self.apps[refresh] = app_key
            self.issued.append(refresh)
        return app_key, refresh

    def short_lived_token(self) -> str:
        """An access token alone, as the App Console's 'Generate' button gives (the legacy way)."""
        with self.lock:
            token = "sl.emu-" + secrets.token_urlsafe(32)
            self.access[token] = ("", dt.datetime.now() + dt.timedelta(seconds=TOKEN_LIFETIME))
            self.issued.append(token)
        return token

    def approve(self, authorize_url: str) -> str:
        """What the user does in the browser: returns the code Dropbox shows for this URL."""
        query = urllib.parse.parse_qs(urllib.parse.urlparse(authorize_url).query)
        assert query["response_type"] == ["code"] and query["token_access_type"] == ["offline"], query
        assert query["code_challenge_method"] == ["S256"], "the flow must use PKCE"
        code = "emu-code-" + secrets.token_urlsafe(12)
        with self.lock:
            self.codes[code] = (query["client_id"][0], query["code_challenge"][0])
        return code

    def revoke(self, refresh_token: str) -> None:
        with self.lock:
            self.apps.pop(refresh_token, None)
            for token in [t for t, (r, _) in self.access.items() if r == refresh_token]:
                del self.access[token]

    def expire_tokens(self) -> None:
        with self.lock:
            past = dt.datetime.now() - dt.timedelta(seconds=1)
            self.access = {t: (r, past) for t, (r, _) in self.access.items()}

    def inject(self, route: str, kind: str, times: int = 1, **params: Any) -> None:
        with self.lock:
            self.faults += [(route.strip("/"), kind, params)] * times

    def put_file(self, path: str, data: bytes, modified: dt.datetime | None = None) -> StoredFile:
        with self.lock:
            stored = StoredFile(path, data, modified or dt.datetime.now(dt.timezone.utc))
            self.files[path.lower()] = stored
            return stored

    def read(self, path: str) -> bytes | None:
        with self.lock:
            found = self.files.get(path.lower())
            return found.data if found else None

    def paths(self) -> list[str]:
        with self.lock:
            return sorted(f.path for f in self.files.values())

    def count(self, route: str) -> int:
        return sum(1 for c in self.calls if c == route.strip("/"))

    # -- request handling

    def take_fault(self, route: str) -> tuple[str, dict[str, Any]] | None:
        with self.lock:
            self.calls.append(route)
            for i, (where, kind, params) in enumerate(self.faults):
                if where == route:
                    del self.faults[i]
                    return kind, params
        return None

    def token(self, form: dict[str, str]) -> Reply:
        def invalid(description: str) -> Reply:
            return Reply.json({"error": "invalid_grant", "error_description": description}, 400)

        with self.lock:
            grant = form.get("grant_type")
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if self.apps.get(refresh) != form.get("client_id"):
                    return invalid("refresh token is invalid or revoked")
            elif grant == "authorization_code":
                app_key, challenge = self.codes.pop(form.get("code", ""), ("", ""))
                verifier = form.get("code_verifier", "").encode()
                computed = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if not app_key or app_key != form.get("client_id") or computed != challenge:
                    return invalid("code doesn't exist or has expired")
                refresh = "emu-refresh-" + secrets.token_urlsafe(24)
                self.apps[refresh] = app_key
                self.issued.append(refresh)
            else:
                return Reply.json({"error": "unsupported_grant_type"}, 400)
            access = "sl.emu-" + secrets.token_urlsafe(32)
            self.access[access] = (refresh, dt.datetime.now() + dt.timedelta(seconds=TOKEN_LIFETIME))
            self.issued.append(access)
        body = {"access_token": access, "token_type": "bearer", "expires_in": TOKEN_LIFETIME}
        if grant == "authorization_code":
            body.update(
                refresh_token=refresh,
                scope="files.content.read files.content.write files.metadata.read",
                uid="12345",
                account_id="dbid:emulated-account",
            )
        return Reply.json(body)

    def authorized(self, header: str | None) -> Reply | None:
        token = (header or "").removeprefix("Bearer ").strip()
        with self.lock:
            found = self.access.get(token)
        if found is None:
            problem = "invalid_access_token"
        else:
            problem = "expired_access_token" if found[1] < dt.datetime.now() else ""
        if problem:
            return Reply.json({"error_summary": problem + "/", "error": {".tag": problem}}, 401)
        return None

    def call(self, route: str, arg: Any, body: bytes, headers: Any, fault: str | None) -> Reply:
        """Run one API route; a RouteError becomes Dropbox's 409."""
        try:
            with self.lock:
                if route == "files/download":
                    return self._download(arg, headers.get("Range"), fault)
                if route in self.UPLOAD and arg.get("content_hash") and arg["content_hash"] != content_hash(body):
                    raise RouteError({".tag": "content_hash_mismatch"})
                method = getattr(self, "_" + route.removeprefix("files/").replace("/", "_"))
                result = method(arg, body, fault) if route in self.UPLOAD else method(arg)
                return Reply.json(result)
        except RouteError as exc:
            return Reply.json({"error_summary": exc.summary, "error": exc.error}, 409)

    # -- routes (called with the lock held)

    def _file(self, path: str, *where: str) -> StoredFile:
        found = self.files.get(path.lower())
        if found is None:
            raise RouteError(_tagged(*where, "not_found"))
        return found

    def _is_folder(self, path: str) -> bool:
        prefix = path.lower().rstrip("/") + "/"
        return path == "" or any(key.startswith(prefix) for key in self.files)

    def _folder_meta(self, path: str) -> dict[str, Any]:
        return {
            ".tag": "folder",
            "name": path.rsplit("/", 1)[-1],
            "id": "id:folder" + str(abs(hash(path.lower()))),
            "path_lower": path.lower(),
            "path_display": path,
        }

    def _commit(self, path: str, data: bytes, mode: Any, fault: str | None) -> dict[str, Any]:
        mode_tag = mode.get(".tag") if isinstance(mode, dict) else mode or "add"
        if mode_tag == "add" and path.lower() in self.files:
            raise RouteError({".tag": "path", "path": {"reason": _tagged("conflict", "file"), "upload_session_id": ""}})
        if fault == "corrupt" and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return self.put_file(path, data).metadata(tag=False)

    def _download(self, arg: dict[str, Any], range_header: str | None, fault: str | None) -> Reply:
        self.ranges.append(range_header)
        stored = self._file(arg["path"], "path")
        data, status, headers = stored.data, 200, {}
        if range_header and range_header.startswith("bytes="):
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            data, status = data[start:], 206
            headers["Content-Range"] = f"bytes {start}-{len(stored.data) - 1}/{len(stored.data)}"
        if fault == "bad_hash" and data:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        headers.update(
            {"Content-Type": "application/octet-stream", "Dropbox-API-Result": json.dumps(stored.metadata(tag=False))}
        )
        return Reply(status, data, headers)

    def _get_metadata(self, arg: dict[str, Any]) -> dict[str, Any]:
        path = arg["path"]
        if path.lower() in self.files:
            return self.files[path.lower()].metadata()
        if path and self._is_folder(path):
            return self._folder_meta(path)
        raise RouteError(_tagged("path", "not_found"))

    def _list_folder(self, arg: dict[str, Any]) -> dict[str, Any]:
        path = arg["path"].rstrip("/")
        if path.lower() in self.files:
            raise RouteError(_tagged("path", "not_folder"))
        if not self._is_folder(path):
            raise RouteError(_tagged("path", "not_found"))
        prefix, entries, folders = path.lower() + "/", [], set()
        for key, stored in sorted(self.files.items()):
            if not key.startswith(prefix):
                continue
            parts = stored.path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folders.add("/".join(parts[:depth]))
            if len(parts) == 1 or arg.get("recursive"):
                entries.append(stored.metadata())
        for folder in sorted(folders):
            if "/" not in folder or arg.get("recursive"):
                entries.append(self._folder_meta(f"{path}/{folder}"))
        cursor = secrets.token_hex(8)
        self.cursors[cursor] = entries
        return self._list_folder_continue({"cursor": cursor})

    def _list_folder_continue(self, arg: dict[str, Any]) -> dict[str, Any]:
        remaining = self.cursors.get(arg["cursor"])
        if remaining is None:
            raise RouteError({".tag": "reset"})
        page, rest = remaining[: self.page_size], remaining[self.page_size :]
        cursor = secrets.token_hex(8)
        self.cursors[cursor] = rest
        return {"entries": page, "cursor": cursor, "has_more": bool(rest)}

    def _move_v2(self, arg: dict[str, Any]) -> dict[str, Any]:
        stored = self._file(arg["from_path"], "from_lookup")
        if arg["to_path"].lower() in self.files:
            raise RouteError({".tag": "to", "to": _tagged("conflict", "file")})
        del self.files[arg["from_path"].lower()]
        moved = self.put_file(arg["to_path"], stored.data, stored.modified)
        return {"metadata": moved.metadata()}

    def _delete_v2(self, arg: dict[str, Any]) -> dict[str, Any]:
        path = arg["path"]
        if path.lower() in self.files:
            return {"metadata": self.files.pop(path.lower()).metadata()}
        if path and self._is_folder(path):
            prefix = path.lower() + "/"
            for key in [k for k in self.files if k.startswith(prefix)]:
                del self.files[key]
            return {"metadata": self._folder_meta(path)}
        raise RouteError(_tagged("path_lookup", "not_found"))

    def _upload(self, arg: dict[str, Any], body: bytes, fault: str | None) -> dict[str, Any]:
        return self._commit(arg["path"], body, arg.get("mode"), fault)

    def _upload_session_start(self, arg: dict[str, Any], body: bytes, fault: str | None) -> dict[str, Any]:
        session = "emu-session-" + secrets.token_hex(8)
        self.sessions[session] = {"data": bytearray(body), "closed": bool(arg.get("close"))}
        return {"session_id": session}

    def _session(self, cursor: dict[str, Any], *where: str) -> bytearray:
        session = self.sessions.get(cursor["session_id"])
        if session is None:
            raise RouteError(_tagged(*where, "not_found"))
        if session["closed"]:
            raise RouteError(_tagged(*where, "closed"))
        if cursor["offset"] != len(session["data"]):
            raise RouteError(_tagged(*where, "incorrect_offset", correct_offset=len(session["data"])))
        return session["data"]

    def _upload_session_append_v2(self, arg: dict[str, Any], body: bytes, fault: str | None) -> None:
        self._session(arg["cursor"]).extend(body)
        if arg.get("close"):
            self.sessions[arg["cursor"]["session_id"]]["closed"] = True
        return None

    def _upload_session_finish(self, arg: dict[str, Any], body: bytes, fault: str | None) -> dict[str, Any]:
        data = self._session(arg["cursor"], "lookup_failed")
        result = self._commit(arg["commit"]["path"], bytes(data) + body, arg["commit"].get("mode"), fault)
        del self.sessions[arg["cursor"]["session_id"]]
        return result


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: DropboxEmulator

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # The TLS handshake happens in the handler's thread, so one slow client blocks nobody.
        return self.emulator._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (the SDK after a fault, a test's cut) are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(30)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            with self.server.emulator.lock:
                self.server.emulator.tls_failures += 1
            raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        em = self.server.emulator
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = urllib.parse.urlparse(self.path).path.strip("/")
        taken = em.take_fault(route.removeprefix("2/"))
        kind, params = taken if taken else (None, {})
        if kind == "stall":  # a slow link: the reply (and the commit) come late
            em.stalled.set()
            time.sleep(float(params.get("seconds", 5)))
        if kind == "429":
            wait = str(params.get("retry_after", 1))
            return self._send(Reply.text(429, "too many requests", **{"Retry-After": wait}))
        if kind in ("500", "503"):
            return self._send(Reply.text(int(kind), "emulated server error"))
        if kind == "expire":
            em.expire_tokens()
        if route == "oauth2/token":
            return self._send(em.token(dict(urllib.parse.parse_qsl(body.decode()))))
        if not route.startswith("2/"):
            return self._send(Reply.text(404, "no such endpoint"))
        route = route.removeprefix("2/")
        denied = em.authorized(self.headers.get("Authorization"))
        if denied is not None:
            return self._send(denied)
        if kind == "too_many_write_operations":
            # where each route's error type puts it: RelocationError under 'to', the others at the top
            error = RouteError(_tagged(*(["to"] if route == "files/move_v2" else []), kind))
            return self._send(Reply.json({"error_summary": error.summary, "error": error.error}, 409))
        if route in em.RPC:
            arg = json.loads(body or b"null")
        elif route in em.UPLOAD or route == "files/download":
            arg = json.loads(self.headers.get("Dropbox-API-Arg") or "null")
        else:
            return self._send(Reply.text(400, f'Unknown API function: "{route}"'))
        reply = em.call(route, arg, body, self.headers, kind)
        if kind == "drop_reply":
            self.close_connection = True
            return None
        if kind == "cut" and reply.status in (200, 206):
            return self._send(reply, cut=True)
        return self._send(reply)

    def _send(self, reply: Reply, cut: bool = False) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if cut:
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(reply.body)


# --- the pytest plugin --------------------------------------------------------------------------

_EMULATOR: DropboxEmulator | None = None
_WORKDIR: Path | None = None
CREDENTIAL_VARS = ("DLCRUN_DROPBOX_REFRESH_TOKEN", "DLCRUN_DROPBOX_APP_KEY", "DLCRUN_DROPBOX_ACCESS_TOKEN")


def pytest_configure(config: pytest.Config) -> None:
    """Bind the emulation and export its host and CA before anything imports the SDK."""
    global _EMULATOR, _WORKDIR
    _WORKDIR = Path(tempfile.mkdtemp(prefix="dlcrun-dropbox-emulator-"))
    _EMULATOR = DropboxEmulator(_WORKDIR)
    os.environ["DLCRUN_DROPBOX_API_HOST"] = _EMULATOR.host
    os.environ["DLCRUN_DROPBOX_CA_BUNDLE"] = str(_EMULATOR.ca_path)
    os.environ["DROPBOX_API_HOST"] = os.environ["DROPBOX_API_CONTENT_HOST"] = _EMULATOR.host
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))
    for var in CREDENTIAL_VARS:  # a developer's real credentials never reach a test
        os.environ.pop(var, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _EMULATOR is not None:
        _EMULATOR.stop()
    if _WORKDIR is not None:
        shutil.rmtree(_WORKDIR, ignore_errors=True)


@pytest.fixture
def dropbox_emulator() -> Iterator[DropboxEmulator]:
    """The running emulation, emptied for this test."""
    assert _EMULATOR is not None
    _EMULATOR.start()
    _EMULATOR.reset()
    yield _EMULATOR
    _EMULATOR.reset()


@pytest.fixture
def dropbox_env(dropbox_emulator: DropboxEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, str]:
    """A user who authorized the app, with the refresh token in the environment (cluster style)
    and an empty config home, so no token file is found by accident. Returns (app key, token)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    app_key, refresh = dropbox_emulator.grant()
    monkeypatch.setenv("DLCRUN_DROPBOX_APP_KEY", app_key)
    monkeypatch.setenv("DLCRUN_DROPBOX_REFRESH_TOKEN", refresh)
    return app_key, refresh
