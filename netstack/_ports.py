"""Published ports: Docker's ``PortBindings`` in, a flat list of mappings out.

A mapping is a dict (it travels in ``shim.json``)::

    {"proto": "tcp", "container_port": 80, "host_ip": "0.0.0.0",
     "host_port": 8080, "host_port_end": 8080}

``host_port`` 0 means "any free port"; a range (``-p 8000-8010:80``) means
"the first free one in it".  Once bound, ``host_port`` is the real port and
``host_port_end`` is dropped.
"""

from __future__ import annotations

import ipaddress

from rctr.core.errors import FailedPrecondition, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._types import PortMapping

__all__ = ["mappings_of", "check_unprivileged", "docker_ports", "unprivileged_port_start",
           "PROTOCOLS"]

PROTOCOLS = ("tcp", "udp")
_SYSCTL = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def mappings_of(bindings: dict[str, list[dict[str, str]] | None] | None, publish_all: bool,
                exposed: dict[str, object] | None) -> list[PortMapping]:
    """Every port to publish: the bindings, plus each exposed port with ``-P``."""
    out: list[PortMapping] = []
    bindings = dict(bindings or {})
    if publish_all:
        for key in exposed or {}:
            if not bindings.get(key):
                bindings[key] = [{"HostIp": "", "HostPort": ""}]
    for key, entries in bindings.items():
        port, proto = _port_key(key)
        for entry in entries or [{}]:
            if not isinstance(entry, dict):
                raise InvalidArgument(f"PortBindings[{key!r}]: each binding is an object "
                                      "with HostIp and HostPort")
            low, high = _host_ports(str(entry.get("HostPort") or ""), key)
            out.append({"proto": proto, "container_port": port,
                        "host_ip": _host_ip(str(entry.get("HostIp") or ""), key),
                        "host_port": low, "host_port_end": high})
    _check_duplicates(out)
    return out


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"published port {key!r}: protocol {proto!r} is not supported "
                              "(tcp or udp)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"published port {key!r}: the container port must be 1-65535")
    return int(port), proto


def _host_ports(text: str, key: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or not (hi or lo).isdigit():
        raise InvalidArgument(f"published port {key}: host port {text!r} is not a number")
    low, high = int(lo), int(hi or lo)
    if not 0 <= low <= high <= 65535:
        raise InvalidArgument(f"published port {key}: host port {text!r} is not in 0-65535")
    return low, high


def _host_ip(text: str, key: str) -> str:
    text = text.strip("[]")
    if not text:
        return "0.0.0.0"
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"published port {key}: host IP {text!r} is not an IP "
                              "address") from None
    return str(addr)


def _check_duplicates(mappings: list[PortMapping]) -> None:
    seen: dict[tuple[object, object, object], int] = {}
    for m in mappings:
        if m["host_port"] == 0 or m["host_port"] != m["host_port_end"]:
            continue
        spot = (m["proto"], m["host_ip"], m["host_port"])
        if spot in seen:
            raise InvalidArgument(f"host port {m['host_ip']}:{m['host_port']}/{m['proto']} is "
                                  "published twice: each host port can reach one container port")
        seen[spot] = 1


def unprivileged_port_start() -> int:
    """The lowest port an ordinary user may bind in this network namespace (1024 unless set)."""
    try:
        with open(_SYSCTL) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1024


def check_unprivileged(mappings: Sequence[PortMapping]) -> None:
    """Refuse host ports that an ordinary user cannot bind, saying how to allow them."""
    start = unprivileged_port_start()
    for m in mappings:
        port = int(m["host_port"])
        if 0 < port < start:
            raise FailedPrecondition(
                f"cannot publish port {port}: ports below {start} need root on this host "
                f"(net.ipv4.ip_unprivileged_port_start={start})",
                hint=f"publish a port from {start} up (-p {max(start, 8000) + port % 1000}:"
                     f"{m['container_port']}), or, as root, allow it: "
                     f"sysctl -w net.ipv4.ip_unprivileged_port_start={port}")


def docker_ports(mappings: Sequence[PortMapping],
                 exposed: dict[str, object] | None = None) -> dict[str, list[dict[str, str]] | None]:
    """``NetworkSettings.Ports``: every exposed port, with its host bindings or null."""
    ports: dict[str, list[dict[str, str]] | None] = {key: None for key in exposed or {}}
    for m in mappings:
        key = f"{m['container_port']}/{m['proto']}"
        entry = {"HostIp": str(m["host_ip"]), "HostPort": str(m["host_port"])}
        ports[key] = (ports.get(key) or []) + [entry]
    return ports
