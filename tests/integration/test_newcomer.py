"""A newcomer's path, end to end: tests/e2e/newcomer.sh from an account with no rctr state.

The script makes a brand-new user, follows README.md's steps as that user
(``rctr doctor``, ``rctr load``, a first ``rctr run``, the everyday commands,
the docker CLI) and removes the account again, whatever happened.
"""

from __future__ import annotations

import pwd
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "userns", "newuidmap"),
              pytest.mark.timeout(300)]

SCRIPT = Path(__file__).parent.parent / "e2e" / "newcomer.sh"
ARCHIVE = "/opt/rctr/testimage.tar"


def test_a_new_user_goes_from_nothing_to_a_running_container() -> None:
    if not Path(ARCHIVE).exists():
        pytest.fail(f"{ARCHIVE} is missing: scripts/setup.sh makes it", pytrace=False)
    r = subprocess.run([str(SCRIPT), ARCHIVE], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "newcomer: ok:" in r.stdout
    assert "hello from " in r.stdout and "Loaded image: rctr-test/busybox:latest" in r.stdout
    assert re.search(r"^ok +subuid ", r.stdout, re.M), r.stdout  # doctor saw the new ranges
    user = re.search(r"creates (rctr-new-\d+)", r.stdout).group(1)  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert user not in Path("/etc/subuid").read_text()
