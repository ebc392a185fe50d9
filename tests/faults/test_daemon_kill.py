"""rctrd killed with SIGKILL at random points of create, start, run, rm, pull and load.

After each kill the next command starts a new daemon, which reconciles; the
user's state must then be whole (``leftovers.problems``): every container
exists wholly or not at all, no process or mount is left without an owner,
exits that happened while no daemon ran are reported, and every container and
image that survived still works.  ``RCTR_FAULT_ROUNDS`` (default 4) is the
number of kills per operation; the seed is printed so a failure can be replayed
with ``RCTR_FAULT_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator

import pytest
from daemonenv import IMAGE, RctrUser, ok
from harness import RCTR
from leftovers import quiet_problems
from registry import Registry, push_oci_layout

pytestmark = [pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.slow]

ROUNDS = int(os.environ.get("RCTR_FAULT_ROUNDS", "4"))
SEED = int(os.environ.get("RCTR_FAULT_SEED", str(int(time.time()))))
BIG = "rctr-test/big:latest"


@pytest.fixture(scope="module")
def registry(big_image: str) -> Iterator[Registry]:
    with Registry() as reg:
        push_oci_layout(reg.url, big_image, "faults/big", "latest")
        yield reg


@pytest.fixture(scope="module")
def big_archive(rc: RctrUser, big_image: str) -> str:
    path = rc.shell.base / "big.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(big_image, arcname=".")
    os.chmod(path, 0o644)
    return str(path)


def kill_daemon(rc: RctrUser) -> int:
    pid = rc.daemon_pid()
    assert pid is not None, "no daemon to kill"
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            break
        time.sleep(0.02)
    return pid


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def restart(rc: RctrUser, killed: int) -> None:
    ok(rc.rctr("ps", "-a"))  # the CLI starts a new daemon, which reconciles
    assert rc.daemon_pid() not in (None, killed)


class Scenario:
    """One operation to cut short: ``prepare`` runs first, ``command`` is killed mid-way."""

    def __init__(self, name: str, command: Callable[[int], list[str]],
                 prepare: Callable[[int], None] = lambda n: None) -> None:
        self.name, self.command, self.prepare = name, command, prepare
        self.duration = 1.0  # measured by an uncut run


def scenarios(rc: RctrUser, registry: Registry, big_archive: str) -> list[Scenario]:
    pulled = f"{registry.host}/faults/big:latest"

    def created(n: int) -> None:
        ok(rc.rctr("create", "--name", f"f{n}", "-p", "127.0.0.1::80", IMAGE, "sleep", "60"))

    def started(n: int) -> None:
        ok(rc.rctr("run", "-d", "--name", f"f{n}", "-p", "127.0.0.1::80", IMAGE, "sleep", "60"))

    def no_pulled(n: int) -> None:
        rc.rctr("rmi", "-f", pulled)

    def no_big(n: int) -> None:
        rc.rctr("rmi", "-f", BIG)

    return [
        Scenario("create", lambda n: [RCTR, "create", "--name", f"f{n}", "-v", "/data",
                                      IMAGE, "sleep", "60"]),
        Scenario("start", lambda n: [RCTR, "start", f"f{n}"], created),
        Scenario("run", lambda n: [RCTR, "run", "-d", "--name", f"f{n}", "-p", "127.0.0.1::80",
                                   "-v", "/data", IMAGE, "sh", "-c", "sleep 60"]),
        Scenario("rm", lambda n: [RCTR, "rm", "-f", "-v", f"f{n}"], started),
        Scenario("stop", lambda n: [RCTR, "stop", "-t", "1", f"f{n}"], started),
        Scenario("pull", lambda n: [RCTR, "pull", "-q", pulled], no_pulled),
        Scenario("load", lambda n: [RCTR, "load", "-q", "-i", big_archive], no_big),
    ]


def works(rc: RctrUser) -> None:
    """Every container left can be inspected and removed; every image still runs."""
    names = ok(rc.rctr("ps", "-a", "--format", "{{.Names}}")).stdout.split()
    for name in names:
        ok(rc.rctr("inspect", name))
    images = ok(rc.rctr("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout.split()
    for image in images:
        assert "<none>" not in image, f"a dangling image was left: {images}"
        if "big" in image:
            assert ok(rc.rctr("run", "--rm", image, "cat", "/big/hello")).stdout == "big\n"
        else:
            ok(rc.rctr("run", "--rm", image, "true"))


def test_daemon_killed_at_random_points(rc: RctrUser, registry: Registry, big_archive: str) -> None:
    rng = random.Random(SEED)
    print(f"faults: seed {SEED}, {ROUNDS} kills per operation")
    plan = scenarios(rc, registry, big_archive)
    # A container that keeps running through every kill, and one that exits while no
    # daemon runs.
    ok(rc.rctr("run", "-d", "--name", "keeper", "-p", "127.0.0.1::80", IMAGE, "sleep", "600"))
    n = 0
    for s in plan:  # an uncut run of each, to know how long the cut ones may take
        n += 1
        s.prepare(n)
        t0 = time.monotonic()
        ok(rc.shell.run(s.command(n), env=rc.env(), timeout=120))
        s.duration = time.monotonic() - t0
        rc.rctr("rm", "-f", "-v", f"f{n}")
    print("faults: uncut durations " + ", ".join(f"{s.name} {s.duration:.2f}s" for s in plan))
    kills: dict[str, int] = {}
    for _ in range(ROUNDS):
        for s in rng.sample(plan, len(plan)):
            n += 1
            s.prepare(n)
            quitter = f"q{n}"
            ok(rc.rctr("run", "-d", "--name", quitter, IMAGE, "sh", "-c", "sleep 1; exit 7"))
            proc = rc.popen(s.command(n), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, s.duration * 1.1))
            killed = kill_daemon(rc)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"{s.name} hung after its daemon was killed") from None
            time.sleep(1.2)  # the quitter exits while no daemon runs
            restart(rc, killed)
            found = quiet_problems(rc)
            assert not found, f"after killing rctrd during {s.name} (seed {SEED}):\n" + \
                "\n".join(found)
            state = rc.state(quitter)
            assert (state["Status"], state["ExitCode"]) == ("exited", 7), state
            assert rc.state("keeper")["Running"]
            works(rc)
            ok(rc.rctr("rm", "-f", quitter))
            rc.rctr("rm", "-f", "-v", f"f{n}")  # a create cut short leaves no container
            kills[s.name] = kills.get(s.name, 0) + 1
    ok(rc.rctr("exec", "keeper", "true"))
    ok(rc.rctr("rm", "-f", "keeper"))
    assert not quiet_problems(rc)
    print("faults: daemon kills survived: " + json.dumps(kills))
