"""Healthchecks run by rctrd, as the unprivileged user: real daemon, real containers.

Checked through the rctr CLI and the stock docker CLI (``DOCKER_HOST`` at rctrd's
socket): the status in inspect's ``State.Health``, ps's Status column and its
``health`` filter, the ``health_status`` events, ``--no-healthcheck`` against an
image with a HEALTHCHECK, and a daemon restart in the middle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from harness import RCTR, UserShell

from rctr.daemon._logs import parse_time

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(120)]

IMAGE = "rctr-test/busybox:latest"
HEALTH_IMAGE = "rctr-test/busybox-health:latest"
PYTHON = "/opt/rctr/venv/bin/python"


class Rctr:
    """The test user with a private data dir; rctr and docker CLIs as that user."""

    def __init__(self, shell: UserShell) -> None:
        self.shell = shell
        data = shell.base / "data"
        data.mkdir(mode=0o700)
        os.chown(data, shell.uid, shell.gid)
        self.socket = shell.runtime_dir / "rctr" / "rctr.sock"
        self.env = shell.env(XDG_DATA_HOME=str(data), DOCKER_HOST=f"unix://{self.socket}",
                             DOCKER_CONFIG=str(shell.base / "docker"))

    def load(self, layout: str, name: str) -> None:
        code = f"from rctr.storage import Store; Store.default().load({layout!r}, name={name!r})"
        self.shell.run([PYTHON, "-c", code], env=self.env, check=True)

    def rctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.shell.run([RCTR, *args], env=self.env, timeout=timeout)

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.shell.run(["docker", *args], env=self.env, timeout=timeout)

    def run_d(self, name: str, *args: str, image: str = IMAGE) -> None:
        ok(self.rctr("run", "-d", "--name", name, *args, image, "sleep", "600"))

    def health(self, name: str) -> dict[str, Any] | None:
        r = ok(self.docker("inspect", "--format", "{{json .State.Health}}", name))
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def wait_health(self, name: str, predicate: Callable[[dict[str, Any]], bool],
                    timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        health = None
        while time.monotonic() < deadline:
            health = self.health(name)
            if health and predicate(health):
                return health
            time.sleep(0.2)
        raise AssertionError(f"{name}: health never matched; last: {health}")

    def health_events(self, name: str, since: float) -> list[str]:
        r = ok(self.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                           "--filter", f"container={name}", "--filter", "event=health_status",
                           "--format", "{{.Action}}"))
        return [line for line in r.stdout.splitlines() if line]

    def daemon_pid(self) -> int | None:
        try:
            return int((self.shell.runtime_dir / "rctr" / "rctrd.pid").read_text())
        except (OSError, ValueError):
            return None


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"{r.args}: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def _with_healthcheck(src: str, dst: str, healthcheck: dict[str, Any]) -> None:
    """Copy an OCI layout, giving its one image a HEALTHCHECK (new config, manifest, index)."""
    shutil.copytree(src, dst)
    blobs = Path(dst, "blobs", "sha256")

    def read(digest: str) -> Any:
        return json.loads((blobs / digest.split(":", 1)[1]).read_text())

    def write(obj: Any) -> tuple[str, int]:
        data = json.dumps(obj).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest, len(data)

    index = json.loads(Path(dst, "index.json").read_text())
    manifest = read(index["manifests"][0]["digest"])
    config = read(manifest["config"]["digest"])
    config["config"]["Healthcheck"] = healthcheck
    manifest["config"]["digest"], manifest["config"]["size"] = write(config)
    index["manifests"][0]["digest"], index["manifests"][0]["size"] = write(manifest)
    Path(dst, "index.json").write_text(json.dumps(index))


@pytest.fixture(scope="module")
def rc(test_image: str) -> Rctr:
    shell = UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    try:
        user = Rctr(shell)
        user.load(test_image, IMAGE)
        layout = str(shell.base / "health-image")
        _with_healthcheck(test_image, layout, {"Test": ["CMD-SHELL", "echo from-image"],
                                               "Interval": 300_000_000, "Retries": 1})
        for dirpath, dirnames, filenames in os.walk(layout):
            for n in dirnames + filenames:
                os.chmod(os.path.join(dirpath, n), 0o755 if n in dirnames else 0o644)
        user.load(layout, HEALTH_IMAGE)
        yield user
    finally:
        shell.cleanup()


def test_healthy_shows_in_inspect_ps_and_events(rc: Rctr) -> None:
    since = time.time() - 1
    rc.run_d("h-ok", "--health-cmd", "echo fine", "--health-interval", "1s")
    first = rc.health("h-ok")
    assert first is not None and first["Status"] in ("starting", "healthy")
    if first["Status"] == "starting":
        status = ok(rc.docker("ps", "--filter", "name=h-ok", "--format", "{{.Status}}")).stdout
        assert "(health: starting)" in status or "(healthy)" in status
    health = rc.wait_health("h-ok", lambda h: h["Status"] == "healthy")
    assert health["FailingStreak"] == 0
    entry = health["Log"][-1]
    assert entry["ExitCode"] == 0 and entry["Output"] == "fine\n"
    assert entry["Start"].endswith("Z") and entry["Start"] <= entry["End"]
    ps = ok(rc.docker("ps", "--filter", "name=h-ok", "--format", "{{.Status}}")).stdout
    assert ps.strip().endswith("(healthy)"), ps
    assert "(healthy)" in ok(rc.rctr("ps", "--filter", "name=h-ok")).stdout
    names = ok(rc.docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}")).stdout.split()
    assert "h-ok" in names
    assert "h-ok" not in ok(rc.docker("ps", "--filter", "health=unhealthy",
                                      "--format", "{{.Names}}")).stdout.split()
    assert rc.health_events("h-ok", since) == ["health_status: healthy"]
    # Each probe is an exec, with Docker's exec events.
    r = ok(rc.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                     "--filter", "container=h-ok", "--filter", "event=exec_create",
                     "--filter", "event=exec_start", "--filter", "event=exec_die",
                     "--format", '{{.Action}}|{{index .Actor.Attributes "exitCode"}}'))
    lines = r.stdout.splitlines()
    assert lines[:3] == ["exec_create: /bin/sh -c echo fine|", "exec_start: /bin/sh -c echo fine|",
                         "exec_die|0"], lines
    ok(rc.rctr("rm", "-f", "h-ok"))


def test_unhealthy_after_retries(rc: Rctr) -> None:
    since = time.time() - 1
    rc.run_d("h-bad", "--health-cmd", "echo broken >&2; exit 3", "--health-interval", "300ms",
             "--health-retries", "2")
    health = rc.wait_health("h-bad", lambda h: h["Status"] == "unhealthy")
    assert health["FailingStreak"] >= 2
    assert all(e["ExitCode"] == 3 and e["Output"] == "broken\n" for e in health["Log"])
    rc.wait_health("h-bad", lambda h: len(h["Log"]) == 5 and h["FailingStreak"] >= 6)
    ps = ok(rc.docker("ps", "--filter", "name=h-bad", "--format", "{{.Status}}")).stdout
    assert ps.strip().endswith("(unhealthy)"), ps
    names = ok(rc.docker("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}")).stdout
    assert "h-bad" in names.split()
    assert rc.health_events("h-bad", since) == ["health_status: unhealthy"]
    ok(rc.rctr("rm", "-f", "h-bad"))


def test_a_check_that_flips(rc: Rctr) -> None:
    since = time.time() - 1
    rc.run_d("h-flip", "--health-cmd", "test -f /tmp/ok", "--health-interval", "300ms",
             "--health-retries", "1")
    rc.wait_health("h-flip", lambda h: h["Status"] == "unhealthy")
    ok(rc.rctr("exec", "h-flip", "touch", "/tmp/ok"))
    rc.wait_health("h-flip", lambda h: h["Status"] == "healthy")
    ok(rc.rctr("exec", "h-flip", "rm", "/tmp/ok"))
    rc.wait_health("h-flip", lambda h: h["Status"] == "unhealthy")
    assert rc.health_events("h-flip", since) == [
        "health_status: unhealthy", "health_status: healthy", "health_status: unhealthy"]
    ok(rc.rctr("rm", "-f", "h-flip"))


def test_a_check_that_exceeds_its_timeout_fails(rc: Rctr) -> None:
    rc.run_d("h-slow", "--health-cmd", "sleep 20", "--health-interval", "500ms",
             "--health-timeout", "1s", "--health-retries", "1")
    health = rc.wait_health("h-slow", lambda h: h["Status"] == "unhealthy")
    entry = health["Log"][-1]
    assert entry["ExitCode"] == -1
    assert entry["Output"].startswith("Health check exceeded timeout"), entry
    took = (parse_time(entry["End"]) or 0) - (parse_time(entry["Start"]) or 0)
    assert 1 <= took < 8, entry  # killed at the timeout, not waited for
    # The killed checks do not pile up in the container.
    ps = ok(rc.rctr("exec", "h-slow", "ps", "-o", "args")).stdout
    assert ps.count("sleep 20") <= 1, ps
    ok(rc.rctr("rm", "-f", "h-slow"))


def test_image_healthcheck_and_no_healthcheck(rc: Rctr) -> None:
    rc.run_d("h-img", image=HEALTH_IMAGE)
    health = rc.wait_health("h-img", lambda h: h["Status"] == "healthy")
    assert health["Log"][-1]["Output"] == "from-image\n"
    rc.run_d("h-none", "--no-healthcheck", image=HEALTH_IMAGE)
    time.sleep(1.5)  # several of the image's intervals
    assert rc.health("h-none") is None
    ps = ok(rc.docker("ps", "--filter", "name=h-none", "--format", "{{.Status}}")).stdout
    assert ps.startswith("Up") and "health" not in ps, ps
    names = ok(rc.docker("ps", "--filter", "health=none", "--format", "{{.Names}}")).stdout.split()
    assert "h-none" in names and "h-img" not in names
    ok(rc.rctr("rm", "-f", "h-img", "h-none"))


def test_stop_ends_probing_and_start_begins_again(rc: Rctr) -> None:
    rc.run_d("h-stop", "--health-cmd", "true", "--health-interval", "300ms")
    rc.wait_health("h-stop", lambda h: h["Status"] == "healthy")
    ok(rc.rctr("stop", "-t", "1", "h-stop"))
    before = rc.health("h-stop")
    time.sleep(1)
    assert rc.health("h-stop") == before, "probes went on after the stop"
    ok(rc.rctr("start", "h-stop"))
    health = rc.health("h-stop")
    assert health is not None and health["Status"] == "starting" and health["FailingStreak"] == 0
    rc.wait_health("h-stop", lambda h: h["Status"] == "healthy")
    ok(rc.rctr("rm", "-f", "h-stop"))


def test_daemon_restart_resumes_probing(rc: Rctr) -> None:
    rc.run_d("h-adopt", "--health-cmd", "exit 1", "--health-interval", "300ms",
             "--health-retries", "1")
    before = rc.wait_health("h-adopt", lambda h: h["Status"] == "unhealthy")
    pid = rc.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "rctrd did not stop"
    restarted = time.time()
    ok(rc.rctr("ps"))  # starts the daemon again; it re-adopts the container
    health = rc.health("h-adopt")
    assert health is not None and health["Status"] == "unhealthy"
    assert health["FailingStreak"] >= before["FailingStreak"]
    rc.wait_health("h-adopt", lambda h: (parse_time(h["Log"][-1]["Start"]) or 0) > restarted)
    ok(rc.rctr("rm", "-f", "h-adopt"))
