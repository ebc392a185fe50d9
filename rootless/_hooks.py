"""Running OCI hooks: the hook's path with its args and env, the state JSON on stdin.

Where each kind runs (OCI runtime spec, config.md "POSIX-platform Hooks"):
createRuntime and poststart/poststop in the runtime's namespaces (the
runtime process runs them); createContainer and startContainer in the
container's namespaces (the init runs them, before and after pivot_root).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rctr.core.oci import Hook, Spec, State

__all__ = ["run_hooks", "HookError"]


class HookError(Exception):
    pass


def _run_one(hook: Hook, state: bytes) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
    timeout = hook.get("timeout")
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(path, args, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, out_w, 2)])
    except OSError as exc:
        for fd in (stdin_r, stdin_w, out_r, out_w):
            os.close(fd)
        raise HookError(f"hook {path}: {exc.strerror}") from None
    os.close(stdin_r)
    os.close(out_w)
    try:
        os.write(stdin_w, state)
    except BrokenPipeError:
        pass
    os.close(stdin_w)
    output = _collect(out_r, pid, timeout)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        detail = output.decode(errors="replace").strip().splitlines()
        raise HookError(f"hook {path} exited with {code}" + (f": {detail[-1]}" if detail else ""))


def _collect(fd: int, pid: int, timeout: float | None) -> bytes:
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise HookError(f"hook timed out after {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def run_hooks(config: Spec, kind: str, state: State) -> None:
    """Run every hook of ``kind``; the first failure raises HookError."""
    hooks = (config.get("hooks") or {}).get(kind) or []
    if not hooks:
        return
    payload = json.dumps(state).encode()
    for hook in hooks:
        _run_one(hook, payload)
