"""One error family, so the CLI can print any of them as one actionable line."""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from typing import Any

# --- secrets: validated where they are loaded, redacted wherever text leaves the process ---------

MASK = "***"
MIN_SECRET = 8  # shorter values are not registered: masking "pass" everywhere would garble every message
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_SCHEMES = r"(?:bearer|basic|digest|token|oauth|negotiate)"
# "Bearer <token>" anywhere (a header value quoted in an exception), and any Authorization header's value.
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")  # https://user:password@host
_AUTHORIZATION = re.compile(rf"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:({_SCHEMES})\s+)?[^\s\"',;}}]+")


def register_secret(value: str | None) -> None:
    """Remember a credential so that :func:`redact` masks it; called by whoever loads one."""
    for form in {value, value.strip()} if value else ():
        if len(form) >= MIN_SECRET:
            with _SECRETS_LOCK:
                _SECRETS.add(form)


def redact(text: object) -> str:
    """``text`` with every registered secret, every ``Bearer <token>``, every Authorization
    header value and every password in a URL replaced by ``***``: the one filter between a
    secret and a record, a log line or the terminal."""
    out = str(text)
    with _SECRETS_LOCK:
        known = sorted(_SECRETS, key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, MASK)
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", out)
    out = _AUTHORIZATION.sub(lambda m: m.group(1) + (f"{m.group(2)} " if m.group(2) else "") + MASK, out)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)


def clean_credential(value: str, where: str, secret: bool = True) -> str:
    """A credential as loaded from ``where`` (a variable's name, or ``FILE (key K)``), with its
    surrounding whitespace stripped (a trailing CR from a Windows-edited env file, a pasted
    newline). A control character inside it is a ConfigError naming ``where``, never the value.
    ``secret``: also register it for :func:`redact` (an app key is public, a token is not)."""
    cleaned = value.strip()
    bad = next((c for c in cleaned if ord(c) < 32 or 127 <= ord(c) < 160), None)
    if bad is not None:
        kind = {"\r": "a carriage return (CR)", "\n": "a line break (LF)", "\t": "a tab"}.get(
            bad, f"the control character U+{ord(bad):04X}"
        )
        raise ConfigError(
            f"{where}: contains {kind} inside the value (a file saved with Windows line endings, or a bad "
            "paste?); set it again as one line"
        )
    if secret:
        register_secret(cleaned)
    return cleaned


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record before any formatter sees it: the message with
    its arguments, and the traceback of ``exc_info`` (formatted here, then masked)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            clean = redact(record.exc_text)
            if clean != record.exc_text:
                # Formatters print exc_text when set; drop exc_info so none formats the raw one again.
                record.exc_text, record.exc_info = clean, None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Redact every handler of ``logger`` (default: the root logger), and uncaught tracebacks."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _redacting_excepthook


def _redacting_excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def one_line(text: object, limit: int | None = 500) -> str:
    """``text`` with its whitespace and line breaks collapsed, cut to ``limit`` characters, and
    secrets redacted: what a record, a result file or a one-line message can hold of an
    exception or a tool's stderr.

    A long text loses its middle, not its end: errors name a location first and give the
    reason last, and with a deep path the reason is what a cut at the end would drop.
    """
    flat = redact(" ".join(redact(text).split()))
    if limit is None or len(flat) <= limit:
        return flat
    head = (limit - 5) // 3
    return f"{flat[:head]} ... {flat[len(flat) - (limit - 5 - head) :]}"


class DlcrunError(Exception):
    """Base of every error dlcrun raises on purpose; the message is meant for the user."""


class ConfigError(DlcrunError):
    """Settings, flags or the DLC project are not usable as given."""


class ManifestError(DlcrunError):
    """A spreadsheet or manifest cannot be turned into a list of videos."""


class StorageError(DlcrunError):
    """A transfer to or from storage failed, or the location does not exist."""


class SubmissionError(DlcrunError):
    """The scheduler refused or could not be reached."""


class ClientMissing(SubmissionError):
    """A scheduler's client (``squeue``, ``qstat``, ``sbatch``) is not on PATH here: a machine
    that is not a login node of the cluster. ``status`` then shows the ledger alone."""

    def __init__(self, command: str):
        super().__init__(f"{command}: command not found; run dlcrun on a login node of the cluster")
        self.command = command


class InferenceError(DlcrunError):
    """DeepLabCut could not analyse a video (unreadable, truncated, model mismatch)."""


class VerificationError(DlcrunError):
    """An output or a transfer did not pass its check; nothing was published."""


class RunError(DlcrunError):
    """A run directory is missing or inconsistent."""
