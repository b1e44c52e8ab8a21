"""Guarantee: a credential never reaches a record, a log or the terminal, and a malformed one is
refused up front with a one-line error naming where it came from (variable, file and key), never
its value.

Credentials are stripped of surrounding whitespace where they are loaded (a trailing CR from an
env file saved with Windows line endings is the classic) and refused if a control character is
left inside; every loaded secret is registered with ``dlcrun.errors.redact``, which
``one_line`` (records, result files, scheduler errors), the CLI's error printer and the CLI's
logging (messages and tracebacks) all pass through. The batch tests run real array tasks (real
DeepLabCut inference) against the loopback Dropbox emulation and grep everything they leave.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from pathlib import Path

import pytest
import typer
from waiting import wait_for

from dlcrun.errors import ConfigError, StorageError, one_line
from dlcrun.storage.dropbox import DropboxStorage
from dlcrun.storage.dropbox_auth import Credentials, load_credentials, token_path, write_token_file

# redact, register_secret, clean_credential and install_redaction are imported in the tests that
# use them, so that each test here fails on its own (not at collection) where they are missing.

ACCESS = "DLCRUN_DROPBOX_ACCESS_TOKEN"
REFRESH = "DLCRUN_DROPBOX_REFRESH_TOKEN"
APP_KEY = "DLCRUN_DROPBOX_APP_KEY"


def _secret(prefix: str = "sl.test-") -> str:
    return prefix + secrets.token_urlsafe(24)


def _no_leak(text: str, *tokens: str) -> None:
    for token in tokens:
        assert token not in text, f"a secret leaked: ...{text[max(0, text.find(token) - 200) :][:400]}"
    assert "bearer" not in text.lower(), "an Authorization header value (Bearer ...) leaked"


# --- redaction: one function, used by one_line, the CLI printer and logging -----------------------


def test_redact_masks_registered_secrets_bearer_tokens_and_authorization_headers() -> None:
    """Guarantee: redact() masks every registered secret, any `Bearer <token>`, any
    Authorization header value and a password in a URL, and leaves the rest readable."""
    from dlcrun.errors import redact, register_secret

    token = _secret()
    register_secret(token)
    assert redact(f"dropbox:/a.mp4: stat failed with {token} inside") == "dropbox:/a.mp4: stat failed with *** inside"
    other = _secret()
    assert redact(f"{{'Authorization': 'Bearer {other}'}}") == "{'Authorization': 'Bearer ***'}"
    assert redact("Authorization: Bearer abc.DEF-123_x") == "Authorization: Bearer ***"
    assert redact("Authorization: Basic dXNlcjpwYXNzd29yZA==") == "Authorization: Basic ***"
    assert redact("proxy-authorization=opaque-value; next") == "proxy-authorization=***; next"
    assert redact("GET https://lab:hunter2@dav.example.org/x") == "GET https://lab:***@dav.example.org/x"
    assert redact("rclone:gdrive:lab/a.mp4: exit status 3") == "rclone:gdrive:lab/a.mp4: exit status 3"
    assert redact(redact(f"Bearer {token}")) == "Bearer ***", "idempotent"
    register_secret("short")  # too short to mask safely: would garble every message
    assert redact("a short message") == "a short message"


def test_one_line_redacts_what_records_and_result_files_hold() -> None:
    """Guarantee: errors.one_line(), the writer of every record's and result file's error and of
    scheduler errors, redacts: the text of requests' real InvalidHeader for a token with a CR
    (the bug: it quoted `Bearer <token>\\r`) comes out without the token."""
    import requests

    from dlcrun.errors import register_secret

    token = _secret()
    with pytest.raises(requests.exceptions.InvalidHeader) as caught:
        requests.Request("GET", "https://api.dropboxapi.com", headers={"Authorization": f"Bearer {token}\r"}).prepare()
    assert token in str(caught.value), "requests quotes the header value (else this test proves little)"
    text = one_line(f"InvalidHeader: {caught.value}")
    assert token not in text and "Bearer ***" in text and "\n" not in text and "\r" not in text
    register_secret(token)
    assert one_line(f"a\nmultiline {token}\r\nerror", limit=30) == "a multiline *** error"


def test_logging_redacts_messages_and_tracebacks() -> None:
    """Guarantee: with the CLI's logging redaction installed, neither a log message's arguments
    nor a traceback logged with exc_info (what task._settle writes to the job log for an
    unexpected error) shows a secret or a Bearer header."""
    from dlcrun.errors import install_redaction, register_secret

    token = _secret()
    register_secret(token)
    logger = logging.getLogger("dlcrun.test_guarantees_secrets")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        install_redaction(logger)
        logger.warning("loaded %s from the environment", token)
        problem = f"Invalid header value: 'Bearer {_secret()}\\r' (token {token})"
        try:
            raise ValueError(problem)  # (a traceback quotes this line: it must not hold the header)
        except ValueError as exc:
            logger.error("index 0: unexpected error", exc_info=exc)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "loaded *** from the environment" in text and "Traceback" in text and "ValueError" in text
    _no_leak(text.replace("Bearer ***", ""), token)


def test_cli_installs_redaction_and_its_error_printer_redacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Guarantee: the CLI's logging setup redacts every log handler, and its one-line error
    printer (DlcrunError -> `error: ...` on stderr) redacts the message."""
    from typer.testing import CliRunner

    from dlcrun.cli import app, friendly
    from dlcrun.errors import register_secret

    token = _secret()
    register_secret(token)
    done = CliRunner().invoke(app, ["init", str(tmp_path / "dlcrun.toml")])
    assert done.exit_code == 0, done.output
    logging.getLogger("dlcrun.storage").warning("token %s, header Bearer %s", token, _secret())
    assert "token ***, header Bearer ***" in caplog.text
    _no_leak(caplog.text.replace("Bearer ***", ""), token)

    @friendly
    def failing() -> None:
        raise StorageError(f"dropbox:/a.mp4: stat failed: InvalidHeader: 'Bearer {token}\\r'")

    with pytest.raises(typer.Exit):
        failing()
    err = capsys.readouterr().err
    assert "error:" in err and "dropbox:/a.mp4" in err
    _no_leak(err.replace("Bearer ***", ""), token)


# --- credentials are checked where they are loaded ------------------------------------------------


@pytest.mark.parametrize("variable", [ACCESS, REFRESH, APP_KEY])
def test_credential_variables_are_stripped_and_control_characters_refused(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Guarantee: each Dropbox credential variable is stripped of surrounding whitespace (a
    trailing CR or CRLF works), and one with a CR/LF or other control character inside is a
    one-line ConfigError that names the variable and does not show the value."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    token = _secret("emu-refresh-") if variable != APP_KEY else "lab-app-key-1234"
    others = {REFRESH: "" if variable == ACCESS else _secret("emu-refresh-"), APP_KEY: "lab-app-key", ACCESS: ""}
    others[variable] = token
    for name, value in others.items():
        monkeypatch.setenv(name, value)
    for padded in (f"{token}\r", f"  {token}\r\n", f"\t{token}\n"):
        monkeypatch.setenv(variable, padded)
        creds = load_credentials()
        assert token in (creds.access_token, creds.refresh_token, creds.app_key)
        assert "\r" not in creds.access_token + creds.refresh_token + creds.app_key
    for bad in (f"{token}\r\nX-Injected: 1", f"{token[:6]}\r{token[6:]}", f"{token}\x07", f"{token}\x1b[2J"):
        monkeypatch.setenv(variable, bad)
        with pytest.raises(ConfigError) as caught:
            load_credentials()
        message = str(caught.value)
        assert message.startswith(f"{variable}: contains") and "\n" not in message and "\r" not in message
        assert token not in message and token[6:] not in message


def test_token_file_is_checked_and_stays_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Guarantee: the token file is written 0600 in a 0700 folder and refused when others can
    read it; its values are stripped, and one with a control character inside is refused with
    an error naming the file and the key, never the value."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    for name in (ACCESS, REFRESH, APP_KEY):
        monkeypatch.delenv(name, raising=False)
    token = _secret("emu-refresh-")
    path = write_token_file("lab-app-key", token, "dbid:1")
    assert path == token_path()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert load_credentials().refresh_token == token

    data = json.loads(path.read_text())
    data["refresh_token"] = f"{token}\r\n"
    path.write_text(json.dumps(data))
    assert load_credentials().refresh_token == token, "surrounding whitespace is stripped"

    data["refresh_token"] = f"{token[:8]}\n{token[8:]}"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        load_credentials()
    message = str(caught.value)
    assert message.startswith(f"{path} (key refresh_token): contains a line break")
    assert token[8:] not in message and "\n" not in message

    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_credentials()


def test_clean_credential_names_where_not_what() -> None:
    """Guarantee: the shared check strips, refuses control characters by naming the place and
    the kind of character only, and registers what it accepts for redaction."""
    from dlcrun.errors import clean_credential, redact

    token = _secret()
    assert clean_credential(f" {token}\r\n", "SOME_VARIABLE") == token
    assert redact(token) == "***", "an accepted secret is registered"
    with pytest.raises(ConfigError, match=r"^SOME_VARIABLE: contains a carriage return \(CR\)") as caught:
        clean_credential(f"{token}\rmore", "SOME_VARIABLE")
    assert "more" not in str(caught.value)
    with pytest.raises(ConfigError, match="U\\+0007"):
        clean_credential("abc\x07defghij", "SOME_VARIABLE")


def test_rclone_credentials_are_checked_and_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guarantee: the rclone config dlcrun copies and the RCLONE_* credential variables it
    passes on are checked (a trailing CR is stripped for rclone; one inside is refused naming
    the file, remote and key, or the variable) and registered, so rclone's errors are redacted."""
    from dlcrun.errors import redact
    from dlcrun.storage import rclone

    password, access, refresh = _secret("obscured-"), _secret("ya29."), _secret("1//r-")
    token = json.dumps({"access_token": access, "token_type": "Bearer", "refresh_token": refresh})
    config = f"[lab]\r\ntype = webdav\r\nuser = lab\r\npass = {password}\r\n\r\n[drive]\ntoken = {token}\n"
    rclone.register_config_secrets(config, "/home/u/.config/rclone/rclone.conf")
    assert redact(f"copy failed: {password} {access} {refresh}") == "copy failed: *** *** ***"
    assert redact("user = lab, type = webdav") == "user = lab, type = webdav"
    with pytest.raises(ConfigError) as caught:
        rclone.register_config_secrets(f"[lab]\npass = {password}\rX\n", "/x/rclone.conf")
    assert str(caught.value).startswith("/x/rclone.conf [lab] pass: contains a carriage return")

    env_pass = _secret("env-obscured-")
    monkeypatch.setenv("RCLONE_CONFIG_LAB_PASS", f"{env_pass}\r")
    monkeypatch.setenv("RCLONE_CONFIG_LAB_URL", "http://127.0.0.1:1")
    assert rclone.credential_environment() == {"RCLONE_CONFIG_LAB_PASS": env_pass}
    assert redact(env_pass) == "***"
    monkeypatch.setenv("RCLONE_CONFIG_LAB_PASS", f"{env_pass}\nX")
    with pytest.raises(ConfigError, match="^RCLONE_CONFIG_LAB_PASS: contains a line break") as caught:
        rclone.credential_environment()
    assert env_pass not in str(caught.value)


# --- the Dropbox backend: nothing escapes its retry wrapper with a header in it -------------------


@pytest.mark.dropbox
def test_a_request_error_becomes_a_redacted_one_line_storage_error(dropbox_emulator) -> None:
    """Guarantee: an exception requests raises before any byte is sent (InvalidHeader for a token
    with a CR, built here without the loader's check) does not escape the backend's retry
    wrapper: it is a one-line StorageError without the token."""
    token = dropbox_emulator.short_lived_token()
    dropbox_emulator.put_file("/Videos/a.mp4", b"abc")
    store = DropboxStorage(Credentials("emu-app-key", access_token=f"{token}\r\n", source="the test"), backoff=0.01)
    with pytest.raises(StorageError) as caught:
        store.stat("dropbox:/Videos/a.mp4")
    message = str(caught.value)
    assert message.startswith("dropbox:/Videos/a.mp4: stat failed: InvalidHeader") and "\n" not in message
    assert token not in message and "Bearer ***" in message


@pytest.mark.dropbox
def test_cli_with_a_cr_token_works_and_with_an_embedded_one_says_which_variable(
    dropbox_emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Guarantee: on the login node, `dlcrun manifest --folder dropbox:...` with a token ending in CR
    works; with a CR/LF inside it exits 1 with one line naming the variable; neither shows the token."""
    from typer.testing import CliRunner

    from dlcrun.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    token = dropbox_emulator.short_lived_token()
    dropbox_emulator.put_file("/Videos/cam1_2026-10-02_10-00-00.mp4", b"video")
    outputs = []
    monkeypatch.setenv(ACCESS, f"{token}\r")
    made = CliRunner().invoke(app, ["manifest", "--folder", "dropbox:/Videos", "-o", "m.txt"])
    outputs.append(made.output)
    assert made.exit_code == 0, (made.output, made.exception)
    lines = [line for line in (tmp_path / "m.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["dropbox:/Videos/cam1_2026-10-02_10-00-00.mp4"]

    monkeypatch.setenv(ACCESS, f"{token}\r\nX-Injected: 1")
    refused = CliRunner().invoke(app, ["manifest", "--folder", "dropbox:/Videos", "-o", "n.txt"])
    outputs.append(refused.output)
    assert refused.exit_code == 1 and not (tmp_path / "n.txt").exists()
    assert isinstance(refused.exception, SystemExit), f"not a one-line error: {refused.exception!r}"
    assert f"error: {ACCESS}: contains a carriage return" in " ".join(refused.output.split())
    out, err = capfd.readouterr()
    _no_leak("\n".join([*outputs, out, err]), token)


# --- a real batch: array tasks that meet the bad token, and everything they leave ------------------


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.slow
@pytest.mark.dropbox
@pytest.mark.parametrize("planted", ["trailing-cr", "embedded-crlf"])
def test_array_tasks_with_a_malformed_token_leak_nothing(
    planted: str,
    dropbox_emulator,
    demo_project: Path,
    tiny_videos,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Guarantee: array tasks (separate processes, the real task pipeline and real inference)
    given DLCRUN_DROPBOX_ACCESS_TOKEN with a trailing CR analyse and publish as usual; given one
    with a CR/LF inside they fail with a record naming the variable. Either way the token (and
    any `Bearer` header) is in no file of the run directory (records, logs, settings), nor on
    scratch, nor in the manifest, nor on stdout/stderr. (The bug: requests' InvalidHeader quoted
    `Bearer <token>` into records/000000.json and the job log.)"""
    from dlcrun import batch
    from dlcrun.settings import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    token = dropbox_emulator.short_lived_token()
    value = f"{token}\r" if planted == "trailing-cr" else f"{token}\r\nX-Injected: 1"
    names = ["cam1_2026-10-02_10-00-00.mp4", "cam2_2026-10-02_11-00-00.mp4"]
    for video in tiny_videos(names=names, frames=6):
        dropbox_emulator.put_file(f"/Videos/{video.name}", video.read_bytes())
    manifest = tmp_path / "manifests" / "batch.txt"
    manifest.parent.mkdir()
    manifest.write_text("".join(f"dropbox:/Videos/{n}\n" for n in names))

    settings = load_settings(
        None,
        project=demo_project,
        dest="dropbox:/Keypoints",
        runs_dir=tmp_path / "runs",
        scratch=tmp_path / "scratch",
        max_running=1,
        device="cpu",
    )
    # `submit --no-check`: the login node does not touch Dropbox, the tasks meet the token first.
    run, _ = batch.start_run(manifest, settings, check=False)
    monkeypatch.setenv(ACCESS, value)  # what the tasks inherit (a CRLF env file sourced by the job)
    batch.submit(run)
    status = wait_for(run, timeout=900)

    out, err = capfd.readouterr()
    written = _files(run.path) + _files(tmp_path / "scratch") + _files(manifest.parent)
    assert any(p.parent.name == "records" for p in written) and any(p.parent.name == "logs" for p in written)
    everything = "\n".join([out, err, *(p.read_bytes().decode(errors="replace") for p in written)])
    _no_leak(everything, token)

    records = sorted(status.records.values(), key=lambda r: r.index)
    logs = "\n".join(p.read_text(errors="replace") for p in (run.path / "logs").glob("*"))
    if planted == "trailing-cr":
        assert [r.state for r in records] == ["done", "done"], ([(r.index, r.error) for r in records], logs)
        published = [p for p in dropbox_emulator.paths() if p.startswith("/Keypoints/")]
        assert len(published) == 4, published
    else:
        assert [r.state for r in records] == ["failed", "failed"], logs
        for record in records:
            assert record.error.startswith(f"{ACCESS}: contains a carriage return"), record.error
        assert not [p for p in dropbox_emulator.paths() if p.startswith("/Keypoints/")]
