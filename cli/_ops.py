"""The API sequences several commands share: pull, create, attach-then-start, wait.

``run`` is docker's sequence: create (pulling on "No such image"), attach
*before* start so no output is lost, register the wait before start so the
exit cannot be missed, start, resize, copy the streams, then the exit code.
"""

from __future__ import annotations

import signal
import sys
import threading

from ._auth import auth_header
from ._client import APIError, Client, q
from ._errors import EXIT_ERROR, report, start_exit_code
from ._progress import StreamResult, show_stream
from ._refs import registry_of, split
from ._create_request import CreateRequest
from ._attach_io import RawTerminal, Session, parse_detach_keys

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, TextIO

__all__ = ["Waiter", "attach_and_start", "create_container", "pull_image", "tagged"]


def tagged(ref: str) -> str:
    """``busybox`` → ``busybox:latest``, as docker names an image it cannot find."""
    _, tag, digest = split(ref)
    return ref if tag or digest else f"{ref}:latest"


def pull_image(client: Client, ref: str, *, platform: str | None = None, quiet: bool = False,
               out: TextIO | None = None) -> StreamResult:
    """``POST /images/create?fromImage=REPO&tag=TAG|DIGEST``, with credentials if we have any."""
    repo, tag, digest = split(ref)
    params = {"fromImage": repo, "tag": digest or tag or "latest", "platform": platform or None}
    headers = {"X-Registry-Auth": auth_header(registry_of(repo))}
    return show_stream(client.stream("POST", "/images/create", params=params, headers=headers),
                       out, quiet=quiet)


def _missing_image(exc: APIError) -> bool:
    text = exc.message.lower()
    return exc.status == 404 and ("no such image" in text or
                                  ("image" in text and "not found" in text))


def create_container(client: Client, req: CreateRequest) -> str:
    """Create (pulling first with ``--pull always``, or on "No such image"); return the id."""
    image = req.body["Image"]
    if req.pull == "always":
        pull_image(client, image, platform=req.platform, out=sys.stderr)
    try:
        resp = client.post("/containers/create", params=req.params, body=req.body)
    except APIError as exc:
        if not _missing_image(exc) or req.pull != "missing":
            raise
        print(f"Unable to find image '{tagged(image)}' locally", file=sys.stderr, flush=True)
        pull_image(client, image, platform=req.platform, out=sys.stderr)
        resp = client.post("/containers/create", params=req.params, body=req.body)
    for warning in (resp or {}).get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    return str(resp["Id"])


class Waiter:
    """``POST /containers/{id}/wait`` on its own connection, in a thread.

    Registered before start: once the daemon has answered the head (docker's
    daemon flushes it at once) the exit cannot be missed.  A daemon that holds
    the head back until the exit costs ``grace`` seconds here, and if it then
    saw the request only after the exit ("next-exit" would never come),
    :meth:`result` falls back to the container's recorded state.
    """

    def __init__(self, client: Client, cid: str, condition: str, grace: float = 0.05) -> None:
        self.client, self.cid, self.condition = client, cid, condition
        self.registered = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._wait, name="wait", daemon=True)
        self.thread.start()
        self.registered.wait(grace)

    def _wait(self) -> None:
        try:
            resp = self.client.open("POST", f"/containers/{q(self.cid)}/wait",
                                    params={"condition": self.condition})
            self.registered.set()
            with resp:
                import json

                self.value = json.loads(resp.read() or b"{}")
        except BaseException as exc:  # reported by result()
            self.error = exc
        finally:
            self.registered.set()

    def _stopped_code(self) -> int | None:
        try:
            state = self.client.get(f"/containers/{q(self.cid)}/json")["State"]
        except Exception:
            return None
        if state.get("Running") or state.get("Restarting"):
            return None
        return int(state.get("ExitCode") or 0)

    def result(self) -> int:
        """The container's exit status; if the wait failed, its recorded ExitCode."""
        patience = 5  # polls of 0.2 s before the recorded state is trusted
        while self.thread.is_alive():
            self.thread.join(0.2)  # a loop, so signal handlers run meanwhile
            patience -= 1
            if patience <= 0 and self.condition != "removed" and self.thread.is_alive():
                code = self._stopped_code()
                if code is not None:
                    return code
                patience = 5
        if self.error is None and isinstance(self.value, dict):
            error = (self.value.get("Error") or {}).get("Message")
            if error:
                print(f"Error response from daemon: {error}", file=sys.stderr)
            return int(self.value.get("StatusCode", EXIT_ERROR))
        try:
            state = self.client.get(f"/containers/{q(self.cid)}/json")["State"]
            return int(state["ExitCode"])
        except Exception:
            if self.error is not None:
                report(self.error)
            return EXIT_ERROR


class _SignalProxy:
    """``--sig-proxy``: SIGINT, SIGTERM, SIGHUP go to the container, not to us."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, client: Client, cid: str, enabled: bool) -> None:
        self.client, self.cid, self.enabled = client, cid, enabled
        self.saved: dict[int, Any] = {}

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        try:
            self.client.post(f"/containers/{q(self.cid)}/kill", params={"signal": str(signum)})
        except Exception:  # the container may be gone; nothing to forward to
            pass

    def __enter__(self) -> _SignalProxy:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.saved[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def attach_and_start(client: Client, cid: str, *, tty: bool, stdin: bool,
                     detach_keys: str | None, start: bool = True,
                     condition: str = "next-exit", sig_proxy: bool = True,
                     logs: bool = False) -> int:
    """Attach, (start), copy the streams; the exit code as docker's CLI gives it."""
    keys = parse_detach_keys(detach_keys) if tty and detach_keys else None
    params = {"stream": True, "stdin": stdin, "stdout": True, "stderr": True,
              "logs": logs or None, "detachKeys": detach_keys if tty and detach_keys else None}
    conn = client.hijack(f"/containers/{q(cid)}/attach", params=params)
    waiter = Waiter(client, cid, condition if start else "not-running")

    def resize(h: int, w: int) -> None:
        client.post(f"/containers/{q(cid)}/resize", params={"h": h, "w": w})

    session = Session(conn, tty=tty, stdin=stdin, detach_keys=keys, resize=resize)
    with RawTerminal(0, tty and stdin), _SignalProxy(client, cid, sig_proxy and not tty):
        if start:
            try:
                client.post(f"/containers/{q(cid)}/start")
            except APIError as exc:
                conn.close()
                report(exc)
                return start_exit_code(exc.message)
        session.send_size()
        detached = session.run()
    conn.close()
    if detached:
        print(file=sys.stderr)  # docker leaves the raw-mode line behind too
        return 0
    return waiter.result()
