"""``rctr commit`` / ``docker commit`` / ``POST /commit`` end to end, as the unprivileged
user: a running container's additions, changes, deletions (whiteouts), an opaque
directory and an owner other than root come back in a container of the new image, with
the CMD and ENV given as changes; under the default driver and under vfs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from daemonenv import IMAGE, RctrUser, detached, ok, own_user

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]

# /etc holds the bind-mounted hosts, hostname and resolv.conf in a running container (as
# under Docker), so the opaque directory is /home, which the test image fills.
_CHANGES = ("echo hello > /hello && chown 1000:1001 /hello && rm /etc/motd"
            " && rm -rf /home && mkdir /home && echo x > /home/new"
            " && echo changed > /www/index.html")
_CHECK = ("cat /hello; stat -c %u:%g /hello; ls /etc/motd 2>&1; ls /home; cat /home/new;"
          " cat /www/index.html; echo A=$A")


def _commit_and_check(rc: RctrUser, tag: str) -> str:
    with detached(rc, "src", IMAGE, "sleep", "600"):
        ok(rc.rctr("exec", "src", "sh", "-c", _CHANGES))
        image_id = ok(rc.rctr("commit", "-a", "me <me@example.com>", "-m", "a message",
                              "-c", 'CMD ["cat","/hello"]', "-c", "ENV A=b", "src", tag)).stdout
    image_id = image_id.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71, image_id
    assert ok(rc.rctr("run", "--rm", tag)).stdout == "hello\n"  # the CMD change
    out = ok(rc.rctr("run", "--rm", tag, "sh", "-c", _CHECK)).stdout.splitlines()
    assert out[0] == "hello" and out[1] == "1000:1001", out  # the owner is the container's
    assert "No such file" in out[2], out  # the whiteout of a file of the image
    assert out[3:] == ["new", "x", "changed", "A=b"], out  # opaque /home, a change, ENV
    [info] = json.loads(ok(rc.rctr("image", "inspect", tag)).stdout)
    assert info["Id"] == image_id
    assert info["Author"] == "me <me@example.com>" and info["Comment"] == "a message"
    assert info["Config"]["Cmd"] == ["cat", "/hello"]
    assert "A=b" in info["Config"]["Env"] and any(e.startswith("PATH=") for e in info["Config"]["Env"])
    status, history = rc.api("GET", f"/images/{tag}/history")
    assert status == 200 and history[0]["Comment"] == "a message", history
    assert history[0]["CreatedBy"] == "sleep 600"
    return image_id


@pytest.fixture
def vfs_rc(test_image: str) -> Iterator[RctrUser]:
    with own_user(test_image, RCTR_STORAGE_DRIVER="vfs") as user:
        yield user


# First in the file: its clean-up ends every process of the test user, and the
# module's `rc` (its own rctrd) starts after it.
def test_commit_under_vfs(vfs_rc: RctrUser) -> None:
    _commit_and_check(vfs_rc, "committed/vfs:1")  # starts rctrd
    assert vfs_rc.api("GET", "/info")[1]["Driver"] == "vfs"


def test_commit_under_the_default_driver(rc: RctrUser) -> None:
    image_id = _commit_and_check(rc, "committed/default:1")
    # An unchanged container: no new layer, as Docker does (history says empty_layer).
    with detached(rc, "same", "committed/default:1", "sleep", "600"):
        again = ok(rc.rctr("commit", "same")).stdout.strip()
    [before, after] = [json.loads(ok(rc.rctr("image", "inspect", i)).stdout)[0]["RootFS"]
                       for i in (image_id, again)]
    assert len(after["Layers"]) == len(before["Layers"])


def test_docker_commit(rc: RctrUser) -> None:
    with detached(rc, "dsrc", IMAGE, "sleep", "600"):
        ok(rc.docker("exec", "dsrc", "sh", "-c", "echo from-docker > /d"))
        out = ok(rc.docker("commit", "--change", "ENTRYPOINT [\"cat\"]", "-c", "CMD [\"/d\"]",
                           "dsrc", "committed/docker:2")).stdout.strip()
    assert out.startswith("sha256:")
    assert ok(rc.docker("run", "--rm", "committed/docker:2")).stdout == "from-docker\n"
    assert "committed/docker:2" in ok(rc.docker("images", "--format",
                                                "{{.Repository}}:{{.Tag}}")).stdout


def test_commit_errors(rc: RctrUser) -> None:
    r = rc.rctr("commit", "nosuch", "x:1")
    assert r.returncode != 0 and "No such container: nosuch" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    with detached(rc, "esrc", IMAGE, "sleep", "600"):
        r = rc.rctr("commit", "esrc", "Bad/Name:1")
        assert r.returncode != 0 and "invalid reference" in r.stderr, r.stderr
        r = rc.rctr("commit", "-c", "RUN rm -rf /", "esrc", "x:1")
        assert r.returncode != 0 and "RUN is not a valid change command" in r.stderr, r.stderr
        status, body = rc.api("POST", "/commit?container=esrc&changes=FROM%20x")
        assert status == 400 and "FROM is not a valid change command" in body["message"], body
        status, body = rc.api("POST", "/commit?container=esrc&repo=ok&tag=1",
                              body={"Labels": {"from": "body"}})
        assert status == 201 and body["Id"].startswith("sha256:"), body
    [info] = json.loads(ok(rc.rctr("image", "inspect", "ok:1")).stdout)
    assert info["Config"]["Labels"]["from"] == "body"
    assert "Traceback" not in r.stderr
