"""The ``/networks`` endpoints: user networks, and the built-in bridge, host and none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rctr.core.errors import Conflict

from ._http import HTTPError, Request
from ._network_records import BUILTIN

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["network_list", "network_inspect", "network_delete", "network_create",
           "network_connect", "network_disconnect", "network_prune"]


def network_list(daemon: Daemon, req: Request) -> None:
    filters = req.filters()
    items = [_builtin(n) for n in BUILTIN] + daemon.containers.networks.all()
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
    req.send_json([_view(daemon, n, False) for n in items])


def network_inspect(daemon: Daemon, req: Request) -> None:
    req.send_json(_view(daemon, _lookup(daemon, req.params["id"])))


def network_delete(daemon: Daemon, req: Request) -> None:
    ref = req.params["id"]
    if ref in BUILTIN:
        raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
    networks = daemon.containers.networks
    net = networks.get(ref)
    networks.remove(ref, _users(daemon, net["Name"]))
    daemon.events.emit("network", "destroy", net["Id"], {"name": net["Name"], "type": "bridge"})
    req.no_content()


def network_create(daemon: Daemon, req: Request) -> None:
    body = req.json({})
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    net = daemon.containers.networks.create(body)
    daemon.events.emit("network", "create", net["Id"], {"name": net["Name"], "type": "bridge"})
    req.send_json({"Id": net["Id"], "Warning": ""}, 201)


def network_connect(daemon: Daemon, req: Request) -> None:
    body = req.json({})
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise HTTPError(400, "the body needs Container: the container to connect")
    daemon.containers.connect(body["Container"], req.params["id"], body.get("EndpointConfig"))
    req.send(200, b"", content_type="text/plain")


def network_disconnect(daemon: Daemon, req: Request) -> None:
    body = req.json({})
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise HTTPError(400, "the body needs Container: the container to disconnect")
    daemon.containers.disconnect(body["Container"], req.params["id"], bool(body.get("Force")))
    req.send(200, b"", content_type="text/plain")


def network_prune(daemon: Daemon, req: Request) -> None:
    networks = daemon.containers.networks
    removed = []
    for net in networks.all():
        if not _users(daemon, net["Name"]):
            networks.remove(net["Id"], [])
            removed.append(net["Name"])
    req.send_json({"NetworksDeleted": removed})


def _members(daemon: Daemon, name: str) -> dict[str, dict[str, Any]]:
    """The containers on network ``name``, as inspect's ``Containers``."""
    out = {}
    for c in daemon.containers.all():
        endpoint = (c.record.network_settings.get("Networks") or {}).get(name)
        if endpoint is None or (name in BUILTIN and not c.running()):
            continue
        ip, prefix = endpoint.get("IPAddress") or "", endpoint.get("IPPrefixLen") or 0
        out[c.id] = {"Name": c.name, "EndpointID": "", "MacAddress": "",
                     "IPv4Address": f"{ip}/{prefix}" if ip else "", "IPv6Address": ""}
    return out


def _users(daemon: Daemon, name: str) -> list[str]:
    return [c.name for c in daemon.containers.all() if name in c.record.networks]


def _builtin(name: str) -> dict[str, Any]:
    return {"Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
            "Driver": BUILTIN[name], "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": "10.0.2.0/24", "Gateway": "10.0.2.2"}]
                     if name == "bridge" else []},
            "Internal": False, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Options": {"rctr.driver": "slirp4netns"} if name == "bridge" else {},
            "Labels": {}}


def _lookup(daemon: Daemon, ref: str) -> dict[str, Any]:
    if ref in BUILTIN:
        return _builtin(ref)
    net: dict[str, Any] = daemon.containers.networks.get(ref)
    return net


def _view(daemon: Daemon, net: dict[str, Any], with_members: bool = True) -> dict[str, Any]:
    return dict(net, Containers=_members(daemon, net["Name"]) if with_members else {})


def _label_match(labels: dict[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)
