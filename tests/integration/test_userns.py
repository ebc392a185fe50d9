"""core.userns as the unprivileged user: root inside, subordinate ids outside."""

from __future__ import annotations

import os

import pytest
from harness import UserShell

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]

_SCRIPT = """
import os, sys
from rctr.core.userns import run_in_userns
path = sys.argv[1]
def work():
    open(path, "w").close()
    os.chown(path, 1000, 1000)
    return [os.getuid(), open("/proc/self/uid_map").read().split()]
print(run_in_userns(work))
"""


def test_run_in_userns_chowns_to_the_subordinate_id(user: UserShell) -> None:
    import sys

    target = user.base / "owned"
    r = user.run([sys.executable, "-c", _SCRIPT, str(target)], check=True)
    assert r.stdout.startswith("[0, ['0', '%d', '1'" % user.uid)
    assert os.stat(target).st_uid == user.host_uid(1000)


def test_errors_come_back_as_one_line(user: UserShell) -> None:
    import sys

    script = ("from rctr.core.userns import run_in_userns\n"
              "try:\n    run_in_userns(lambda: open('/nonexistent/x', 'w'))\n"
              "except Exception as e:\n    print(type(e).__name__, e)")
    r = user.run([sys.executable, "-c", script], check=True)
    assert r.stdout.startswith("Unavailable") and "/nonexistent/x" in r.stdout
