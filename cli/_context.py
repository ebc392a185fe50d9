"""What every command shares: where the daemon is, and one way to fail.

The host is decided once, at the edge (``--host``, then ``RCTR_HOST``, then
the per-user socket); only the default socket may start the daemon, because
an explicit host names a daemon someone else runs.
"""

from __future__ import annotations

import functools
import os

from rctr.core.paths import runtime_dir

from ._client import Client, socket_path_from_host

__all__ = ["CLIError", "Env", "confirm"]


class CLIError(Exception):
    """A mistake the CLI finds by itself (bad flag value, missing file); exit 125 by default."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Env:
    """The root options, passed to every command as click's ``obj``.

    A plain class, as the others on ``rctr run``'s path: ``dataclasses`` imports
    ``inspect`` and costs 6 ms on every command.
    """

    def __init__(self, host: str | None = None) -> None:
        self.host = host  # explicit: --host or RCTR_HOST

    @classmethod
    def from_options(cls, host: str | None) -> Env:
        return cls(host or os.environ.get("RCTR_HOST") or None)

    @property
    def rundir(self) -> str:
        return runtime_dir()

    @property
    def socket_path(self) -> str:
        if self.host:
            try:
                return socket_path_from_host(self.host)
            except ValueError as exc:
                raise CLIError(str(exc)) from None
        from ._daemon import default_socket

        return default_socket(self.rundir)

    @functools.cached_property
    def client(self) -> Client:
        """The API client; for the default socket, the daemon is started first if down."""
        client = Client(self.socket_path)
        if not self.host:
            from ._daemon import ensure_running

            ensure_running(self.rundir, ping=client.ping)
        return client


def confirm(warning: str) -> bool:
    """Docker's prune prompt: the warning, then ``[y/N]``; only y or yes goes on."""
    import sys

    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
