"""rctr.netstack: networks an ordinary user can give a container.

Two sides, one package:

- the daemon's: what a ``--network`` value means (``parse_mode``), which
  ports to publish (``mappings_of``, ``check_unprivileged``) and how Docker
  reports them (``docker_ports``);
- the shim's: ``NetworkSandbox`` makes the container's network namespace,
  runs slirp4netns or pasta for it and forwards its published ports, and
  takes all of it down when the container exits.

Only ``core`` is imported; the shim and the daemon share the data shapes
(plain dicts in ``shim.json`` and ``net.json``), not objects.
"""

from ._hostnet import default_route
from ._links import LINK_FIELDS, attach_in_helper, detach_in_helper
from ._mode import DEFAULT_MODES, PORT_HANDLERS, SLIRP_DEFAULTS, parse_mode, slirp_addresses
from ._netns import is_netns, remove_netns
from ._ports import check_unprivileged, docker_ports, mappings_of, unprivileged_port_start
from ._sandbox import KINDS, NetworkSandbox

__all__ = [
    "parse_mode", "slirp_addresses", "DEFAULT_MODES", "SLIRP_DEFAULTS", "PORT_HANDLERS",
    "mappings_of", "check_unprivileged", "docker_ports", "unprivileged_port_start",
    "NetworkSandbox", "KINDS", "is_netns", "remove_netns", "default_route",
    "attach_in_helper", "detach_in_helper", "LINK_FIELDS",
]
