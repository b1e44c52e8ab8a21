"""Dates as labs write them in sheets and on the command line, read one way everywhere."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dlcrun.errors import ManifestError

_WHOLE_DAY = dt.timedelta(days=1) - dt.timedelta(microseconds=1)


def parse_day(value: Any, dayfirst: bool = False) -> dt.datetime:
    """A date cell: an Excel date, an Excel serial number, or text in a common written form.

    Text must give day, month and year (``26-Oct-2020``, ``2020-10-26``, ``10/26/2020``);
    ``dayfirst`` settles ``01/02/2020``. Raises ValueError with a short reason.
    """
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        from openpyxl.utils.datetime import from_excel

        if not 1 <= value < 2958466:
            raise ValueError(f"{value} is not a date")
        return from_excel(value)
    from dateutil import parser

    text = str(value).strip()
    try:
        # Parsed twice with different defaults: a component that differs was not in the text.
        a = parser.parse(text, dayfirst=dayfirst, default=dt.datetime(1, 1, 1))
        b = parser.parse(text, dayfirst=dayfirst, default=dt.datetime(2, 2, 2))
    except (ValueError, OverflowError):
        raise ValueError(f"'{text}' is not a date") from None
    if (a.year, a.month, a.day) != (b.year, b.month, b.day):
        raise ValueError(f"'{text}' is not a full date (day, month and year)")
    return a.replace(tzinfo=None)


def window(start: Any, end: Any, dayfirst: bool = False) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] where a date without a time of day means the whole day (end: up to 23:59:59)."""
    lo, hi = parse_day(start, dayfirst), parse_day(end, dayfirst)
    if hi.time() == dt.time():
        hi = hi + _WHOLE_DAY
    return lo, hi


def bounds(
    since: str | None, until: str | None, dayfirst: bool = False, flags: tuple[str, str] = ("--since", "--until")
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A command's window options as datetimes; either side may be open; errors name ``flags``."""
    lo = hi = None
    try:
        if since is not None:
            lo = parse_day(since, dayfirst)
    except ValueError as exc:
        raise ManifestError(f"{flags[0]}: {exc}") from None
    try:
        if until is not None:
            hi = window(until, until, dayfirst)[1]
    except ValueError as exc:
        raise ManifestError(f"{flags[1]}: {exc}") from None
    if lo is not None and hi is not None and hi < lo:
        raise ManifestError(f"{flags[1]} {until} is before {flags[0]} {since}")
    return lo, hi
