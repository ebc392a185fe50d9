"""Ids and names that become path components: checked before they touch the disk."""

from __future__ import annotations

import re

from rctr.core.errors import InvalidArgument

__all__ = ["check_id"]

_ID_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,1024}$")


def check_id(value: str, what: str = "container id") -> str:
    if not isinstance(value, str) or not _ID_RE.match(value) or value in (".", ".."):
        raise InvalidArgument(f"invalid {what} {value!r}: use letters, digits and _ . + - only")
    return value
