"""The runtime's state directory: one layout, one record per container.

    ROOT/ID/state.json   written once, atomically, when create succeeds
    ROOT/ID/exec.fifo    exists from create until start; the init blocks on it

The status is never stored: it is derived from the facts each time, as runc
does, so that it cannot go stale when a process dies behind our back:
``created`` while the fifo exists and the init lives, ``running`` while the
init lives, ``stopped`` otherwise (a zombie counts as stopped).
"""

from __future__ import annotations

import json
import os

from rctr.core.atomic import write_json_atomic
from rctr.core.errors import InvalidArgument, NotFound
from rctr.core.ids import check_id
from rctr.core.proc import Process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NotRequired, TypedDict

    from rctr.core.oci import Spec, State

    class Record(TypedDict):
        """state.json: the OCI state's fixed facts, the init's identity and the config."""

        ociVersion: str
        id: str
        pid: int
        init_start_time: int
        bundle: str
        rootfs: str
        created: str
        owner: str
        annotations: dict[str, str]
        config: Spec
        cgroup: NotRequired[str]  # the container's cgroup directory, once made

__all__ = ["StateDir", "Container", "check_id", "CREATED", "RUNNING", "STOPPED", "CREATING"]

CREATING, CREATED, RUNNING, STOPPED = "creating", "created", "running", "stopped"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"


class Container:
    """A container as its state.json records it, with its live status."""

    def __init__(self, directory: str, record: Record) -> None:
        self.dir = directory
        self.record = record

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def config(self) -> Spec:
        return self.record["config"]

    @property
    def exec_fifo(self) -> str:
        return os.path.join(self.dir, EXEC_FIFO)

    def init(self) -> Process:
        return Process(int(self.record["pid"]), int(self.record["init_start_time"]))

    def status(self) -> str:
        if not self.init().alive():
            return STOPPED
        return CREATED if os.path.exists(self.exec_fifo) else RUNNING

    def oci_state(self, status: str | None = None) -> State:
        """The state object of the OCI runtime spec (what `state` prints and hooks read)."""
        status = status or self.status()
        rec = self.record
        return {
            "ociVersion": rec["ociVersion"],
            "id": rec["id"],
            "pid": rec["pid"] if status != STOPPED else 0,
            "status": status,
            "bundle": rec["bundle"],
            "rootfs": rec["rootfs"],
            "created": rec["created"],
            "owner": rec.get("owner", ""),
            "annotations": rec.get("annotations") or {},
        }


class StateDir:
    """The runtime root (``--root``): one subdirectory per container."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, container_id: str) -> str:
        return os.path.join(self.root, check_id(container_id))

    def reserve(self, container_id: str) -> str:
        """Create the container's directory; it existing means the id is taken."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        directory = self.path(container_id)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            from rctr.core.errors import AlreadyExists

            raise AlreadyExists(f"container {container_id!r} already exists") from None
        return directory

    def save(self, directory: str, record: Record) -> Container:
        # Atomic, without fsync: the root is under XDG_RUNTIME_DIR, volatile by
        # design.  A process crash sees old or new; after a power loss the whole
        # directory is gone, so a sync would protect nothing.
        write_json_atomic(os.path.join(directory, STATE_FILE), record, 0o600, sync=False)
        return Container(directory, record)

    def load(self, container_id: str) -> Container:
        directory = self.path(container_id)
        try:
            with open(os.path.join(directory, STATE_FILE), "rb") as f:
                record: Record = json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {container_id!r} does not exist") from None
        except ValueError as exc:
            raise InvalidArgument(f"state of container {container_id!r} is corrupt: {exc}") from None
        return Container(directory, record)

    def list(self) -> list[Container]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.startswith("."):
                continue
            try:
                found.append(self.load(name))
            except (NotFound, InvalidArgument):
                continue  # half-made (create in progress or crashed): not listed
        return found
