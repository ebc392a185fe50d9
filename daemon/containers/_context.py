"""What every part of the container service shares: its dependencies and the containers.

A ``Container`` is a record with the lock and conditions that the API calls wait on;
``Context`` holds them by id, with the daemon's parts that create, start and remove
them need (the store, volumes, networks, runtime, events...).  The other modules of
this package are functions over a ``Context``.
"""

from __future__ import annotations

import os
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from rctr.core import cgroups
from rctr.core.atomic import write_json_atomic
from rctr.core.errors import InvalidArgument, NotFound

from .._events import Events
from .._network_records import Networks
from .._paths import DaemonPaths
from .._record import Record, State, to_disk
from .._runtimes import OCIRuntime
from .._shimctl import Zygote
from .._volumes import Volumes

__all__ = ["Container", "Context", "Hook", "PendingAttach"]

PendingAttach = dict[str, threading.Event]  # "ready": the shim exists; "connected": attached


class Container:
    """A record with the locks and conditions the API calls wait on."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.exits = 0              # how many exits were seen (for wait next-exit)
        self.removed = False
        self.pending_attaches: list[PendingAttach] = []
        self.monitor_stop = threading.Event()
        self.starting = False
        # Its exec instances, by id (inspect's ExecIDs).  Kept in memory only and dropped
        # when the container stops, as Docker does: a long-lived daemon must not hold
        # every exec ever made.
        self.execs: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> State:
        return self.record.state

    def running(self) -> bool:
        return self.record.state.running


Hook = Callable[[Container], None]


@dataclass
class Context:
    paths: DaemonPaths
    store: Any
    volumes: Volumes
    events: Events
    runtime: OCIRuntime
    driver: str
    networks: Networks
    init_path: str | None = None
    zygote: Zygote | None = None
    delegation: cgroups.Delegation | None = None  # where container cgroups go; None: not enforced
    # The configured default network: written into the record of a create that names
    # none, so that a later change of the setting leaves existing containers alone.
    default_network: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    by_id: dict[str, Container] = field(default_factory=dict)
    reserved: dict[str, set[str]] = field(default_factory=dict)  # network id -> addresses taken
    # Called after a start and after an exit is recorded (healthchecks plug in here).
    start_hooks: list[Hook] = field(default_factory=list)
    exit_hooks: list[Hook] = field(default_factory=list)
    # Names of the containers that reconcile found running with no shim left.
    lost_at_start: list[str] = field(default_factory=list)

    def get(self, ref: str) -> Container:
        """By full id, unique id prefix or name (Docker's order)."""
        with self.lock:
            if ref in self.by_id:
                return self.by_id[ref]
            name = ref.lstrip("/")
            for c in self.by_id.values():
                if c.name == name:
                    return c
            matches = [c for i, c in self.by_id.items() if i.startswith(ref)] if ref else []
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        with self.lock:
            return list(self.by_id.values())

    def names(self) -> set[str]:
        with self.lock:
            return {c.name for c in self.by_id.values()}

    def save(self, c: Container) -> None:
        write_json_atomic(os.path.join(self.paths.container_dir(c.id), "config.json"),
                          to_disk(c.record), 0o600)

    def event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {"name": c.name, "image": c.record.config.get("Image", "")}
        attrs.update(c.record.config.get("Labels") or {})
        attrs.update(extra)
        self.events.emit("container", action, c.id, attrs)

    @staticmethod
    def run_hooks(hooks: list[Hook], c: Container) -> None:
        for hook in hooks:
            try:
                hook(c)
            except Exception:  # noqa: BLE001 - a hook never breaks the lifecycle
                traceback.print_exc()
