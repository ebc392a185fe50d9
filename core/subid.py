"""Subordinate id ranges from /etc/subuid and /etc/subgid (shadow-utils format).

Each line is ``NAME_OR_UID:START:COUNT``; a user may have several lines.
"""

from __future__ import annotations

import os
import pwd

__all__ = ["subid_ranges", "all_ranges", "rootless_mappings", "SUBUID_FILE", "SUBGID_FILE"]

SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
_MAX_SUBIDS = 65536


def subid_ranges(path: str, uid: int | None = None) -> list[tuple[int, int]]:
    """The (start, count) ranges granted to the user ``uid`` (default: the caller)."""
    uid = os.getuid() if uid is None else uid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    keys = {str(uid), name}
    return [(start, count) for owner, start, count in _entries(path) if owner in keys]


def all_ranges(path: str) -> list[tuple[int, int]]:
    """Every user's (start, count): what a range given to a new user must not overlap."""
    return [(start, count) for _, start, count in _entries(path)]


def _entries(path: str) -> list[tuple[str, int, int]]:
    """The well-formed ``(owner, start, count)`` lines of ``path`` with ``count`` > 0."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            entries.append((parts[0], start, count))
    return entries


def rootless_mappings(
    host_id: int, subid_file: str, uid: int | None = None
) -> list[dict[str, int]]:
    """Container 0 -> ``host_id``, then 1..N -> the first subordinate range (if any)."""
    mappings = [{"containerID": 0, "hostID": host_id, "size": 1}]
    ranges = subid_ranges(subid_file, uid)
    if ranges:
        start, count = ranges[0]
        mappings.append({"containerID": 1, "hostID": start, "size": min(count, _MAX_SUBIDS)})
    return mappings
