"""slirp4netns for one network namespace: started, waited for, asked, stopped.

slirp4netns runs in the host's network namespace and serves a tap device
in the container's: it is the container's way out, as an ordinary user's
process.  rctr starts it with

- ``--configure`` (tap0 up at .100 of the cidr, default route via .2, DNS
  at .3), ``--mtu`` (65520: fewer, larger packets through the user-space
  stack), ``--enable-sandbox`` and ``--enable-seccomp`` (it parses
  untrusted packets);
- ``--disable-host-loopback`` unless ``allow_host_loopback=true``: without
  it, the gateway address reaches every service on the host's 127.0.0.1;
- ``--ready-fd`` (configured), ``--exit-fd`` (ends when the shim does,
  even by SIGKILL) and ``--api-socket`` (``add_hostfwd`` for the
  ``port_handler=slirp4netns`` way of publishing ports).
"""

from __future__ import annotations

import json
import os
import select
import socket

from rctr.core.errors import FailedPrecondition, Unavailable

from ._spawn import end_child, read_log, spawn

__all__ = ["Slirp"]

READY_TIMEOUT = 30.0


class Slirp:
    """One slirp4netns process, a child of the caller (the shim)."""

    def __init__(self, netns: str, options: dict[str, object], api_socket: str,
                 log_path: str) -> None:
        self.netns = netns
        self.options = options
        self.api_socket = api_socket
        self.log_path = log_path
        self.pid = 0
        self._ready_r = -1
        self._exit_w = -1

    def argv(self, ready_fd: int, exit_fd: int) -> list[str]:
        o = self.options
        argv = ["slirp4netns", "--configure", f"--mtu={o['mtu']}", "--enable-sandbox",
                "--enable-seccomp", "--netns-type=path", f"--api-socket={self.api_socket}",
                f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}", f"--cidr={o['cidr']}"]
        if not o.get("allow_host_loopback"):
            argv.append("--disable-host-loopback")
        if o.get("enable_ipv6"):
            argv.append("--enable-ipv6")
        if o.get("outbound_addr"):
            argv.append(f"--outbound-addr={o['outbound_addr']}")
        return [*argv, self.netns, "tap0"]

    def start(self) -> None:
        """Start slirp4netns; ``wait_ready`` tells when the namespace is configured."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid = spawn(self.argv(ready_w, exit_r), self.log_path, (ready_w, exit_r))
        except FileNotFoundError:
            raise FailedPrecondition(
                "slirp4netns is not installed: the default network needs it",
                hint="install it (apt install slirp4netns), or run with --network none, "
                     "--network host or --network pasta; run `rctr doctor` for details") from None
        except OSError as exc:
            raise FailedPrecondition(f"starting slirp4netns: {exc}",
                                     hint="run `rctr doctor` for details") from None
        finally:
            os.close(ready_w)
            os.close(exit_r)
        self._ready_r, self._exit_w = ready_r, exit_w

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until slirp4netns has configured the namespace, or say why it did not."""
        fd, self._ready_r = self._ready_r, -1
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            data = os.read(fd, 1) if ready else b""
        finally:
            os.close(fd)
        if data == b"1":
            return
        why = read_log(self.log_path) or ("no answer in time" if not ready else "it exited")
        raise Unavailable(f"slirp4netns failed to set up the container's network: {why}",
                          hint="see slirp4netns.log in the container's shim directory; "
                               "run `rctr doctor` for details")

    def add_hostfwd(self, proto: str, host_addr: str, host_port: int, guest_port: int) -> None:
        """Publish a port the slirp4netns way (its own listener, in the host's namespace)."""
        reply = self._api({"execute": "add_hostfwd", "arguments": {
            "proto": proto, "host_addr": host_addr, "host_port": host_port,
            "guest_port": guest_port}})
        if "error" in reply:
            desc = (reply["error"] or {}).get("desc", "") if isinstance(reply["error"], dict) \
                else str(reply["error"])
            raise FailedPrecondition(f"cannot publish {host_addr}:{host_port}/{proto}: {desc}",
                                     hint="the host port may be taken: choose another one")

    def _api(self, request: dict[str, object]) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.api_socket)
            sock.sendall(json.dumps(request).encode())
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        try:
            reply = json.loads(data or b"{}")
        except ValueError:
            reply = {"error": {"desc": data.decode(errors="replace")[:200]}}
        return reply if isinstance(reply, dict) else {"error": {"desc": str(reply)}}

    def stop(self) -> None:
        """End slirp4netns (closing the exit fd ends it) and reap it."""
        for fd in (self._ready_r, self._exit_w):
            if fd >= 0:
                os.close(fd)
        self._ready_r = self._exit_w = -1
        if self.pid:
            end_child(self.pid)
            self.pid = 0

