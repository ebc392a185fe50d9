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

__all__ = ["default_id_maps", "in_child_userns", "run_in_userns"]


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


def run_in_userns(fn: Callable[[], Any], *, mount_ns: bool = True,
                  maps: tuple[list[dict[str, int]], list[dict[str, int]]] | None = None) -> Any:
    """Call ``fn()`` as root of a new user (and mount) namespace; return its JSON-able result.

    An exception in ``fn`` comes back as ``Unavailable`` with its message.
    A caller that is root already (the daemon, in the pause process's user
    namespace) calls ``fn`` directly, in a forked child only for a private
    mount namespace.
    """
    if os.geteuid() == 0:
        return _as_root(fn, mount_ns)
    uid_maps, gid_maps = maps or default_id_maps()
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(to_child_w)
        os.close(from_child_r)
        _child(fn, mount_ns, to_child_r, from_child_w)
    os.close(to_child_r)
    os.close(from_child_w)
    try:
        if os.read(from_child_r, 1) != b"u":
            raise Unavailable("could not create a user namespace",
                              hint="check user.max_user_namespaces (`rctr doctor`)")
        write_id_maps(pid, uid_maps, gid_maps)
        os.write(to_child_w, b"m")
        data = b""
        while chunk := os.read(from_child_r, 65536):
            data += chunk
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
        _, status = os.waitpid(pid, 0)
    try:
        reply = json.loads(data)
    except ValueError:
        raise Unavailable(f"the user-namespace helper died (status {status})") from None
    if "error" in reply:
        raise Unavailable(reply["error"])
    return reply.get("result")


def _as_root(fn: Callable[[], Any], mount_ns: bool) -> Any:
    if not mount_ns:
        try:
            return json.loads(json.dumps(fn()))
        except Exception as exc:  # noqa: BLE001 - the same contract as the forked path
            raise Unavailable(str(exc) or type(exc).__name__) from exc
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(rfd)
        code = 1
        try:
            linux.unshare(linux.CLONE_NEWNS)
            payload: dict[str, Any] = {"result": fn()}
            code = 0
        except BaseException as exc:  # noqa: BLE001
            payload = {"error": str(exc) or type(exc).__name__}
        try:
            os.write(wfd, json.dumps(payload).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    data = b""
    try:
        while chunk := os.read(rfd, 65536):
            data += chunk
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    reply = json.loads(data or b'{"error": "the helper died"}')
    if "error" in reply:
        raise Unavailable(reply["error"])
    return reply.get("result")


def _child(fn: Callable[[], Any], mount_ns: bool, rfd: int, wfd: int) -> None:  # pragma: no cover
    code = 1
    try:
        linux.unshare(linux.CLONE_NEWUSER | (linux.CLONE_NEWNS if mount_ns else 0))
        os.write(wfd, b"u")
        if os.read(rfd, 1) != b"m":
            os._exit(1)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        payload: dict[str, Any] = {"result": fn()}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        payload = {"error": str(exc) or type(exc).__name__}
    try:
        os.write(wfd, json.dumps(payload).encode())
    finally:
        os._exit(code)
