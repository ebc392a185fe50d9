"""The Engine API's route table: every endpoint rctrd serves, and the handler that serves it.

Grouped and ordered as Docker's Engine API reference (v1.43) groups them: Containers,
Images, Networks, Volumes, Exec, System, then Swarm (and its nodes, services, tasks,
secrets and configs) and Plugins, which a node in no swarm answers with 503s and [].  Each handler is a module-level function
``handler(daemon, req)``; ``router`` binds the daemon to each, in this one place.

Order of matching: ``Router.match`` takes the first route whose pattern and method fit,
and a ``HEAD`` falls back to the first ``GET`` of its path.  No two routes of one method
match the same path here (each ``{name:path}`` route ends in its own literal segment), so
the order below is the reference's, not the matcher's.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

from . import (_api_archive, _api_auth, _api_commit, _api_container_io, _api_containers,
               _api_exec, _api_images, _api_networks, _api_plugins, _api_swarm, _api_system,
               _api_volumes)
from ._http import Request, Router

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["ROUTES", "DaemonHandler", "router"]

DaemonHandler = Callable[["Daemon", Request], None]

ROUTES: tuple[tuple[str, str, DaemonHandler], ...] = (
    # Containers
    ("GET", "/containers/json", _api_containers.container_list),
    ("POST", "/containers/create", _api_containers.container_create),
    ("GET", "/containers/{id}/json", _api_containers.container_inspect),
    ("GET", "/containers/{id}/top", _api_container_io.container_top),
    ("GET", "/containers/{id}/logs", _api_container_io.container_logs),
    ("GET", "/containers/{id}/stats", _api_container_io.container_stats),
    ("POST", "/containers/{id}/resize", _api_container_io.container_resize),
    ("POST", "/containers/{id}/start", _api_containers.container_start),
    ("POST", "/containers/{id}/stop", _api_containers.container_stop),
    ("POST", "/containers/{id}/restart", _api_containers.container_restart),
    ("POST", "/containers/{id}/kill", _api_containers.container_kill),
    ("POST", "/containers/{id}/update", _api_containers.container_update),
    ("POST", "/containers/{id}/rename", _api_containers.container_rename),
    ("POST", "/containers/{id}/attach", _api_container_io.container_attach),
    ("POST", "/containers/{id}/wait", _api_containers.container_wait),
    ("DELETE", "/containers/{id}", _api_containers.container_delete),
    ("GET", "/containers/{id}/archive", _api_archive.container_archive),  # HEAD too: its stat
    ("PUT", "/containers/{id}/archive", _api_archive.put_container_archive),
    ("POST", "/containers/prune", _api_containers.container_prune),
    # Images
    ("GET", "/images/json", _api_images.image_list),
    ("POST", "/images/create", _api_images.image_create),
    ("GET", "/images/{name:path}/json", _api_images.image_inspect),
    ("GET", "/images/{name:path}/history", _api_images.image_history),
    ("POST", "/images/{name:path}/push", _api_images.image_push),
    ("POST", "/images/{name:path}/tag", _api_images.image_tag),
    ("DELETE", "/images/{name:path}", _api_images.image_delete),
    ("POST", "/images/prune", _api_images.image_prune),
    ("POST", "/commit", _api_commit.image_commit),
    ("GET", "/images/{name:path}/get", _api_images.image_get),
    ("GET", "/images/get", _api_images.image_get_all),
    ("POST", "/images/load", _api_images.image_load),
    # Networks
    ("GET", "/networks", _api_networks.network_list),
    ("GET", "/networks/{id}", _api_networks.network_inspect),
    ("DELETE", "/networks/{id}", _api_networks.network_delete),
    ("POST", "/networks/create", _api_networks.network_create),
    ("POST", "/networks/{id}/connect", _api_networks.network_connect),
    ("POST", "/networks/{id}/disconnect", _api_networks.network_disconnect),
    ("POST", "/networks/prune", _api_networks.network_prune),
    # Volumes
    ("GET", "/volumes", _api_volumes.volume_list),
    ("POST", "/volumes/create", _api_volumes.volume_create),
    ("GET", "/volumes/{name}", _api_volumes.volume_inspect),
    ("DELETE", "/volumes/{name}", _api_volumes.volume_delete),
    ("POST", "/volumes/prune", _api_volumes.volume_prune),
    # Exec
    ("POST", "/containers/{id}/exec", _api_exec.container_exec),
    ("POST", "/exec/{id}/start", _api_exec.exec_start),
    ("POST", "/exec/{id}/resize", _api_exec.exec_resize),
    ("GET", "/exec/{id}/json", _api_exec.exec_inspect),
    # System
    ("POST", "/auth", _api_auth.system_auth),
    ("GET", "/info", _api_system.system_info),
    ("GET", "/version", _api_system.system_version),
    ("GET", "/_ping", _api_system.system_ping),
    ("HEAD", "/_ping", _api_system.system_ping),
    ("GET", "/events", _api_system.system_events),
    ("GET", "/system/df", _api_system.system_data_usage),
    # Swarm, Nodes, Services, Tasks, Secrets, Configs: a node in no swarm (503), as dockerd
    ("GET", "/swarm", _api_swarm.not_a_manager),
    ("POST", "/swarm/init", _api_swarm.no_swarm_mode),
    ("POST", "/swarm/join", _api_swarm.no_swarm_mode),
    ("POST", "/swarm/leave", _api_swarm.not_in_a_swarm),
    ("POST", "/swarm/update", _api_swarm.not_a_manager),
    ("GET", "/swarm/unlockkey", _api_swarm.not_a_manager),
    ("POST", "/swarm/unlock", _api_swarm.not_a_manager),
    ("GET", "/nodes", _api_swarm.not_a_manager),
    ("GET", "/nodes/{id}", _api_swarm.not_a_manager),
    ("DELETE", "/nodes/{id}", _api_swarm.not_a_manager),
    ("POST", "/nodes/{id}/update", _api_swarm.not_a_manager),
    ("GET", "/services", _api_swarm.not_a_manager),
    ("POST", "/services/create", _api_swarm.not_a_manager),
    ("GET", "/services/{id}", _api_swarm.not_a_manager),
    ("DELETE", "/services/{id}", _api_swarm.not_a_manager),
    ("POST", "/services/{id}/update", _api_swarm.not_a_manager),
    ("GET", "/services/{id}/logs", _api_swarm.not_a_manager),
    ("GET", "/tasks", _api_swarm.not_a_manager),
    ("GET", "/tasks/{id}", _api_swarm.not_a_manager),
    ("GET", "/tasks/{id}/logs", _api_swarm.not_a_manager),
    ("GET", "/secrets", _api_swarm.not_a_manager),
    ("POST", "/secrets/create", _api_swarm.not_a_manager),
    ("GET", "/secrets/{id}", _api_swarm.not_a_manager),
    ("DELETE", "/secrets/{id}", _api_swarm.not_a_manager),
    ("POST", "/secrets/{id}/update", _api_swarm.not_a_manager),
    ("GET", "/configs", _api_swarm.not_a_manager),
    ("POST", "/configs/create", _api_swarm.not_a_manager),
    ("GET", "/configs/{id}", _api_swarm.not_a_manager),
    ("DELETE", "/configs/{id}", _api_swarm.not_a_manager),
    ("POST", "/configs/{id}/update", _api_swarm.not_a_manager),
    # Plugins: none
    ("GET", "/plugins", _api_plugins.plugin_list),
    ("GET", "/plugins/{name:path}/json", _api_plugins.plugin_inspect),
)


def router(daemon: Daemon) -> Router:
    """A Router over ``ROUTES``, each handler bound to ``daemon``."""
    out = Router()
    for method, pattern, handler in ROUTES:
        out.add(method, pattern, _bind(handler, daemon))
    return out


def _bind(handler: DaemonHandler, daemon: Daemon) -> Callable[[Request], None]:
    # functools.wraps keeps the handler's name and source (``__wrapped__``): the API fuzz
    # reads the query parameters a handler takes from its source.
    @functools.wraps(handler)
    def serve(req: Request) -> None:
        handler(daemon, req)
    return serve
