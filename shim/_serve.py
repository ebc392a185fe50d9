"""The shim's one loop: output to the log and the clients, input to stdin, reaping.

Single-threaded on purpose: the shim forks (through the runtime) and reaps
with ``waitpid(-1)``, and both go wrong beside threads.  SIGCHLD only wakes
the loop (``signal.set_wakeup_fd``); the reaping happens here.  Poll masks
are recomputed from the state before every wait, which keeps back-pressure
simple: stdin input is read from clients only while its buffer has room,
output is written to a client only while it has something queued, and the
container's output is read only while no attach client is far behind (see
``_attach_server``).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time

from ._attach_server import AttachServer, Client
from ._control import CLOSE_STDIN, RESIZE, ControlParser
from ._io import STREAM_NAMES, JsonFileLog, LineDecoder, log_lines, rfc3339_nano
from ._shimlog import ShimLog
from ._stdio import Stdio, set_winsize

__all__ = ["Server", "DRAIN_SECONDS"]

DRAIN_SECONDS = 2.0  # how long, after the init exited, the output may stand still
DRAIN_MAX_SECONDS = 60.0  # how long, after the init exited, draining may go on at most
STDIN_LIMIT = 1 << 16  # bytes of input buffered for a container that does not read
_READ = select.POLLIN | select.POLLPRI
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL
_VEOF = b"\x04"  # what "close stdin" means on a terminal: ^D (ICANON's default VEOF)


class Server:
    def __init__(self, stdio: Stdio, init_pid: int, log: JsonFileLog, attach: AttachServer,
                 control_fd: int, shimlog: ShimLog, *, stdin: bool, stdin_once: bool,
                 helpers: dict[int, str] | None = None) -> None:
        self.stdio = stdio
        self.init_pid = init_pid
        # Children the container depends on (its network's helpers), pid -> name: if one
        # dies first, the container is stopped and ``lost`` says why.
        self.helpers = dict(helpers or {})
        self.lost: str | None = None
        self.log = log
        self.attach = attach
        self.control_fd = control_fd
        self.control = ControlParser()
        self.shimlog = shimlog
        self.stdin_once = stdin_once
        self.outputs = dict(stdio.outputs)
        self.decoders = {fd: LineDecoder() for fd in self.outputs}
        self.stdin_buf = bytearray()
        # With a tty the master is there either way; input goes to it only if asked for.
        self.stdin_open = stdin and stdio.stdin is not None
        self.stdin_closing = False
        self.status: int | None = None
        self.finished_ns = 0
        self._exited_at = 0.0
        self._deadline = 0.0
        self._poll = select.poll()
        self._masks: dict[int, int] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until the init has exited and its output is drained; its wait status."""
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _ignore)
        try:
            # The init may have died before the handler was there; the reap takes the
            # clients that connected before, as every reap of the init does.
            self._reap()
            while not self._done():
                self._update_masks()
                ready = self._poll.poll(self._timeout_ms())
                # Accept first: a client that connected before the output in this batch was
                # written must get that output (the daemon's attach connects before the
                # container starts, and a fast command's output comes in the same batch).
                # Before the dispatch, no fd of the batch is closed yet, so the new client
                # cannot take the number of one and receive the rest of its events.
                if self.status is None and any(fd == self.attach.fd for fd, _ in ready):
                    self._accept_all()
                for fd, events in ready:
                    try:
                        self._dispatch(fd, events)
                    except Exception as exc:  # noqa: BLE001 - a bad event must not end the shim
                        self.shimlog.error(f"fd {fd}: {type(exc).__name__}: {exc}")
                        self._forget(fd)
                for client in self.attach.drop_stalled(time.monotonic()):
                    self._fell_behind(client)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
        assert self.status is not None
        return self.status

    def _accept_all(self) -> None:
        while self.attach.accept() is not None:
            pass

    def _done(self) -> bool:
        if self.status is None:
            return False
        if not self.outputs and not self.attach.pending():
            return True
        return time.monotonic() >= self._deadline

    def _timeout_ms(self) -> int:
        wake = [t for t in (self.attach.next_stall(),
                            self._deadline if self.status is not None else None)
                if t is not None]
        if not wake:
            return -1
        return max(0, int((min(wake) - time.monotonic()) * 1000) + 1)

    def _progressed(self) -> None:
        """Output moved after the init exited: give the drain more time, within its bound."""
        if self.status is not None:
            self._deadline = min(self._exited_at + DRAIN_MAX_SECONDS,
                                 time.monotonic() + DRAIN_SECONDS)

    def _update_masks(self) -> None:
        want: dict[int, int] = {self._wake_r: _READ, self.control_fd: _READ}
        if self.status is None:
            want[self.attach.fd] = _READ
        # Held back while a client is far behind: the container blocks on its pipe.
        # Once the init has exited nothing more is held back; the pipes only drain.
        if self.status is not None or not self.attach.backlogged():
            for fd in self.outputs:
                want[fd] = want.get(fd, 0) | _READ
        stdin = self.stdio.stdin
        if stdin is not None and self.stdin_open and self.stdin_buf:
            want[stdin] = want.get(stdin, 0) | select.POLLOUT
        take_input = len(self.stdin_buf) < STDIN_LIMIT
        for client in self.attach.clients.values():
            mask = (_READ if client.reading and take_input else 0) | \
                (select.POLLOUT if client.out else 0)
            want[client.fd] = mask
        for fd in [fd for fd in self._masks if fd not in want]:
            self._poll.unregister(fd)
            del self._masks[fd]
        for fd, mask in want.items():
            if self._masks.get(fd) != mask:
                self._poll.register(fd, mask)
                self._masks[fd] = mask

    def _forget(self, fd: int) -> None:
        """After an unexpected error on ``fd``: stop watching it, whatever it was."""
        client = self.attach.clients.get(fd)
        if client is not None:
            self.attach.drop(client)
        elif fd in self.outputs:
            self._output_done(fd)

    def _dispatch(self, fd: int, events: int) -> None:
        if fd == self._wake_r:
            _drain(fd)
            self._reap()
            return
        if fd == self.control_fd:
            self._on_control()
            return
        if fd == self.attach.fd:
            return  # accepted before the dispatch (run)
        if fd in self.outputs and events & (_READ | _GONE):
            self._on_output(fd)
        if fd == self.stdio.stdin and events & (select.POLLOUT | select.POLLERR):
            self._write_stdin()
        client = self.attach.clients.get(fd)
        if client is not None:
            self._on_client(client, events)

    # -- the container --------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap every child: the init, and orphans that the subreaper inherits."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid and self.status is None:
                # Every attach that connected before the init died is waiting in the
                # listen queue: take them now, for they are owed all of its output, and
                # from here on the loop accepts no one.  (The daemon connects before it
                # starts the container; a slow shim may see that connection only after
                # another child's SIGCHLD has woken it, and reap the init with it.)
                self._accept_all()
                self.status = status
                self.finished_ns = time.time_ns()
                self._exited_at = time.monotonic()
                self._deadline = self._exited_at + DRAIN_SECONDS
            elif pid in self.helpers:
                self._helper_died(pid, status)

    def _helper_died(self, pid: int, status: int) -> None:
        """A helper the container needs is gone: stop the container rather than leave
        it running cut off, and say so in its exit (the daemon shows it as the error)."""
        name = self.helpers.pop(pid)
        if self.status is not None or self.lost is not None:
            return
        how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exited with status {os.WEXITSTATUS(status)}")
        self.lost = f"{name} (pid {pid}) {how}: the container lost its network, so it was stopped"
        self.shimlog.error(self.lost)
        try:
            os.kill(self.init_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a pty master whose slave side is all closed
                self.shimlog.error(f"reading the container's output: {exc}")
            data = b""
        if not data:
            self._output_done(fd)
            return
        stream = self.outputs[fd]
        self._progressed()
        self._emit(fd, stream, self.decoders[fd].decode(data))
        for client in self.attach.broadcast(stream, data):
            self._fell_behind(client)

    def _fell_behind(self, client: Client) -> None:
        self.shimlog.warning(f"attach client on fd {client.fd} fell behind; dropped")

    def _emit(self, fd: int, stream: int, text: str) -> None:
        if not text:
            return
        try:
            self.log.write(log_lines(STREAM_NAMES[stream], text, rfc3339_nano()))
        except OSError as exc:
            self.shimlog.error(f"writing {self.log.path}: {exc}")

    def _output_done(self, fd: int) -> None:
        stream = self.outputs.pop(fd)
        self._emit(fd, stream, self.decoders.pop(fd).decode(b"", final=True))
        if fd != self.stdio.master:
            self.stdio.close(fd)

    def _write_stdin(self) -> None:
        stdin = self.stdio.stdin
        assert stdin is not None
        try:
            written = os.write(stdin, self.stdin_buf)
        except BlockingIOError:
            return
        except OSError as exc:  # EPIPE, EIO: no one reads it any more; the rest is lost
            if exc.errno not in (errno.EPIPE, errno.EIO):
                self.shimlog.error(f"writing the container's stdin: {exc}")
            self.stdin_buf.clear()
            self._shut_stdin()
            return
        del self.stdin_buf[:written]
        if not self.stdin_buf and self.stdin_closing:
            self._shut_stdin()

    def close_stdin(self) -> None:
        """End the container's input once what is queued has been written."""
        if not self.stdin_open or self.stdin_closing:
            return
        self.stdin_closing = True
        if self.stdio.master is not None:
            self.stdin_buf += _VEOF
        elif not self.stdin_buf:
            self._shut_stdin()

    def _shut_stdin(self) -> None:
        self.stdin_open = False
        self.stdin_closing = True
        stdin = self.stdio.stdin
        if stdin is not None and stdin != self.stdio.master:
            self.stdio.close(stdin)
            self.stdio.stdin = None

    # -- the daemon's side: control FIFO and attach clients ---------------------------------

    def _on_control(self) -> None:
        try:
            data = os.read(self.control_fd, 4096)
        except BlockingIOError:
            return
        for cmd in self.control.feed(data):
            if isinstance(cmd, Exception):
                self.shimlog.warning(str(cmd))
            elif cmd["op"] == CLOSE_STDIN:
                self.close_stdin()
            elif cmd["op"] == RESIZE:
                self._resize(int(cmd["width"]), int(cmd["height"]))

    def _resize(self, width: int, height: int) -> None:
        if self.stdio.master is None:
            self.shimlog.warning("control: resize without a tty, ignored")
            return
        try:
            set_winsize(self.stdio.master, width, height)
        except OSError as exc:
            self.shimlog.warning(f"control: resize: {exc}")

    def _on_client(self, client: Client, events: int) -> None:
        try:
            # On a hang-up read even past the stdin limit: the end of input is behind
            # the data, and a hung-up socket would otherwise wake every poll.
            if events & _READ or (events & select.POLLHUP and client.reading):
                self._client_input(client)
            if events & select.POLLOUT and client.fd in self.attach.clients:
                if client.flush():
                    self._progressed()
            if events & (select.POLLERR | select.POLLNVAL) or \
                    (events & select.POLLHUP and not client.reading):
                self.attach.drop(client)
        except OSError:
            self.attach.drop(client)  # a client's error is the client's problem

    def _client_input(self, client: Client) -> None:
        data = client.recv()
        if data is None:
            return
        if not data:
            client.reading = False
            if self.stdin_once:
                self.close_stdin()
            return
        if self.stdin_open and not self.stdin_closing:
            self.stdin_buf += data

    def close_clients(self) -> None:
        self.attach.close()


def _ignore(_signum: int, _frame: object) -> None:
    """SIGCHLD needs a handler for the wakeup fd to hear of it; the loop does the work."""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
