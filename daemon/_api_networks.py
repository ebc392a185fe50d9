"""The ``/networks`` endpoints: user networks, and the built-in bridge, host and none."""

from __future__ import annotations

from typing import Any

from rctr.core.errors import Conflict

from ._http import HTTPError, Request, Router
from ._network_records import BUILTIN

__all__ = ["register"]


def register(router: Router, daemon: Any) -> None:
    containers = daemon.containers
    networks = containers.networks

    def members(name: str) -> dict[str, dict[str, Any]]:
        out = {}
        for c in containers.all():
            endpoint = (c.record.network_settings.get("Networks") or {}).get(name)
            if endpoint is None or (name in BUILTIN and not c.running()):
                continue
            ip, prefix = endpoint.get("IPAddress") or "", endpoint.get("IPPrefixLen") or 0
            out[c.id] = {"Name": c.name, "EndpointID": "", "MacAddress": "",
                         "IPv4Address": f"{ip}/{prefix}" if ip else "", "IPv6Address": ""}
        return out

    def users(name: str) -> list[str]:
        return [c.name for c in containers.all() if name in c.record.networks]

    def builtin(name: str) -> dict[str, Any]:
        return {"Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
                "Driver": BUILTIN[name], "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None,
                         "Config": [{"Subnet": "10.0.2.0/24", "Gateway": "10.0.2.2"}]
                         if name == "bridge" else []},
                "Internal": False, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": {"rctr.driver": "slirp4netns"} if name == "bridge" else {},
                "Labels": {}}

    def lookup(ref: str) -> dict[str, Any]:
        if ref in BUILTIN:
            return builtin(ref)
        net: dict[str, Any] = networks.get(ref)
        return net

    def view(net: dict[str, Any], with_members: bool = True) -> dict[str, Any]:
        return dict(net, Containers=members(net["Name"]) if with_members else {})

    @router.route("GET", "/networks")
    def list_networks(req: Request) -> None:
        filters = req.filters()
        items = [builtin(n) for n in BUILTIN] + networks.all()
        for key, field in (("name", "Name"), ("id", "Id"), ("driver", "Driver")):
            wanted = filters.get(key)
            if wanted:
                items = [n for n in items if any(w in n[field] if key != "driver" else w == n[field]
                                                 for w in wanted)]
        if filters.get("label"):
            items = [n for n in items if all(_label_match(n.get("Labels") or {}, w)
                                             for w in filters["label"])]
        if filters.get("type"):
            kinds = filters["type"]
            items = [n for n in items if ("builtin" if n["Name"] in BUILTIN else "custom") in kinds]
        req.send_json([view(n, False) for n in items])

    @router.route("GET", "/networks/{id}")
    def inspect(req: Request) -> None:
        req.send_json(view(lookup(req.params["id"])))

    @router.route("POST", "/networks/create")
    def create(req: Request) -> None:
        body = req.json({})
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        net = networks.create(body)
        daemon.events.emit("network", "create", net["Id"], {"name": net["Name"], "type": "bridge"})
        req.send_json({"Id": net["Id"], "Warning": ""}, 201)

    @router.route("DELETE", "/networks/{id}")
    def remove(req: Request) -> None:
        ref = req.params["id"]
        if ref in BUILTIN:
            raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
        net = networks.get(ref)
        networks.remove(ref, users(net["Name"]))
        daemon.events.emit("network", "destroy", net["Id"], {"name": net["Name"], "type": "bridge"})
        req.no_content()

    @router.route("POST", "/networks/{id}/connect")
    def connect(req: Request) -> None:
        body = req.json({})
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise HTTPError(400, "the body needs Container: the container to connect")
        containers.connect(body["Container"], req.params["id"], body.get("EndpointConfig"))
        req.send(200, b"", content_type="text/plain")

    @router.route("POST", "/networks/{id}/disconnect")
    def disconnect(req: Request) -> None:
        body = req.json({})
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise HTTPError(400, "the body needs Container: the container to disconnect")
        containers.disconnect(body["Container"], req.params["id"], bool(body.get("Force")))
        req.send(200, b"", content_type="text/plain")

    @router.route("POST", "/networks/prune")
    def prune(req: Request) -> None:
        removed = []
        for net in networks.all():
            if not users(net["Name"]):
                networks.remove(net["Id"], [])
                removed.append(net["Name"])
        req.send_json({"NetworksDeleted": removed})


def _label_match(labels: dict[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)
