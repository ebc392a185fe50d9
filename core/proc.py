"""Process identity: a process is (pid, start time), never a bare pid.

A pid is reused once its process is reaped; signalling a stale pid could hit
an unrelated process.  Every signal rctr sends goes through ``Process``, which
checks the start time (field 22 of /proc/PID/stat, in clock ticks since boot)
first, and holds a pidfd while it signals where the kernel has them.
"""

from __future__ import annotations

import os
import signal

__all__ = ["Process", "start_time", "proc_state", "close_fds_except"]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(b")") + 2:].decode().split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat (R, S, Z, ...), or None if gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


class Process:
    """A process known by its pid and start time."""

    __slots__ = ("pid", "start_time")

    def __init__(self, pid: int, start: int) -> None:
        self.pid = pid
        self.start_time = start

    @classmethod
    def of(cls, pid: int) -> Process | None:
        start = start_time(pid)
        return None if start is None else cls(pid, start)

    def is_same(self) -> bool:
        """True while the pid still names this process (zombies included)."""
        return start_time(self.pid) == self.start_time

    def alive(self) -> bool:
        """True while the process runs: same identity and not a zombie."""
        fields = _stat_fields(self.pid)
        if not fields:
            return False
        return int(fields[19]) == self.start_time and fields[0] not in "ZX"

    def signal(self, signum: int) -> bool:
        """Send ``signum`` if the pid still names this process; False if it is gone."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        try:
            # Checked after opening the pidfd: from here the pidfd pins the process.
            if not self.is_same():
                return False
            signal.pidfd_send_signal(pidfd, signum)
            return True
        except ProcessLookupError:
            return False
        finally:
            os.close(pidfd)


def close_fds_except(keep: set[int] | list[int] | tuple[int, ...]) -> None:
    """Close every fd from 3 up but ``keep``: a forked child's first step, so that it holds
    none of its parent's pipes, sockets and FIFOs open (close-on-exec does not act on fork)."""
    low = 3
    for fd in sorted(k for k in set(keep) if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)
