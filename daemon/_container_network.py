"""The daemon's side of a container's network: what to ask the shim, what to report.

- ``check_default`` (daemon start) / ``resolve_default`` (create): the configured
  default network (rctr.toml ``[network] default``) is a mode a container can
  have, and a request that names no network gets it, written into its
  ``HostConfig.NetworkMode``: a later change of the setting does not change
  existing containers (a stored ``default`` always means the built-in slirp4netns);
- ``check`` (create): the ``NetworkMode`` and the published ports are valid;
- ``plan`` (start): which namespace the spec joins, the ``network`` object of
  ``shim.json`` (the shim runs it: see ``rctr.netstack``), the addresses;
- ``write_files`` (start): the container's ``/etc/hosts``, ``/etc/resolv.conf``
  and ``/etc/hostname``;
- ``settings`` / ``cleared``: ``NetworkSettings`` as Docker reports it while the
  container runs, and after it stopped.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from rctr import netstack
from rctr.core.errors import Conflict, InvalidArgument, NotFound

from ._record import Endpoint, Record

__all__ = ["check", "check_default", "resolve_default", "network_name", "plan", "write_files",
           "settings", "cleared", "NetPlan", "empty_settings"]

_LOCALHOST = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")
PASTA_DNS = "169.254.1.1"  # answered by pasta (--dns-forward) when the host's resolver is local


USER_NET_MTU = 65520  # veths and bridges: as slirp4netns's tap, fewer and larger packets


def check_default(value: str) -> str | None:
    """What is wrong with ``value`` as the default network, or None.  A user network
    named here must exist when a container is created, not when the daemon starts."""
    try:
        mode = netstack.parse_mode(value)
    except InvalidArgument as exc:
        return exc.message
    if mode["kind"] == "container":
        return f"{value!r} cannot be every container's network"
    return None


def resolve_default(body: Any, default: str | None) -> None:
    """Write ``default`` into a create request that names no network (in place)."""
    if not default or default in netstack.DEFAULT_MODES or not isinstance(body, dict):
        return
    host = body.get("HostConfig")
    if host is None:
        host = body["HostConfig"] = {}
    if isinstance(host, dict) and (host.get("NetworkMode") or "") in netstack.DEFAULT_MODES:
        host["NetworkMode"] = default


def check(host: dict[str, Any], config: dict[str, Any],
          network_exists: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Refuse what cannot work; the warnings for what is accepted but ignored."""
    mode = netstack.parse_mode(host.get("NetworkMode"))
    if mode["kind"] == "network" and not network_exists(str(mode["name"])):
        raise NotFound(f"network {mode['name']} not found",
                       hint=f"create it first (rctr network create {mode['name']}), or use the "
                            "default network, slirp4netns, pasta, none, host or container:NAME")
    mappings = netstack.mappings_of(host.get("PortBindings"), bool(host.get("PublishAllPorts")),
                                    config.get("ExposedPorts"))
    if not mappings:
        return []
    if mode["kind"] == "container":
        raise InvalidArgument("conflicting options: port publishing and the container type "
                              "network mode")
    if mode["kind"] in ("host", "none"):
        return [f"published ports are discarded when using the {mode['kind']} network mode"]
    return []


def network_name(mode_value: str | None) -> str | None:
    """The key of ``NetworkSettings.Networks``: Docker's ``bridge`` for the default."""
    mode = netstack.parse_mode(mode_value)
    if mode.get("default"):
        return "bridge"
    if mode["kind"] == "container":
        return None
    return str(mode.get("name") or mode["kind"])


def empty_settings(mode_value: str | None,
                   user_networks: dict[str, Endpoint] | None = None) -> dict[str, Any]:
    """``NetworkSettings`` with no addresses; ``user_networks``: the container's endpoints
    on the user networks it is on, by network name."""
    name = network_name(mode_value)
    networks = {name: _endpoint(name, "", 0, "")} if name else {}
    for net_name, wanted in (user_networks or {}).items():
        networks[net_name] = _endpoint(wanted.network_id or net_name, "", 0, "", wanted.aliases)
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": networks}


def _endpoint(network_id: str, ip: str, prefix: int, gateway: str,
              aliases: list[str] | None = None) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": aliases or None,
            "NetworkID": network_id,
            "EndpointID": "", "Gateway": gateway, "IPAddress": ip, "IPPrefixLen": prefix,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": None}


class NetPlan:
    """One start's network: the namespace, the shim's part, the addresses, the files."""

    def __init__(self, mode: dict[str, Any]) -> None:
        self.mode = mode
        self.netns: str | None = None  # the spec joins this; None: the host's namespace
        self.shim: dict[str, Any] | None = None
        self.ip = ""
        self.prefix = 0
        self.gateway = ""
        self.dns: list[str] = []
        self.files_of: dict[str, str] | None = None  # container:NAME shares NAME's files
        self.links: list[dict[str, Any]] = []  # user networks: see netstack's _links
        self.peers: list[tuple[str, str]] = []  # (address, names) on the same user networks


def plan(record: Record, shim_dir: str, running: Callable[[str], Record],
         links: list[dict[str, Any]] | None = None, infra: str = "") -> NetPlan:
    """The network for starting ``record``; ``running(ref)`` is another running container's
    record (for ``container:NAME``), or raises.  ``links``: the container's endpoints on
    user networks, addresses allocated (``{"network", "bridge", "gateway", "prefix",
    "ip", "ifname", "mtu", "aliases", "internal"}``)."""
    mode: dict[str, Any] = netstack.parse_mode(record.host_config.get("NetworkMode"))
    p = NetPlan(_way_out(mode, links or []) if mode["kind"] == "network" else mode)
    p.links = list(links or [])
    kind = p.mode["kind"]
    if kind == "host":
        return p
    if kind == "container":
        _join(p, record, running(str(p.mode["target"])))
        return p
    p.netns = os.path.join(shim_dir, "netns")
    p.shim = _shim_network(record, p, infra)
    if kind == "slirp4netns":
        addrs: dict[str, Any] = netstack.slirp_addresses(str(p.mode["options"]["cidr"]))
        p.ip, p.prefix, p.gateway = str(addrs["ip"]), int(addrs["prefix"]), str(addrs["gateway"])
        p.dns = [str(addrs["dns"])]
    elif kind == "pasta":
        _pasta_addresses(p, p.shim)
    return p


def _way_out(mode: dict[str, Any], links: list[dict[str, Any]]) -> dict[str, Any]:
    """A user network's mode: the way out is the container's own slirp4netns, none if every
    network it is on is internal."""
    outside = not all(link.get("internal") for link in links)
    return dict(netstack.parse_mode("slirp4netns" if outside else "none"), name=mode["name"])


def _join(p: NetPlan, record: Record, other: Record) -> None:
    """``container:NAME``: NAME's namespace, addresses and files."""
    if other.id == record.id:
        raise InvalidArgument("cannot join a container's own network namespace")
    theirs = other.network_settings
    p.netns = theirs.get("SandboxKey") or None
    p.ip, p.prefix, p.gateway = theirs.get("IPAddress", ""), theirs.get("IPPrefixLen", 0), \
        theirs.get("Gateway", "")
    p.files_of = {"hosts": other.hosts_path, "resolv.conf": other.resolv_conf_path}


def _shim_network(record: Record, p: NetPlan, infra: str) -> dict[str, Any]:
    """The ``network`` object of ``shim.json``: the namespace the shim makes, and its ports."""
    host = record.host_config
    mappings = netstack.mappings_of(host.get("PortBindings"), bool(host.get("PublishAllPorts")),
                                    record.config.get("ExposedPorts"))
    if p.mode["kind"] == "none":
        mappings = []
    netstack.check_unprivileged(mappings)
    shim: dict[str, Any] = {"kind": p.mode["kind"], "netns": p.netns,
                            "options": dict(p.mode.get("options") or {}),
                            "args": list(p.mode.get("args") or []), "ports": mappings}
    if p.links:
        shim["infra"] = infra
        shim["links"] = shim_links(p.links)
    return shim


def _pasta_addresses(p: NetPlan, shim: dict[str, Any]) -> None:
    """pasta copies the host's address and route; its DNS is the host's, or pasta's
    forwarder when the host's resolver is local (out of the container's reach)."""
    route: dict[str, Any] = netstack.default_route() or {}
    p.ip, p.prefix = str(route.get("ip") or ""), int(route.get("prefix") or 0)
    p.gateway = str(route.get("gateway") or "")
    p.dns = _nameservers(_read("/etc/resolv.conf").splitlines())
    if not p.dns and "--dns-forward" not in shim["args"]:
        shim["args"] += ["--dns-forward", PASTA_DNS]
        p.dns = [PASTA_DNS]


def shim_links(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The part of the daemon's links that the shim (or the link helper) is given."""
    return [{k: link[k] for k in netstack.LINK_FIELDS} for link in links]


def running_record(lookup: Callable[[str], Any]) -> Callable[[str], Record]:
    """``plan``'s ``running`` from the daemon's container lookup."""
    def get(ref: str) -> Record:
        try:
            other = lookup(ref)
        except NotFound:
            raise NotFound(f"cannot join the network of {ref}: no such container") from None
        if not other.running():
            raise Conflict(f"cannot join the network of a container that is not running: {ref}",
                           hint=f"start it first (rctr start {ref})")
        record: Record = other.record
        return record
    return get


# -- files -----------------------------------------------------------------------------------

def write_files(record: Record, p: NetPlan) -> None:
    """``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf`` for this start."""
    config, host = record.config, record.host_config
    hostname = config.get("Hostname") or record.id[:12]
    name = record.name
    _write(record.hostname_path, hostname + "\n")
    if p.files_of is not None:
        hosts, resolv = _read(p.files_of["hosts"]), _read(p.files_of["resolv.conf"])
    else:
        hosts = _hosts(p, hostname, name, host.get("ExtraHosts") or [])
        resolv = _resolv(p, host.get("Dns") or [], host.get("DnsSearch") or [],
                         host.get("DnsOptions") or [])
    _write(record.hosts_path, hosts)
    _write(record.resolv_conf_path, resolv)


def _hosts(p: NetPlan, hostname: str, name: str, extra: list[str]) -> str:
    if p.mode["kind"] == "host":
        hosts = _read("/etc/hosts")
    else:
        names = hostname if name in ("", hostname) else f"{hostname} {name}"
        own = p.links[0]["ip"] if p.links and p.mode.get("name") else p.ip
        hosts = _LOCALHOST + f"{own or '127.0.1.1'}\t{names}\n"
        hosts += _peer_lines(p.peers)
        if p.mode["kind"] == "slirp4netns" and p.mode["options"].get("allow_host_loopback"):
            hosts += f"{p.gateway}\thost.containers.internal host.docker.internal\n"
    for entry in extra:
        entry_name, _, addr = entry.partition(":")
        hosts += f"{addr}\t{entry_name}\n"
    return hosts


_PEER = "  # rctr: on a shared network"


def _peer_lines(peers: list[tuple[str, str]]) -> str:
    return "".join(f"{addr}\t{names}{_PEER}\n" for addr, names in peers)


def rewrite_peers(record: Record, peers: list[tuple[str, str]]) -> None:
    """Replace the peer lines of a running container's /etc/hosts (in place: bind-mounted)."""
    with open(record.hosts_path, "r+") as f:
        kept = [ln for ln in f.read().splitlines(keepends=True) if not ln.rstrip().endswith(_PEER.strip())]
        f.seek(0)
        f.write("".join(kept) + _peer_lines(peers))
        f.truncate()


def _resolv(p: NetPlan, dns: list[str], search: list[str], options: list[str]) -> str:
    host_lines = _read("/etc/resolv.conf").splitlines()
    if p.mode["kind"] == "host":
        servers = _nameservers(host_lines, loopback=True)
    elif p.mode["kind"] == "none":
        servers = []
    else:
        servers = p.dns or _nameservers(host_lines)
    if dns:
        servers = list(dns)
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    for ln in host_lines:
        word = ln.split()[0] if ln.split() else ""
        if word in ("search", "domain") and not search or word == "options" and not options:
            lines.append(ln)
    return "\n".join(lines) + "\n"


def _nameservers(lines: list[str], loopback: bool = False) -> list[str]:
    """The nameservers of resolv.conf ``lines``; without loopback ones unless asked: another
    network namespace cannot reach the host's loopback resolver."""
    out = []
    for ln in lines:
        parts = ln.split()
        if len(parts) > 1 and parts[0] == "nameserver" \
                and (loopback or not parts[1].startswith(("127.", "::1"))):
            out.append(parts[1])
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    # In place, not renamed: a running container has the file bind-mounted.
    with open(path, "w") as f:
        f.write(text)


# -- reporting ---------------------------------------------------------------------------------

def settings(record: Record, p: NetPlan, reply: dict[str, Any] | None) -> dict[str, Any]:
    """``NetworkSettings`` of a started container (``reply``: the shim's ``network``)."""
    users = record.networks
    out = empty_settings(record.host_config.get("NetworkMode"), users)
    out.update({"SandboxKey": p.netns or "", "IPAddress": p.ip, "IPPrefixLen": p.prefix,
                "Gateway": p.gateway})
    mappings = list((reply or {}).get("ports") or [])
    out["Ports"] = netstack.docker_ports(mappings, record.config.get("ExposedPorts")) \
        if p.mode["kind"] not in ("host", "container") else {}
    by_name = {link["network"]: link for link in p.links}
    for name, endpoint in out["Networks"].items():
        link = by_name.get(name)
        if link is not None:
            endpoint.update({"IPAddress": link["ip"], "IPPrefixLen": link["prefix"],
                             "Gateway": link["gateway"], "NetworkID": link["network_id"],
                             "Aliases": users[name].aliases or None if name in users else None})
        elif name not in users:
            endpoint.update(_endpoint(name, p.ip, p.prefix, p.gateway))
    if p.mode.get("name") and p.links:  # on a user network, its address is the container's
        first = p.links[0]
        out.update({"IPAddress": first["ip"], "IPPrefixLen": first["prefix"],
                    "Gateway": first["gateway"]})
    return out


def cleared(record: Record) -> dict[str, Any]:
    """``NetworkSettings`` once the container stopped: no ports, no addresses."""
    return empty_settings(record.host_config.get("NetworkMode"), record.networks)


def hosts_line(record: Record, network: str) -> tuple[str, str] | None:
    """(address, names) of a running container on ``network``, for its peers' /etc/hosts:
    its name, its aliases there and its hostname."""
    endpoint = (record.network_settings.get("Networks") or {}).get(network) or {}
    if not endpoint.get("IPAddress"):
        return None
    names = [record.name, *(endpoint.get("Aliases") or []), record.config.get("Hostname") or ""]
    unique = list(dict.fromkeys(n for n in names if n))
    return endpoint["IPAddress"], " ".join(unique)
