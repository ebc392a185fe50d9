"""User networks: a container's endpoints, its addresses on them, its peers' names.

The endpoints a container asks for are in its record (``Record.networks``); an
address is allocated at each start and reserved in ``Context.reserved`` until the start
ends (the running containers' addresses are in their ``NetworkSettings``).
"""

from __future__ import annotations

from typing import Any

from rctr import netstack
from rctr.core.errors import Conflict, InvalidArgument, NotFound

from .. import _container_network
from .._network_records import bridge_name
from .._record import Endpoint, JSON
from ._context import Container, Context

__all__ = ["allocate_links", "connect", "disconnect", "endpoints_of", "peers_of", "refresh_hosts",
           "release_links"]


def connect(ctx: Context, ref: str, network: str, endpoint: object = None) -> None:
    """``docker network connect``: on the network from the next start, at once if running."""
    c = ctx.get(ref)
    net = ctx.networks.get(network)
    mode = netstack.parse_mode(c.record.host_config.get("NetworkMode"))
    if mode["kind"] in ("host", "none", "container"):
        raise Conflict(f"container {c.name} is in the {mode['kind']} network mode: it cannot "
                       "join a user network")
    with c.lock:
        nets = c.record.networks
        if net["Name"] in nets:
            raise Conflict(f"endpoint with name {c.name} already exists in network "
                           f"{net['Name']}")
        wanted = _wanted_endpoint(net, endpoint)
        if c.running():
            _plug(ctx, c, net["Name"], wanted, len(nets))
        nets[net["Name"]] = wanted
        if not c.running():
            c.record.network_settings = _container_network.cleared(c.record)
        ctx.save(c)
    refresh_hosts(ctx, [net["Name"]])
    ctx.events.emit("network", "connect", net["Id"],
                    {"container": c.id, "name": net["Name"], "type": "bridge"})


def _plug(ctx: Context, c: Container, name: str, wanted: Endpoint, index: int) -> None:
    """Connect a running container: a veth now, through the link helper (the daemon
    has threads: no fork here)."""
    ifnames = {f"eth{i}" for i in range(16)} - {
        e.ifname for e in c.record.networks.values()}
    with ctx.lock:
        link = _link(ctx, c, name, wanted, index)
    try:
        link["ifname"] = f"eth{index}" if f"eth{index}" in ifnames else min(ifnames)
        netns = c.record.network_settings.get("SandboxKey")
        if not netns:
            raise Conflict(f"container {c.name} has no network namespace of its own")
        netstack.attach_in_helper(ctx.paths.infra_netns, netns,
                                  _container_network.shim_links([link]))
    finally:
        release_links(ctx, [link])
    wanted.ifname = link["ifname"]
    c.record.network_settings["Networks"][name] = {
        **_container_network.empty_settings(None, {name: wanted})["Networks"][name],
        "IPAddress": link["ip"], "IPPrefixLen": link["prefix"], "Gateway": link["gateway"]}


def disconnect(ctx: Context, ref: str, network: str, force: bool = False) -> None:
    c = ctx.get(ref)
    try:
        name = ctx.networks.get(network)["Name"]
    except NotFound:
        if not force:
            raise
        name = network
    with c.lock:
        nets = c.record.networks
        if name not in nets:
            raise NotFound(f"container {c.name} is not connected to network {name}")
        if c.running():
            netns = c.record.network_settings.get("SandboxKey")
            ifname = nets[name].ifname or f"eth{list(nets).index(name)}"
            if netns:
                netstack.detach_in_helper(netns, ifname)
        del nets[name]
        c.record.network_settings["Networks"].pop(name, None)
        ctx.save(c)
    refresh_hosts(ctx, [name])
    ctx.events.emit("network", "disconnect", network,
                    {"container": c.id, "name": name, "type": "bridge"})


def endpoints_of(ctx: Context, host: JSON, networking: Any) -> dict[str, Endpoint]:
    """The user networks a new container is on: its mode's, and ``NetworkingConfig``'s."""
    wanted = dict((networking or {}).get("EndpointsConfig") or {}) \
        if isinstance(networking, dict) else {}
    mode = netstack.parse_mode(host.get("NetworkMode"))
    if mode["kind"] == "network":
        wanted.setdefault(str(mode["name"]), {})
    out = {}
    for ref, endpoint in wanted.items():
        if netstack.parse_mode(ref)["kind"] != "network":
            continue  # a mode (bridge, host, pasta, container:X...), not a user network
        net = ctx.networks.get(ref)
        out[net["Name"]] = _wanted_endpoint(net, endpoint)
    return out


def allocate_links(ctx: Context, c: Container) -> list[JSON]:
    """An address on each of the container's user networks, reserved until the start ends."""
    links = []
    with ctx.lock:
        try:
            for index, (name, endpoint) in enumerate(c.record.networks.items()):
                links.append(_link(ctx, c, name, endpoint, index))
                endpoint.ifname = links[-1]["ifname"]
        except BaseException:
            release_links(ctx, links)
            raise
    return links


def _link(ctx: Context, c: Container, name: str, endpoint: Endpoint,
          index: int) -> JSON:
    try:
        net = ctx.networks.get(endpoint.network_id or name)
    except NotFound:
        raise NotFound(f"network {name} not found: it was removed",
                       hint=f"disconnect the container from it (rctr network disconnect "
                            f"{name} {c.name})") from None
    taken = set(ctx.reserved.get(net["Id"], set()))
    for other in ctx.by_id.values():
        if other is not c and other.running():
            ip = ((other.record.network_settings.get("Networks") or {})
                  .get(net["Name"]) or {}).get("IPAddress")
            if ip:
                taken.add(ip)
    ip = ctx.networks.allocate(net, taken, endpoint.ipv4_address or None)
    ctx.reserved.setdefault(net["Id"], set()).add(ip)
    cfg = net["IPAM"]["Config"][0]
    return {"network": net["Name"], "network_id": net["Id"], "bridge": bridge_name(net["Id"]),
            "gateway": cfg["Gateway"], "prefix": int(cfg["Subnet"].rsplit("/", 1)[1]),
            "ip": ip, "ifname": f"eth{index}", "mtu": _container_network.USER_NET_MTU,
            "internal": bool(net.get("Internal"))}


def release_links(ctx: Context, links: list[JSON]) -> None:
    with ctx.lock:
        for link in links:
            ctx.reserved.get(link["network_id"], set()).discard(link["ip"])


def peers_of(ctx: Context, c: Container, names: list[str]) -> list[tuple[str, str]]:
    """(address, names) of the other running containers on the networks ``names``."""
    peers = []
    for other in ctx.all():
        if other is c or not other.running():
            continue
        for name in names:
            line = _container_network.hosts_line(other.record, name)
            if line is not None:
                peers.append(line)
    return peers


def refresh_hosts(ctx: Context, names: list[str]) -> None:
    """Rewrite the peer lines of /etc/hosts of every running container on ``names``."""
    if not names:
        return
    for other in ctx.all():
        mine = set(other.record.networks)  # user networks only: not bridge
        if other.running() and mine & set(names):
            try:
                _container_network.rewrite_peers(other.record, peers_of(ctx, other, sorted(mine)))
            except OSError:
                pass  # its files went with it: a remove under way


def _wanted_endpoint(net: JSON, endpoint: object) -> Endpoint:
    """What a container asks of its endpoint on ``net``, from Docker's EndpointSettings
    (null for none); InvalidArgument where Go's JSON decoding of it would fail."""
    if endpoint is None:
        endpoint = {}
    if not isinstance(endpoint, dict):
        raise InvalidArgument("an endpoint's settings (EndpointConfig) must be a JSON object")
    aliases = endpoint.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidArgument("an endpoint's Aliases must be a list of names")
    ipam = endpoint.get("IPAMConfig") or {}
    if not isinstance(ipam, dict) or not isinstance(ipam.get("IPv4Address") or "", str):
        raise InvalidArgument("an endpoint's IPAMConfig must be a JSON object, its "
                              "IPv4Address a string")
    return Endpoint(net["Id"], list(aliases), ipam.get("IPv4Address") or "")
