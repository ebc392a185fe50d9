"""Every process rctr starts of its own code, in one table, and the one way to build its argv.

rctr's helpers are Python started afresh (``python -m rctr.<private module>``)
or forked from a process that has the code loaded already.  ``HELPERS`` below
is the table: for each kind, how it starts, what starts it, what it holds and
what ends it.  In short:

    kind            command line (after the interpreter)          name in ps
    daemon          -m rctr.daemon  (rctrd)                        its command line
    pause           -I -S -c CODE  (no rctr code at all)           rctr-pause (argv[0])
    zygote          -m rctr.shim --zygote SOCKET --ready-fd N      rctr-zygote (set_name)
    shim            -m rctr.shim STATE_DIR --ready-fd N            rctr-shim (set_name)
    port-forwarder  none: forked from the shim                     rctr-ports (set_name)
    fusepy          -m rctr.storage._fusepy -o OPTIONS MOUNTPOINT  its command line
    links           -m rctr.netstack._links attach|detach ...      its command line
    runtime         -m rctr.rootless.cli --root ROOT exec ...      its command line

A forked shim (from the zygote) and the port forwarder have no command line
of their own; the rest are built by ``argv``.  fuse-overlayfs, slirp4netns,
pasta and newuidmap are other projects' programs and are not listed.

A plain class, not a dataclass: this module is imported on the CLI's and the
daemon's start-up paths, and ``dataclasses`` costs an import of ``inspect``.
"""

from __future__ import annotations

import sys

__all__ = ["Helper", "HELPERS", "argv"]


class Helper:
    """One kind of process rctr starts (a row of the table above)."""

    __slots__ = ("kind", "python_args", "argv0", "started_by", "holds", "ended_by")

    def __init__(self, kind: str, python_args: tuple[str, ...], *, argv0: str | None = None,
                 started_by: str, holds: str, ended_by: str) -> None:
        self.kind = kind
        # The interpreter's arguments before the helper's own: ("-m", module) for most.
        self.python_args = python_args
        # argv[0] when it is not the interpreter's path: the helper's name in ps.  The
        # caller then runs sys.executable explicitly (executable=, os.execv).
        self.argv0 = argv0
        self.started_by = started_by
        self.holds = holds
        self.ended_by = ended_by

    @property
    def module(self) -> str | None:
        """The module run with ``-m``; None for the pause process (``-c`` code) and a fork."""
        args = self.python_args
        return args[args.index("-m") + 1] if "-m" in args else None


HELPERS: dict[str, Helper] = {h.kind: h for h in (
    Helper("daemon", ("-m", "rctr.daemon"),
           started_by="the CLI on first use (cli/_daemon.py); `rctr system service` runs "
                      "it inside the rctr process instead",
           holds="the API socket and every container's record; it joins the pause "
                 "process's namespaces first thing",
           ended_by="SIGTERM (`rctr system stop`); it outlives the CLI that started it"),
    Helper("pause", ("-I", "-S"), argv0="rctr-pause",
           started_by="core/pause.py, for the first rctr process of a user; rctrd "
                      "replaces a killed one from inside the namespaces",
           holds="the user namespace, and the mount namespace with the layer mounts",
           ended_by="SIGKILL from `rctr system reset`; nothing else"),
    Helper("zygote", ("-m", "rctr.shim", "--zygote"),
           started_by="rctrd (daemon/_shimctl.py), when it first starts a shim",
           holds="the shim's code, loaded and frozen, and its unix socket",
           ended_by="itself, when a request's token is stale or its socket path is "
                    "no longer its own"),
    Helper("shim", ("-m", "rctr.shim"),
           started_by="rctrd (daemon/_shimctl.py), or forked by the zygote",
           holds="one container: its init as a child, its stdio, the exit and control "
                 "FIFOs, the attach socket, its network helpers",
           ended_by="itself, once the container has exited and exit.json is written"),
    Helper("port-forwarder", (),
           started_by="the shim, by fork (netstack/_forward.py)",
           holds="the published ports' listening sockets",
           ended_by="SIGKILL from the shim; PR_SET_PDEATHSIG if the shim dies"),
    Helper("fusepy", ("-m", "rctr.storage._fusepy"),
           started_by="storage/_overlay.py, when a layer stack is mounted",
           holds="one FUSE mount (it daemonizes once the mount is up)",
           ended_by="the unmount of that mount"),
    Helper("links", ("-m", "rctr.netstack._links"),
           started_by="rctrd, through netstack.attach_in_helper / detach_in_helper",
           holds="nothing: one veth change, in a fresh interpreter without threads",
           ended_by="itself, when done (the caller waits LINK_TIMEOUT at most)"),
    Helper("runtime", ("-m", "rctr.rootless.cli"),
           started_by="rctrd's exec with the rctr runtime (daemon/_runtimes.py)",
           holds="one exec'd process, in the foreground",
           ended_by="that process's exit"),
)}


def argv(kind: str, *args: str) -> list[str]:
    """The command line that starts a helper of ``kind`` with ``args``:
    ``[sys.executable, "-m", module, *args]`` for most; for the pause process
    ``["rctr-pause", "-I", "-S", *args]``, run with ``executable=sys.executable``."""
    helper = HELPERS[kind]
    if not helper.python_args:
        raise ValueError(f"the {kind} is forked, not started from a command line")
    return [helper.argv0 or sys.executable, *helper.python_args, *args]
