"""The soak, short form: parallel clients run, read, exec into and remove containers
for about a minute (``RCTR_SOAK_SECONDS``); the long form is ``bench/soak.py``.

Nothing may fail, nothing may be left (processes, mounts, records), and rctrd
must not grow: its memory within 10 MiB of where it was after the warm-up, the
same open fds and threads.
"""

from __future__ import annotations

import json
import os

import pytest
from daemonenv import RctrUser
from soak import soak

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(600)]

SECONDS = float(os.environ.get("RCTR_SOAK_SECONDS", "60"))


def test_soak(rc: RctrUser, record_property) -> None:  # type: ignore[no-untyped-def]
    figures = soak(rc, clients=4, seconds=SECONDS)
    print("soak: " + json.dumps(figures))
    record_property("soak", figures)
    assert figures["errors"] == 0, figures["first_errors"]
    assert figures["daemon_same"]
    assert not figures["leftover_problems"]
    assert not figures["leftover_processes"] and not figures["leftover_mounts"]
    assert figures["containers"] >= 20
    before, after = figures["daemon_before"], figures["daemon_after"]
    assert after["fds"] <= before["fds"], figures
    assert after["threads"] <= before["threads"], figures
    assert after["pss_kib"] - before["pss_kib"] < 10 * 1024, figures
