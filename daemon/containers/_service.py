"""``Containers``: the one object the API handlers call; each call is one module's."""

from __future__ import annotations

from typing import Any, Callable

from rctr.core import cgroups

from .._events import Events
from .._network_records import Networks
from .._paths import DaemonPaths
from .._record import JSON
from .._runtimes import OCIRuntime
from .._shimctl import Shim, Zygote
from .._volumes import Volumes
from . import (_create, _reconcile, _remove, _start, _stop, _teardown, _update,
               _usernets)
from ._context import Container, Context, Hook, PendingAttach

__all__ = ["Containers"]


class Containers:
    def __init__(self, paths: DaemonPaths, store: Any, volumes: Volumes, events: Events,
                 runtime: OCIRuntime, driver: str, init_path: str | None = None,
                 zygote: Zygote | None = None, delegation: cgroups.Delegation | None = None,
                 networks: Networks | None = None, default_network: str | None = None) -> None:
        self._ctx = ctx = Context(paths, store, volumes, events, runtime, driver,
                                  networks or Networks(paths.networks), init_path, zygote,
                                  delegation, default_network)
        self.networks = ctx.networks
        self.start_hooks: list[Hook] = ctx.start_hooks
        self.exit_hooks: list[Hook] = ctx.exit_hooks
        self.lost_at_start: list[str] = ctx.lost_at_start

    # -- lookup and the record ---------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self._ctx.get(ref)

    def all(self) -> list[Container]:
        return self._ctx.all()

    def names(self) -> set[str]:
        return self._ctx.names()

    def exec_instance(self, exec_id: str) -> Any:
        """The exec instance ``exec_id`` of whichever container holds it, or None."""
        for c in self._ctx.all():
            inst = c.execs.get(exec_id)
            if inst is not None:
                return inst
        return None

    def save(self, c: Container) -> None:
        self._ctx.save(c)

    def event(self, c: Container, action: str, **extra: str) -> None:
        self._ctx.event(c, action, **extra)

    # -- the lifecycle -----------------------------------------------------------------------

    def create(self, body: Any, name: str | None) -> tuple[Container, list[str]]:
        return _create.create(self._ctx, body, name)

    def start(self, ref: str) -> Container:
        return _start.start(self._ctx, ref)

    def stop(self, ref: str, timeout: int | None = None, signum: str | None = None) -> None:
        _stop.stop(self._ctx, ref, timeout, signum)

    def kill(self, ref: str, signum: int | str | None = None) -> None:
        _stop.kill(self._ctx, ref, signum)

    def restart(self, ref: str, timeout: int | None = None) -> None:
        _stop.restart(self._ctx, ref, timeout)

    def wait_handle(self, ref: str, condition: str
                    ) -> Callable[[Callable[[], bool]], JSON | None]:
        return _stop.wait_handle(self._ctx, ref, condition)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        _remove.remove(self._ctx, ref, force, volumes)

    def update(self, ref: str, body: Any) -> list[str]:
        return _update.update(self._ctx, ref, body)

    def rename(self, ref: str, new: str) -> None:
        _update.rename(self._ctx, ref, new)

    def reconcile(self) -> dict[str, int]:
        return _reconcile.reconcile(self._ctx)

    # -- user networks, attach, the root ---------------------------------------------------

    def connect(self, ref: str, network: str, endpoint: object = None) -> None:
        _usernets.connect(self._ctx, ref, network, endpoint)

    def disconnect(self, ref: str, network: str, force: bool = False) -> None:
        _usernets.disconnect(self._ctx, ref, network, force)

    def expect_attach(self, c: Container) -> PendingAttach | None:
        return _start.expect_attach(c)

    def wait_for_shim(self, c: Container, pending: PendingAttach | None) -> Shim:
        return _start.wait_for_shim(self._ctx, c, pending)

    def mount_rootfs(self, c: Container) -> str:
        return _teardown.mount_rootfs(c)

    def unmount_rootfs(self, c: Container) -> None:
        _teardown.unmount_rootfs(c)
