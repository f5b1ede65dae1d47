"""Durations as people write them: ``"30s"``, ``"500ms"``, ``"2m"``,
``"1m30s"``, or a number of seconds, as the cluster's own flags take them."""

from __future__ import annotations

import datetime
import re
from typing import Union

__all__ = ["Duration", "seconds"]

#: What every ``lease``, ``wait`` and ``timeout`` argument accepts.
Duration = Union[str, int, float, datetime.timedelta]

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}

_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", re.ASCII)


def seconds(value: Duration, what: str = "duration") -> float:
    """``value`` in seconds. ``what`` names the argument in the error.

    Raises ``ValueError`` for text that is not a duration and for negative
    values.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration such as \"30s\" or a number of seconds, got {value!r}")
    if isinstance(value, datetime.timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        result = _parse(value, what)
    else:
        raise ValueError(f"{what} must be a duration such as \"30s\" or a number of seconds, got {value!r}")
    if result < 0 or result != result:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return result


def _parse(text: str, what: str) -> float:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{what} is empty: write a duration such as \"30s\", \"500ms\" or \"2m\"")
    try:
        return float(stripped)
    except ValueError:
        pass
    total = 0.0
    position = 0
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None:
            raise ValueError(
                f"{what} {text!r} is not a duration: write a number with a unit (ms, s, m, h), such as \"30s\" or \"1m30s\""
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total


def millis(value: Duration, what: str = "duration") -> int:
    """``value`` in whole milliseconds, rounded up so that a positive
    duration never becomes 0 (which the API reads as "the default")."""
    secs = seconds(value, what)
    ms = int(secs * 1000)
    if ms < secs * 1000:
        ms += 1
    return ms
