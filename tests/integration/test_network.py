"""Networking end to end, as the unprivileged user, on loopback only.

Real slirp4netns and pasta, real network namespaces, real published ports:
the test process (in the host's network namespace) talks to containers
through 127.0.0.1, and containers reach a server of the test's on the host's
127.0.0.1 only when ``allow_host_loopback=true`` says so.  Every container is
removed in ``finally``; the module's user is cleaned up by the fixture.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from daemonenv import IMAGE, RctrUser, detached, ok
from nettools import HELPERS, SERVE_PAGE, fetch, free_port, listening

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(120)]

# The host's Python inside the busybox image, for a UDP echo server (busybox's nc has no UDP).
PYTHON_MOUNTS = ("-e", "PYTHONHOME=/", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro",
                 "-v", "/usr/bin/python3.11:/bin/python3:ro")
UDP_ECHO = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('', 81))\nwhile True:\n    d, a = s.recvfrom(9999)\n    s.sendto(d, a)\n")


def helpers_of(rc: RctrUser) -> list[str]:
    """The user's live network helper processes (zombies are dead: not counted)."""
    ids = rc.shell._owned_ids()
    found = []
    for p in psutil.process_iter(["uids", "name", "status"]):
        with contextlib.suppress(psutil.Error):
            if p.info["uids"] and p.info["uids"].real in ids and p.info["name"] in HELPERS \
                    and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid} {p.info['name']}")
    return found


def netns_mounts(rc: RctrUser) -> list[str]:
    out = ok(rc.rctr("unshare", "cat", "/proc/self/mountinfo")).stdout
    return [line for line in out.splitlines() if line.split()[4].endswith("/netns")]


@contextlib.contextmanager
def host_server(page: bytes) -> Iterator[int]:
    """An HTTP server of the test's on the host's 127.0.0.1."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# -- the namespace -----------------------------------------------------------------------------

def test_default_network_is_slirp4netns(rc: RctrUser) -> None:
    out = ok(rc.rctr("run", "--rm", "--name", "netcheck", "--hostname", "box", IMAGE, "sh", "-c",
                     "ip addr; ip route; echo ==; cat /etc/resolv.conf /etc/hosts")).stdout
    assert "inet 10.0.2.100/24" in out and "mtu 65520" in out
    assert "default via 10.0.2.2 dev tap0" in out
    assert "lo: <LOOPBACK,UP" in out
    assert "nameserver 10.0.2.3" in out
    assert "10.0.2.100\tbox netcheck" in out


def test_none_has_only_loopback_up(rc: RctrUser) -> None:
    out = ok(rc.rctr("run", "--rm", "--network", "none", IMAGE, "ip", "addr")).stdout
    assert "lo: <LOOPBACK,UP" in out and "tap0" not in out and "eth0" not in out


def test_host_network_sees_host_interfaces(rc: RctrUser) -> None:
    out = ok(rc.rctr("run", "--rm", "--network", "host", IMAGE, "ip", "-o", "link")).stdout
    host_links = {name for _, name in socket.if_nameindex()}
    assert host_links <= {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}


# -- published ports ---------------------------------------------------------------------------

def test_publish_tcp_reaches_httpd_and_survives_a_daemon_restart(rc: RctrUser) -> None:
    port = free_port()
    with detached(rc, "web", "-p", f"127.0.0.1:{port}:80", IMAGE, "sh", "-c",
                  SERVE_PAGE.format("web")):
        assert "page-from-web" in fetch(port)
        assert ok(rc.rctr("port", "web")).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
        ports = ok(rc.rctr("inspect", "-f", "{{json .NetworkSettings.Ports}}", "web")).stdout
        assert f'"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{port}"}}]' in ports
        daemon = rc.daemon_pid()
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
        rc.wait_for(lambda: rc.daemon_pid() is None, what="rctrd to die")
        assert "page-from-web" in fetch(port), "the port went with the daemon"
        assert "Up" in ok(rc.rctr("ps", "--filter", "name=web")).stdout
    assert not listening(port)


def test_publish_udp_echo(rc: RctrUser) -> None:
    port = free_port(socket.SOCK_DGRAM)
    with detached(rc, "udp", "-p", f"127.0.0.1:{port}:81/udp", *PYTHON_MOUNTS, IMAGE,
                  "python3", "-c", UDP_ECHO), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for attempt in range(40):
            s.sendto(b"ping %d" % attempt, ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(100)
            except TimeoutError:
                continue
            assert data.startswith(b"ping ")
            break
        else:
            raise AssertionError("no UDP echo came back")


def test_publish_all_picks_free_ports_that_port_reports(rc: RctrUser) -> None:
    with detached(rc, "pall", "--expose", "80", "--expose", "90/udp", "-P", IMAGE, "sh", "-c",
                  SERVE_PAGE.format("pall")):
        lines = sorted(ok(rc.rctr("port", "pall")).stdout.split("\n"))[1:]
        assert [ln.split(" -> ")[0] for ln in lines] == ["80/tcp", "90/udp"]
        tcp = int(lines[0].rsplit(":", 1)[1])
        assert tcp >= 1024
        assert "page-from-pall" in fetch(tcp)
        one = ok(rc.rctr("port", "pall", "80")).stdout.strip()
        assert one == f"0.0.0.0:{tcp}"


def test_privileged_and_taken_ports_fail_the_start_and_say_why(rc: RctrUser) -> None:
    r = rc.rctr("run", "--rm", "-p", "80:80", IMAGE, "true")
    assert r.returncode != 0
    assert "ip_unprivileged_port_start" in r.stderr and "sysctl" in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for network in ("slirp4netns", "pasta", "slirp4netns:port_handler=slirp4netns"):
            r = rc.rctr("run", "--rm", "--network", network, "-p", f"127.0.0.1:{port}:80",
                        IMAGE, "true")
            assert r.returncode != 0, network
            assert "already in use" in r.stderr, (network, r.stderr)
    assert not helpers_of(rc)


def test_slirp4netns_port_handler(rc: RctrUser) -> None:
    port = free_port()
    with detached(rc, "slirpfwd", "--network", "slirp4netns:port_handler=slirp4netns",
                  "-p", f"127.0.0.1:{port}:80", IMAGE, "sh", "-c", SERVE_PAGE.format("slirp")):
        assert "page-from-slirp" in fetch(port)
        assert not any("rctr-ports" in h for h in helpers_of(rc))


def test_pasta_network_and_ports(rc: RctrUser) -> None:
    port = free_port()
    with detached(rc, "pasta1", "--network", "pasta", "-p", f"127.0.0.1:{port}:80", IMAGE,
                  "sh", "-c", SERVE_PAGE.format("pasta")):
        assert "page-from-pasta" in fetch(port)
        out = ok(rc.rctr("exec", "pasta1", "sh", "-c", "ip addr; ip route")).stdout
        assert "mtu 65520" in out and "default via" in out
        assert any("passt" in h for h in helpers_of(rc))
    assert not listening(port)


# -- the host's loopback -----------------------------------------------------------------------

def test_host_loopback_only_when_allowed(rc: RctrUser) -> None:
    with host_server(b"from-the-host") as port:
        get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.0.2.2 {port}"
        out = ok(rc.rctr("run", "--rm", "--network", "slirp4netns:allow_host_loopback=true",
                         IMAGE, "sh", "-c", get)).stdout
        assert "from-the-host" in out
        r = rc.rctr("run", "--rm", IMAGE, "sh", "-c", get)
        assert "from-the-host" not in r.stdout


# -- sharing a namespace -----------------------------------------------------------------------

def test_container_network_mode_shares_the_namespace(rc: RctrUser) -> None:
    with detached(rc, "owner", IMAGE, "sh", "-c", SERVE_PAGE.format("owner")):
        time.sleep(0.3)
        out = ok(rc.rctr("run", "--rm", "--network", "container:owner", IMAGE, "sh", "-c",
                         "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80")).stdout
        assert "page-from-owner" in out
    r = rc.rctr("run", "--rm", "--network", "container:owner", IMAGE, "true")
    assert r.returncode != 0 and "owner" in r.stderr


# -- nothing left behind -----------------------------------------------------------------------

def test_rm_leaves_no_helper_port_or_mount(rc: RctrUser) -> None:
    ports = [free_port(), free_port()]
    ok(rc.rctr("run", "-d", "--name", "gone1", "-p", f"127.0.0.1:{ports[0]}:80", IMAGE,
               "sh", "-c", SERVE_PAGE.format("gone1")))
    ok(rc.rctr("run", "-d", "--name", "gone2", "--network", "pasta",
               "-p", f"127.0.0.1:{ports[1]}:80", IMAGE, "sh", "-c", SERVE_PAGE.format("gone2")))
    assert "page-from-gone1" in fetch(ports[0]) and "page-from-gone2" in fetch(ports[1])
    assert len(helpers_of(rc)) >= 3 and len(netns_mounts(rc)) == 2
    ok(rc.rctr("rm", "-f", "gone1", "gone2"))
    assert not helpers_of(rc)
    assert not any(listening(p) for p in ports)
    assert not netns_mounts(rc)


def test_killed_shim_leaves_nothing_after_rm(rc: RctrUser) -> None:
    port = free_port()
    cid = ok(rc.rctr("run", "-d", "--name", "orphan", "-p", f"127.0.0.1:{port}:80", IMAGE,
                     "sh", "-c", SERVE_PAGE.format("orphan"))).stdout.strip()
    try:
        assert "page-from-orphan" in fetch(port)
        shim = json.loads((rc.rundir / "s" / cid[:32] / "shim.pid").read_text())["pid"]
        os.kill(shim, signal.SIGKILL)
        rc.wait_for(lambda: not helpers_of(rc), what="the helpers to end with their shim")
        rc.wait_for(lambda: "Exited" in ok(rc.rctr("ps", "-a", "--filter", "name=orphan")).stdout,
                    what="the container to be reported as exited")
        assert not listening(port)
    finally:
        rc.rctr("rm", "-f", "orphan")
    assert not netns_mounts(rc)


def test_docker_cli_publish_and_port(rc: RctrUser) -> None:
    try:
        ok(rc.docker("run", "-d", "--name", "dk", "-p", "127.0.0.1::80", IMAGE, "sh", "-c",
                     SERVE_PAGE.format("docker")))
        mapped = ok(rc.docker("port", "dk", "80")).stdout.strip()
        host, _, port = mapped.rpartition(":")
        assert host == "127.0.0.1"
        assert "page-from-docker" in fetch(int(port))
        ip = ok(rc.docker("inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}",
                          "dk")).stdout.strip()
        assert ip == "10.0.2.100"
    finally:
        rc.docker("rm", "-f", "dk")


# -- user networks -----------------------------------------------------------------------------

def wget_by_name(rc: RctrUser, network: str, name: str, *extra: str) -> tuple[int, str]:
    r = rc.rctr("run", "--rm", "--network", network, *extra, IMAGE, "sh", "-c",
                f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {name} 80")
    return r.returncode, r.stdout + r.stderr


def test_user_networks_resolve_names_and_keep_apart(rc: RctrUser) -> None:
    try:
        ok(rc.rctr("network", "create", "front"))
        ok(rc.rctr("network", "create", "--subnet", "10.99.7.0/24", "back"))
        ls = ok(rc.rctr("network", "ls", "--format", "{{.Name}} {{.Driver}}")).stdout.split("\n")
        assert {"bridge bridge", "host host", "none null", "front bridge", "back bridge"} <= set(ls)
        ok(rc.rctr("run", "-d", "--name", "api", "--network", "front", "--network-alias",
                   "service", IMAGE, "sh", "-c", SERVE_PAGE.format("api")))
        ok(rc.rctr("run", "-d", "--name", "db", "--network", "back", IMAGE, "sh", "-c",
                   SERVE_PAGE.format("db")))
        time.sleep(0.3)
        code, out = wget_by_name(rc, "front", "api")
        assert code == 0 and "page-from-api" in out, out
        code, out = wget_by_name(rc, "front", "service")
        assert code == 0 and "page-from-api" in out, out
        # Another network: neither the name nor the address reaches it.
        code, out = wget_by_name(rc, "back", "api")
        assert "page-from-api" not in out
        api_ip = ok(rc.rctr("inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}",
                            "api")).stdout.strip()
        assert api_ip.startswith("10.89.")
        code, out = wget_by_name(rc, "back", api_ip)
        assert "page-from-api" not in out
        db_ip = ok(rc.rctr("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db")).stdout.strip()
        assert db_ip.startswith("10.99.7.")
        # The way out is the container's own slirp4netns; the peers are in /etc/hosts.
        out = ok(rc.rctr("run", "--rm", "--network", "front", IMAGE, "sh", "-c",
                         "ip route; cat /etc/hosts")).stdout
        assert "default via 10.0.2.2" in out and "\tapi service" in out, out
        members = ok(rc.rctr("network", "inspect", "-f", "{{json .Containers}}", "front")).stdout
        assert '"Name": "api"' in members or '"Name":"api"' in members
        # connect: db joins front while running, and is then found by name from front.
        ok(rc.rctr("network", "connect", "--alias", "database", "front", "db"))
        code, out = wget_by_name(rc, "front", "database")
        assert code == 0 and "page-from-db" in out, out
        hosts = ok(rc.rctr("exec", "api", "cat", "/etc/hosts")).stdout
        assert "database" in hosts
        ok(rc.rctr("network", "disconnect", "front", "db"))
        code, out = wget_by_name(rc, "front", "database")
        assert "page-from-db" not in out
        r = rc.rctr("network", "rm", "front")
        assert r.returncode != 0 and "active endpoints" in r.stderr
    finally:
        rc.rctr("rm", "-f", "api", "db")
        rc.rctr("network", "rm", "front", "back")
    assert "front" not in ok(rc.rctr("network", "ls")).stdout


def test_docker_cli_networks(rc: RctrUser) -> None:
    try:
        ok(rc.docker("network", "create", "dnet"))
        ok(rc.docker("run", "-d", "--name", "dweb", "--network", "dnet", IMAGE, "sh", "-c",
                     SERVE_PAGE.format("dweb")))
        time.sleep(0.3)
        out = ok(rc.docker("run", "--rm", "--network", "dnet", IMAGE, "sh", "-c",
                           "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 dweb 80")).stdout
        assert "page-from-dweb" in out
        names = ok(rc.docker("network", "ls", "--format", "{{.Name}}")).stdout.split()
        assert "dnet" in names and "bridge" in names
        inspect = ok(rc.docker("network", "inspect", "dnet")).stdout
        assert '"Subnet": "10.89.' in inspect and "dweb" in inspect
    finally:
        rc.docker("rm", "-f", "dweb")
        rc.docker("network", "rm", "dnet")


def test_connected_before_start_and_hosts_list_only_network_peers(rc: RctrUser) -> None:
    try:
        ok(rc.rctr("network", "create", "side"))
        ok(rc.rctr("run", "-d", "--name", "lone", IMAGE, "sh", "-c", SERVE_PAGE.format("lone")))
        ok(rc.rctr("create", "--name", "late", IMAGE, "sh", "-c", SERVE_PAGE.format("late")))
        ok(rc.rctr("network", "connect", "side", "late"))
        ok(rc.rctr("start", "late"))
        ok(rc.rctr("run", "-d", "--name", "peer", "--network", "side", IMAGE, "sh", "-c",
                   SERVE_PAGE.format("peer")))
        ip = ok(rc.rctr("inspect", "-f", "{{.NetworkSettings.Networks.side.IPAddress}}",
                        "late")).stdout.strip()
        assert ip.startswith("10.89."), ip
        hosts = ok(rc.rctr("exec", "late", "cat", "/etc/hosts")).stdout
        assert "\tpeer" in hosts and "lone" not in hosts, hosts
        code, out = wget_by_name(rc, "side", "late")
        assert code == 0 and "page-from-late" in out, out
    finally:
        rc.rctr("rm", "-f", "lone", "late", "peer")
        rc.rctr("network", "rm", "side")


def test_an_endpoint_of_the_wrong_shape_is_a_400_on_create_and_connect(rc: RctrUser) -> None:
    try:
        ok(rc.rctr("network", "create", "shapes"))
        ok(rc.rctr("create", "--name", "shaped", IMAGE, "true"))
        bad = {"Aliases": 5}
        status, body = rc.api("POST", "/containers/create?name=misshaped", {
            "Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": "shapes"},
            "NetworkingConfig": {"EndpointsConfig": {"shapes": bad}}})
        assert status == 400 and "Aliases" in body["message"], (status, body)
        status, body = rc.api("POST", "/networks/shapes/connect",
                              {"Container": "shaped", "EndpointConfig": bad})
        assert status == 400 and "Aliases" in body["message"], (status, body)
        status, _ = rc.api("POST", "/networks/shapes/connect",
                           {"Container": "shaped", "EndpointConfig": {"Aliases": ["s"]}})
        assert status == 200
        assert "misshaped" not in ok(rc.rctr("ps", "-a", "--format", "{{.Names}}")).stdout
    finally:
        rc.rctr("rm", "-f", "shaped", "misshaped")
        rc.rctr("network", "rm", "shapes")
