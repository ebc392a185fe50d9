"""``rctr doctor``: is this host and this user ready for rootless containers?

Each check is a pure decision over host facts (file contents, stat results, the
outcome of a trial), so the tests feed it facts; ``run_checks`` gathers the
real facts and makes the decisions, in the order of ``NAMES``.  A check that
is not ``ok`` carries the command that fixes it; docs/troubleshooting.md has a
section for every name here (a unit test keeps the two in step).

Nothing here needs the daemon or any rctr state: the trials run in throw-away
namespaces and temporary directories.  The storage probe lives in
``rctr.storage`` (which core must not import), so the caller passes it in.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass

from rctr.core import cgroups, linux
from rctr.core.errors import Unavailable
from rctr.core.idmap import find_helper
from rctr.core.paths import data_dir, runtime_dir
from rctr.core.subid import (SUBGID_FILE, SUBUID_FILE, all_ranges, rootless_mappings,
                             subid_ranges)
from rctr.core.userns import call_in_userns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Check", "NAMES", "OK", "WARN", "FAIL", "run_checks"]

OK, WARN, FAIL = "ok", "warn", "fail"

# The order doctor prints them in, and the order of docs/troubleshooting.md.
NAMES = ("newuidmap", "newgidmap", "subuid", "subgid", "userns", "idmap", "overlay", "fuse",
         "fuse-overlayfs", "network", "tun", "cgroups", "runtime-dir", "ports", "ping")

SUBIDS_WANTED = 65536  # what rootless_mappings maps: container ids 1..65536
_CAP_FOR = {"newuidmap": "CAP_SETUID", "newgidmap": "CAP_SETGID"}
_DELEGATE_FIX = (
    "sudo mkdir -p /etc/systemd/system/user@.service.d\n"
    "printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' | "
    "sudo tee /etc/systemd/system/user@.service.d/delegate.conf\n"
    "sudo systemctl daemon-reload   # then log out and back in")


@dataclass(frozen=True)
class Check:
    name: str  # one of NAMES
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""  # the command(s) that fix a warn or fail, one per line

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# -- the decisions -------------------------------------------------------------------------


def file_caps(raw: bytes | None) -> set[str]:
    """The permitted capabilities in a ``security.capability`` xattr (``struct vfs_cap_data``)."""
    if not raw or len(raw) < 12:
        return set()
    low = int.from_bytes(raw[4:8], "little")
    high = int.from_bytes(raw[12:16], "little") if len(raw) >= 20 else 0
    mask = low | high << 32
    return {name for bit, name in enumerate(linux.CAPABILITIES) if mask >> bit & 1}


def check_helper(name: str, path: str | None, mode: int = 0, owner: int = -1,
                 caps: set[str] | frozenset[str] = frozenset()) -> Check:
    """newuidmap/newgidmap: installed, and able to write maps (setuid root, or the capability)."""
    if path is None:
        return Check(name, FAIL, f"{name} is not installed: only your own id can be mapped",
                     "sudo apt install uidmap")
    cap = _CAP_FOR[name]
    if owner == 0 and mode & stat.S_ISUID:
        return Check(name, OK, f"{path} is setuid root")
    if cap in caps:
        return Check(name, OK, f"{path} has the file capability {cap.lower()}")
    return Check(name, FAIL, f"{path} is neither setuid root nor has {cap.lower()}: "
                             "it cannot write id maps",
                 f"sudo chown root:root {path} && sudo chmod u+s {path}")


def free_range(taken: list[tuple[int, int]], size: int = SUBIDS_WANTED,
               start: int = 100000) -> tuple[int, int]:
    """The first ``size`` ids from ``start`` up that no (start, count) in ``taken`` overlaps."""
    for s, c in sorted(taken):
        if s < start + size and start < s + c:
            start = s + c
    return start, start + size - 1


def check_subids(kind: str, user: str, ranges: list[tuple[int, int]],
                 taken: list[tuple[int, int]]) -> Check:
    """``kind`` is "uid" or "gid"; ``ranges`` the user's, ``taken`` every user's (for the fix)."""
    name, option = f"sub{kind}", f"--add-sub{kind}s"
    if not ranges:
        first, last = free_range(taken)
        return Check(name, FAIL, f"{user} has no range in /etc/sub{kind}: containers get your "
                                 f"own {kind} alone, and images with other owners fail",
                     f"sudo usermod {option} {first}-{last} {user}")
    start, count = ranges[0]
    shown = ", ".join(f"{s}-{s + c - 1}" for s, c in ranges)
    if count < SUBIDS_WANTED:
        first, last = free_range(taken)
        return Check(name, WARN, f"{user}: {shown}; the first range has {count} ids, fewer "
                                 f"than {SUBIDS_WANTED}: files owned by container {kind}s "
                                 f"from {count + 1} up cannot be stored",
                     f"sudo usermod {option} {first}-{last} {user}")
    return Check(name, OK, f"{user}: {shown} (container {kind}s 1-{min(count, SUBIDS_WANTED)} "
                           f"map to {start}-{start + min(count, SUBIDS_WANTED) - 1})")


def check_userns(trial_error: str | None, max_userns: str | None = None,
                 unprivileged_clone: str | None = None,
                 apparmor_restrict: str | None = None) -> Check:
    """The trial decides; the sysctls (contents of their /proc/sys files) explain a failure."""
    if trial_error is None:
        note = (" (AppArmor restricts user namespaces, but not rctr's)"
                if (apparmor_restrict or "").strip() == "1" else "")
        return Check("userns", OK, "created a user namespace and acted as root in it" + note)
    if max_userns is not None and max_userns.strip() == "0":
        return Check("userns", FAIL, "user.max_user_namespaces is 0: user namespaces are off",
                     "sudo sysctl -w user.max_user_namespaces=28633")
    if (unprivileged_clone or "").strip() == "0":
        return Check("userns", FAIL, "kernel.unprivileged_userns_clone is 0: only root may "
                                     "create user namespaces (Debian's switch)",
                     "sudo sysctl -w kernel.unprivileged_userns_clone=1")
    if (apparmor_restrict or "").strip() == "1":
        return Check("userns", FAIL, "AppArmor denies capabilities in unprivileged user "
                                     f"namespaces (Ubuntu 23.10+): {trial_error}",
                     "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    return Check("userns", FAIL, f"cannot create a user namespace: {trial_error}",
                 "see the userns section of docs/troubleshooting.md (seccomp or an LSM may "
                 "forbid unshare)")


def check_idmap(uids: int, gids: int, trial_error: str | None, fix_subids: str = "") -> Check:
    """A real namespace with the subordinate ranges mapped through newuidmap/newgidmap;
    ``uids``/``gids`` count the ids mapped, 0 when the user has no range."""
    if not uids or not gids:
        return Check("idmap", WARN, "not tried: with no subordinate ranges only your own uid "
                                    "and gid are mapped (see the subuid/subgid lines)", fix_subids)
    if trial_error is not None:
        return Check("idmap", FAIL,
                     f"newuidmap/newgidmap could not map your ranges: {trial_error}",
                     "see the idmap section of docs/troubleshooting.md")
    return Check("idmap", OK, f"mapped {uids} uids and {gids} gids into a "
                              "user namespace")


def check_overlay(driver: str | None, release: str, error: str = "") -> Check:
    """``driver`` is what storage's probe found works best here (overlay, fuse-overlayfs, vfs)."""
    if driver == "overlay":
        return Check("overlay", OK,
                     f"kernel overlayfs mounts in a user namespace (Linux {release})")
    if driver == "fuse-overlayfs":
        return Check("overlay", WARN, f"Linux {release} refuses overlayfs in a user namespace "
                                      "(it needs 5.11 or later); rctr uses fuse-overlayfs, slower",
                     "upgrade to Linux 5.11 or later")
    if driver is None:
        return Check("overlay", FAIL, f"the storage probe failed: {error}",
                     "see the overlay section of docs/troubleshooting.md")
    return Check("overlay", WARN, "neither overlayfs nor fuse-overlayfs mounts in a user "
                                  f"namespace here: rctr falls back to {driver}, a full copy of "
                                  "the image per container", "sudo apt install fuse-overlayfs")


def check_device(name: str, path: str, is_char: bool | None, usable: bool, why: str) -> Check:
    """/dev/fuse or /dev/net/tun: ``is_char`` None when missing; ``usable`` when open for read
    and write by the user (which is what root in the user's namespace gets)."""
    status = FAIL if name == "tun" else WARN
    module = "tun" if name == "tun" else "fuse"
    if is_char is None:
        return Check(name, status, f"{path} is missing: {why}", f"sudo modprobe {module}")
    if not is_char:
        return Check(name, status, f"{path} is not a character device: {why}",
                     f"sudo modprobe {module}")
    if not usable:
        return Check(name, status, f"{path} is not open to you for reading and writing: {why}",
                     f"sudo chmod 0666 {path}")
    return Check(name, OK, f"{path} is usable")


def check_fuse_overlayfs(path: str | None) -> Check:
    if path is None:
        return Check("fuse-overlayfs", WARN, "fuse-overlayfs is not installed: on kernels that "
                                             "refuse overlayfs rctr falls back to vfs",
                     "sudo apt install fuse-overlayfs")
    return Check("fuse-overlayfs", OK, f"{path}")


def check_network(slirp4netns: str | None, pasta: str | None) -> Check:
    if slirp4netns and pasta:
        return Check("network", OK, f"{slirp4netns}, {pasta}")
    if slirp4netns:
        return Check("network", WARN, f"{slirp4netns}; pasta is not installed (--network pasta "
                                      "fails)", "sudo apt install passt")
    if pasta:
        return Check("network", WARN, f"{pasta}; slirp4netns is not installed: the default "
                                      "network fails, use --network pasta",
                     "sudo apt install slirp4netns")
    return Check("network", FAIL, "neither slirp4netns nor pasta is installed: containers get "
                                  "no network but --network none or host",
                 "sudo apt install slirp4netns passt")


def check_cgroups(mount: str | None, delegation: cgroups.Delegation | None) -> Check:
    if mount is None:
        return Check("cgroups", WARN, "no cgroup v2 hierarchy (cgroup v1 only): resource limits "
                                      "are not enforced",
                     "add systemd.unified_cgroup_hierarchy=1 to GRUB_CMDLINE_LINUX in "
                     "/etc/default/grub\nsudo update-grub   # then reboot")
    if delegation is None:
        return Check("cgroups", WARN, f"cgroup v2 at {mount}, but no subtree is delegated to "
                                      "you: --memory, --cpus and --pids-limit are not enforced",
                     _DELEGATE_FIX)
    missing = [c for c in cgroups.CONTROLLERS if c not in delegation.controllers]
    if missing:
        return Check("cgroups", WARN, f"{delegation.base} is delegated, but without the "
                                      f"{' '.join(missing)} controller(s): their limits are "
                                      "not enforced", _DELEGATE_FIX)
    return Check("cgroups", OK, f"{delegation.base} is delegated with "
                                f"{' '.join(sorted(delegation.controllers))}")


def check_runtime_dir(value: str | None, fallback: str, user: str, uid: int,
                      st: os.stat_result | None) -> Check:
    """XDG_RUNTIME_DIR (``value``) and its ``st``, None when it does not exist."""
    if not value:
        suggested = f"/run/user/{uid}"
        return Check("runtime-dir", WARN, f"XDG_RUNTIME_DIR is not set: rctr keeps its socket "
                                          f"and run state in {fallback}",
                     f"sudo install -d -m 0700 -o {user} {suggested} && "
                     f"export XDG_RUNTIME_DIR={suggested}")
    if st is None or not stat.S_ISDIR(st.st_mode):
        return Check("runtime-dir", FAIL, f"XDG_RUNTIME_DIR={value} is not a directory",
                     f"sudo install -d -m 0700 -o {user} {value}")
    if st.st_uid != uid:
        return Check("runtime-dir", FAIL, f"XDG_RUNTIME_DIR={value} belongs to uid {st.st_uid}, "
                                          "not to you", f"sudo chown {user} {value}")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        return Check("runtime-dir", WARN, f"XDG_RUNTIME_DIR={value} has mode {mode:04o}, not "
                                          "0700: others may reach rctr's socket",
                     f"chmod 0700 {value}")
    return Check("runtime-dir", OK, f"XDG_RUNTIME_DIR={value} is yours, mode 0700")


def check_ports(port_start: str | None) -> Check:
    """``port_start``: the contents of net/ipv4/ip_unprivileged_port_start (None: unreadable)."""
    fix = "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"
    try:
        start = int((port_start or "").strip())
    except ValueError:
        return Check("ports", WARN, "net.ipv4.ip_unprivileged_port_start is unreadable: "
                                    "assume ports below 1024 cannot be published", fix)
    if start <= 80:
        below = f"; ports below {start} cannot be published" if start > 0 else ""
        return Check("ports", OK, f"net.ipv4.ip_unprivileged_port_start is {start}{below}")
    return Check("ports", WARN, f"net.ipv4.ip_unprivileged_port_start is {start}: ports below "
                                f"{start} (80, 443...) cannot be published", fix)


def check_ping(group_range: str | None, gids: list[int]) -> Check:
    """``group_range``: the contents of net/ipv4/ping_group_range ("LOW HIGH")."""
    fix = 'sudo sysctl -w net.ipv4.ping_group_range="0 2147483647"'
    try:
        low, high = (int(x) for x in (group_range or "").split())
    except ValueError:
        return Check("ping", WARN, "net.ipv4.ping_group_range is unreadable", fix)
    if any(low <= g <= high for g in gids):
        return Check("ping", OK, f"net.ipv4.ping_group_range {low}-{high} includes your groups")
    return Check("ping", WARN, f"net.ipv4.ping_group_range is {low} {high}, which excludes your "
                               "groups: ping (ICMP echo sockets) fails in containers", fix)


# -- gathering the facts -------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH") or "/usr/bin:/bin")


def _helper(name: str) -> Check:
    try:
        path = os.path.realpath(find_helper(name))
    except Unavailable:
        return check_helper(name, None)
    st = os.stat(path)
    try:
        raw: bytes | None = os.getxattr(path, "security.capability")
    except OSError:
        raw = None
    return check_helper(name, path, st.st_mode, st.st_uid, file_caps(raw))


def _try_userns(maps: tuple[list[dict[str, int]], list[dict[str, int]]]) -> str | None:
    """None if a child could enter a new user namespace with ``maps`` and act as root there
    (sethostname in its own UTS namespace: AppArmor's restriction lets the unshare through
    but not the capability); else why not."""
    try:
        call_in_userns(lambda: linux.sethostname("rctr-doctor"), flags=linux.CLONE_NEWUTS,
                       maps=maps)
    except (Unavailable, OSError) as exc:
        return str(exc)
    return None


def _device(name: str, path: str, why: str) -> Check:
    try:
        is_char: bool | None = stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        is_char = None
    return check_device(name, path, is_char, os.access(path, os.R_OK | os.W_OK), why)


def _scratch() -> str:
    """Where storage would live (or its nearest existing parent): probe the same file system."""
    path = data_dir()
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path if os.access(path, os.W_OK) else tempfile.gettempdir()


def _overlay(probe_driver: Callable[[str], str] | None) -> Check:
    release = os.uname().release
    if probe_driver is None:
        return check_overlay(None, release, "no storage probe was given")
    tmp = tempfile.mkdtemp(prefix=".rctr-doctor-", dir=_scratch())
    try:
        return check_overlay(probe_driver(tmp), release)
    except Exception as exc:  # noqa: BLE001 - any failure of the probe is the finding
        return check_overlay(None, release, str(exc) or type(exc).__name__)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _runtime_dir(user: str, uid: int) -> Check:
    value = os.environ.get("XDG_RUNTIME_DIR")
    try:
        st = os.stat(value) if value else None
    except OSError:
        st = None
    return check_runtime_dir(value, runtime_dir(), user, uid, st)


def run_checks(probe_driver: Callable[[str], str] | None = None) -> list[Check]:
    """Every check, in the order of NAMES.  ``probe_driver(tmp_dir)`` returns the best storage
    driver that mounts here (``rctr.storage``'s probe); it runs in a temporary directory.

    Forks (the namespace trials): call it from a single-threaded process.
    """
    import pwd

    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    checks = [_helper("newuidmap"), _helper("newgidmap")]
    taken = all_ranges(SUBUID_FILE) + all_ranges(SUBGID_FILE)
    uid_ranges, gid_ranges = subid_ranges(SUBUID_FILE, uid), subid_ranges(SUBGID_FILE, uid)
    checks += [check_subids("uid", user, uid_ranges, taken),
               check_subids("gid", user, gid_ranges, taken)]
    own = ([{"containerID": 0, "hostID": uid, "size": 1}],
           [{"containerID": 0, "hostID": gid, "size": 1}])
    sysctl = "/proc/sys/"
    checks.append(check_userns(_try_userns(own), _read(sysctl + "user/max_user_namespaces"),
                               _read(sysctl + "kernel/unprivileged_userns_clone"),
                               _read(sysctl + "kernel/apparmor_restrict_unprivileged_userns")))
    mapped = (rootless_mappings(uid, SUBUID_FILE), rootless_mappings(gid, SUBGID_FILE))
    trial = _try_userns(mapped) if uid_ranges and gid_ranges else None
    fix_subids = "\n".join(c.fix for c in checks[2:4] if c.fix)
    checks.append(check_idmap(sum(m["size"] for m in mapped[0]) if uid_ranges else 0,
                              sum(m["size"] for m in mapped[1]) if gid_ranges else 0,
                              trial, fix_subids))
    checks.append(_overlay(probe_driver))
    checks.append(_device("fuse", "/dev/fuse", "fuse-overlayfs and fusepy cannot mount"))
    checks.append(check_fuse_overlayfs(_which("fuse-overlayfs")))
    checks.append(check_network(_which("slirp4netns"), _which("pasta")))
    checks.append(_device("tun", "/dev/net/tun",
                          "slirp4netns and pasta cannot give containers a network"))
    checks.append(check_cgroups(cgroups.unified_mount(), cgroups.find_delegation()))
    checks.append(_runtime_dir(user, uid))
    checks.append(check_ports(_read(sysctl + "net/ipv4/ip_unprivileged_port_start")))
    groups = sorted({gid, *os.getgroups()})
    checks.append(check_ping(_read(sysctl + "net/ipv4/ping_group_range"), groups))
    return checks
