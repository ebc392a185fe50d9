"""rctr.daemon: ``rctrd``, one per user, the Docker Engine API on a unix socket.

``main`` is the entry point (``python -m rctr.daemon``, ``rctr system
service``).  It joins the pause process's namespaces, re-adopts running
containers from their shims' files and serves the API; see docs/architecture.md.
"""

from ._main import main

__all__ = ["main"]
