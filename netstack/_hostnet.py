"""The host's own IPv4 setup, read without netlink: what pasta copies into a namespace.

``/proc/net/route`` gives the default route's interface and gateway, and two
ioctls give that interface's address; pyroute2 would take 150 ms and 25 MB
to import into the daemon for the same three values.
"""

from __future__ import annotations

import socket
import struct

from rctr.core.linux import interface_ipv4

__all__ = ["default_route"]


def default_route(table: str = "/proc/net/route") -> dict[str, object] | None:
    """``{"interface", "gateway", "ip", "prefix"}`` of the IPv4 default route, or None."""
    try:
        with open(table) as f:
            rows = [line.split() for line in f.read().splitlines()[1:]]
    except OSError:
        return None
    for row in rows:
        if len(row) >= 8 and row[1] == "00000000" and row[7] == "00000000":
            gateway = socket.inet_ntoa(struct.pack("<I", int(row[2], 16)))
            found = interface_ipv4(row[0])
            ip, prefix = found if found else ("", 0)
            return {"interface": row[0], "gateway": gateway, "ip": ip, "prefix": prefix}
    return None
