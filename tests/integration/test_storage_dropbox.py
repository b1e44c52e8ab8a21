"""The Dropbox backend: the real SDK over real HTTPS against the loopback emulation."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from pathlib import Path

import pytest
from dropbox_emulator import DropboxEmulator, content_hash

from dlcrun.errors import ConfigError, StorageError
from dlcrun.storage import Storage, storage_for
from dlcrun.storage.dropbox import BLOCK_SIZE, ContentHasher, DropboxStorage, file_hashes, to_path
from dlcrun.storage.dropbox_auth import Credentials, load_credentials, token_path, write_token_file

CHUNK = 64 * 1024


def storage(emulator: DropboxEmulator, **kwargs: object) -> DropboxStorage:
    app_key, refresh = emulator.grant()
    options = {"chunk_size": CHUNK, "attempts": 4, "backoff": 0.01, **kwargs}
    return DropboxStorage(Credentials(app_key, refresh_token=refresh), **options)  # type: ignore[arg-type]


def payload(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def test_content_hash_matches_the_sdk_reference_implementation(tmp_path: Path) -> None:
    from dropbox.content_hash import DropboxContentHasher

    for size in (0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE + 12345):
        data = payload(size, seed=size)
        ours = ContentHasher()
        for start in range(0, size, 1_000_003):  # pieces that straddle block boundaries
            ours.update(data[start : start + 1_000_003])
        reference = DropboxContentHasher()
        reference.update(data)
        expected = reference.hexdigest()
        assert ours.hexdigest() == expected == content_hash(data), size
        (tmp_path / "f").write_bytes(data)
        assert file_hashes(tmp_path / "f") == (expected, hashlib.sha256(data).hexdigest())


def test_uri_to_dropbox_path() -> None:
    assert to_path("dropbox:/Videos/2026-10/cam1.mp4") == "/Videos/2026-10/cam1.mp4"
    assert to_path("dropbox://Videos/a.mp4") == "/Videos/a.mp4"
    assert to_path("dropbox:/Keypoints/") == "/Keypoints"
    assert to_path("dropbox:/") == to_path("dropbox:") == ""
    assert isinstance(storage_for("dropbox:/Videos/a.mp4"), Storage), "registered for dropbox: and complete"


@pytest.mark.dropbox
@pytest.mark.parametrize("size", [0, 1000, CHUNK, 5 * CHUNK + 17], ids=["empty", "small", "one-chunk", "session"])
def test_round_trip(dropbox_emulator: DropboxEmulator, tmp_path: Path, size: int) -> None:
    store = storage(dropbox_emulator)
    data = payload(size)
    (tmp_path / "in.h5").write_bytes(data)
    put = store.put(tmp_path / "in.h5", "dropbox:/Keypoints/cam1/in.h5")
    assert put.size == size and put.sha256 == hashlib.sha256(data).hexdigest()
    assert dropbox_emulator.read("/Keypoints/cam1/in.h5") == data
    assert dropbox_emulator.paths() == ["/Keypoints/cam1/in.h5"], "a temporary name was left behind"
    assert dropbox_emulator.count("files/move_v2") == 1, "uploads go to a temporary name, then move"
    sessions = dropbox_emulator.count("files/upload_session/append_v2")
    assert (sessions > 0) == (size > CHUNK)

    found = store.stat("dropbox:/Keypoints/cam1/in.h5")
    assert found is not None and found.size == size
    got = store.fetch("dropbox:/Keypoints/cam1/in.h5", tmp_path / "out" / "in.h5")
    assert (tmp_path / "out" / "in.h5").read_bytes() == data and got.size == size
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in.h5"]


@pytest.mark.dropbox
def test_put_replaces_an_existing_file(dropbox_emulator: DropboxEmulator, tmp_path: Path) -> None:
    store = storage(dropbox_emulator)
    dropbox_emulator.put_file("/K/a.h5", b"stale")
    (tmp_path / "a.h5").write_bytes(b"fresh keypoints")
    store.put(tmp_path / "a.h5", "dropbox:/K/a.h5")
    assert dropbox_emulator.read("/K/a.h5") == b"fresh keypoints"
    assert dropbox_emulator.paths() == ["/K/a.h5"]


@pytest.mark.dropbox
def test_stat_list_delete(dropbox_emulator: DropboxEmulator) -> None:
    store = storage(dropbox_emulator)
    when = dt.datetime(2026, 10, 3, 12, 0, tzinfo=dt.timezone.utc)
    for name in ("e.mp4", "a.mp4", "c.mp4", "b.mp4", "d.mp4", "sub/f.mp4", ".a.mp4.dlcrun-part-1"):
        dropbox_emulator.put_file(f"/Videos/{name}", name.encode(), when)
    dropbox_emulator.page_size = 2

    flat = list(store.list("dropbox:/Videos"))
    assert [o.uri for o in flat] == [f"dropbox:/Videos/{n}.mp4" for n in "abcde"]
    assert flat[0].mtime == when.timestamp() and flat[0].size == len(b"a.mp4")
    assert dropbox_emulator.count("files/list_folder/continue") >= 3, "the listing must follow the cursor"
    deep = [o.uri for o in store.list("dropbox:/videos", recursive=True)]
    assert deep[-1] == "dropbox:/Videos/sub/f.mp4" and len(deep) == 6

    assert store.stat("dropbox:/Videos/a.mp4") is not None
    assert store.stat("dropbox:/Videos/nope.mp4") is None
    assert store.stat("dropbox:/Videos/sub") is None, "a folder is not a file"
    store.delete("dropbox:/Videos/a.mp4")
    store.delete("dropbox:/Videos/a.mp4")  # already gone: fine
    assert store.stat("dropbox:/Videos/a.mp4") is None
    with pytest.raises(StorageError, match="no such folder"):
        list(store.list("dropbox:/Nowhere"))


@pytest.mark.dropbox
@pytest.mark.parametrize(
    ("route", "kind"),
    [
        ("files/download", "429"),
        ("files/download", "500"),
        ("files/download", "cut"),
        ("files/download", "bad_hash"),
        ("files/download", "expire"),
        ("oauth2/token", "503"),
    ],
)
def test_fetch_recovers(dropbox_emulator: DropboxEmulator, tmp_path: Path, route: str, kind: str) -> None:
    data = payload(3 * 1024 * 1024 + 5)  # above the 1 MiB read size, so a cut can resume mid-file
    dropbox_emulator.put_file("/Videos/cam1.mp4", data)
    store = storage(dropbox_emulator)
    dropbox_emulator.inject(route, kind)
    clock = time.monotonic()
    store.fetch("dropbox:/Videos/cam1.mp4", tmp_path / "cam1.mp4")
    assert (tmp_path / "cam1.mp4").read_bytes() == data
    assert os.listdir(tmp_path) == ["cam1.mp4"], "the temporary file must be gone"
    assert not dropbox_emulator.faults, "the fault was never hit"
    if kind == "429":
        assert time.monotonic() - clock >= 1.0, "Retry-After was not honoured"
    if kind == "cut":
        first, resumed = dropbox_emulator.ranges
        assert first is None and resumed == "bytes=1048576-", "a dropped download resumes after the last full read"
    if kind == "expire":
        assert dropbox_emulator.count("oauth2/token") == 2, "the SDK refreshes the expired access token"


@pytest.mark.dropbox
@pytest.mark.parametrize(
    ("route", "kind"),
    [
        ("files/upload_session/start", "500"),
        ("files/upload_session/append_v2", "429"),
        ("files/upload_session/append_v2", "drop_reply"),
        ("files/upload_session/finish", "drop_reply"),
        ("files/upload_session/finish", "corrupt"),
        ("files/upload_session/finish", "too_many_write_operations"),
        ("files/move_v2", "drop_reply"),
        ("files/move_v2", "too_many_write_operations"),
        ("files/move_v2", "expire"),
    ],
)
def test_put_recovers(dropbox_emulator: DropboxEmulator, tmp_path: Path, route: str, kind: str) -> None:
    data = payload(4 * CHUNK + 5)
    (tmp_path / "a.h5").write_bytes(data)
    store = storage(dropbox_emulator)
    dropbox_emulator.inject(route, kind, retry_after=0)
    put = store.put(tmp_path / "a.h5", "dropbox:/Keypoints/a.h5")
    assert not dropbox_emulator.faults, "the fault was never hit"
    assert dropbox_emulator.read("/Keypoints/a.h5") == data
    assert dropbox_emulator.paths() == ["/Keypoints/a.h5"], "a temporary name was left behind"
    assert put.sha256 == hashlib.sha256(data).hexdigest()
    if kind == "drop_reply" and route.endswith("append_v2"):
        # the lost reply's chunk had landed: the session resumes at Dropbox's offset, not from scratch
        assert dropbox_emulator.count("files/upload_session/start") == 1


@pytest.mark.dropbox
def test_single_upload_recovers_from_a_corrupted_copy(dropbox_emulator: DropboxEmulator, tmp_path: Path) -> None:
    (tmp_path / "m.pickle").write_bytes(b"metadata" * 10)
    store = storage(dropbox_emulator)
    dropbox_emulator.inject("files/upload", "corrupt")
    store.put(tmp_path / "m.pickle", "dropbox:/K/m.pickle")
    assert dropbox_emulator.read("/K/m.pickle") == b"metadata" * 10
    assert dropbox_emulator.count("files/upload") == 2 and dropbox_emulator.count("files/move_v2") == 1


@pytest.mark.dropbox
def test_missing_file_fails_at_once_with_a_clear_message(dropbox_emulator: DropboxEmulator, tmp_path: Path) -> None:
    store = storage(dropbox_emulator)
    with pytest.raises(StorageError, match=r"^dropbox:/Videos/gone\.mp4: not found on Dropbox$"):
        store.fetch("dropbox:/Videos/gone.mp4", tmp_path / "gone.mp4")
    assert dropbox_emulator.count("files/download") == 1, "a 409 not_found is permanent: no retries"
    assert not list(tmp_path.iterdir())


@pytest.mark.dropbox
def test_retries_are_bounded(dropbox_emulator: DropboxEmulator, tmp_path: Path) -> None:
    dropbox_emulator.put_file("/Videos/a.mp4", b"x")
    store = storage(dropbox_emulator, attempts=3)
    dropbox_emulator.inject("files/download", "500", times=10)
    with pytest.raises(StorageError, match=r"download failed after 3 attempts \(HTTP 500\)"):
        store.fetch("dropbox:/Videos/a.mp4", tmp_path / "a.mp4")
    assert dropbox_emulator.count("files/download") == 3


@pytest.mark.dropbox
def test_failed_put_publishes_nothing(dropbox_emulator: DropboxEmulator, tmp_path: Path) -> None:
    (tmp_path / "a.h5").write_bytes(payload(3 * CHUNK))
    store = storage(dropbox_emulator, attempts=2)
    dropbox_emulator.inject("files/move_v2", "too_many_write_operations", times=2)
    with pytest.raises(StorageError, match="move failed after 2 attempts"):
        store.put(tmp_path / "a.h5", "dropbox:/K/a.h5")
    assert dropbox_emulator.paths() == [], "neither the file nor its temporary copy may remain"


@pytest.mark.dropbox
def test_revoked_token_is_a_clear_error_without_the_token(dropbox_emulator: DropboxEmulator) -> None:
    app_key, refresh = dropbox_emulator.grant()
    dropbox_emulator.revoke(refresh)
    store = DropboxStorage(Credentials(app_key, refresh_token=refresh, source="the test"), backoff=0.01)
    with pytest.raises(StorageError) as caught:
        store.stat("dropbox:/Videos/a.mp4")
    message = str(caught.value)
    assert "dlcrun auth dropbox" in message and "the test" in message
    assert refresh not in message and "\n" not in message


@pytest.mark.dropbox
def test_legacy_access_token_works_with_a_warning(
    dropbox_emulator: DropboxEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("DLCRUN_DROPBOX_ACCESS_TOKEN", dropbox_emulator.short_lived_token())
    dropbox_emulator.put_file("/Videos/a.mp4", b"abc")
    with caplog.at_level(logging.WARNING):
        found = storage_for("dropbox:/Videos/a.mp4").stat("dropbox:/Videos/a.mp4")
    assert found is not None and found.size == 3
    assert "short-lived" in caplog.text and "dlcrun auth dropbox" in caplog.text


def test_credentials_come_from_env_then_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(ConfigError, match="no Dropbox credentials: run `dlcrun auth dropbox`"):
        load_credentials()
    path = write_token_file("file-key", "file-refresh", "dbid:1")
    assert path == tmp_path / "cfg" / "dlcrun" / "dropbox.json" == token_path()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    from_file = load_credentials()
    assert (from_file.app_key, from_file.refresh_token, from_file.source) == ("file-key", "file-refresh", str(path))
    assert "file-refresh" not in repr(from_file)

    monkeypatch.setenv("DLCRUN_DROPBOX_REFRESH_TOKEN", "env-refresh")
    with pytest.raises(ConfigError, match="DLCRUN_DROPBOX_APP_KEY is not"):
        load_credentials()
    monkeypatch.setenv("DLCRUN_DROPBOX_APP_KEY", "env-key")
    assert load_credentials().refresh_token == "env-refresh"

    monkeypatch.delenv("DLCRUN_DROPBOX_REFRESH_TOKEN")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others.*chmod 600"):
        load_credentials()


def test_relative_xdg_config_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert token_path() == tmp_path / ".config" / "dlcrun" / "dropbox.json"


@pytest.mark.dropbox
def test_authorize_with_pkce_stores_a_working_refresh_token(
    dropbox_emulator: DropboxEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dlcrun.storage.dropbox_auth import authorize

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path, account = authorize("my-app-key", dropbox_emulator.approve)
    assert account == "dbid:emulated-account" and path.stat().st_mode & 0o777 == 0o600
    dropbox_emulator.put_file("/Videos/a.mp4", b"abc")
    assert storage_for("dropbox:/Videos/a.mp4").stat("dropbox:/Videos/a.mp4") is not None

    with pytest.raises(StorageError, match="did not accept the authorization code"):
        authorize("my-app-key", lambda url: "not-a-code")


@pytest.mark.dropbox
def test_the_ca_bundle_setting_wins_and_tls_is_verified(
    dropbox_emulator: DropboxEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    dropbox_emulator.put_file("/Videos/a.mp4", b"abc")
    # requests would let REQUESTS_CA_BUNDLE override the SDK's ca_certs; DLCRUN_DROPBOX_CA_BUNDLE wins.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    assert storage(dropbox_emulator).stat("dropbox:/Videos/a.mp4") is not None
    monkeypatch.delenv("DLCRUN_DROPBOX_CA_BUNDLE")
    with pytest.raises(StorageError, match="TLS verification failed"):
        storage(dropbox_emulator).stat("dropbox:/Videos/a.mp4")
    deadline = time.monotonic() + 5  # the server thread counts the failed handshake after the client gave up
    while dropbox_emulator.tls_failures < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dropbox_emulator.tls_failures == 1, "a certificate failure is not retried"


@pytest.mark.dropbox
def test_no_secret_in_logs_output_or_errors(
    dropbox_emulator: DropboxEmulator,
    dropbox_env: tuple[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "a.h5").write_bytes(payload(3 * CHUNK))
    store = storage_for("dropbox:/K/a.h5")
    for route, kind in [
        ("files/upload_session/append_v2", "500"),
        ("files/move_v2", "expire"),
        ("files/download", "cut"),
    ]:
        dropbox_emulator.inject(route, kind)
    store.put(tmp_path / "a.h5", "dropbox:/K/a.h5")
    store.fetch("dropbox:/K/a.h5", tmp_path / "b.h5")
    messages = []
    for bad in ("dropbox:/K/missing.h5", "dropbox:/K/a.h5"):
        if bad.endswith("a.h5"):
            dropbox_emulator.revoke(dropbox_env[1])
        with pytest.raises(StorageError) as caught:
            store.fetch(bad, tmp_path / "c.h5")
        messages.append(str(caught.value))
    out, err = capfd.readouterr()
    seen = "\n".join([caplog.text, out, err, *messages])
    assert len(dropbox_emulator.issued) >= 3, "expected a refresh token and two access tokens"
    for secret in dropbox_emulator.issued:
        assert secret not in seen
    assert "Retrying" in seen or "retry" in seen, "the logs should show the retries (else this test proves little)"
