"""daemon/_network_records.py: network records, subnets and addresses (no host networking)."""

from __future__ import annotations

import pytest

from rctr.core.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from rctr.daemon._container_network import empty_settings, hosts_line, network_name
from rctr.daemon._network_records import Networks, bridge_name
from rctr.daemon._record import Endpoint, Record


def test_create_get_remove(tmp_path) -> None:  # type: ignore[no-untyped-def]
    nets = Networks(str(tmp_path / "networks"))
    a = nets.create({"Name": "front", "Labels": {"x": "1"}})
    b = nets.create({"Name": "back"})
    assert a["IPAM"]["Config"] == [{"Subnet": "10.89.1.0/24", "Gateway": "10.89.1.1"}]
    assert b["IPAM"]["Config"][0]["Subnet"] == "10.89.2.0/24"
    assert nets.get("front")["Id"] == a["Id"] == nets.get(a["Id"][:10])["Id"]
    assert [n["Name"] for n in nets.all()] and nets.exists("back")
    with pytest.raises(AlreadyExists):
        nets.create({"Name": "front"})
    with pytest.raises(Conflict, match="active endpoints"):
        nets.remove("front", ["web"])
    nets.remove("front", [])
    with pytest.raises(NotFound):
        nets.get("front")
    assert nets.create({"Name": "again"})["IPAM"]["Config"][0]["Subnet"] == "10.89.1.0/24"


@pytest.mark.parametrize("body, error, words", [
    ({"Name": "bad name"}, InvalidArgument, "invalid network name"),
    ({"Name": "bridge"}, Conflict, "pre-defined"),
    ({"Name": "n", "Driver": "overlay"}, InvalidArgument, "not supported"),
    ({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.2.3/24"}]}}, InvalidArgument, "host bits"),
    ({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.2.0/30"}]}}, InvalidArgument, "too small"),
    ({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.2.0/24", "Gateway": "10.1.3.1"}]}},
     InvalidArgument, "not in subnet"),
])
def test_bad_networks(tmp_path, body, error, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=words):
        Networks(str(tmp_path)).create(body)


def test_overlapping_subnet_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    nets = Networks(str(tmp_path))
    nets.create({"Name": "a", "IPAM": {"Config": [{"Subnet": "10.89.1.0/24"}]}})
    with pytest.raises(Conflict, match="overlaps"):
        nets.create({"Name": "b", "IPAM": {"Config": [{"Subnet": "10.89.0.0/16"}]}})
    assert nets.create({"Name": "c"})["IPAM"]["Config"][0]["Subnet"] == "10.89.2.0/24"


def test_allocate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = Networks(str(tmp_path)).create({"Name": "n", "IPAM": {"Config": [
        {"Subnet": "10.7.0.0/29", "Gateway": "10.7.0.1"}]}})
    assert Networks.allocate(net, set()) == "10.7.0.2"
    assert Networks.allocate(net, {"10.7.0.2", "10.7.0.3"}) == "10.7.0.4"
    assert Networks.allocate(net, set(), "10.7.0.6") == "10.7.0.6"
    with pytest.raises(Conflict, match="not free"):
        Networks.allocate(net, {"10.7.0.6"}, "10.7.0.6")
    with pytest.raises(Conflict, match="no free address"):
        Networks.allocate(net, {f"10.7.0.{i}" for i in range(2, 7)})


def test_names_and_settings() -> None:
    assert bridge_name("0123456789abcdef") == "rctr-01234567"
    assert network_name(None) == "bridge" and network_name("pasta") == "pasta"
    assert network_name("container:x") is None and network_name("front") == "front"
    s = empty_settings("default", {"front": Endpoint("abc", ["svc"])})
    assert set(s["Networks"]) == {"bridge", "front"}
    assert s["Networks"]["front"]["Aliases"] == ["svc"] and s["Ports"] == {}
    record = Record(id="a" * 64, name="api", config={"Hostname": "abc123"},
                    network_settings={"Networks": {"front": {"IPAddress": "10.89.1.2",
                                                             "Aliases": ["svc", "api"]}}})
    assert hosts_line(record, "front") == ("10.89.1.2", "api svc abc123")
    assert hosts_line(record, "back") is None
