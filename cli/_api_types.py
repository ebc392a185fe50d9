"""The Engine API shapes that the CLI builds itself, for the type checker.

Docker's own types (``api/types/container``, ``api/types/mount``), as far as
``POST /containers/create`` and ``POST /containers/{id}/update`` carry them
from rctr's flags (``_create_request``).  Only the type checker imports this
module (under ``TYPE_CHECKING``): ``typing`` costs the CLI's start-up 3 ms.
"""

from __future__ import annotations

from typing import NotRequired, Required, TypedDict

__all__ = [
    "ContainerConfig",
    "CreateBody",
    "EndpointSettings",
    "Empty",
    "Healthcheck",
    "HostConfig",
    "LogConfig",
    "Mount",
    "MountBindOptions",
    "MountDriverConfig",
    "MountTmpfsOptions",
    "MountVolumeOptions",
    "NetworkingConfig",
    "PortBinding",
    "Ports",
    "Resources",
    "RestartPolicy",
    "Ulimit",
    "UpdateConfig",
]


class Empty(TypedDict):
    """Go's ``struct{}``: the values of ExposedPorts and Volumes."""


class PortBinding(TypedDict):
    HostIp: str
    HostPort: str


class RestartPolicy(TypedDict):
    Name: str
    MaximumRetryCount: int


class Healthcheck(TypedDict, total=False):
    Test: list[str]
    Interval: int
    Timeout: int
    StartPeriod: int
    Retries: int


class MountBindOptions(TypedDict, total=False):
    Propagation: str
    NonRecursive: bool


class MountDriverConfig(TypedDict, total=False):
    Name: str
    Options: dict[str, str]


class MountVolumeOptions(TypedDict, total=False):
    NoCopy: bool
    Labels: dict[str, str]
    DriverConfig: MountDriverConfig


class MountTmpfsOptions(TypedDict, total=False):
    SizeBytes: int
    Mode: int


class Mount(TypedDict, total=False):
    Type: Required[str]
    Source: str
    Target: str
    ReadOnly: bool
    Consistency: str
    BindOptions: MountBindOptions
    VolumeOptions: MountVolumeOptions
    TmpfsOptions: MountTmpfsOptions


class LogConfig(TypedDict):
    Type: str
    Config: dict[str, str]


class Ulimit(TypedDict):
    Name: str
    Soft: int
    Hard: int


class Resources(TypedDict, total=False):
    """The resource flags ``run`` and ``update`` share."""
    Memory: int
    MemorySwap: int
    MemoryReservation: int
    NanoCpus: int
    CpuShares: int
    PidsLimit: int


class UpdateConfig(Resources, total=False):
    """The body of ``POST /containers/{id}/update``."""
    RestartPolicy: RestartPolicy


class HostConfig(Resources):
    Binds: list[str]
    Mounts: list[Mount]
    PortBindings: dict[str, list[PortBinding]]
    PublishAllPorts: bool
    NetworkMode: str
    AutoRemove: bool
    RestartPolicy: RestartPolicy
    CapAdd: list[str]
    CapDrop: list[str]
    Privileged: bool
    ReadonlyRootfs: bool
    LogConfig: LogConfig
    SecurityOpt: list[str]
    ExtraHosts: list[str]
    Dns: list[str]
    GroupAdd: list[str]
    Sysctls: dict[str, str]
    Ulimits: list[Ulimit]
    Tmpfs: NotRequired[dict[str, str]]
    Init: NotRequired[bool]
    ShmSize: NotRequired[int]


class EndpointSettings(TypedDict):
    Aliases: list[str]


class NetworkingConfig(TypedDict):
    EndpointsConfig: dict[str, EndpointSettings]


class ContainerConfig(TypedDict):
    Hostname: str
    User: str
    AttachStdin: bool
    AttachStdout: bool
    AttachStderr: bool
    ExposedPorts: dict[str, Empty]
    Tty: bool
    OpenStdin: bool
    StdinOnce: bool
    Env: list[str]
    Cmd: list[str] | None
    Image: str
    Volumes: dict[str, Empty]
    WorkingDir: str
    Entrypoint: list[str] | None
    Labels: dict[str, str]
    Healthcheck: NotRequired[Healthcheck]
    StopSignal: NotRequired[str]
    StopTimeout: NotRequired[int]


class CreateBody(ContainerConfig):
    """The body of ``POST /containers/create``: Config, with HostConfig and NetworkingConfig."""
    HostConfig: HostConfig
    NetworkingConfig: NetworkingConfig


# -p and --expose: (ExposedPorts, PortBindings).
Ports = tuple[dict[str, Empty], dict[str, list[PortBinding]]]
