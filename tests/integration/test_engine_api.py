"""The Engine API as dockerd answers it (issue 17), through the stock docker CLI and the
Docker SDK for Python, against a real rctrd as the unprivileged user."""

from __future__ import annotations

import json

import pytest
from daemonenv import IMAGE, PYTHON, RctrUser, ok

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(180)]


@pytest.fixture(autouse=True, scope="module")
def _daemon_started(rc: RctrUser) -> None:
    """Only the rctr CLI starts rctrd on demand; the other clients expect it running."""
    ok(rc.rctr("info"))


def _sdk(rc: RctrUser, code: str) -> dict[str, object]:
    """Run ``code`` with ``client`` (docker.from_env) as the user; it fills ``seen``."""
    program = ("import json, docker\nclient = docker.from_env(timeout=60)\nseen = {}\n"
               + code + "\nprint(json.dumps(seen))\n")
    out = ok(rc.shell.run([PYTHON, "-c", program], env=rc.env(), timeout=120)).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_kill_answers_once_the_container_has_exited(rc: RctrUser) -> None:
    try:
        ok(rc.docker("run", "-d", "--name", "killed-cli", IMAGE, "sleep", "300"))
        ok(rc.docker("kill", "killed-cli"))
        state = ok(rc.docker("inspect", "-f", "{{.State.Status}} {{.State.Running}}",
                             "killed-cli")).stdout.split()
        assert state == ["exited", "false"]
        ok(rc.docker("rm", "killed-cli"))  # no --force needed: it is stopped already
        seen = _sdk(rc, (
            f"c = client.containers.run({IMAGE!r}, ['sleep', '300'], detach=True,"
            " name='killed-sdk')\n"
            "c.kill()\nc.reload()\nseen['status'] = c.status\n"
            "seen['exit_code'] = c.attrs['State']['ExitCode']\nc.remove()\n"))
        assert seen == {"status": "exited", "exit_code": 137}
    finally:
        rc.rctr("rm", "-f", "killed-cli", "killed-sdk")


def test_a_node_in_no_swarm_answers_as_dockerd(rc: RctrUser) -> None:
    r = rc.docker("node", "ls")
    assert r.returncode != 0 and "This node is not a swarm manager" in r.stderr, r
    r = rc.docker("service", "ls")
    assert r.returncode != 0 and "This node is not a swarm manager" in r.stderr, r
    r = rc.docker("swarm", "leave")
    assert r.returncode != 0 and "This node is not part of a swarm" in r.stderr, r
    r = rc.docker("swarm", "init")
    assert r.returncode != 0 and "no swarm mode" in r.stderr, r
    assert ok(rc.docker("plugin", "ls", "-q")).stdout == ""
    seen = _sdk(rc, (
        "for name, call in (('leave', lambda: client.swarm.leave()),\n"
        "                   ('secrets', lambda: client.secrets.list()),\n"
        "                   ('nodes', lambda: client.nodes.list())):\n"
        "    try:\n"
        "        call()\n"
        "        seen[name] = 'answered'\n"
        "    except docker.errors.APIError as exc:\n"
        "        seen[name] = exc.status_code\n"
        "seen['plugins'] = client.plugins.list()\n"))
    assert seen == {"leave": 503, "secrets": 503, "nodes": 503, "plugins": []}
