"""The shapes netstack's plain dicts have, for the checker (import under TYPE_CHECKING).

They travel as JSON between the daemon, ``shim.json``, the link helper and
``net.json``, so they stay dicts at run time; these TypedDicts only name
their fields.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = ["PortMapping", "Link", "ShimNetwork", "NetInfo"]


class PortMapping(TypedDict):
    """One published port (see _ports); ``host_port_end`` is dropped once bound."""

    proto: str
    container_port: int
    host_ip: str
    host_port: int
    host_port_end: NotRequired[int]


class Link(TypedDict):
    """A veth from the container to a user network's bridge (see _links, LINK_FIELDS)."""

    bridge: str
    gateway: str
    prefix: int
    ip: str
    ifname: str
    mtu: int


class NetInfo(TypedDict):
    """``net.json`` and the ready line's ``network``: the network as set up."""

    netns: str
    ports: list[PortMapping]
    port_handler: str
    pids: list[int]


class ShimNetwork(TypedDict, total=False):
    """The ``network`` object of ``shim.json`` (see _sandbox); the sandbox checks it."""

    kind: str
    netns: str
    options: dict[str, object]
    args: list[str]
    ports: list[PortMapping]
    infra: str
    links: list[Link]
