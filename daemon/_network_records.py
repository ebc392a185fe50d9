"""User networks: records, subnets and addresses (``docker network create`` and friends).

A network is ``<datadir>/networks/ID.json`` in Docker's inspect shape (without
``Containers``, which is computed from the containers' records), written
atomically.  Subnets come from 10.89.1.0/24 upwards unless given; a
container's address is the lowest free one after the gateway, among the
containers that hold one on that network.  What a network is on the host
(a bridge in the infra namespace, veths) is rctr.netstack's ``_links``; the
bridge is made by the first container that starts on it.

The built-in ``bridge``, ``host`` and ``none`` are listed, not stored: they
are modes (``bridge`` is the default, slirp4netns) rather than networks.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import threading
from typing import Any

from rctr.core.atomic import write_json_atomic
from rctr.core.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

from ._logs import format_time

__all__ = ["Networks", "BUILTIN", "bridge_name"]

BUILTIN = {"bridge": "bridge", "host": "host", "none": "null"}
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_POOL = ipaddress.IPv4Network("10.89.0.0/16")


def bridge_name(network_id: str) -> str:
    return f"rctr-{network_id[:8]}"  # 13 characters: an interface name has 15 at most


class Networks:
    def __init__(self, root: str) -> None:
        self.root = root
        self.lock = threading.RLock()
        os.makedirs(root, mode=0o700, exist_ok=True)

    def _path(self, network_id: str) -> str:
        return os.path.join(self.root, f"{network_id}.json")

    def all(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(os.listdir(self.root)):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.root, name)) as f:
                        out.append(json.load(f))
                except (OSError, ValueError):
                    continue
        return out

    def get(self, ref: str) -> dict[str, Any]:
        """A user network by name, full id or unique id prefix."""
        nets = self.all()
        for key in ("Name", "Id"):
            for n in nets:
                if n[key] == ref:
                    return n
        found = [n for n in nets if ref and n["Id"].startswith(ref)]
        if len(found) == 1:
            return found[0]
        raise NotFound(f"network {ref} not found")

    def exists(self, ref: str) -> bool:
        try:
            self.get(ref)
        except NotFound:
            return False
        return True

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if name in BUILTIN:
            raise Conflict(f"{name} is a pre-defined network and cannot be created")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported (bridge)")
        if body.get("EnableIPv6"):
            raise InvalidArgument("IPv6 user networks are not supported yet")
        with self.lock:
            if any(n["Name"] == name for n in self.all()):
                raise AlreadyExists(f"network with name {name} already exists")
            subnet, gateway = self._subnet(body.get("IPAM") or {})
            network_id = secrets.token_hex(32)
            record = {
                "Name": name, "Id": network_id, "Created": format_time(), "Scope": "local",
                "Driver": "bridge", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": {},
                         "Config": [{"Subnet": str(subnet), "Gateway": str(gateway)}]},
                "Internal": bool(body.get("Internal")), "Attachable": bool(body.get("Attachable")),
                "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": dict(body.get("Options") or {}),
                "Labels": dict(body.get("Labels") or {}),
            }
            write_json_atomic(self._path(network_id), record, 0o600)
        return record

    def _subnet(self, ipam: dict[str, Any]) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
        taken = [ipaddress.IPv4Network(n["IPAM"]["Config"][0]["Subnet"]) for n in self.all()]
        configs = ipam.get("Config") or []
        if configs:
            cfg = configs[0] or {}
            try:
                subnet = ipaddress.IPv4Network(cfg.get("Subnet") or "", strict=True)
            except ValueError as exc:
                raise InvalidArgument(f"invalid subnet {cfg.get('Subnet')!r}: {exc}") from None
            if subnet.prefixlen > 29:
                raise InvalidArgument(f"subnet {subnet} is too small (/29 at most)")
            if any(subnet.overlaps(t) for t in taken):
                raise Conflict(f"subnet {subnet} overlaps the subnet of another network")
            try:
                gateway = ipaddress.IPv4Address(cfg.get("Gateway") or str(subnet.network_address + 1))
            except ValueError as exc:
                raise InvalidArgument(f"invalid gateway: {exc}") from None
            if gateway not in subnet:
                raise InvalidArgument(f"gateway {gateway} is not in subnet {subnet}")
            return subnet, gateway
        for candidate in list(_POOL.subnets(new_prefix=24))[1:]:
            if not any(candidate.overlaps(t) for t in taken):
                return candidate, candidate.network_address + 1
        raise Conflict("no free subnet left in 10.89.0.0/16: remove a network or give --subnet")

    def remove(self, ref: str, users: list[str]) -> None:
        net = self.get(ref)
        if users:
            raise Conflict(f"error while removing network: network {net['Name']} id {net['Id']} "
                           f"has active endpoints ({', '.join(users)})",
                           hint="disconnect or remove those containers first")
        with self.lock:
            try:
                os.unlink(self._path(net["Id"]))
            except FileNotFoundError:
                pass

    @staticmethod
    def allocate(net: dict[str, Any], taken: set[str], wanted: str | None = None) -> str:
        """An address for a container on ``net``: ``wanted`` if free, else the lowest free."""
        cfg = net["IPAM"]["Config"][0]
        subnet = ipaddress.IPv4Network(cfg["Subnet"])
        gateway = cfg["Gateway"]
        if wanted:
            addr = ipaddress.IPv4Address(wanted)
            if addr not in subnet or str(addr) in (gateway, *taken):
                raise Conflict(f"address {wanted} is not free in network {net['Name']} ({subnet})")
            return str(addr)
        for host in subnet.hosts():
            if str(host) != gateway and str(host) not in taken:
                return str(host)
        raise Conflict(f"no free address left in network {net['Name']} ({subnet})")
