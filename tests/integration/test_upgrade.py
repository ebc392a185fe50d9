"""An upgrade of rctrd under running containers: the previous release's records are read.

The previous release's code is taken from git (``PREVIOUS``: main before the typed
container record) and put first on ``PYTHONPATH`` (``rctr`` is a namespace package, so
its ``rctr.daemon``, ``rctr.shim``... are found there first).  That rctrd starts a
container and stops; this tree's rctrd then finds the container running, from the
record in the old format, and stops and removes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonenv import IMAGE, PYTHON, RctrUser, ok, own_user

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(240)]

PREVIOUS = "e48fd05"  # main before the record was typed: records with no "version"
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "rootless", "storage", "netstack", "shim", "daemon", "cli")


def previous_release(into: Path) -> Path:
    """``PREVIOUS``'s packages laid out as ``into/rctr/<package>``, readable by the user."""
    archive = subprocess.run(["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), "archive",
                              "--format=tar", PREVIOUS, *PACKAGES],
                             capture_output=True, check=True, timeout=60).stdout
    root = into / "rctr"
    root.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=60)
    for dirpath, _dirnames, filenames in os.walk(into):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return into


@pytest.fixture
def upgraded(test_image: str) -> Iterator[tuple[RctrUser, Path]]:
    with own_user(test_image) as rc:
        yield rc, previous_release(rc.shell.base / "previous")


def _record(rc: RctrUser, cid: str) -> dict[str, object]:
    path = rc.data / "rctr" / "containers" / cid / "config.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _ping(rc: RctrUser) -> bool:
    try:
        return rc.api("GET", "/_ping")[0] == 200
    except AssertionError:
        return False


def test_a_container_of_the_previous_rctrd_survives_the_upgrade(
        upgraded: tuple[RctrUser, Path]) -> None:
    rc, previous = upgraded
    log = open(rc.shell.base / "previous-rctrd.log", "wb")
    old = rc.shell.popen([PYTHON, "-m", "rctr.daemon"], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=log, cwd="/",
                         env=rc.env(PYTHONPATH=str(previous), PYTHONDONTWRITEBYTECODE="1"))
    try:
        rc.wait_for(lambda: _ping(rc), timeout=60, what="the previous rctrd")
        assert rc.daemon_pid() == old.pid
        cid = ok(rc.rctr("run", "-d", "--name", "old", IMAGE, "sleep", "300")).stdout.strip()
        record = _record(rc, cid)
        assert "version" not in record and "_rctr" in record  # the previous format
        pid = rc.state("old")["Pid"]
        old.send_signal(signal.SIGTERM)
        assert old.wait(30) == 0
        assert os.path.exists(f"/proc/{pid}"), "the container should outlive its rctrd"

        # This tree's rctrd, started by the CLI: it reads the old record.
        listed = ok(rc.rctr("ps")).stdout
        assert rc.daemon_pid() not in (None, old.pid)
        assert "old" in listed
        status, [summary] = rc.api("GET", "/containers/json")
        assert (status, summary["Id"], summary["State"]) == (200, cid, "running")
        assert rc.state("old")["Pid"] == pid
        assert "version" not in _record(rc, cid)  # read as it is; rewritten at the next change

        ok(rc.rctr("stop", "-t", "1", "old"))
        assert not os.path.exists(f"/proc/{pid}")
        record = _record(rc, cid)
        assert record["version"] == 2 and rc.state("old")["Status"] == "exited"
        ok(rc.rctr("rm", "old"))
        assert ok(rc.rctr("ps", "-aq")).stdout.strip() == ""
        assert not (rc.data / "rctr" / "containers" / cid).exists()
    finally:
        if old.poll() is None:
            old.kill()
            old.wait(10)
        log.close()
        rc.rctr("rm", "-f", "old")
