"""Subordinate id ranges from /etc/subuid and /etc/subgid (shadow-utils format).

Each line is ``NAME_OR_UID:START:COUNT``; a user may have several lines.
"""

from __future__ import annotations

import os
import pwd

__all__ = ["subid_ranges", "rootless_mappings", "SUBUID_FILE", "SUBGID_FILE"]

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
    ranges: list[tuple[int, int]] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return ranges
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in keys:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


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
