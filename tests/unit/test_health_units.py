"""The healthcheck state machine and monitor, with a fake probe runner (no containers)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rctr.daemon.containers import Container
from rctr.daemon._health import (
    Check,
    HealthMonitor,
    ProbeResult,
    _duration,
    apply_result,
    new_health,
)
from rctr.daemon._logs import format_time
from rctr.daemon._record import Record, State, Status

pytestmark = pytest.mark.timeout(30)


def result(code: int, output: str = "") -> ProbeResult:
    now = time.time_ns()
    return ProbeResult(now, now + 1000, code, output)


# -- Check ------------------------------------------------------------------------------------

def test_check_defaults_match_docker() -> None:
    check = Check.from_config({"Test": ["CMD-SHELL", "true"]})
    assert check == Check(("/bin/sh", "-c", "true"), 30.0, 30.0, 3, 0.0, 5.0)


def test_check_forms() -> None:
    cmd = Check.from_config({"Test": ["CMD", "/bin/test", "-f", "/x"], "Interval": 500_000_000,
                             "Timeout": 2_000_000_000, "Retries": 1, "StartPeriod": 10**9})
    assert cmd is not None
    assert cmd.argv == ("/bin/test", "-f", "/x")
    assert (cmd.interval, cmd.timeout, cmd.retries, cmd.start_period) == (0.5, 2.0, 1, 1.0)
    shell = Check.from_config({"Test": ["CMD-SHELL", "exit 1"]}, shell=["/bin/ash", "-euc"])
    assert shell is not None and shell.argv == ("/bin/ash", "-euc", "exit 1")


@pytest.mark.parametrize("config", [None, {}, {"Test": []}, {"Test": ["NONE"]},
                                    {"Test": ["CMD"]}, {"Test": ["CMD-SHELL", ""]},
                                    {"Test": ["BOGUS", "x"]}])
def test_no_check(config: Any) -> None:
    assert Check.from_config(config) is None


def test_duration_is_gos() -> None:
    assert [_duration(s) for s in (0.5, 1, 1.5, 30, 90)] == ["500ms", "1s", "1.5s", "30s", "1m30s"]


# -- apply_result -----------------------------------------------------------------------------

def test_first_success_makes_healthy() -> None:
    h = new_health()
    assert apply_result(h, result(0, "ok\n"), 3, in_start_period=False) is True
    assert h["Status"] == "healthy" and h["FailingStreak"] == 0
    assert h["Log"][0]["ExitCode"] == 0 and h["Log"][0]["Output"] == "ok\n"
    assert apply_result(h, result(0), 3, in_start_period=False) is False


def test_unhealthy_after_retries_and_back() -> None:
    h = new_health()
    changes = [apply_result(h, result(1), 3, False) for _ in range(3)]
    assert changes == [False, False, True]
    assert h["Status"] == "unhealthy" and h["FailingStreak"] == 3
    assert apply_result(h, result(1), 3, False) is False
    assert h["FailingStreak"] == 4
    assert apply_result(h, result(0), 3, False) is True
    assert h["Status"] == "healthy" and h["FailingStreak"] == 0


def test_healthy_needs_retries_failures_to_turn() -> None:
    h = new_health()
    apply_result(h, result(0), 2, False)
    assert apply_result(h, result(1), 2, False) is False
    assert h["Status"] == "healthy" and h["FailingStreak"] == 1
    assert apply_result(h, result(0), 2, False) is False
    assert h["FailingStreak"] == 0


def test_failures_in_the_start_period_do_not_count_while_starting() -> None:
    h = new_health()
    for _ in range(5):
        assert apply_result(h, result(1), 1, in_start_period=True) is False
    assert h["Status"] == "starting" and h["FailingStreak"] == 0
    assert len(h["Log"]) == 5
    # Once healthy, a failure counts even inside the start period (moby).
    apply_result(h, result(0), 1, True)
    assert apply_result(h, result(1), 1, True) is True
    assert h["Status"] == "unhealthy"


def test_log_keeps_the_last_five() -> None:
    h = new_health()
    for i in range(8):
        apply_result(h, result(i % 2, f"run {i}"), 100, False)
    assert [e["Output"] for e in h["Log"]] == [f"run {i}" for i in range(3, 8)]
    entry = h["Log"][-1]
    assert set(entry) == {"Start", "End", "ExitCode", "Output"}
    assert entry["Start"].endswith("Z") and len(entry["Start"].split(".")[1]) == 10


# -- HealthMonitor with a fake probe -----------------------------------------------------------

class Fake:
    """A probe runner that answers from a script, and records saves and events."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.calls = 0
        self.saves = 0
        self.events: list[str] = []
        self.changed = threading.Lock()

    def probe(self, c: Container, check: Check) -> ProbeResult:
        with self.changed:
            code = self.codes.pop(0) if self.codes else 0
            self.calls += 1
        return result(code, f"exit {code}")

    def save(self, c: Container) -> None:
        self.saves += 1

    def emit(self, c: Container, action: str) -> None:
        with self.changed:
            self.events.append(action)

    def wait(self, predicate: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, (self.calls, self.events)
            time.sleep(0.005)


def container(interval_ns: int = 20_000_000, retries: int = 2, **extra: Any) -> Container:
    return Container(Record(
        id="c" * 64, name="c", state=State(Status.RUNNING, started_at=format_time()),
        config={"Healthcheck": {"Test": ["CMD", "check"], "Interval": interval_ns,
                                "Retries": retries, **extra}}))


def health_status(c: Container) -> Any:
    return (c.state.health or {}).get("Status")


def test_monitor_reports_changes_once() -> None:
    fake = Fake([0, 0, 1, 1, 1, 0])
    monitor = HealthMonitor(fake.probe, fake.save, fake.emit)
    c = container()
    monitor.on_start(c)
    assert health_status(c) == "starting"
    fake.wait(lambda: len(fake.events) == 3)
    monitor.on_exit(c)
    assert fake.events == ["health_status: healthy", "health_status: unhealthy",
                           "health_status: healthy"]
    fake.wait(lambda: not monitor.running())


def test_exit_stops_probing() -> None:
    fake = Fake([])
    monitor = HealthMonitor(fake.probe, fake.save, fake.emit)
    c = container()
    monitor.on_start(c)
    fake.wait(lambda: fake.calls >= 2)
    c.state.status = Status.EXITED
    monitor.on_exit(c)
    fake.wait(lambda: not monitor.running())
    calls = fake.calls
    time.sleep(0.1)
    assert fake.calls == calls


def test_no_thread_without_a_check() -> None:
    fake = Fake([])
    monitor = HealthMonitor(fake.probe, fake.save, fake.emit)
    c = container()
    c.record.config["Healthcheck"] = {"Test": ["NONE"]}
    monitor.on_start(c)
    assert monitor.running() == [] and c.state.health is None


def test_a_new_run_starts_over_but_readoption_resumes() -> None:
    fake = Fake([1, 1])
    monitor = HealthMonitor(fake.probe, fake.save, fake.emit)
    c = container(retries=2)
    monitor.on_start(c)
    fake.wait(lambda: fake.events == ["health_status: unhealthy"])
    monitor.on_exit(c)
    fake.wait(lambda: not monitor.running())
    # The daemon restarted and re-adopted the same run: the status stays.
    again = Container(c.record)
    monitor.on_start(again)
    assert health_status(again) == "unhealthy"
    monitor.on_exit(again)
    # A new start (a new StartedAt) is a new run: starting, streak 0, old log kept.
    time.sleep(0.001)
    again.state.started_at = format_time()
    monitor.on_start(again)
    health = again.state.health or {}
    assert (health["Status"], health["FailingStreak"]) == ("starting", 0)
    assert len(health["Log"]) >= 2
    monitor.on_exit(again)


def test_start_period_uses_start_interval() -> None:
    fake = Fake([1] * 100)
    monitor = HealthMonitor(fake.probe, fake.save, fake.emit)
    # A long interval, a short start interval: the probes come from the start interval,
    # and the failures inside the start period do not make it unhealthy.
    c = container(interval_ns=60 * 10**9, retries=1, StartPeriod=30 * 10**9,
                  StartInterval=20_000_000)
    monitor.on_start(c)
    fake.wait(lambda: fake.calls >= 3)
    monitor.on_exit(c)
    assert health_status(c) == "starting"
    assert fake.events == []


def test_a_result_after_the_exit_is_dropped() -> None:
    gate = threading.Event()
    fake = Fake([])

    def slow(c: Container, check: Check) -> ProbeResult:
        fake.probe(c, check)
        gate.wait(5)
        return result(0)

    monitor = HealthMonitor(slow, fake.save, fake.emit)
    c = container()
    monitor.on_start(c)
    fake.wait(lambda: fake.calls == 1)
    c.state.status = Status.EXITED
    monitor.on_exit(c)
    gate.set()
    fake.wait(lambda: not monitor.running())
    assert health_status(c) == "starting" and fake.events == []
