"""Running a function inside a new user namespace that maps the user's ids.

This is what ``rctr unshare`` and the layer store need: inside, the user is
root and holds CAP_CHOWN over container ids 0..N, so a file owned by uid N in
an image can be written as the N-th subordinate id on the host.  The child is
forked from the (single-threaded) caller; its result comes back as JSON.
"""

from __future__ import annotations

import json
import os

from rctr.core import linux
from rctr.core.errors import Unavailable
from rctr.core.idmap import write_id_maps
from rctr.core.subid import SUBGID_FILE, SUBUID_FILE, rootless_mappings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["call_in_userns", "default_id_maps", "in_child_userns", "run_in_userns", "spawn_in_userns"]


def _own_map(kind: str) -> list[dict[str, int]] | None:
    """The calling process's id map, when it lives in a user namespace other than the host's."""
    try:
        with open(f"/proc/self/{kind}_map") as f:
            rows = [line.split() for line in f if line.strip()]
    except OSError:
        return None
    if rows == [["0", "0", "4294967295"]]:
        return None
    return [{"containerID": int(a), "hostID": int(b), "size": int(n)} for a, b, n in rows]


def in_child_userns() -> bool:
    """True inside a user namespace other than the host's (the pause process's, say)."""
    return _own_map("uid") is not None


def default_id_maps() -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """The caller as container root, plus its first subordinate ranges.

    Inside a user namespace already (the daemon, in the pause process's), the
    answer is that namespace's own maps, seen from inside.
    """
    uid_map, gid_map = _own_map("uid"), _own_map("gid")
    if uid_map is not None and gid_map is not None:
        return uid_map, gid_map
    return (rootless_mappings(os.geteuid(), SUBUID_FILE),
            rootless_mappings(os.getegid(), SUBGID_FILE))


def spawn_in_userns(body: Callable[[int], None], *, flags: int = 0,
                    maps: tuple[list[dict[str, int]], list[dict[str, int]]] | None = None,
                    what: str = "a user namespace") -> tuple[int, int]:
    """Fork a child into a new user namespace (and the namespaces in ``flags``).

    The parent writes the child's id maps (``maps``, default the user's own,
    through newuidmap/newgidmap); then the child, root there, calls
    ``body(wfd)`` and exits.  Returns (pid, the read end of ``wfd``'s pipe).
    ``wfd`` is close-on-exec: a body that execs closes it.
    """
    uid_maps, gid_maps = maps or default_id_maps()
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(to_child_w)
        os.close(from_child_r)
        try:
            linux.unshare(linux.CLONE_NEWUSER | flags)
            os.write(from_child_w, b"u")
            if os.read(to_child_r, 1) != b"m":
                os._exit(1)
            os.close(to_child_r)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            body(from_child_w)
        finally:
            os._exit(1)
    os.close(to_child_r)
    os.close(from_child_w)
    try:
        if os.read(from_child_r, 1) != b"u":
            raise Unavailable(f"could not create {what}",
                              hint="user namespaces may be off or restricted on this host; "
                                   "run `rctr doctor` for details")
        write_id_maps(pid, uid_maps, gid_maps)
        os.write(to_child_w, b"m")
    except BaseException:
        os.close(from_child_r)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(to_child_w)
    return pid, from_child_r


def run_in_userns(fn: Callable[[], object], *, mount_ns: bool = True,
                  maps: tuple[list[dict[str, int]], list[dict[str, int]]] | None = None) -> Any:
    """Call ``fn()`` as root of a new user (and mount) namespace; return its JSON-able result.

    An exception in ``fn`` comes back as ``Unavailable`` with its message.
    A caller that is root already (the daemon, in the pause process's user
    namespace) calls ``fn`` directly, in a forked child only for a private
    mount namespace.
    """
    if os.geteuid() == 0:
        return _as_root(fn, mount_ns)
    return call_in_userns(fn, flags=linux.CLONE_NEWNS if mount_ns else 0, maps=maps)


def call_in_userns(fn: Callable[[], object], *, flags: int = 0,
                   maps: tuple[list[dict[str, int]], list[dict[str, int]]] | None = None) -> Any:
    """Call ``fn()`` in a forked child that is root of a new user namespace (and of the
    namespaces ``flags`` add), whoever the caller is; its JSON-able result, or Unavailable."""
    pid, rfd = spawn_in_userns(lambda wfd: _report(fn, wfd), flags=flags, maps=maps)
    return _reply(pid, rfd)


def _as_root(fn: Callable[[], object], mount_ns: bool) -> Any:
    if not mount_ns:
        try:
            return json.loads(json.dumps(fn()))
        except Exception as exc:  # noqa: BLE001 - the same contract as the forked path
            raise Unavailable(str(exc) or type(exc).__name__) from exc
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(rfd)
        try:
            linux.unshare(linux.CLONE_NEWNS)
        except BaseException as exc:  # noqa: BLE001
            os.write(wfd, json.dumps({"error": str(exc)}).encode())
            os._exit(1)
        _report(fn, wfd)
    os.close(wfd)
    return _reply(pid, rfd)


def _report(fn: Callable[[], object], wfd: int) -> None:  # pragma: no cover - runs in the child
    """Send ``fn()``'s result, or its error, to the parent as JSON; exit."""
    code = 1
    try:
        payload: dict[str, object] = {"result": fn()}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        payload = {"error": str(exc) or type(exc).__name__}
    try:
        os.write(wfd, json.dumps(payload).encode())
    finally:
        os._exit(code)


def _reply(pid: int, rfd: int) -> Any:
    """Read what ``_report`` sent, reap the child; its result, or Unavailable."""
    data = b""
    try:
        while chunk := os.read(rfd, 65536):
            data += chunk
    finally:
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
    try:
        reply = json.loads(data)
    except ValueError:
        raise Unavailable(f"the user-namespace helper died (status {status})") from None
    if "error" in reply:
        raise Unavailable(reply["error"])
    return reply.get("result")
