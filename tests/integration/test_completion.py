"""Shell completion as the unprivileged user, against a real rctrd, and with none running.

Completion is driven as bash's script drives it (``_RCTR_COMPLETE=bash_complete`` with
``COMP_WORDS`` and ``COMP_CWORD``), then through the script itself in a real bash.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from daemonenv import IMAGE, RctrUser, detached, ok
from harness import RCTR

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(180)]


def complete(rc: RctrUser, line: str) -> tuple[list[str], float]:
    """What ``rctr`` offers for the last word of ``line``, and how long it took to answer."""
    env = rc.env(_RCTR_COMPLETE="bash_complete", COMP_WORDS=line,
                 COMP_CWORD=str(len(line.split(" ")) - 1))
    start = time.monotonic()
    r = rc.shell.run([RCTR], env=env, timeout=30)
    elapsed = time.monotonic() - start
    assert (r.returncode, r.stderr) == (0, ""), r
    return [row.partition(",")[2] for row in r.stdout.splitlines()
            if row.startswith("plain,")], elapsed


def bash(rc: RctrUser, script: str) -> subprocess.CompletedProcess:
    """``bash -c SCRIPT`` as the user, with rctr on the PATH (not interactive: no rc files)."""
    path = f"{os.path.dirname(RCTR)}:{rc.env()['PATH']}"
    return rc.shell.run(["bash", "-c", script], env=rc.env(PATH=path), timeout=60)


def test_names_from_the_daemon(rc: RctrUser) -> None:
    with detached(rc, "web-compl", IMAGE, "sleep", "300"):
        assert "web-compl" in complete(rc, "rctr stop we")[0]
        assert "web-compl" in complete(rc, "rctr container logs web-")[0]
        assert "web-compl" not in complete(rc, "rctr start we")[0]  # running: not startable
        assert IMAGE in complete(rc, "rctr run rctr-test/")[0]
        assert IMAGE in complete(rc, "rctr run -d --rm rctr-test/")[0]
        assert IMAGE in complete(rc, "rctr rmi rctr-test/")[0]


def test_volume_and_network_names(rc: RctrUser) -> None:
    ok(rc.rctr("volume", "create", "vol-compl"))
    ok(rc.rctr("network", "create", "net-compl"))
    try:
        assert complete(rc, "rctr volume rm vol-c")[0] == ["vol-compl"]
        assert complete(rc, "rctr network inspect net-c")[0] == ["net-compl"]
    finally:
        rc.rctr("volume", "rm", "vol-compl")
        rc.rctr("network", "rm", "net-compl")


def test_the_bash_script_loads_and_completes(rc: RctrUser) -> None:
    r = bash(rc, "source <(rctr completion bash) && complete -p rctr")
    assert (r.returncode, r.stderr) == (0, ""), r
    assert r.stdout.strip() == "complete -o nosort -F _rctr_completion rctr"
    # What bash does on TAB after `rctr stop web-`: the function fills COMPREPLY.
    with detached(rc, "web-compl", IMAGE, "sleep", "300"):
        r = bash(rc, "source <(rctr completion bash)\n"
                     "COMP_WORDS=(rctr stop web-); COMP_CWORD=2\n"
                     "_rctr_completion rctr stop web-; printf '%s\\n' \"${COMPREPLY[@]}\"")
    assert (r.returncode, r.stderr) == (0, ""), r
    assert r.stdout.split() == ["web-compl"]


@pytest.mark.parametrize("shell, check", [("zsh", ["zsh", "-n"]),
                                          ("fish", ["fish", "--no-execute"])])
def test_zsh_and_fish_scripts(rc: RctrUser, shell: str, check: list[str]) -> None:
    """The text always; its syntax too where the shell is installed (neither is required)."""
    script = ok(rc.rctr("completion", shell)).stdout
    assert f"_RCTR_COMPLETE={shell}_complete" in script
    if shutil.which(check[0]) is None:
        return
    path = rc.shell.base / f"rctr.{shell}"
    path.write_text(script)
    r = rc.shell.run([*check, str(path)])
    assert r.returncode == 0, r


def _alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def test_no_daemon_no_names_no_start(rc: RctrUser) -> None:
    ok(rc.rctr("ps"))  # a daemon to stop
    pid = rc.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    rc.wait_for(lambda: rc.daemon_pid() is None and not _alive(str(rc.socket)),
                what="rctrd to stop")
    for line in ("rctr stop we", "rctr run rctr-test/", "rctr rmi ", "rctr volume rm ",
                 "rctr network rm ", "rctr inspect "):
        names, elapsed = complete(rc, line)
        assert names == [], line
        assert elapsed < 2, f"{line!r} took {elapsed:.2f} s"
    assert complete(rc, "rctr sto")[0] == ["stop"]  # what needs no daemon still works
    assert rc.daemon_pid() is None, "a completion started rctrd"
    assert not _alive(str(rc.socket))
