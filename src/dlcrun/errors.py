"""One error family, so the CLI can print any of them as one actionable line."""

from __future__ import annotations


def one_line(text: object, limit: int | None = 500) -> str:
    """``text`` with its whitespace and line breaks collapsed, cut at ``limit`` characters: what
    a record, a result file or a one-line message can hold of an exception or a tool's stderr."""
    return " ".join(str(text).split())[:limit]


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


class InferenceError(DlcrunError):
    """DeepLabCut could not analyse a video (unreadable, truncated, model mismatch)."""


class VerificationError(DlcrunError):
    """An output or a transfer did not pass its check; nothing was published."""


class RunError(DlcrunError):
    """A run directory is missing or inconsistent."""
