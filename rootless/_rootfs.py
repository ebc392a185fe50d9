"""Building the container's filesystem view inside its mount namespace.

Runs in the container's init, after the namespaces exist and before the user
process starts.  The order follows runc's rootfs_linux.go: propagation, the
rootfs bound onto itself, the configured mounts, the devices, pivot_root,
then the finishing touches that need the final root (masked and read-only
paths, a read-only root).

Rootless facts that shape it (design brief, section 5):
- mknod is refused in a user namespace: devices are host nodes bind-mounted
  onto empty files in the /dev tmpfs.
- A bind mount made in a user namespace keeps the nosuid/nodev/noexec/atime
  flags of its source ("locked" flags): every remount carries them over.
- sysfs needs a network namespace owned by our user namespace, mqueue an IPC
  one, cgroup2 a cgroup one: without them, the host's are bound read-only.
"""

from __future__ import annotations

import errno
import os
import stat

from rctr.core import cgroups, linux
from rctr.core.linux import (
    MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC,
    MS_REMOUNT, MS_SLAVE,
)
from rctr.core.mountopts import (
    MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME, PROPAGATION, parse_options,
)
from rctr.core.securejoin import secure_join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rctr.core.oci import Device, Mount, Spec

__all__ = [
    "parse_options", "prepare_rootfs", "pivot_root", "finish_rootfs", "DEFAULT_DEVICES",
    "remount_flags",
]

# Flags a remount may change; the rest of a bind's flags come from statvfs.
_ST_TO_MS = {
    MS_RDONLY: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC,
    1024: MS_NOATIME, 2048: MS_NODIRATIME, 4096: MS_RELATIME,
}
DEFAULT_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                   "/dev/tty")
_DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                 ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


def remount_flags(path: str, wanted: int) -> int:
    """``wanted`` plus the flags the kernel locked on the mount at ``path``."""
    current = os.statvfs(path).f_flag
    locked = 0
    for st_flag, ms_flag in _ST_TO_MS.items():
        if current & st_flag and ms_flag != MS_RDONLY:
            locked |= ms_flag
    if not current & (1024 | 4096):
        # No atime flag means strictatime; a remount without one would ask for relatime.
        locked |= MS_STRICTATIME
    return wanted | locked


def _mkdir_p(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _make_target(path: str, is_dir: bool) -> None:
    if is_dir:
        _mkdir_p(path)
        return
    _mkdir_p(os.path.dirname(path))
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _bind(source: str, target: str, flags: int, propagation: list[int]) -> None:
    linux.mount(source, target, None, MS_BIND | (flags & MS_REC))
    changing = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if changing:
        linux.mount(None, target, None,
                    MS_BIND | MS_REMOUNT | remount_flags(target, changing))
    for p in propagation:
        linux.mount(None, target, None, p)


def _mount_or_bind(m: Mount, target: str, fallback: str) -> None:
    """Mount a kernel filesystem; if the namespaces forbid it, bind the host's copy."""
    flags, propagation, data = parse_options(m.get("options") or [])
    try:
        linux.mount(m.get("source") or m["type"], target, m["type"], flags, data or None)
    except PermissionError:
        _bind(fallback, target, flags | MS_BIND | MS_REC, propagation)
        return
    for p in propagation:
        linux.mount(None, target, None, p)


def _mount_cgroup(m: Mount, target: str) -> None:
    flags, propagation, _ = parse_options(m.get("options") or [])
    if cgroups.unified_mount() is not None:
        # A cgroup2 of our own, rooted at the container's cgroup: allowed in a cgroup
        # namespace that our user namespace owns (the container has one when it has a
        # cgroup of its own; see daemon's build_spec).
        try:
            linux.mount("cgroup2", target, "cgroup2", flags)
            return
        except PermissionError:
            pass
    _bind("/sys/fs/cgroup", target, flags | MS_BIND | MS_REC, propagation)


def _mount_devpts(m: Mount, target: str) -> None:
    flags, propagation, data = parse_options(m.get("options") or [])
    try:
        linux.mount("devpts", target, "devpts", flags, data or None)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EPERM):
            raise
        # gid=5 (tty) may be unmapped in a rootless container: mount without ids.
        data = ",".join(o for o in data.split(",") if not o.startswith(("gid=", "uid=")))
        linux.mount("devpts", target, "devpts", flags, data or None)


def _mount_one(rootfs: str, bundle: str, m: Mount) -> None:
    target = secure_join(rootfs, m["destination"])
    kind = m.get("type") or ""
    flags, propagation, data = parse_options(m.get("options") or [])
    if flags & MS_BIND or kind == "bind":
        source = os.path.join(bundle, m.get("source") or "")
        st = os.stat(source)
        _make_target(target, stat.S_ISDIR(st.st_mode))
        _bind(source, target, flags, propagation)
        return
    _mkdir_p(target)
    if kind == "sysfs":
        _mount_or_bind(m, target, "/sys")
    elif kind == "mqueue":
        _mount_or_bind(m, target, "/dev/mqueue")
    elif kind in ("cgroup", "cgroup2"):
        _mount_cgroup(m, target)
    elif kind == "devpts":
        _mount_devpts(m, target)
    else:
        linux.mount(m.get("source") or kind, target, kind, flags, data or None)
        for p in propagation:
            linux.mount(None, target, None, p)


def _bind_devices(rootfs: str, devices: list[Device]) -> None:
    paths = list(DEFAULT_DEVICES) + [d["path"] for d in devices if d.get("path")]
    for path in dict.fromkeys(paths):
        if not os.path.exists(path):
            if path in DEFAULT_DEVICES:
                continue
            raise OSError(errno.ENOENT, "device not present on the host", path)
        target = secure_join(rootfs, path)
        _make_target(target, False)
        linux.mount(path, target, None, MS_BIND)


def _dev_links(rootfs: str, has_devpts: bool) -> None:
    links = list(_DEV_SYMLINKS)
    if has_devpts:
        links.append(("pts/ptmx", "/dev/ptmx"))
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for source, dest in links:
        target = secure_join(rootfs, dest)
        if os.path.lexists(target):
            if dest != "/dev/ptmx":
                continue
            os.unlink(target)
        os.symlink(source, target)


def prepare_rootfs(config: Spec, bundle: str) -> str:
    """Mount everything under the rootfs; return the rootfs path."""
    rootfs = config["root"]["path"]
    # Nothing we mount may propagate back to the host (runc: MS_SLAVE|MS_REC).
    propagation = PROPAGATION.get(config["linux"].get("rootfsPropagation") or "rslave",
                                   MS_SLAVE | MS_REC)
    linux.mount(None, "/", None, propagation | MS_REC)
    # pivot_root needs the new root to be a mount point.
    linux.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    mounts = config.get("mounts") or []
    for m in mounts:
        _mount_one(rootfs, bundle, m)
    _bind_devices(rootfs, config["linux"].get("devices") or [])
    _dev_links(rootfs, any(m.get("type") == "devpts" and m["destination"] == "/dev/pts"
                           for m in mounts))
    return rootfs


def pivot_root(rootfs: str) -> None:
    """Make ``rootfs`` the root and drop the old one (runc's pivot_root(".", ".") trick)."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        linux.pivot_root(".", ".")
        os.fchdir(old)
        # The old root is stacked on top; keep unmounting it from propagating.
        linux.mount(None, ".", None, MS_SLAVE | MS_REC)
        linux.umount(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def _mask(path: str) -> None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        linux.mount("tmpfs", path, "tmpfs", MS_RDONLY)
    else:
        linux.mount("/dev/null", path, None, MS_BIND)


def _make_readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    linux.mount(path, path, None, MS_BIND | MS_REC)
    linux.mount(None, path, None, MS_BIND | MS_REMOUNT | remount_flags(path, MS_RDONLY))


def apply_sysctls(sysctls: dict[str, str]) -> None:
    for key, value in sysctls.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as exc:
            raise OSError(exc.errno, f"sysctl {key}={value}: {exc.strerror}", path) from None


def finish_rootfs(config: Spec) -> None:
    """After pivot_root: sysctls, masked and read-only paths, read-only root."""
    lx = config["linux"]
    apply_sysctls(lx.get("sysctl") or {})
    for path in lx.get("readonlyPaths") or []:
        _make_readonly(path)
    for path in lx.get("maskedPaths") or []:
        _mask(path)
    if config["root"].get("readonly"):
        linux.mount(None, "/", None, MS_BIND | MS_REMOUNT | remount_flags("/", MS_RDONLY))
