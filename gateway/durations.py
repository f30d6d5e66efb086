"""Durations as written in the config file: seconds as a number, or ``20s``, ``5m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(value: object) -> timedelta:
    """Read a duration; raise ValueError with a message fit for the user."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 20s, 5m, 1h30m)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return timedelta(seconds=float(text))
        if text and _WHOLE.fullmatch(text):
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
            return timedelta(seconds=seconds)
    raise ValueError(f"{value!r} is not a duration (use e.g. 20s, 5m, 1h30m)")


def format_duration(delta: timedelta) -> str:
    """The short form back: ``timedelta(hours=1, minutes=30)`` -> ``1h30m``."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
