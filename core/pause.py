"""The pause process: one per user, holding the user and mount namespaces.

Like Podman's pause process, it exists so that every rctr process of a user
(the daemon, ``rctr unshare``) can join one user namespace, where the user is
root over its subordinate ids, and one mount namespace, where the layer
mounts live.  Because the mounts belong to the pause process's namespace and
not to the daemon, the daemon can restart without losing them.

The pause process is forked, unshares, has its id maps written by the parent
(``newuidmap``/``newgidmap``) and then execs a minimal interpreter that only
waits for signals: no rctr code, few pages.  ``pause.json`` in the runtime
directory names it by pid and start time, so a reused pid is never joined.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator

from rctr.core import launch, linux
from rctr.core.atomic import write_json_atomic
from rctr.core.errors import Unavailable
from rctr.core.proc import Process, close_fds_except
from rctr.core.userns import spawn_in_userns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["ensure_pause", "replace_pause", "find_pause", "join", "join_and_exec", "PAUSE_FILE"]

PAUSE_FILE = "pause.json"

# Runs after exec: ignores terminal signals, dies on SIGTERM/SIGKILL.
_PAUSE_CODE = (
    "import signal\n"
    "for s in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):\n"
    "    signal.signal(s, signal.SIG_IGN)\n"
    "while True:\n"
    "    signal.pause()\n"
)


def find_pause(rundir: str) -> Process | None:
    """The live pause process recorded in ``rundir``, or None."""
    try:
        with open(os.path.join(rundir, PAUSE_FILE)) as f:
            record = json.load(f)
        proc = Process(int(record["pid"]), int(record["start_time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return proc if proc.alive() else None


def ensure_pause(rundir: str) -> tuple[Process, bool]:
    """The user's pause process, started if it is not running; (process, started now).

    A lock file serialises concurrent callers so that one user never gets two.
    Must be called before the caller starts any thread (it forks).
    """
    os.makedirs(rundir, mode=0o700, exist_ok=True)
    with _locked(rundir):
        proc = find_pause(rundir)
        if proc is not None:
            return proc, False
        survivor = _survivor(rundir)
        proc = _start_pause() if survivor is None else _rejoin(survivor)
        _record(rundir, proc)
        return proc, True


def replace_pause(rundir: str) -> Process | None:
    """From inside the namespaces (rctrd): a new pause process in them, if the recorded
    one is gone; the new one, or None when there was nothing to do.

    The namespaces outlive a killed pause process as long as any process is in them
    (rctrd, the zygote, a shim); a new pause process started from inside keeps them
    joinable, so nothing is lost.  Safe beside threads: the child execs at once.
    """
    import subprocess

    if find_pause(rundir) is not None:  # the usual answer: no lock taken for it
        return None
    with _locked(rundir):
        if find_pause(rundir) is not None:
            return None
        _reap_recorded(rundir)
        child = subprocess.Popen(launch.argv("pause", "-c", _PAUSE_CODE),
                                 executable=sys.executable, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 cwd="/", start_new_session=True, close_fds=True)
        proc = Process.of(child.pid)
        if proc is None:
            raise Unavailable("the new pause process exited at once")
        _record(rundir, proc)
        return proc


@contextlib.contextmanager
def _locked(rundir: str) -> Iterator[None]:
    """The user's pause lock: one caller at a time decides about the pause process."""
    with open(os.path.join(rundir, "pause.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _reap_recorded(rundir: str) -> None:
    """Reap the recorded pause process if it was the caller's child (it is a zombie)."""
    try:
        with open(os.path.join(rundir, PAUSE_FILE)) as f:
            os.waitpid(int(json.load(f)["pid"]), os.WNOHANG)
    except (OSError, ValueError, KeyError, TypeError):
        pass


def _record(rundir: str, proc: Process) -> None:
    write_json_atomic(os.path.join(rundir, PAUSE_FILE),
                      {"pid": proc.pid, "start_time": proc.start_time}, 0o600)


def _survivor(rundir: str) -> Process | None:
    """A live process of the user's rctr still in the namespaces of a pause process that
    is gone (rctrd, or a container's shim), or None when the namespaces are gone too."""
    candidates = []
    try:
        with open(os.path.join(rundir, "rctrd.pid")) as f:
            candidates.append(Process.of(int(f.read().strip())))
    except (OSError, ValueError):
        pass
    shims = os.path.join(rundir, "s")
    for name in sorted(os.listdir(shims)) if os.path.isdir(shims) else []:
        try:
            with open(os.path.join(shims, name, "shim.pid")) as f:
                record = json.load(f)
            candidates.append(Process(int(record["pid"]), int(record["start_time"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    own = os.stat("/proc/self/ns/user").st_ino
    for proc in candidates:
        if proc is None or not proc.alive():
            continue
        try:
            if os.stat(f"/proc/{proc.pid}/ns/user").st_ino != own:
                return proc
        except OSError:  # not ours to look at, or gone
            continue
    return None


def _rejoin(survivor: Process) -> Process:
    """A new pause process in ``survivor``'s user and mount namespaces."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(rfd)
            join(survivor)
            _become_pause(wfd)
        finally:
            os._exit(1)
    os.close(wfd)
    return _started(pid, rfd)


def _start_pause() -> Process:
    pid, rfd = spawn_in_userns(_become_pause, flags=linux.CLONE_NEWNS,
                               what="the user namespace for the pause process")
    return _started(pid, rfd)


def _started(pid: int, rfd: int) -> Process:
    """The pause process ``pid``, once it has exec'd (``rfd`` is its close-on-exec pipe)."""
    try:
        # The write end is close-on-exec: EOF means the exec happened, or the child died.
        rest = os.read(rfd, 4096)
    finally:
        os.close(rfd)
    if rest:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise Unavailable(f"the pause process failed: {rest.decode(errors='replace')}")
    proc = Process.of(pid)
    if proc is None:
        raise Unavailable("the pause process exited at once")
    return proc


def _become_pause(wfd: int) -> None:  # pragma: no cover - runs in the child, root of its namespaces
    try:
        os.setsid()
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        close_fds_except({wfd})
        os.execv(sys.executable, launch.argv("pause", "-c", _PAUSE_CODE))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        os.write(wfd, str(exc).encode() or b"error")


def join(pause: Process) -> None:
    """Enter the pause process's user and mount namespaces, as root there.

    The kernel only lets a single-threaded process join a user namespace: call
    this first thing, before any thread starts.
    """
    fds = []
    try:
        for name in ("user", "mnt"):
            fds.append(os.open(f"/proc/{pause.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
        if not pause.alive():  # checked after opening: the fds pin the namespaces
            raise Unavailable("the pause process exited while being joined",
                              hint="run the command again; it starts a new one")
        linux.setns(fds[0], linux.CLONE_NEWUSER, f"/proc/{pause.pid}/ns/user")
        linux.setns(fds[1], linux.CLONE_NEWNS, f"/proc/{pause.pid}/ns/mnt")
    except FileNotFoundError:
        raise Unavailable("the pause process exited while being joined",
                          hint="run the command again; it starts a new one") from None
    finally:
        for fd in fds:
            os.close(fd)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def join_and_exec(argv: list[str], rundir: str | None = None) -> NoReturn:
    """``rctr unshare``: run ``argv`` (or the user's shell) as root of the user namespace."""
    if rundir is None:
        from rctr.core.paths import runtime_dir

        rundir = runtime_dir()
    proc, _ = ensure_pause(rundir)
    join(proc)
    command = argv or [os.environ.get("SHELL") or "/bin/sh"]
    os.environ["RCTR_UNSHARE"] = "1"
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise Unavailable(f"cannot run {command[0]}: {exc.strerror}") from None
