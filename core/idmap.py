"""Writing a new user namespace's uid and gid maps.

An ordinary user may write a map directly only when it maps their own id
alone, and for gids only after denying setgroups (user_namespaces(7)).  Any
other map goes through the setuid helpers newuidmap/newgidmap, which check
the ranges against /etc/subuid and /etc/subgid.  Root writes any map itself.
Both helpers run at once: each costs a few milliseconds of exec.
"""

from __future__ import annotations

import os

from rctr.core.errors import Unavailable

__all__ = ["write_id_maps", "needs_helper", "setgroups_denied", "find_helper"]

_HELPERS = {"uid": "newuidmap", "gid": "newgidmap"}


def needs_helper(kind: str, mappings: list[dict[str, int]]) -> bool:
    if os.geteuid() == 0:
        return False
    own = os.geteuid() if kind == "uid" else os.getegid()
    return not (len(mappings) == 1 and mappings[0]["hostID"] == own and mappings[0]["size"] == 1)


def setgroups_denied(gid_mappings: list[dict[str, int]]) -> bool:
    """True when the gid map is written directly by a non-root user (setgroups is denied)."""
    return os.geteuid() != 0 and not needs_helper("gid", gid_mappings)


def _format(mappings: list[dict[str, int]]) -> str:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def find_helper(helper: str) -> str:
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        candidate = os.path.join(d, helper)
        if os.access(candidate, os.X_OK):
            return candidate
    raise Unavailable(
        f"{helper} is missing: it is needed to map more than your own id into the container",
        hint="install it (Debian/Ubuntu: sudo apt install uidmap), or map a single id; "
             "run `rctr doctor` for details")


def _spawn(helper: str, pid: int, mappings: list[dict[str, int]]) -> tuple[int, int]:
    args = [helper, str(pid)]
    for m in mappings:
        args += [str(m["containerID"]), str(m["hostID"]), str(m["size"])]
    read_end, write_end = os.pipe()
    try:
        child = os.posix_spawn(find_helper(helper), args, os.environ,
                               file_actions=[(os.POSIX_SPAWN_DUP2, write_end, 2)])
    finally:
        os.close(write_end)
    return child, read_end


def _finish(helper: str, child: int, read_end: int) -> None:
    with os.fdopen(read_end, "rb") as f:
        message = f.read().decode(errors="replace").strip()
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise Unavailable(
            f"{helper} failed: {message or 'exit status ' + str(os.waitstatus_to_exitcode(status))}",
            hint="check your ranges in /etc/subuid and /etc/subgid; "
                 "run `rctr doctor` for details")


def write_id_maps(pid: int, uid_mappings: list[dict[str, int]],
                  gid_mappings: list[dict[str, int]]) -> None:
    """Give the user namespace of ``pid`` its maps (call once, from the parent namespace)."""
    running = []
    for kind, mappings in (("uid", uid_mappings), ("gid", gid_mappings)):
        if needs_helper(kind, mappings):
            running.append((_HELPERS[kind], *_spawn(_HELPERS[kind], pid, mappings)))
        else:
            if kind == "gid" and os.geteuid() != 0:
                with open(f"/proc/{pid}/setgroups", "w") as f:
                    f.write("deny")
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(_format(mappings))
    errors = []
    for helper, child, read_end in running:
        try:
            _finish(helper, child, read_end)
        except Unavailable as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
