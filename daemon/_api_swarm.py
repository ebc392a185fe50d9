"""Swarm: what a dockerd that is in no swarm answers.

rctr is one user's engine on one host: it never joins a swarm.  dockerd outside a swarm
answers every swarm endpoint (``/swarm``, ``/nodes``, ``/services``, ``/tasks``,
``/secrets``, ``/configs``) with 503 and one of two sentences, and clients read that 503
as "no swarm" (docker-py's ``swarm.leave`` in test set-ups, ``docker info``'s callers);
a 404 "page not found" would read as a broken daemon.  Creating or joining a swarm is
refused with a reason instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rctr.core.errors import Unsupported

from ._http import HTTPError, Request

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["not_a_manager", "not_in_a_swarm", "no_swarm_mode"]

# moby daemon/cluster/errors.go: errNoManager (no swarm node) and errNoSwarm.
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or '
                 '"docker swarm join" to connect this node to swarm and try again.')
NOT_IN_A_SWARM = "This node is not part of a swarm"


def not_a_manager(daemon: Daemon, req: Request) -> None:
    """Every swarm read and change: this node manages no swarm."""
    raise HTTPError(503, NOT_A_MANAGER)


def not_in_a_swarm(daemon: Daemon, req: Request) -> None:
    """``POST /swarm/leave``: there is no swarm to leave."""
    raise HTTPError(503, NOT_IN_A_SWARM)


def no_swarm_mode(daemon: Daemon, req: Request) -> None:
    """``POST /swarm/init`` and ``/swarm/join``."""
    raise Unsupported("rctr has no swarm mode: it runs one user's containers on this host "
                      "only, so it cannot create or join a swarm")
