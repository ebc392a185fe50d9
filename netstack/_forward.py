"""rctr's port forwarder: host sockets outside, connections made inside the namespace.

The shim binds every published port in the host's network namespace (so a
taken or privileged port fails the start, with the reason), then forks the
forwarder, which joins the container's network namespace.  Sockets keep the
namespace they were made in, so the listeners stay on the host while every
socket the forwarder opens afterwards is inside: it connects to the
container's ``127.0.0.1:PORT``, as rootlesskit's port driver does, which
reaches a server bound to any of the container's addresses.  The container
therefore sees connections from 127.0.0.1, not from the client.

TCP is copied with ``splice`` through a pipe (kernel to kernel, no copy into
Python), a thread per direction; ``os.splice`` releases the GIL.  UDP is a
flow table: one connected socket inside per client address, ended after a
minute without traffic.

The forwarder belongs to the container: the shim's child, ending with it
(the parent-death signal covers a killed shim), never the daemon's.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import threading
import time

from rctr.core import linux
from rctr.core.errors import FailedPrecondition
from rctr.core.proc import close_fds_except

from ._ports import unprivileged_port_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._types import PortMapping

__all__ = ["bind_ports", "start_forwarder"]

PIPE_SIZE = 1 << 20
UDP_IDLE = 60.0
CONNECT_TIMEOUT = 10.0


def bind_ports(mappings: list[PortMapping]) -> list[socket.socket]:
    """One bound socket per mapping (TCP listening), in the caller's namespace.

    Fills in ``host_port`` for ports picked by the kernel (0) or from a range."""
    sockets: list[socket.socket] = []
    try:
        for m in mappings:
            sockets.append(_bind_one(m))
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return sockets


def _bind_one(m: PortMapping) -> socket.socket:
    host_ip = str(m["host_ip"])
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if m["proto"] == "tcp" else socket.SOCK_DGRAM
    low, high = int(m["host_port"]), int(m.pop("host_port_end", m["host_port"]))
    last: OSError | None = None
    for port in range(low, high + 1):
        sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host_ip, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(512)
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno == errno.EADDRINUSE and port < high:
                continue
            break
        m["host_port"] = sock.getsockname()[1]
        return sock
    assert last is not None
    raise _bind_error(last, host_ip, low, high, m)


def _bind_error(exc: OSError, host_ip: str, low: int, high: int,
                m: PortMapping) -> FailedPrecondition:
    where = f"{host_ip}:{low}" + (f"-{high}" if high != low else "") + f"/{m['proto']}"
    if exc.errno == errno.EADDRINUSE:
        return FailedPrecondition(
            f"cannot publish {where}: the port is already in use on the host",
            hint="choose another host port (-p OTHER:" f"{m['container_port']}), leave the host "
                 "port out to get a free one, or stop what listens there "
                 f"(ss -l{'t' if m['proto'] == 'tcp' else 'u'}np 'sport = :{low}')")
    if exc.errno == errno.EACCES:
        start = unprivileged_port_start()
        return FailedPrecondition(
            f"cannot publish {where}: ports below {start} need root on this host",
            hint=f"use a port from {start} up, or, as root: "
                 f"sysctl -w net.ipv4.ip_unprivileged_port_start={low}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return FailedPrecondition(f"cannot publish {where}: {host_ip} is not an address of "
                                  "this host", hint="use 127.0.0.1, 0.0.0.0 or one of the "
                                                     "host's own addresses")
    return FailedPrecondition(f"cannot publish {where}: {exc.strerror}")


def start_forwarder(sockets: list[socket.socket], mappings: list[PortMapping],
                    netns: str) -> int:
    """Fork the forwarder for ``sockets`` (bound by ``bind_ports``); returns its pid.

    The caller closes its copies of the sockets afterwards."""
    ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    parent = os.getpid()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the forwarder
            code = 0
            try:
                _become_forwarder(parent, ns_fd, sockets)
                _Forwarder(sockets, mappings).serve()
            except BaseException:  # noqa: BLE001 - nothing to report to: the shim goes on
                code = 1
            os._exit(code)
    finally:
        os.close(ns_fd)
    return pid


def _become_forwarder(parent: int, ns_fd: int, sockets: list[socket.socket]) -> None:  # pragma: no cover
    linux.set_name("rctr-ports")
    linux.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the shim died before the signal was armed
        os._exit(0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    close_fds_except({ns_fd, *(s.fileno() for s in sockets)})
    # In the main thread, before any thread starts: threads inherit the namespace.
    linux.setns(ns_fd, linux.CLONE_NEWNET)
    os.close(ns_fd)


class _Forwarder:
    def __init__(self, sockets: list[socket.socket], mappings: list[PortMapping]) -> None:
        self.sel = selectors.DefaultSelector()
        self.flows: dict[tuple[int, object], tuple[socket.socket, float]] = {}
        for sock, m in zip(sockets, mappings, strict=True):
            sock.setblocking(False)
            target = ("127.0.0.1", int(m["container_port"]))
            handler = self._accept if m["proto"] == "tcp" else self._datagram
            self.sel.register(sock, selectors.EVENT_READ, (handler, sock, target))

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select(timeout=UDP_IDLE / 4):
                handler, *args = key.data
                handler(*args)
            self._expire_flows()

    # -- TCP ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, target: tuple[str, int]) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        client.setblocking(True)
        threading.Thread(target=_connect_and_pump, args=(client, target), daemon=True).start()

    # -- UDP ------------------------------------------------------------------------------

    def _datagram(self, host_sock: socket.socket, target: tuple[str, int]) -> None:
        try:
            data, peer = host_sock.recvfrom(65535)
        except OSError:
            return
        key = (host_sock.fileno(), peer)
        flow = self.flows.get(key)
        if flow is None:
            inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                inner.connect(target)
            except OSError:
                inner.close()
                return
            inner.setblocking(False)
            self.sel.register(inner, selectors.EVENT_READ, (self._reply, inner, host_sock, peer))
            flow = (inner, 0.0)
        self.flows[key] = (flow[0], time.monotonic())
        try:
            flow[0].send(data)
        except OSError:
            pass

    def _reply(self, inner: socket.socket, host_sock: socket.socket,
               peer: tuple[object, ...]) -> None:
        try:
            data = inner.recv(65535)
            host_sock.sendto(data, peer)
        except OSError:
            return
        key = (host_sock.fileno(), peer)
        if key in self.flows:
            self.flows[key] = (inner, time.monotonic())

    def _expire_flows(self) -> None:
        now = time.monotonic()
        for key, (inner, seen) in list(self.flows.items()):
            if now - seen > UDP_IDLE:
                self.sel.unregister(inner)
                inner.close()
                del self.flows[key]


def _connect_and_pump(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        inner = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
    except OSError:
        # Nothing listens in the container: the client sees the connection reset.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        return
    inner.settimeout(None)
    for s in (client, inner):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    other = threading.Thread(target=_pump, args=(inner, client), daemon=True)
    other.start()
    _pump(client, inner)
    other.join()
    client.close()
    inner.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF, kernel to kernel; then half-close ``dst``.

    A reset or a broken pipe shuts both sockets down, so the other direction's
    thread wakes up and ends too."""
    r, w = os.pipe2(os.O_CLOEXEC)
    shut: tuple[tuple[int, socket.socket], ...] = ((socket.SHUT_WR, dst),)
    try:
        try:
            import fcntl

            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above fs.pipe-max-size: the default 64 KiB pipe still works
        sfd, dfd = src.fileno(), dst.fileno()
        while True:
            n = os.splice(sfd, w, PIPE_SIZE, flags=os.SPLICE_F_MOVE)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dfd, n, flags=os.SPLICE_F_MOVE)
    except OSError:
        shut = ((socket.SHUT_RDWR, dst), (socket.SHUT_RDWR, src))
    finally:
        os.close(r)
        os.close(w)
        for how, sock in shut:
            try:
                sock.shutdown(how)
            except OSError:
                pass
