"""``--network`` values: what each one asks for, checked before anything starts.

    default, bridge          the default mode (slirp4netns, with its defaults)
    slirp4netns[:K=V,...]    allow_host_loopback, cidr, mtu, enable_ipv6,
                             outbound_addr, port_handler (rctr | slirp4netns)
    pasta[:ARG,ARG,...]      extra arguments for pasta; port_handler is pasta's own
    none                     a network namespace with only ``lo``
    host                     the host's network namespace
    container:NAME           another running container's network namespace
    NAME                     a user network (``rctr network create``)

The result is plain data (a dict), because it travels to the shim in
``shim.json``: ``{"kind": ..., "options": {...}, "args": [...], "target": ...}``.
"""

from __future__ import annotations

import ipaddress

from rctr.core.errors import InvalidArgument

__all__ = ["parse_mode", "DEFAULT_MODES", "SLIRP_DEFAULTS", "PORT_HANDLERS", "slirp_addresses"]

DEFAULT_MODES = ("default", "bridge", "")  # what a value says when it names no network

SLIRP_DEFAULTS = {"allow_host_loopback": False, "cidr": "10.0.2.0/24", "mtu": 65520,
                  "enable_ipv6": False, "outbound_addr": "", "port_handler": "rctr"}
PORT_HANDLERS = {"slirp4netns": ("rctr", "slirp4netns"), "pasta": ("pasta", "rctr")}
# pasta arguments rctr sets itself: letting a user set them would break the contract.
_PASTA_OWN = ("-f", "--foreground", "--netns", "--userns", "--netns-only", "-P", "--pid",
              "--config-net", "-1", "--one-off", "--no-netns-quit", "--runas")
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def parse_mode(value: str | None) -> dict[str, object]:
    """The mode a ``--network`` value names; raises InvalidArgument with what would do."""
    text = (value or "default").strip()
    if text in DEFAULT_MODES:
        return {"kind": "slirp4netns", "options": dict(SLIRP_DEFAULTS), "default": True}
    if text in ("none", "host"):
        return {"kind": text}
    kind, sep, rest = text.partition(":")
    if kind == "container":
        if not rest:
            raise InvalidArgument("--network container: needs a container name or id "
                                  "(container:NAME)")
        return {"kind": "container", "target": rest}
    if kind == "slirp4netns":
        return {"kind": "slirp4netns", "options": _slirp_options(rest if sep else "")}
    if kind == "pasta":
        args = [a for a in rest.split(",") if a] if sep else []
        handler = "pasta"
        for a in list(args):
            if a.startswith("port_handler="):
                handler = a.partition("=")[2]
                args.remove(a)
        if handler not in PORT_HANDLERS["pasta"]:
            raise InvalidArgument(f"pasta: port_handler={handler!r}: use pasta or rctr")
        for a in args:
            if a.split("=", 1)[0] in _PASTA_OWN:
                raise InvalidArgument(f"pasta option {a!r} is set by rctr itself; leave it out")
        return {"kind": "pasta", "args": args, "options": {"port_handler": handler}}
    if sep:
        raise InvalidArgument(f"unknown network mode {kind!r}: use slirp4netns, pasta, none, "
                              "host, container:NAME or the name of a network")
    return {"kind": "network", "name": text}


def _slirp_options(text: str) -> dict[str, object]:
    options = dict(SLIRP_DEFAULTS)
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, eq, raw = item.partition("=")
        if key not in SLIRP_DEFAULTS or not eq:
            raise InvalidArgument(f"slirp4netns option {item!r}: use "
                                  + ", ".join(f"{k}=" for k in SLIRP_DEFAULTS))
        default = SLIRP_DEFAULTS[key]
        if isinstance(default, bool):
            if raw.lower() not in _BOOL_WORDS:
                raise InvalidArgument(f"slirp4netns option {key}: {raw!r} is not true or false")
            options[key] = _BOOL_WORDS[raw.lower()]
        elif key == "mtu":
            if not raw.isdigit() or not 1280 <= int(raw) <= 65520:
                raise InvalidArgument(f"slirp4netns option mtu: {raw!r} is not a number "
                                      "from 1280 to 65520")
            options[key] = int(raw)
        elif key == "cidr":
            options[key] = str(_slirp_network(raw))
        elif key == "outbound_addr":
            try:
                options[key] = str(ipaddress.ip_address(raw))
            except ValueError:
                raise InvalidArgument(f"slirp4netns option outbound_addr: {raw!r} is not an "
                                      "IP address (an interface name is not supported)") from None
        elif key == "port_handler":
            if raw not in PORT_HANDLERS["slirp4netns"]:
                raise InvalidArgument(f"slirp4netns option port_handler: {raw!r}: use rctr "
                                      "(the default, fastest) or slirp4netns")
            options[key] = raw
    return options


def _slirp_network(raw: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(raw, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"slirp4netns option cidr: {raw!r}: {exc}") from None
    if net.prefixlen > 25:
        # slirp4netns puts the guest at .100, the gateway at .2 and DNS at .3.
        raise InvalidArgument(f"slirp4netns option cidr: {raw} is too small (/25 at most)")
    return net


def slirp_addresses(cidr: str) -> dict[str, object]:
    """Where slirp4netns puts the container, its gateway and its DNS in ``cidr``."""
    net = ipaddress.IPv4Network(cidr)
    base = net.network_address
    return {"ip": str(base + 100), "gateway": str(base + 2), "dns": str(base + 3),
            "prefix": net.prefixlen, "host_loopback": str(base + 2)}
