"""Sizes, durations and times, read and printed the way docker's CLI does.

The printing mirrors ``github.com/docker/go-units`` (HumanSize, BytesSize,
HumanDuration) so that tables look like docker's; the parsing accepts Go's
duration syntax (``1m30s``) and docker's size suffixes (``512m``).
"""

from __future__ import annotations

import re
import time

__all__ = [
    "bytes_size",
    "human_duration",
    "human_size",
    "parse_bytes",
    "parse_duration",
    "parse_timestamp",
    "since",
]

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _custom(size: float, base: float, units: list[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def human_size(size: float, precision: int = 4) -> str:
    """Decimal units, as ``units.HumanSizeWithPrecision``: ``4.26MB``."""
    return _custom(float(size), 1000.0, _DECIMAL, precision)


def bytes_size(size: float) -> str:
    """Binary units, as ``units.BytesSize``: ``1.5MiB``."""
    return _custom(float(size), 1024.0, _BINARY, 4)


def human_duration(seconds: float) -> str:
    """``units.HumanDuration``: "Less than a second", "About a minute", "3 weeks"."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def since(timestamp: float | str, now: float | None = None) -> str:
    """"5 minutes ago" for a unix time or an RFC 3339 string."""
    ts = timestamp if isinstance(timestamp, (int, float)) else _rfc3339(timestamp)
    return human_duration((time.time() if now is None else now) - ts) + " ago"


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (``1m30s``, ``500ms``, ``1.5h``) to seconds."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b)?$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``units.RAMInBytes``: ``512m``, ``1g``, ``100k``, ``1.5GB``, in powers of 1024."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    power = " kmgtpe".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**power)


def _rfc3339(text: str) -> float:
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    # Python before 3.11 reads at most microseconds: cut nanoseconds.
    s = re.sub(r"(\.\d{6})\d+", r"\1", s)
    from datetime import datetime, timezone  # here: not on rctr run's path

    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_timestamp(text: str, now: float | None = None) -> str:
    """``--since``/``--until`` values to the API's unix time string.

    Docker accepts a unix time (``1700000000.5``), an RFC 3339 date or date-time,
    or a Go duration counted back from now (``10m``).
    """
    s = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return s
    current = time.time() if now is None else now
    try:
        return f"{current - parse_duration(s):.9f}".rstrip("0").rstrip(".")
    except ValueError:
        pass
    try:
        return f"{_rfc3339(s):.9f}".rstrip("0").rstrip(".")
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use a unix time, RFC 3339 or a duration"
                         " like 10m") from None
