"""rctr.rootless: an OCI runtime for an ordinary user, with runc's contract.

``Runtime`` is the library (create, start, state, kill, delete, exec, run,
list); ``rctr runtime`` (see ``_cli``) is a thin runc-compatible adaptor over
it, so the daemon can drive this runtime, crun or runc the same way.
"""

from ._runtime import ContainerSetupError, Runtime, exit_code
from ._default_spec import default_spec

__all__ = ["Runtime", "ContainerSetupError", "default_spec", "exit_code"]
