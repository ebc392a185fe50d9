"""Healthchecks: the daemon runs each running container's ``Config.Healthcheck``.

As dockerd does (``daemon/health.go``): one thread per running container with
a check; every interval it runs the command in the container like ``docker
exec`` would, keeps the last five results, counts consecutive failures and
emits ``health_status: healthy`` / ``health_status: unhealthy`` when the status
changes.  The state is ``State.Health`` of inspect, kept in the record's
private part (``_rctr.health``) and saved with it.

A start (or a restart) resets the status to ``starting`` and the streak to 0;
a container re-adopted by a restarted daemon keeps its status and resumes
probing, because the run it belongs to (its ``StartedAt``) is the same.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from rctr.core.errors import RctrError

from ._api_exec import exec_process
from ._logs import format_time, parse_time
from .containers import Container

__all__ = ["Check", "HealthMonitor", "ProbeResult", "apply_result", "exec_probe"]

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5        # moby: maxLogEntries
MAX_OUTPUT = 4096          # moby: maxOutputLen

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


@dataclass(frozen=True)
class Check:
    """A container's healthcheck with Docker's defaults applied (0 means the default)."""

    argv: tuple[str, ...]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, shell: list[str] | None = None) -> Check | None:
        """None for no check: no config, an empty test or ``["NONE"]``."""
        test = list((config or {}).get("Test") or [])
        if not test or test[0] == "NONE":
            return None
        kind, args = test[0], test[1:]
        if kind == "CMD-SHELL":
            argv = [*(shell or ["/bin/sh", "-c"]), " ".join(args)]
        elif kind == "CMD":
            argv = args
        else:
            return None  # create validates; an unknown kind runs nothing, as in moby
        if not argv or not argv[-1]:
            return None
        assert config is not None

        def seconds(key: str, default: float) -> float:
            value = int(config.get(key) or 0)
            return value / 1e9 if value > 0 else default

        retries = int(config.get("Retries") or 0)
        return cls(tuple(argv), seconds("Interval", DEFAULT_INTERVAL),
                   seconds("Timeout", DEFAULT_TIMEOUT), retries if retries > 0 else DEFAULT_RETRIES,
                   seconds("StartPeriod", 0.0), seconds("StartInterval", DEFAULT_START_INTERVAL))


@dataclass(frozen=True)
class ProbeResult:
    start_ns: int
    end_ns: int
    exit_code: int
    output: str

    def entry(self) -> dict[str, Any]:
        return {"Start": format_time(self.start_ns), "End": format_time(self.end_ns),
                "ExitCode": self.exit_code, "Output": self.output}


def new_health() -> dict[str, Any]:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def apply_result(health: dict[str, Any], result: ProbeResult, retries: int,
                 in_start_period: bool) -> bool:
    """Record one probe in ``health`` (moby's handleProbeResult); True when the status changed."""
    log = health.setdefault("Log", [])
    log.append(result.entry())
    del log[:-MAX_LOG_ENTRIES]
    old = health.get("Status", STARTING)
    if result.exit_code == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
    elif not (old == STARTING and in_start_period):
        # Failures count once the start period is over or the check has passed once.
        health["FailingStreak"] = int(health.get("FailingStreak", 0)) + 1
        if health["FailingStreak"] >= retries:
            health["Status"] = UNHEALTHY
    return bool(health["Status"] != old)


Probe = Callable[[Container, Check], ProbeResult]


class HealthMonitor:
    """Starts and stops the probe threads from the containers' start and exit hooks."""

    def __init__(self, probe: Probe, save: Callable[[Container], None],
                 emit: Callable[[Container, str], None]) -> None:
        self._probe = probe
        self._save = save
        self._emit = emit
        self._lock = threading.Lock()
        self._runs: dict[str, threading.Event] = {}

    @classmethod
    def for_daemon(cls, daemon: Any) -> HealthMonitor:
        containers = daemon.containers
        monitor = cls(lambda c, check: exec_probe(daemon, c, check), containers.save,
                      lambda c, action: containers.event(c, action))
        containers.start_hooks.append(monitor.on_start)
        containers.exit_hooks.append(monitor.on_exit)
        return monitor

    def on_start(self, c: Container) -> None:
        check = Check.from_config(c.record.config.get("Healthcheck"), c.record.config.get("Shell"))
        self.on_exit(c)
        if check is None:
            return
        with c.lock:
            started = c.state.started_at
            health = c.state.health
            if health is None or c.state.health_run != started:
                # A new run: starting again, the log of earlier runs kept (as moby does).
                c.state.health = {**new_health(), "Log": (health or {}).get("Log", [])}
                c.state.health_run = started
                self._save(c)
        stop = threading.Event()
        with self._lock:
            self._runs[c.id] = stop
        threading.Thread(target=self._run, args=(c, check, stop), name=f"health-{c.id[:12]}",
                         daemon=True).start()

    def on_exit(self, c: Container) -> None:
        with self._lock:
            stop = self._runs.pop(c.id, None)
        if stop is not None:
            stop.set()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def _run(self, c: Container, check: Check, stop: threading.Event) -> None:
        try:
            while not stop.wait(self._interval(c, check)):
                if c.removed or not c.running():
                    return
                result = self._probe(c, check)
                if stop.is_set():
                    return  # stopped meanwhile: the result belongs to no run (moby drops it too)
                self._record(c, check, result, stop)
        finally:
            with self._lock:
                if self._runs.get(c.id) is stop:
                    del self._runs[c.id]

    def _record(self, c: Container, check: Check, result: ProbeResult, stop: threading.Event) -> None:
        with c.lock:
            if c.removed or not c.running() or stop.is_set():
                return
            if c.state.health is None:
                c.state.health = new_health()
            health = c.state.health
            changed = apply_result(health, result, check.retries,
                                   self._in_start_period(c, check, result.start_ns / 1e9))
            status = health["Status"]
            self._save(c)
        if changed:
            self._emit(c, f"health_status: {status}")

    @staticmethod
    def _in_start_period(c: Container, check: Check, at: float) -> bool:
        started = parse_time(c.state.started_at) or 0.0
        return at - started < check.start_period

    def _interval(self, c: Container, check: Check) -> float:
        # moby: StartInterval applies while starting, inside the start period.
        if check.start_period and self._in_start_period(c, check, time.time()):
            with c.lock:
                if (c.state.health or {}).get("Status") == STARTING:
                    return check.start_interval
        return check.interval


# -- the real probe: docker exec, with pipes and a timeout -----------------------------------

def exec_probe(daemon: Any, c: Container, check: Check) -> ProbeResult:
    start = time.time_ns()
    shim_dir = daemon.paths.shim_dir(c.id)
    token = secrets.token_hex(8)
    process_file = os.path.join(shim_dir, f"health-{token}.json")
    pid_file = os.path.join(shim_dir, f"health-{token}.pid")
    # Every probe is an exec to Docker, with its events (`docker events` shows them).
    exec_id, cmd = secrets.token_hex(32), " ".join(check.argv)
    daemon.containers.event(c, f"exec_create: {cmd}", execID=exec_id)
    daemon.containers.event(c, f"exec_start: {cmd}", execID=exec_id)
    try:
        result = _run_probe(daemon, c, check, start, process_file, pid_file)
    finally:
        for path in (process_file, pid_file):
            try:
                os.unlink(path)
            except OSError:
                pass
    daemon.containers.event(c, "exec_die", execID=exec_id, exitCode=str(result.exit_code))
    return result


def _run_probe(daemon: Any, c: Container, check: Check, start: int, process_file: str,
               pid_file: str) -> ProbeResult:
    try:
        process = exec_process(daemon, c, {"Cmd": list(check.argv)})
        with open(process_file, "w") as f:
            json.dump(process, f)
        argv = daemon.runtime.exec_argv(c.id, process_file, tty_socket=None, pid_file=pid_file)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except (OSError, ValueError, KeyError, RctrError) as exc:
        # moby records a probe that could not run as exit code -1 with the error as output.
        return ProbeResult(start, time.time_ns(), -1, f"cannot run the health check: {exc}")
    output = bytearray()
    assert proc.stdout is not None
    reader = threading.Thread(target=_read_capped, args=(proc.stdout, output), daemon=True)
    reader.start()
    try:
        code = proc.wait(check.timeout)
    except subprocess.TimeoutExpired:
        _kill_probe(proc, pid_file)
        reader.join(1)
        return ProbeResult(start, time.time_ns(), -1,
                           f"Health check exceeded timeout ({_duration(check.timeout)})")
    reader.join(1)
    return ProbeResult(start, time.time_ns(), code, output.decode(errors="replace"))


def _read_capped(pipe: Any, out: bytearray) -> None:
    """Keep the first MAX_OUTPUT bytes, drain the rest so the check never blocks on a full pipe."""
    try:
        while chunk := os.read(pipe.fileno(), 65536):
            if len(out) < MAX_OUTPUT:
                out += chunk[:MAX_OUTPUT - len(out)]
    except OSError:
        pass
    finally:
        pipe.close()


def _kill_probe(proc: subprocess.Popen[bytes], pid_file: str) -> None:
    """Kill the check in the container, then the runtime that waits for it.

    The process calls setsid(2), so its pid is its process group: killing the
    group takes a shell's children too.  The runtime has not reaped it while
    it still runs, so the pid cannot have been reused.
    """
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        pid = 0
    for kill in (os.killpg, os.kill):
        try:
            if pid > 0:
                kill(pid, signal.SIGKILL)
                break
        except OSError:
            continue
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _duration(seconds: float) -> str:
    """Go's time.Duration formatting for the common cases (1s, 500ms, 1m30s)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    if minutes:
        return f"{int(minutes)}m{rest:g}s"
    return f"{seconds:g}s"
