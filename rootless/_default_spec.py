"""The default bundle configuration, as ``runc spec`` and ``crun spec`` write it.

``rootless=True`` makes a configuration an ordinary user can run: a user
namespace mapping container root to the user and, when the user has them,
container ids 1..65536 to the first subordinate range; no ``gid=`` mount
options (gid 5 may be unmapped); sysfs and cgroup as read-only binds when the
kernel refuses to mount them.  The same file is valid for rctr, crun and runc.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from rctr.core.oci import Linux, Mount, Spec

from rctr.core.subid import SUBGID_FILE, SUBUID_FILE, rootless_mappings

__all__ = ["default_spec", "NO_SUBID_WARNING"]

OCI_VERSION = "1.0.2"
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

NO_SUBID_WARNING = (
    "no subordinate {kind} range for uid {uid} in {path}: the container maps only "
    "container root to you, and files owned by other ids cannot be used; "
    "fix: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
)


def _mounts(rootless: bool) -> list[Mount]:
    devpts_opts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts_opts.append("gid=5")
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts_opts},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def default_spec(rootless: bool = False, warn: Callable[[str], object] | None = None) -> Spec:
    """The configuration ``rctr runtime spec`` writes; ``warn(msg)`` hears about missing subids."""
    caps = list(_DEFAULT_CAPS)
    namespaces = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    if rootless:
        namespaces.append("user")
    linux: Linux = {
        "namespaces": [{"type": t} for t in namespaces],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi",
        ],
        "readonlyPaths": [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
        ],
    }
    if rootless:
        uid, gid = os.geteuid(), os.getegid()
        linux["uidMappings"] = uid_maps = rootless_mappings(uid, SUBUID_FILE)
        linux["gidMappings"] = gid_maps = rootless_mappings(gid, SUBGID_FILE)
        if warn is not None:
            import pwd

            user = pwd.getpwuid(uid).pw_name
            for kind, path, maps in (("uid", SUBUID_FILE, uid_maps),
                                     ("gid", SUBGID_FILE, gid_maps)):
                if len(maps) == 1:
                    warn(NO_SUBID_WARNING.format(kind=kind, uid=uid, path=path, user=user))
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "rctr",
        "mounts": _mounts(rootless),
        "linux": linux,
    }
