"""File names: which files are videos, when a name says a recording started, conflicted copies.

Recording software (iSpy) puts each video's start time in its name; a ``NamePattern`` reads it
back. Settings validate the lab's pattern with it, and the selection wing reads every listed
name through it, so both live on this ground floor.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dlcrun.errors import ConfigError

ISPY_PATTERN = "{camera}_{start:%Y-%m-%d_%H-%M-%S}"


_CONFLICTED = re.compile(r"\s\(\d+\)$|\((?:[^()]*\s)?(?:conflicted copy|case conflict)[^()]*\)", re.IGNORECASE)


_STRFTIME = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{1,2}",
    "d": r"\d{1,2}",
    "H": r"\d{1,2}",
    "I": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"\d{1,2}",
    "f": r"\d{1,6}",
    "j": r"\d{1,3}",
    "p": r"[AaPp][Mm]",
    "b": r"[A-Za-z]{3}",
    "h": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+",
    "a": r"[A-Za-z]{3}",
    "A": r"[A-Za-z]+",
    "%": "%",
}


@dataclass(frozen=True)
class NamePattern:
    """A file-name pattern such as ``{camera}_{start:%Y-%m-%d_%H-%M-%S}``, matched against the stem.

    ``{start:FORMAT}`` (strftime directives) is the recording's start time and is required; any
    other ``{name}`` matches any text and becomes a field (for ``--per camera``). ``{{``/``}}``
    are literal braces.
    """

    text: str
    regex: re.Pattern[str]
    time_format: str

    @classmethod
    def compile(cls, text: str) -> NamePattern:
        parts, time_format, names = [], None, set()
        pos = 0
        for m in re.finditer(r"\{\{|\}\}|\{([^{}]*)\}|[{}]", text):
            parts.append(re.escape(text[pos : m.start()]))
            pos = m.end()
            token = m.group(0)
            if token in ("{{", "}}"):
                parts.append(re.escape(token[0]))
                continue
            if m.group(1) is None:
                raise ConfigError(f"name pattern '{text}': unbalanced '{token}' (write {{{{ or }}}} for a brace)")
            name, _, fmt = m.group(1).partition(":")
            if not name.isidentifier():
                raise ConfigError(f"name pattern '{text}': '{{{m.group(1)}}}' is not a field name")
            if name in names:
                raise ConfigError(f"name pattern '{text}': field '{name}' appears twice")
            names.add(name)
            if name == "start":
                if not fmt:
                    raise ConfigError(f"name pattern '{text}': {{start}} needs a time format, e.g. {{start:%Y-%m-%d}}")
                parts.append(f"(?P<start>{_strftime_regex(fmt, text)})")
                time_format = fmt
            elif fmt:
                raise ConfigError(f"name pattern '{text}': only {{start}} takes a format, not '{{{m.group(1)}}}'")
            else:
                parts.append(f"(?P<{name}>.+?)")
        parts.append(re.escape(text[pos:]))
        if time_format is None:
            raise ConfigError(f"name pattern '{text}': needs a {{start:FORMAT}} field (e.g. {ISPY_PATTERN})")
        return cls(text=text, regex=re.compile("".join(parts)), time_format=time_format)

    def match(self, name: str) -> tuple[dt.datetime, dict[str, str]] | None:
        """Start time and fields from a file name (extension ignored), or None when it does not fit."""
        m = self.regex.fullmatch(stem(name))
        if m is None:
            return None
        try:
            start = dt.datetime.strptime(m.group("start"), self.time_format)
        except ValueError:  # digits in the right places but not a date (month 13)
            return None
        return start, {k: v for k, v in m.groupdict().items() if k != "start"}


def _strftime_regex(fmt: str, pattern: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] != "%":
            out.append(re.escape(fmt[i]))
            i += 1
            continue
        code = fmt[i + 1] if i + 1 < len(fmt) else ""
        if code not in _STRFTIME:
            raise ConfigError(f"name pattern '{pattern}': unsupported time directive '%{code}'")
        out.append(_STRFTIME[code])
        i += 2
    return "".join(out)


def stem(name: str) -> str:
    """A file name without its video extension."""
    lower = name.lower()
    for ext in VIDEO_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name.rsplit(".", 1)[0] if "." in name else name


def is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def is_conflicted_copy(name: str) -> bool:
    """Dropbox's duplicates: ``x (1).mp4``, ``x (Jane's conflicted copy 2020-10-27).mp4``."""
    return _CONFLICTED.search(stem(name)) is not None


def normal_name(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.lower())


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".h264", ".wmv")
