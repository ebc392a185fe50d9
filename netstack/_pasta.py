"""pasta (from passt) for one network namespace.

pasta copies the host's addresses and routes into the namespace and
translates between its tap device and the host's sockets; for connections
between the host and the namespace it splices sockets directly, the fastest
path there is.  rctr starts it with ``--config-net`` and ``--netns PATH``,
lets it daemonize (its parent exits once the namespace is configured; the
daemon is reparented to the shim, our subreaper) and publishes ports with its
own ``-t``/``-u`` unless ``port_handler=rctr``.  ``--no-map-gw`` unless the
user asks for ``--map-gw``: as with slirp4netns's host loopback, the gateway
address would otherwise reach the host's 127.0.0.1.

pasta quits by itself when the namespace file goes away; the shim also ends
it when the container exits.
"""

from __future__ import annotations

import os
import signal
import time

from rctr.core.errors import FailedPrecondition, Unavailable

from ._spawn import end_child, read_log, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._types import PortMapping

__all__ = ["Pasta"]

START_TIMEOUT = 30.0


class Pasta:
    def __init__(self, netns: str, args: list[str], ports: list[PortMapping],
                 pid_file: str, log_path: str) -> None:
        self.netns = netns
        self.args = args
        self.ports = ports
        self.pid_file = pid_file
        self.log_path = log_path
        self.pid = 0

    def argv(self) -> list[str]:
        argv = ["pasta", "--config-net", "--netns", self.netns, "--pid", self.pid_file,
                "--quiet", "-T", "none", "-U", "none"]
        for proto, flag in (("tcp", "-t"), ("udp", "-u")):
            specs = [_port_spec(m) for m in self.ports if m["proto"] == proto]
            argv += [flag, ",".join(specs) if specs else "none"]
        if "--map-gw" in self.args:
            args = [a for a in self.args if a != "--map-gw"]
        else:
            args = ["--no-map-gw", *self.args]
        return argv + args

    def start(self) -> None:
        """Run pasta until it daemonizes: then the namespace is configured."""
        try:
            starter = spawn(self.argv(), self.log_path, die_with_parent=False)
        except FileNotFoundError:
            raise FailedPrecondition("pasta is not installed: --network pasta needs it",
                                     hint="install it (apt install passt), or use the "
                                          "default network (slirp4netns); "
                                          "run `rctr doctor` for details") from None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            done, status = os.waitpid(starter, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(starter, signal.SIGKILL)
                os.waitpid(starter, 0)
                raise Unavailable("pasta did not configure the container's network in time")
            time.sleep(0.005)
        self.pid = self._read_pid()
        if status != 0 or not self.pid:
            why = read_log(self.log_path) or f"exit status {os.waitstatus_to_exitcode(status)}"
            self.stop()
            raise Unavailable(f"pasta failed to set up the container's network: {why}",
                              hint="a published host port may be taken; see pasta.log in the "
                                   "container's shim directory; run `rctr doctor` for details")

    def _read_pid(self) -> int:
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def stop(self) -> None:
        pid, self.pid = self.pid, 0
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end_child(pid)


def _port_spec(m: PortMapping) -> str:
    addr = "" if m["host_ip"] in ("0.0.0.0", "::") else f"{m['host_ip']}/"
    return f"{addr}{m['host_port']}:{m['container_port']}"
