"""The shim's state directory: the whole contract between the daemon and a shim.

The daemon talks to a shim only through these files (containerd's shim has a
ttrpc API; ours is files, FIFOs and one socket, so a restarted daemon can
re-adopt a running shim from the directory alone)::

    shim.json      daemon -> shim: what to run (see _request)
    shim.pid       {"pid": N, "start_time": T}: the shim itself, as (pid, start time)
    pid            the container init's pid (written by the runtime)
    starttime      the init's start time, clock ticks since boot (/proc/PID/stat field 22)
    process.json   the bundle's ``process`` object
    log.json       the external runtime's own log (crun/runc ``--log``, JSON lines)
    shim-log.json  the shim's own problems, JSON lines {"level", "msg", "time"}
    exit.json      {"exit_code", "signal", "finished_at"}, written atomically at exit
    exit           FIFO the shim holds open until exit.json is written, then closes
    control        FIFO the shim reads: JSON lines {"op": "close_stdin"} and
                   {"op": "resize", "width": W, "height": H}
    attach.sock    unix stream socket: output in Docker's 8-byte framing, input to stdin
    console.sock   unix socket that crun/runc send the pty master to (tty only)
    netns          the container's network namespace, a bind mount (rctr.netstack)
    net.json       the network as set up: {"netns", "ports", "port_handler", "pids"}
    slirp.sock, slirp4netns.log, pasta.pid, pasta.log: the network helpers'

The ready fd (``--ready-fd N``) carries one line: ``{"pid": N}`` (with
``"network"``: net.json's content) once the container is created, or ``{"error": msg, "hint": hint-or-null}``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    # The JSON files' shapes, for the checker: on disk they stay plain JSON objects.
    from typing import NotRequired, TypedDict

    from rctr.netstack._types import NetInfo

    class ShimPid(TypedDict):
        """shim.pid."""

        pid: int
        start_time: int | None

    class ExitRecord(TypedDict):
        """exit.json: Docker's view of the exit (128 + signal for a killed init)."""

        exit_code: int
        signal: int | None
        finished_at: str
        error: NotRequired[str]  # why the shim stopped the container, when it did

    class Ready(TypedDict, total=False):
        """The ready fd's one line: pid (and network), or error and hint."""

        pid: int
        network: NetInfo
        error: str
        hint: str | None

__all__ = [
    "SHIM_JSON", "SHIM_PID", "PID", "STARTTIME", "PROCESS_JSON", "RUNTIME_LOG", "SHIM_LOG",
    "EXIT_JSON", "EXIT_FIFO", "CONTROL_FIFO", "ATTACH_SOCK", "CONSOLE_SOCK", "NETNS", "NET_JSON",
]

SHIM_JSON = "shim.json"
SHIM_PID = "shim.pid"
PID = "pid"
STARTTIME = "starttime"
PROCESS_JSON = "process.json"
RUNTIME_LOG = "log.json"
SHIM_LOG = "shim-log.json"
EXIT_JSON = "exit.json"
EXIT_FIFO = "exit"
CONTROL_FIFO = "control"
ATTACH_SOCK = "attach.sock"
CONSOLE_SOCK = "console.sock"
NETNS = "netns"
NET_JSON = "net.json"
