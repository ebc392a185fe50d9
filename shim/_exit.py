"""The container's exit as the daemon learns it: ``exit.json``, then the ``exit`` FIFO closes.

The shim holds the FIFO open (read-write, so opening it never blocks) for
its whole life.  A daemon, even one restarted later, opens it read-only and
waits for POLLHUP: Linux reports that on a FIFO only once a writer goes away
after the reader opened, so the daemon checks ``exit.json`` after opening,
before waiting.  The shim writes ``exit.json`` atomically first, so when the
FIFO closes the file is there; if the shim dies instead, the FIFO closes with
no ``exit.json`` and the daemon knows the shim crashed.
"""

from __future__ import annotations

import os

from rctr.core.atomic import write_json_atomic

from ._io import rfc3339_nano

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._statedir import ExitRecord

__all__ = ["open_fifo", "exit_record", "write_exit"]


def open_fifo(path: str) -> int:
    """Make the FIFO and hold it open read-write (never blocks, never sees EOF)."""
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def exit_record(status: int, finished_ns: int | None = None,
                error: str | None = None) -> ExitRecord:
    """A wait status as Docker reports it: 128 + signal for a killed process; ``error``
    says why the shim stopped the container, when it did."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        code, sig = 128 + signum, signum
    else:
        code, sig = os.WEXITSTATUS(status), None
    record: ExitRecord = {"exit_code": code, "signal": sig,
                          "finished_at": rfc3339_nano(finished_ns)}
    if error:
        record["error"] = error
    return record


def write_exit(path: str, status: int, finished_ns: int | None = None,
               error: str | None = None) -> None:
    write_json_atomic(path, exit_record(status, finished_ns, error), 0o644)
