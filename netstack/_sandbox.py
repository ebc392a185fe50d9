"""One container's network, as its shim sets it up and takes it down.

The shim calls, in order::

    net = NetworkSandbox(settings, state_dir)
    net.prepare()        # before the runtime's create: the namespace exists,
                         # slirp4netns is starting, the ports are bound
    info = net.finish()  # after create: slirp4netns is ready, ports are live
    ...                  # the container runs
    net.close()          # after it exits: nothing is left running or mounted

``settings`` is the ``network`` object of ``shim.json``, which the daemon
builds: ``{"kind", "netns", "options", "args", "ports", "infra", "links"}``
(see ``_mode``, ``_ports`` and ``_links``).  Every process started here is the shim's child.
"""

from __future__ import annotations

import os
import signal

from rctr.core.errors import InvalidArgument

from ._forward import bind_ports, start_forwarder
from ._links import attach, ensure_infra
from ._netns import create_netns, remove_netns
from ._pasta import Pasta
from ._slirp import Slirp
from ._spawn import end_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._types import NetInfo, PortMapping, ShimNetwork

__all__ = ["NetworkSandbox", "KINDS"]

KINDS = ("slirp4netns", "pasta", "none")


class NetworkSandbox:
    def __init__(self, settings: ShimNetwork, state_dir: str) -> None:
        kind = settings.get("kind")
        netns = settings.get("netns")
        if kind not in KINDS or not isinstance(netns, str) or not os.path.isabs(netns):
            raise InvalidArgument(f"shim.json: network: kind must be one of {', '.join(KINDS)} "
                                  "and netns an absolute path")
        self.kind = str(kind)
        self.netns = netns
        self.dir = state_dir
        self.options: dict[str, object] = dict(settings.get("options") or {})
        self.args = [str(a) for a in settings.get("args") or []]
        self.ports: list[PortMapping] = [m.copy() for m in settings.get("ports") or []]
        # User networks: veths to bridges in the user's infra namespace (see _links).
        self.links = [link.copy() for link in settings.get("links") or []]
        self.infra = str(settings.get("infra") or "")
        self.handler = str(self.options.get("port_handler") or
                           ("pasta" if self.kind == "pasta" else "rctr"))
        self.slirp: Slirp | None = None
        self.pasta: Pasta | None = None
        self.forwarder = 0
        self.made_netns = False

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def prepare(self) -> None:
        create_netns(self.netns)
        self.made_netns = True
        if self.links:
            ensure_infra(self.infra)
            attach(self.infra, self.netns, self.links)
        if self.ports and self.handler == "rctr":
            sockets = bind_ports(self.ports)
            try:
                self.forwarder = start_forwarder(sockets, self.ports, self.netns)
            finally:
                for s in sockets:
                    s.close()
        elif self.ports:
            _pick_free_ports(self.ports)
        if self.kind == "slirp4netns":
            self.slirp = Slirp(self.netns, self.options, self.path("slirp.sock"),
                               self.path("slirp4netns.log"))
            self.slirp.start()
        elif self.kind == "pasta":
            self.pasta = Pasta(self.netns, self.args,
                               self.ports if self.handler == "pasta" else [],
                               self.path("pasta.pid"), self.path("pasta.log"))
            self.pasta.start()

    def finish(self) -> NetInfo:
        """Wait for the helpers; what the daemon reports (``net.json``)."""
        if self.slirp is not None:
            self.slirp.wait_ready()
            if self.handler == "slirp4netns":
                for m in self.ports:
                    self.slirp.add_hostfwd(str(m["proto"]), str(m["host_ip"]),
                                           int(m["host_port"]), int(m["container_port"]))
        return {"netns": self.netns, "ports": self.ports, "port_handler": self.handler,
                "pids": [p for p in (self.forwarder, self.slirp and self.slirp.pid,
                                     self.pasta and self.pasta.pid) if p]}

    def helpers(self) -> dict[int, str]:
        """The helper processes the container's network depends on: pid -> name."""
        named = {self.forwarder: "rctr's port forwarder", (self.slirp and self.slirp.pid): "slirp4netns",
                 (self.pasta and self.pasta.pid): "pasta"}
        return {pid: name for pid, name in named.items() if pid}

    def forget(self, pid: int) -> None:
        """A helper was reaped by someone else: never signal or wait for its pid again."""
        if self.forwarder == pid:
            self.forwarder = 0
        for helper in (self.slirp, self.pasta):
            if helper is not None and helper.pid == pid:
                helper.pid = 0

    def close(self) -> None:
        """Stop every helper and drop the namespace; safe to call more than once."""
        if self.forwarder:
            try:
                os.kill(self.forwarder, signal.SIGKILL)
            except ProcessLookupError:
                pass
            end_child(self.forwarder, 0)
            self.forwarder = 0
        for helper in (self.slirp, self.pasta):
            if helper is not None:
                helper.stop()
        if self.made_netns:
            remove_netns(self.netns)
            self.made_netns = False


def _pick_free_ports(mappings: list[PortMapping]) -> None:
    """Choose the host port of each mapping that leaves it open, for a helper that binds
    by itself; binding here first also turns a taken port into rctr's clear error."""
    sockets = bind_ports(mappings)
    for s in sockets:
        s.close()

