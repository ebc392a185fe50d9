"""daemon/_container_network.py: the network plan of a start, with no container."""

from __future__ import annotations

from typing import Any

import pytest

from rctr import netstack
from rctr.core.errors import InvalidArgument
from rctr.daemon import _container_network
from rctr.daemon._container_network import NetPlan, plan
from rctr.daemon._record import Record

PORTS = {"8080/tcp": [{"HostPort": "18080"}]}
MAPPED = [{"proto": "tcp", "container_port": 8080, "host_ip": "0.0.0.0", "host_port": 18080,
           "host_port_end": 18080}]


def _record(mode: str | None, ports: dict[str, Any] | None = None, cid: str = "c1") -> Record:
    return Record(id=cid, name="n", host_config={"NetworkMode": mode, "PortBindings": ports},
                  hosts_path=f"/{cid}/hosts", resolv_conf_path=f"/{cid}/resolv.conf",
                  network_settings={"SandboxKey": f"/{cid}/netns", "IPAddress": "10.0.2.100",
                                    "IPPrefixLen": 24, "Gateway": "10.0.2.2"})


def _plan(mode: str | None, ports: dict[str, Any] | None = None, **kw: Any) -> NetPlan:
    def running(ref: str) -> Record:
        return _record("slirp4netns", cid=ref)
    return plan(_record(mode, ports), "/shim", running, **kw)


def test_the_host_network_is_the_daemons_namespace() -> None:
    p = _plan("host", PORTS)
    assert (p.netns, p.shim, p.ip, p.files_of) == (None, None, "", None)


def test_container_mode_joins_the_others_namespace_and_files() -> None:
    p = _plan("container:other")
    assert p.netns == "/other/netns" and p.shim is None
    assert (p.ip, p.prefix, p.gateway) == ("10.0.2.100", 24, "10.0.2.2")
    assert p.files_of == {"hosts": "/other/hosts", "resolv.conf": "/other/resolv.conf"}
    with pytest.raises(InvalidArgument, match="own network namespace"):
        _plan("container:c1")


def test_none_has_a_namespace_of_its_own_and_no_ports() -> None:
    p = _plan("none", PORTS)
    assert p.netns == "/shim/netns" and not p.ip
    assert p.shim == {"kind": "none", "netns": "/shim/netns", "options": {}, "args": [],
                      "ports": []}


def test_slirp4netns_publishes_and_has_slirps_addresses() -> None:
    p = _plan(None, PORTS)
    assert p.shim is not None and p.shim["kind"] == "slirp4netns" and p.shim["ports"] == MAPPED
    assert p.shim["options"]["cidr"] == "10.0.2.0/24" and "links" not in p.shim
    assert (p.ip, p.prefix, p.gateway, p.dns) == ("10.0.2.100", 24, "10.0.2.2", ["10.0.2.3"])


def _link(internal: bool) -> dict[str, Any]:
    return {"network": "mynet", "bridge": "br0", "gateway": "172.20.0.1", "prefix": 16,
            "ip": "172.20.0.2", "ifname": "eth1", "mtu": 65520, "aliases": [],
            "internal": internal}


@pytest.mark.parametrize("internal, kind", [(False, "slirp4netns"), (True, "none")])
def test_a_user_network_goes_out_by_slirp4netns_unless_internal(internal: bool,
                                                                kind: str) -> None:
    p = _plan("mynet", links=[_link(internal)], infra="/infra")
    assert p.mode["kind"] == kind and p.mode["name"] == "mynet"
    assert p.shim is not None and p.shim["kind"] == kind and p.shim["infra"] == "/infra"
    assert p.shim["links"] == [{k: _link(internal)[k] for k in netstack.LINK_FIELDS}]


def test_pasta_takes_the_hosts_route_and_forwards_dns_for_a_local_resolver(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netstack, "default_route",
                        lambda: {"ip": "192.168.1.5", "prefix": 24, "gateway": "192.168.1.1"})
    monkeypatch.setattr(_container_network, "_read", lambda path: "nameserver 127.0.0.53\n")
    p = _plan("pasta")
    assert (p.ip, p.prefix, p.gateway) == ("192.168.1.5", 24, "192.168.1.1")
    assert p.shim is not None and p.shim["args"] == ["--dns-forward", _container_network.PASTA_DNS]
    assert p.dns == [_container_network.PASTA_DNS]
    monkeypatch.setattr(_container_network, "_read", lambda path: "nameserver 9.9.9.9\n")
    p = _plan("pasta")
    assert p.shim is not None and p.shim["args"] == [] and p.dns == ["9.9.9.9"]
