"""rctr.netstack's pure parts: --network values, published ports, the host's route."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rctr.core.errors import FailedPrecondition, InvalidArgument
from rctr.netstack import (SLIRP_DEFAULTS, check_unprivileged, docker_ports, mappings_of,
                           parse_mode, slirp_addresses)
from rctr.netstack._forward import bind_ports
from rctr.netstack._hostnet import default_route
from rctr.netstack._pasta import Pasta
from rctr.netstack._slirp import Slirp

# -- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "default", "bridge"])
def test_default_modes_are_slirp4netns(value: str | None) -> None:
    mode = parse_mode(value)
    assert mode["kind"] == "slirp4netns" and mode["options"] == SLIRP_DEFAULTS
    assert mode["default"] is True


def test_slirp_options() -> None:
    mode = parse_mode("slirp4netns:allow_host_loopback=true,cidr=10.5.0.0/16,mtu=1500,"
                      "port_handler=slirp4netns,outbound_addr=127.0.0.1")
    assert mode["options"] == {**SLIRP_DEFAULTS, "allow_host_loopback": True,
                               "cidr": "10.5.0.0/16", "mtu": 1500,
                               "port_handler": "slirp4netns", "outbound_addr": "127.0.0.1"}


@pytest.mark.parametrize("value, words", [
    ("slirp4netns:mtu=70000", "1280 to 65520"),
    ("slirp4netns:mtu=x", "not a number"),
    ("slirp4netns:cidr=10.0.2.1/24", "host bits"),
    ("slirp4netns:cidr=10.0.2.0/28", "too small"),
    ("slirp4netns:allow_host_loopback=maybe", "true or false"),
    ("slirp4netns:nosuch=1", "allow_host_loopback="),
    ("slirp4netns:port_handler=rootlesskit", "rctr"),
    ("pasta:--netns,/x", "set by rctr"),
    ("pasta:port_handler=slirp4netns", "pasta or rctr"),
    ("container:", "container:NAME"),
    ("weird:thing", "unknown network mode"),
])
def test_bad_modes_say_what_would_do(value: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_mode(value)


def test_other_modes() -> None:
    assert parse_mode("none") == {"kind": "none"}
    assert parse_mode("host") == {"kind": "host"}
    assert parse_mode("container:web") == {"kind": "container", "target": "web"}
    assert parse_mode("mynet") == {"kind": "network", "name": "mynet"}
    pasta = parse_mode("pasta:--map-gw,-a,10.0.0.5,port_handler=rctr")
    assert pasta["args"] == ["--map-gw", "-a", "10.0.0.5"]
    assert pasta["options"] == {"port_handler": "rctr"}


def test_slirp_addresses() -> None:
    assert slirp_addresses("10.0.2.0/24") == {"ip": "10.0.2.100", "gateway": "10.0.2.2",
                                              "dns": "10.0.2.3", "prefix": 24,
                                              "host_loopback": "10.0.2.2"}


# -- ports ---------------------------------------------------------------------------------------

def test_mappings_from_bindings_and_publish_all() -> None:
    bindings = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "", "HostPort": "5353-5360"}]}
    out = mappings_of(bindings, True, {"80/tcp": {}, "443/tcp": {}})
    assert out == [
        {"proto": "tcp", "container_port": 80, "host_ip": "127.0.0.1", "host_port": 8080,
         "host_port_end": 8080},
        {"proto": "udp", "container_port": 53, "host_ip": "0.0.0.0", "host_port": 5353,
         "host_port_end": 5360},
        {"proto": "tcp", "container_port": 443, "host_ip": "0.0.0.0", "host_port": 0,
         "host_port_end": 0},
    ]


def test_link_fields_name_the_link_type() -> None:
    """LINK_FIELDS (what the daemon hands the shim of a link) and _types.Link (its shape for
    the type checker) are two spellings of one list: they must not drift apart."""
    from rctr.netstack import LINK_FIELDS
    from rctr.netstack._types import Link

    assert LINK_FIELDS == tuple(Link.__annotations__)


@pytest.mark.parametrize("bindings, words", [
    ({"80/sctp": [{}]}, "tcp or udp"),
    ({"0/tcp": [{}]}, "1-65535"),
    ({"80/tcp": [{"HostPort": "http"}]}, "not a number"),
    ({"80/tcp": [{"HostPort": "70000"}]}, "0-65535"),
    ({"80/tcp": [{"HostIp": "localhost", "HostPort": "1"}]}, "not an IP"),
    ({"80/tcp": [{"HostPort": "8080"}], "81/tcp": [{"HostPort": "8080"}]}, "published twice"),
    ({"80/tcp": ["8080"]}, "each binding is an object"),
])
def test_bad_bindings(bindings: dict[str, list[object]], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        mappings_of(bindings, False, None)


def test_privileged_port_says_how_to_allow_it() -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        start = int(f.read())
    if start == 0:
        pytest.skip("every port is unprivileged on this host")
    with pytest.raises(FailedPrecondition) as info:
        check_unprivileged(mappings_of({"80/tcp": [{"HostPort": str(start - 1)}]}, False, None))
    assert "sysctl -w net.ipv4.ip_unprivileged_port_start" in (info.value.hint or "")
    check_unprivileged(mappings_of({"80/tcp": [{"HostPort": ""}]}, False, None))


def test_docker_ports_lists_exposed_ports_too() -> None:
    mappings = [{"proto": "tcp", "container_port": 80, "host_ip": "0.0.0.0", "host_port": 3000}]
    assert docker_ports(mappings, {"80/tcp": {}, "22/tcp": {}}) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "3000"}], "22/tcp": None}


def test_bind_ports_fills_free_ports_and_ranges() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        mappings = mappings_of({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                                "81/tcp": [{"HostIp": "127.0.0.1",
                                            "HostPort": f"{busy}-{busy + 50}"}]}, False, None)
        sockets = bind_ports(mappings)
        try:
            assert mappings[0]["host_port"] == sockets[0].getsockname()[1] != 0
            assert busy < mappings[1]["host_port"] <= busy + 50
            assert "host_port_end" not in mappings[0]
        finally:
            for s in sockets:
                s.close()
        with pytest.raises(FailedPrecondition, match="already in use"):
            bind_ports(mappings_of({"80/tcp": [{"HostIp": "127.0.0.1",
                                                "HostPort": str(busy)}]}, False, None))


# -- helpers' command lines ----------------------------------------------------------------------

def test_slirp_command_line() -> None:
    argv = Slirp("/run/x/netns", dict(SLIRP_DEFAULTS), "/run/x/slirp.sock", "/dev/null").argv(5, 6)
    assert argv[0] == "slirp4netns" and argv[-2:] == ["/run/x/netns", "tap0"]
    for flag in ("--configure", "--mtu=65520", "--enable-sandbox", "--enable-seccomp",
                 "--disable-host-loopback", "--ready-fd=5", "--exit-fd=6", "--netns-type=path",
                 "--api-socket=/run/x/slirp.sock", "--cidr=10.0.2.0/24"):
        assert flag in argv
    allowed = Slirp("/n", {**SLIRP_DEFAULTS, "allow_host_loopback": True}, "/s", "/l").argv(5, 6)
    assert "--disable-host-loopback" not in allowed


def test_pasta_command_line() -> None:
    ports = [{"proto": "tcp", "container_port": 80, "host_ip": "127.0.0.1", "host_port": 8080},
             {"proto": "udp", "container_port": 53, "host_ip": "0.0.0.0", "host_port": 5353}]
    argv = Pasta("/n", ["-a", "10.0.0.5"], ports, "/p", "/l").argv()
    assert argv[argv.index("-t") + 1] == "127.0.0.1/8080:80"
    assert argv[argv.index("-u") + 1] == "5353:53"
    assert "--no-map-gw" in argv and argv[-2:] == ["-a", "10.0.0.5"]
    assert "--no-map-gw" not in Pasta("/n", ["--map-gw"], [], "/p", "/l").argv()


def test_default_route_parses_proc_net_route(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\n"
                     "lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\n"
                     "lo\t00000000\t0100007F\t0003\t0\t0\t0\t00000000\t0\n")
    route = default_route(str(table))
    assert route is not None and route["interface"] == "lo" and route["gateway"] == "127.0.0.1"
    assert route["ip"] == "127.0.0.1" and route["prefix"] == 8
    empty = tmp_path / "empty"
    empty.write_text("Iface\tDestination\n")
    assert default_route(str(empty)) is None
    assert default_route(os.devnull + "/nope") is None
