"""The container service: create, start, stop, kill, wait, remove, and their supervisor.

Each container is a ``Record`` (``rctr.daemon._record``) in
``<datadir>/containers/ID/config.json``, written atomically on every change.  A record
exists only once everything create makes exists; remove deletes the record first, so a
crash in between leaves things that ``reconcile`` collects, never a half container.
A running container has a shim (``_shimctl``) and a monitor thread that waits for its
exit, records it, cleans up and applies the restart policy or ``--rm``.

One module per concern, functions over a shared ``Context``; ``Containers`` is the
facade the API handlers call:

- ``_context``: ``Container`` (a record and its lock), ``Context`` (the containers by
  id and what the service needs);
- ``_create``, ``_start``, ``_stop`` (stop, kill, restart, wait), ``_remove``,
  ``_update`` (update, rename), ``_usernets`` (user networks: connect, addresses, peers);
- ``_supervise``: the monitor, the exit, the restart policy;
- ``_teardown``: what a container holds, and its release;
- ``_reconcile``: the daemon's start.
"""

from ._context import Container
from ._service import Containers

__all__ = ["Container", "Containers"]
