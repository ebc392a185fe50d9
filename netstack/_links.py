"""User networks: a bridge per network in one shared namespace, a veth per container.

The user's **infra namespace** (``<rundir>/netns/infra``, a namespace file
like a container's) holds one bridge per user network, ``rctr-<id[:8]>``,
with the network's gateway address.  A container on the network gets a veth
pair: one end on the bridge, the other in its own namespace as ``eth0``
(``eth1``... for more networks) with its address.  Forwarding stays off in
the infra namespace, so two networks never reach each other; the way out is
each container's own slirp4netns (its default route), not the bridge.

The netlink work goes through pyroute2, in a forked child that exits when it
is done: pyroute2 costs 25 MB and 150 ms to import, which no long-lived
process (shim, daemon, zygote) should carry.  The child moves itself between
the namespaces with ``setns``; a netlink socket keeps the namespace it was
opened in.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets

from rctr.core import linux
from rctr.core.errors import Unavailable

from ._netns import create_netns, is_netns
from ._spawn import run_in_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from ._types import Link

__all__ = ["attach", "attach_in_helper", "detach_in_helper", "ensure_infra", "LINK_FIELDS",
           "LINK_TIMEOUT"]

LINK_TIMEOUT = 60.0  # seconds the helper interpreter may take
# What a link is, as the shim and the helper take it (the daemon's links carry more).
LINK_FIELDS = ("bridge", "gateway", "prefix", "ip", "ifname", "mtu")


def ensure_infra(path: str) -> None:
    """The infra namespace at ``path``, made once (under a lock: shims start at once)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_netns(path):
            return
        if os.path.exists(path):  # an empty file: the pause process (and the mount) went
            os.unlink(path)
        create_netns(path)


def attach(infra: str, netns: str, links: list[Link]) -> None:
    """Plug the namespace ``netns`` into each link's bridge: ``{"bridge", "gateway",
    "prefix", "ip", "ifname", "mtu"}``.  For a single-threaded caller (the shim)."""
    run_in_child("setting up the container's network links", _attach, infra, netns, links)


def attach_in_helper(infra: str, netns: str, links: Sequence[Mapping[str, object]]) -> None:
    """``attach`` for a caller with threads (the daemon), which should not fork: the same
    work in a fresh interpreter, which also makes the infra namespace if it is missing."""
    _helper("attach", infra, netns, json.dumps(links))


def detach_in_helper(netns: str, ifname: str) -> None:
    """Unplug ``ifname`` (deleting one end of a veth deletes both), from a fresh interpreter."""
    _helper("detach", netns, ifname)


def _helper(*args: str) -> None:
    import subprocess

    from rctr.core.launch import argv

    r = subprocess.run(argv("links", *args),
                       capture_output=True, text=True, timeout=LINK_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise Unavailable(f"changing the container's network links: "
                      f"{r.stderr.strip()[-500:] or r.returncode}")


def _attach(infra: str, netns: str, links: list[Link]) -> None:  # pragma: no cover
    from pyroute2 import IPRoute

    infra_fd = os.open(infra, os.O_RDONLY | os.O_CLOEXEC)
    ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    linux.setns(infra_fd, linux.CLONE_NEWNET)
    with IPRoute() as ipr:
        for link in links:
            bridge = _ensure_bridge(ipr, link)
            outside = "rv" + secrets.token_hex(6)
            ipr.link("add", ifname=outside, kind="veth", mtu=int(link["mtu"]),
                     peer={"ifname": str(link["ifname"]), "net_ns_fd": ns_fd})
            index = ipr.link_lookup(ifname=outside)[0]
            ipr.link("set", index=index, master=bridge, state="up")
    linux.setns(ns_fd, linux.CLONE_NEWNET)
    with IPRoute() as ipr:
        for link in links:
            index = ipr.link_lookup(ifname=str(link["ifname"]))[0]
            ipr.addr("add", index=index, address=str(link["ip"]), prefixlen=int(link["prefix"]))
            ipr.link("set", index=index, state="up")


# pyroute2 ships no type information: its IPRoute is Any to the checker.
def _ensure_bridge(ipr: Any, link: Link) -> int:  # pragma: no cover
    name = str(link["bridge"])
    found = ipr.link_lookup(ifname=name)
    if found:
        return int(found[0])
    ipr.link("add", ifname=name, kind="bridge", mtu=int(link["mtu"]))
    index = int(ipr.link_lookup(ifname=name)[0])
    ipr.addr("add", index=index, address=str(link["gateway"]), prefixlen=int(link["prefix"]))
    ipr.link("set", index=index, state="up")
    return index


def _detach(netns: str, ifname: str) -> None:  # pragma: no cover
    from pyroute2 import IPRoute

    ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    linux.setns(ns_fd, linux.CLONE_NEWNET)
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            ipr.link("del", index=found[0])


def main(argv: list[str]) -> int:  # pragma: no cover - the daemon's way in (it has threads)
    """``python -m rctr.netstack._links attach INFRA NETNS LINKS_JSON | detach NETNS IFNAME``."""
    import sys

    try:
        if argv[:1] == ["attach"] and len(argv) == 4:
            ensure_infra(argv[1])
            _attach(argv[1], argv[2], json.loads(argv[3]))
        elif argv[:1] == ["detach"] and len(argv) == 3:
            _detach(argv[1], argv[2])
        else:
            sys.stderr.write("usage: attach INFRA NETNS LINKS_JSON | detach NETNS IFNAME\n")
            return 2
    except Exception as exc:  # noqa: BLE001 - one line for the daemon's error message
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(sys.argv[1:]))
