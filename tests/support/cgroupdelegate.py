"""A cgroup v2 subtree delegated to the test user, made by root as systemd would.

systemd's ``Delegate=yes`` gives ``user@UID.service`` to the user: the directory
and its ``cgroup.procs``, ``cgroup.subtree_control`` and ``cgroup.threads`` chowned.
These machines have no systemd and a hybrid hierarchy, whose controllers sit in
cgroup v1.  A v1 hierarchy that holds nothing but its root cgroup can be given
to cgroup v2 by unmounting it (once no mount namespace still holds it: the test
user's pause process must be gone), so this moves ``cpu`` and ``pids`` where it
can; ``memory`` usually has cgroups of the host's in it and stays in v1, and a
hierarchy that something of the host's holds open (EBUSY) stays there too.

Layout (under the cgroup2 mount)::

    /rctr-delegated-USER       owned by the user, controllers enabled for children
    /rctr-delegated-USER/harness  the test process (root) and so every rctr it starts

``undo`` puts everything back: the test process, the v1 mounts.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

__all__ = ["Delegated", "delegate"]

WANTED = ("cpu", "memory", "pids")


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount point, fstype, mount options, super options) of this mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index("-")
            out.append((fields[4], fields[sep + 1], fields[5], fields[sep + 3]))
    return out


def _v1_counts() -> dict[str, tuple[int, int]]:
    """controller -> (v1 hierarchy id, number of cgroups) from /proc/cgroups."""
    out = {}
    with open("/proc/cgroups") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            name, hier, num, _enabled = line.split()
            out[name] = (int(hier), int(num))
    return out


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


@dataclass
class Delegated:
    mount: str
    slice: str  # cgroup path, "/rctr-delegated-USER"
    controllers: set[str]
    v1_unmounted: list[tuple[str, str]] = field(default_factory=list)  # (mount point, options)
    enabled_at_root: list[str] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return os.path.join(self.mount, self.slice.lstrip("/"))

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.directory, "rctr-" + container_id)

    def undo(self) -> None:
        _write(os.path.join(self.mount, "cgroup.procs"), str(os.getpid()))
        for dirpath in sorted((t[0] for t in os.walk(self.directory)), key=len, reverse=True):
            for _attempt in range(100):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # EBUSY while killed processes are reaped
        for name in self.enabled_at_root:
            try:
                _write(os.path.join(self.mount, "cgroup.subtree_control"), "-" + name)
            except OSError:
                pass
        from rctr.core import linux

        for target, options in self.v1_unmounted:
            # EBUSY until the kernel has freed the removed cgroups that used the controller.
            deadline = time.monotonic() + 10
            while True:
                try:
                    linux.mount("cgroup", target, "cgroup", 0, options)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


def _free_v1(mount: str) -> list[tuple[str, str]]:
    """Unmount the v1 hierarchies of WANTED controllers that hold only their root cgroup."""
    counts = _v1_counts()
    available = set(_read(os.path.join(mount, "cgroup.controllers")).split())
    unmounted = []
    for target, fstype, _opts, super_opts in _mountinfo():
        if fstype != "cgroup":
            continue
        names = [o for o in super_opts.split(",") if o in counts]
        if not any(n in WANTED and n not in available for n in names):
            continue
        if any(counts[n][1] != 1 for n in names):
            continue  # cgroups of someone else's live there
        from rctr.core import linux

        try:
            linux.umount(target)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            # Something of the host's holds a file in it (seen: a machine's init that keeps
            # every v1 hierarchy open): its controllers stay in v1, as on such a real host.
            continue
        unmounted.append((target, ",".join(names)))
    # The kernel frees a hierarchy when the last mount namespace lets go of it.
    deadline = time.monotonic() + 2.0
    while unmounted and time.monotonic() < deadline:
        available = set(_read(os.path.join(mount, "cgroup.controllers")).split())
        if all(n in available for _, opts in unmounted for n in opts.split(",")):
            break
        time.sleep(0.05)
    return unmounted


def delegate(user: str, uid: int, gid: int) -> Delegated:
    """Give ``user`` a delegated subtree and move this process into its leaf."""
    from rctr.core.cgroups import unified_mount

    mount = unified_mount()
    if mount is None:
        raise RuntimeError("no cgroup2 file system is mounted")
    unmounted = _free_v1(mount)
    available = set(_read(os.path.join(mount, "cgroup.controllers")).split())
    root_control = os.path.join(mount, "cgroup.subtree_control")
    enabled = set(_read(root_control).split())
    d = Delegated(mount, f"/rctr-delegated-{user}", set(), unmounted)
    for name in WANTED:
        if name in available and name not in enabled:
            _write(root_control, "+" + name)
            d.enabled_at_root.append(name)
    os.makedirs(d.directory, exist_ok=True)
    control = os.path.join(d.directory, "cgroup.subtree_control")
    for name in WANTED:
        if name in set(_read(os.path.join(d.directory, "cgroup.controllers")).split()):
            _write(control, "+" + name)
            d.controllers.add(name)
    leaf = os.path.join(d.directory, "harness")
    os.makedirs(leaf, exist_ok=True)
    for directory in (d.directory, leaf):
        os.chown(directory, uid, gid)
        for name in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(directory, name), uid, gid)
    _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
    return d
