"""Stop, kill, restart and wait: signals to a running container, and waiting for its exit.

The exit itself is recorded by the monitor (``_supervise``); these wait for it on the
container's condition.  A stop or a kill by hand marks the container manually stopped,
which the restart policy respects.
"""

from __future__ import annotations

import signal
import time
from typing import Callable

from rctr.core.errors import Conflict, InvalidArgument, RctrError

from .._record import JSON
from . import _start
from ._context import Container, Context

__all__ = ["kill", "restart", "stop", "wait_exit", "wait_handle"]

DEFAULT_STOP_TIMEOUT = 10
KILL_WAIT_SECONDS = 30  # how long a SIGKILL is given to end the container
_CONDITIONS = ("", "not-running", "next-exit", "removed")

WaitResult = JSON


def kill(ctx: Context, ref: str, signum: int | str | None = None) -> None:
    c = ctx.get(ref)
    sig = _signal(signum) if signum not in (None, "") else signal.SIGKILL
    with c.lock:
        if not c.running():
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            c.record.manually_stopped = sig == signal.SIGKILL or c.record.manually_stopped
        exits = c.exits
    ctx.runtime.kill(c.id, sig, all_processes=False)
    ctx.event(c, "kill", signal=str(int(sig)))
    if sig == signal.SIGKILL:
        # dockerd answers a SIGKILL once the container has exited (daemon/kill.go), so an
        # inspect or a plain rm right after it sees it stopped.
        wait_exit(c, exits, KILL_WAIT_SECONDS)


def stop(ctx: Context, ref: str, timeout: int | None = None, signum: str | None = None) -> None:
    c = ctx.get(ref)
    with c.lock:
        if not c.running():
            from .._http import NotModified

            raise NotModified()
        c.record.manually_stopped = True
        ctx.save(c)
        exits = c.exits
    config = c.record.config
    sig = _signal(signum or config.get("StopSignal") or "SIGTERM")
    if timeout is None:
        timeout = config.get("StopTimeout")
        timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
    try:
        ctx.runtime.kill(c.id, sig)
    except RctrError:
        pass
    if timeout < 0 or not wait_exit(c, exits, timeout):
        try:
            ctx.runtime.kill(c.id, signal.SIGKILL, all_processes=True)
        except RctrError:
            pass
        wait_exit(c, exits, KILL_WAIT_SECONDS)
    ctx.event(c, "stop")


def wait_exit(c: Container, exits: int, timeout: float) -> bool:
    """Wait until the container exits (after ``exits`` exits) or no longer runs; False
    if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    with c.lock:
        while c.exits == exits and c.running():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            c.changed.wait(min(left, 1.0))
    return True


def restart(ctx: Context, ref: str, timeout: int | None = None) -> None:
    c = ctx.get(ref)
    if c.running():
        stop(ctx, ref, timeout)
    _start.start(ctx, c.id)
    ctx.event(c, "restart")


def wait_handle(ctx: Context, ref: str,
                condition: str) -> Callable[[Callable[[], bool]], WaitResult | None]:
    """Take the snapshot now (before the client's start); block later, until the
    condition holds (the result) or ``gone()`` says the client left (None)."""
    if condition not in _CONDITIONS:
        raise InvalidArgument(f"invalid condition {condition!r}: use not-running, next-exit or removed")
    c = ctx.get(ref)
    with c.lock:
        exits = c.exits

    def waiting() -> bool:
        if condition == "removed":
            return not c.removed
        if condition == "next-exit":
            return c.exits == exits and not c.removed
        return (c.running() or c.starting) and not c.removed

    def block(gone: Callable[[], bool]) -> WaitResult | None:
        with c.lock:
            while waiting():
                if gone():
                    return None  # no one to answer: the thread ends now, not at the exit
                c.changed.wait(1.0)
            error = c.state.error or None
            return {"StatusCode": c.state.exit_code,
                    "Error": {"Message": error} if error else None}
    return block


def _signal(value: int | str | None) -> signal.Signals:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        try:
            return signal.Signals(int(value))
        except ValueError:
            raise InvalidArgument(f"invalid signal: {value}") from None
    name = str(value).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None
