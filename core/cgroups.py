"""cgroup v2 for an ordinary user: the delegated subtree, one cgroup per container.

An ordinary user can set limits only in a cgroup v2 subtree handed to them (what
systemd's ``Delegate=yes`` does for ``user@UID.service``): directories and the
``cgroup.procs``/``cgroup.subtree_control`` files owned by the user.  rctr looks
for it one level up from its own cgroup, the way Podman places ``libpod-ID.scope``
beside the cgroup it runs in: the daemon's own cgroup is a leaf with processes in
it, and cgroup v2 lets only a cgroup without processes hand controllers on
("no internal processes"), so each container's cgroup is the daemon's sibling,
``<parent>/rctr-<id>``.  Moving a process there needs write access to the common
parent's ``cgroup.procs``, which delegation gives.

Everything else (cgroup v1, a hybrid host whose controllers are bound to v1, no
delegation) finds nothing here, and the daemon warns that limits are not
enforced (design brief §5).

The resources are the OCI ``linux.resources`` object; ``v2_files`` writes them as
runc's fs2 driver does.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["CONTROLLERS", "Delegation", "find_delegation", "unified_mount", "own_cgroup",
           "v2_files", "needed_controllers", "create", "apply", "enter", "remove", "usage",
           "host_path", "restrict", "CPU_PERIOD"]

# The controllers whose limits rctr sets; cpuset and io are left alone.
CONTROLLERS = ("cpu", "memory", "pids")
CONTAINER_PREFIX = "rctr-"
CPU_PERIOD = 100_000  # microseconds: the CFS period when none is given, as runc's


@dataclass(frozen=True)
class Delegation:
    """Where container cgroups go: ``mount`` (cgroup2's mount point) + ``base``."""

    mount: str
    base: str  # cgroup path of the delegated parent, "/a/b" (relative to the cgroup2 root)
    controllers: frozenset[str]  # enabled for base's children

    def cgroups_path(self, container_id: str) -> str:
        """The OCI ``linux.cgroupsPath`` of a container: absolute within cgroup2."""
        return f"{self.base.rstrip('/')}/{CONTAINER_PREFIX}{container_id}"


def unified_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """cgroup2's mount point: /sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one."""
    found = []
    try:
        with open(mountinfo) as fh:
            for line in fh:
                fields = line.split()
                sep = fields.index("-")
                # Any root: inside a cgroup namespace the host's mount shows as "/../..".
                if fields[sep + 1] == "cgroup2":
                    found.append(fields[4].replace("\\040", " "))
    except (OSError, ValueError, IndexError):
        return None
    if not found:
        return None
    return "/sys/fs/cgroup" if "/sys/fs/cgroup" in found else found[0]


def own_cgroup(pid: int | str = "self") -> str | None:
    """A process's cgroup v2 path (the ``0::`` line of /proc/PID/cgroup)."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def host_path(mount: str, cgroups_path: str) -> str:
    """The directory of ``cgroups_path`` under ``mount``; no ``..`` can climb out."""
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"cgroupsPath {cgroups_path!r} must not contain '..'")
    return os.path.join(mount, *parts)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def find_delegation() -> Delegation | None:
    """The subtree this process may put containers in, or None (then limits are not enforced)."""
    mount = unified_mount()
    own = own_cgroup()
    if mount is None or own is None or own in ("", "/"):
        return None
    base = os.path.dirname(own.rstrip("/")) or "/"
    if base == "/":
        return None  # the root cgroup is never delegated to an ordinary user
    directory = host_path(mount, base)
    control = os.path.join(directory, "cgroup.subtree_control")
    if not (os.access(directory, os.W_OK) and os.access(control, os.W_OK)
            and os.access(os.path.join(directory, "cgroup.procs"), os.W_OK)):
        return None
    try:
        available = set(_read(os.path.join(directory, "cgroup.controllers")).split())
        enabled = set(_read(control).split())
        for name in sorted((available - enabled) & set(CONTROLLERS)):
            try:
                _write(control, "+" + name)
                enabled.add(name)
            except OSError:
                pass  # EBUSY: base has processes of its own; the controller stays off
    except OSError:
        return None
    return Delegation(mount, base, frozenset(enabled & set(CONTROLLERS)))


# -- resources -----------------------------------------------------------------------------


def _limit(value: Any) -> str:
    return "max" if value is None or int(value) < 0 else str(int(value))


def v2_files(resources: dict[str, Any]) -> dict[str, str]:
    """OCI ``linux.resources`` as cgroup v2 file contents (runc's fs2 conversions)."""
    out: dict[str, str] = {}
    memory = resources.get("memory") or {}
    if memory.get("limit"):
        out["memory.max"] = _limit(memory["limit"])
        swap = memory.get("swap")
        if swap is not None and int(swap) != 0:
            # OCI's swap is memory+swap, v2's swap.max is the swap alone.
            out["memory.swap.max"] = "max" if int(swap) < 0 else str(max(int(swap) - int(memory["limit"]), 0))
    if memory.get("reservation"):
        out["memory.low"] = _limit(memory["reservation"])
    cpu = resources.get("cpu") or {}
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota")
        period = int(cpu.get("period") or CPU_PERIOD)
        out["cpu.max"] = f"{'max' if not quota or int(quota) < 0 else int(quota)} {period}"
    if cpu.get("shares"):
        # runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] onto [1, 10000].
        shares = min(max(int(cpu["shares"]), 2), 262144)
        out["cpu.weight"] = str(1 + ((shares - 2) * 9999) // 262142)
    pids = resources.get("pids") or {}
    if "limit" in pids and pids["limit"] is not None:
        out["pids.max"] = "max" if int(pids["limit"]) <= 0 else str(int(pids["limit"]))
    return out


def restrict(resources: dict[str, Any], controllers: frozenset[str]) -> dict[str, Any]:
    """The parts of ``resources`` that ``controllers`` can enforce (OCI keys match their names)."""
    return {k: v for k, v in resources.items() if k in controllers}


def needed_controllers(resources: dict[str, Any]) -> set[str]:
    return {name.split(".", 1)[0] for name in v2_files(resources)}


def apply(directory: str, resources: dict[str, Any]) -> None:
    """Write ``resources`` into an existing cgroup; OSError names the file that refused."""
    files = v2_files(resources)
    # Lower memory.max before the swap limit and raise it after, like runc: the kernel
    # refuses some orders of the two.
    for name in sorted(files, key=lambda n: (n != "memory.max", n)):
        try:
            _write(os.path.join(directory, name), files[name])
        except OSError as exc:
            if name == "memory.swap.max" and exc.errno == errno.ENOENT:
                continue  # no swap accounting on this kernel: as runc, ignore it
            raise OSError(exc.errno, f"cgroup: write {files[name]!r} to {name}: {exc.strerror}",
                          directory) from None


def create(directory: str, resources: dict[str, Any]) -> None:
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        pass
    try:
        apply(directory, resources)
    except OSError:
        remove(directory, timeout=0)
        raise


def enter(directory: str, pid: int = 0) -> None:
    """Move ``pid`` (0: the caller) into the cgroup."""
    _write(os.path.join(directory, "cgroup.procs"), str(pid))


def remove(directory: str, timeout: float = 5.0) -> None:
    """rmdir the cgroup once its last process is gone (EBUSY until the kernel sees it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise OSError(exc.errno, f"cgroup: remove: {exc.strerror}", directory) from None
            time.sleep(0.02)


def usage(directory: str) -> dict[str, int]:
    """What the kernel counts for the cgroup: cpu_usec, memory (bytes), memory_limit, pids, pids_limit.

    Keys are present only for the controllers enabled on it.
    """
    out: dict[str, int] = {}

    def number(name: str) -> int | None:
        try:
            text = _read(os.path.join(directory, name))
        except OSError:
            return None
        return -1 if text == "max" else int(text)

    try:
        for line in _read(os.path.join(directory, "cpu.stat")).splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                out["cpu_usec"] = int(value)
    except OSError:
        pass
    for key, name in (("memory", "memory.current"), ("memory_limit", "memory.max"),
                      ("pids", "pids.current"), ("pids_limit", "pids.max")):
        count = number(name)
        if count is not None:
            out[key] = count
    return out
