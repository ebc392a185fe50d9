"""rctr.shim: one process per container, like containerd-shim, for an ordinary user.

The shim creates the container through the runtime (rctr's in-process, or
crun/runc), holds its stdio, writes its output to a json-file log and to
attached clients, reaps it as a child subreaper and records its exit.  It
outlives the daemon that started it; the daemon talks to it only through
the files in its state directory (``_statedir`` lists them).
"""

from ._lifecycle import main

__all__ = ["main"]
