"""The pieces of the OCI runtime spec that rctr reads, as types for the checker.

config.json (runtime-spec config.md, config-linux.md) and the state object
(runtime.md "State").  Only the fields rctr's runtime, shim and daemon read or
write are named; a config may carry more, and they pass through untouched.
These are TypedDicts: at run time a config stays the plain dict json gives,
so what is written to state.json is exactly what was read.  Every key is
optional to the checker (``total=False``) because the runtime checks presence
itself (rootless/_bundle.py) and reports a missing field as a clear error.

Import it under ``TYPE_CHECKING``: the runtime's start-up path need not load
``typing``.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "Spec", "Root", "Process", "User", "Rlimit", "Capabilities", "Mount", "Hook", "Hooks",
    "Linux", "Namespace", "IDMapping", "Device", "State", "Resources", "SeccompProfile",
]

# An id mapping (containerID, hostID, size); core.idmap and core.subid use this shape.
IDMapping = dict[str, int]
# Capability set name ("bounding", "effective", ...) -> capability names.
Capabilities = dict[str, list[str]]
# Hook kind ("prestart", "createRuntime", ...) -> hooks, run in order.
Hooks = dict[str, list["Hook"]]
# LinuxResources and the seccomp profile are read by core.cgroups and core.seccomp,
# which check their many optional fields themselves.
Resources = dict[str, Any]
SeccompProfile = dict[str, Any]


class Root(TypedDict, total=False):
    path: str
    readonly: bool


class User(TypedDict, total=False):
    uid: int
    gid: int
    umask: int
    additionalGids: list[int]


class Rlimit(TypedDict):
    type: str
    soft: int
    hard: int


class Process(TypedDict, total=False):
    terminal: bool
    user: User
    args: list[str]
    env: list[str]
    cwd: str
    capabilities: Capabilities
    rlimits: list[Rlimit]
    noNewPrivileges: bool
    oomScoreAdj: int


class Mount(TypedDict, total=False):
    destination: str
    type: str
    source: str
    options: list[str]


class Hook(TypedDict, total=False):
    path: str
    args: list[str]
    env: list[str]
    timeout: int


class Namespace(TypedDict, total=False):
    type: str
    path: str


class Device(TypedDict, total=False):
    path: str
    type: str
    major: int
    minor: int
    fileMode: int
    uid: int
    gid: int


class Linux(TypedDict, total=False):
    namespaces: list[Namespace]
    uidMappings: list[IDMapping]
    gidMappings: list[IDMapping]
    devices: list[Device]
    cgroupsPath: str
    resources: Resources
    seccomp: SeccompProfile
    sysctl: dict[str, str]
    maskedPaths: list[str]
    readonlyPaths: list[str]
    rootfsPropagation: str


class Spec(TypedDict, total=False):
    """config.json."""

    ociVersion: str
    process: Process
    root: Root
    hostname: str
    domainname: str
    mounts: list[Mount]
    hooks: Hooks
    annotations: dict[str, str]
    linux: Linux


class State(TypedDict):
    """The state object: what ``state`` prints and what hooks read on stdin."""

    ociVersion: str
    id: str
    status: str
    pid: int
    bundle: str
    rootfs: str
    created: str
    owner: str
    annotations: dict[str, str]
