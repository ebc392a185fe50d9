"""The tools people already use, against rctrd, as the unprivileged user.

The stock ``docker`` CLI, the Docker SDK for Python, docker-compose 1.29 and
testcontainers-python each drive a real rctrd here — nothing in between is
faked.  The SDK and testcontainers programs are in ``tests/clients/``, run as
the user; their JSON output is checked here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from daemonenv import IMAGE, PYTHON, RctrUser, ok

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(240)]

CLIENTS = Path(__file__).parent.parent / "clients"
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"


@pytest.fixture(autouse=True, scope="module")
def _daemon_started(rc: RctrUser) -> None:
    """Only the rctr CLI starts rctrd on demand; the other clients expect it running."""
    ok(rc.rctr("info"))


def _copy_in(rc: RctrUser, name: str) -> str:
    """A file of tests/clients, copied where the user can read it."""
    target = rc.shell.base / name
    shutil.copy(CLIENTS / name, target)
    os.chmod(target, 0o644)
    return str(target)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read().decode()  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- the stock docker CLI ----------------------------------------------------------------------

def test_docker_cli_run_flags_and_the_fields_scripts_read(rc: RctrUser) -> None:
    env_file = rc.shell.base / "env.list"
    env_file.write_text("FROM_FILE=2\n")
    bind = rc.shell.base / "bind"
    bind.mkdir()
    (bind / "f").write_text("bound\n")
    os.chown(bind, rc.shell.uid, rc.shell.gid)
    out = ok(rc.docker(
        "run", "--rm", "-e", "A=1", "--env-file", str(env_file), "-w", "/tmp", "-u", "1000:1000",
        "--hostname", "hh", "--label", "l=v", "--entrypoint", "sh", "--read-only",
        "--tmpfs", "/scratch", "--init", "--cap-drop", "ALL", "--add-host", "foo:192.0.2.7",
        "--dns", "192.0.2.53", "--mount", f"type=bind,source={bind},target=/b,readonly",
        "--mount", "type=volume,source=cli-vol,target=/mv", "--ulimit", "nofile=512:512",
        "--shm-size", "32m", IMAGE, "-c",
        "echo $A $FROM_FILE $(pwd) $(id -u) $(hostname); touch /scratch/x && echo tmpfs-ok;"
        " touch /y 2>/dev/null || echo ro-ok; grep foo /etc/hosts; grep nameserver /etc/resolv.conf;"
        " cat /b/f; test -d /mv && echo vol-ok; ulimit -n; df -m /dev/shm | tail -1;"
        " cat /proc/1/comm")).stdout.split("\n")
    assert out[0] == "1 2 /tmp 1000 hh"
    assert out[1:3] == ["tmpfs-ok", "ro-ok"]
    assert out[3].split() == ["192.0.2.7", "foo"] and out[4] == "nameserver 192.0.2.53"
    assert out[5:8] == ["bound", "vol-ok", "512"]
    assert out[8].split()[1] == "32" and out[9] in ("docker-init", "tini", "tini-static")
    ok(rc.docker("volume", "rm", "cli-vol"))

    cid = ok(rc.docker("run", "-d", "--name", "cli-d", "-e", "K=v", "-p", "127.0.0.1::80",
                       "-v", f"{bind}:/b:ro", "--restart", "on-failure:2", "--stop-signal", "SIGUSR1",
                       "--health-cmd", "true", "--health-interval", "1s", IMAGE, "sh", "-c",
                       "mkdir /www; echo served > /www/index.html; echo up;"
                       " exec httpd -f -p 80 -h /www")).stdout.strip()
    try:
        fields = json.loads(ok(rc.docker(
            "inspect", "-f", '{"code": {{.State.ExitCode}}, "running": {{.State.Running}},'
            ' "ports": {{json .NetworkSettings.Ports}}, "mounts": {{json .Mounts}},'
            ' "env": {{json .Config.Env}}, "signal": "{{.Config.StopSignal}}",'
            ' "restart": {{json .HostConfig.RestartPolicy}}}', "cli-d")).stdout)
        assert fields["code"] == 0 and fields["running"] is True
        port = fields["ports"]["80/tcp"][0]
        assert port["HostIp"] == "127.0.0.1" and int(port["HostPort"]) > 0
        assert [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in fields["mounts"]] == \
            [("bind", str(bind), "/b", False)]
        assert "K=v" in fields["env"] and fields["signal"] == "SIGUSR1"
        assert fields["restart"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert _fetch(f"http://127.0.0.1:{port['HostPort']}/") == "served\n"
        assert ok(rc.docker("port", "cli-d", "80")).stdout.strip() == f"127.0.0.1:{port['HostPort']}"

        ps = ok(rc.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Ports}}")).stdout
        assert f"{cid[:12]} cli-d 127.0.0.1:{port['HostPort']}->80/tcp" in ps
        assert json.loads(ok(rc.docker("ps", "--format", "json", "--filter", "name=cli-d"))
                          .stdout)["Names"] == "cli-d"
        rc.wait_for(lambda: "up" in rc.docker("logs", "cli-d").stdout, what="docker logs")
        assert ok(rc.docker("exec", "-u", "1000", "-w", "/tmp", "-e", "X=y", "cli-d", "sh", "-c",
                            "echo $(id -u) $(pwd) $X")).stdout == "1000 /tmp y\n"
        assert "httpd" in ok(rc.docker("top", "cli-d")).stdout

        ok(rc.docker("cp", str(bind / "f"), "cli-d:/tmp/copied"))
        ok(rc.docker("cp", "cli-d:/tmp/copied", str(rc.shell.base / "back")))
        assert (rc.shell.base / "back").read_text() == "bound\n"
        rc.wait_for(lambda: "healthy" in rc.docker("ps", "--filter", "name=cli-d").stdout,
                    what="healthy")
    finally:
        ok(rc.docker("rm", "-f", "cli-d"))
    assert "cli-d" not in ok(rc.docker("ps", "-a")).stdout


def test_docker_cli_attach_follows_a_running_container(rc: RctrUser) -> None:
    ok(rc.docker("run", "-d", "--name", "cli-att", IMAGE, "sh", "-c",
                 "sleep 1; echo attached-line; exit 7"))
    try:
        r = rc.docker("attach", "cli-att", timeout=30)
        assert r.returncode == 7 and "attached-line" in r.stdout
        assert ok(rc.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Running}}",
                            "cli-att")).stdout.strip() == "7 false"
    finally:
        rc.docker("rm", "-f", "cli-att")


def test_docker_cli_images_registry_volumes_networks_system(rc: RctrUser) -> None:
    from registry import Registry

    since = time.time() - 1
    with Registry() as reg:
        remote = f"{reg.host}/clients/busybox:1"
        ok(rc.docker("tag", IMAGE, remote))
        ok(rc.docker("push", remote))
        ok(rc.docker("rmi", remote))
        assert remote not in ok(rc.docker("images")).stdout
        ok(rc.docker("pull", remote))
        assert ok(rc.docker("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout.count(
            f"{reg.host}/clients/busybox:1") == 1
        archive = str(rc.shell.base / "saved.tar")
        ok(rc.docker("save", "-o", archive, remote))
        ok(rc.docker("rmi", remote))
        assert f"Loaded image: {remote}" in ok(rc.docker("load", "-i", archive)).stdout
        assert ok(rc.docker("run", "--rm", remote, "echo", "pulled")).stdout == "pulled\n"
        ok(rc.docker("rmi", remote))

    ok(rc.docker("volume", "create", "--label", "k=v", "cli-v"))
    assert "cli-v" in ok(rc.docker("volume", "ls", "-q")).stdout
    assert json.loads(ok(rc.docker("volume", "inspect", "cli-v")).stdout)[0]["Labels"] == {"k": "v"}
    ok(rc.docker("volume", "rm", "cli-v"))
    ok(rc.docker("network", "create", "cli-net"))
    assert "cli-net" in ok(rc.docker("network", "ls", "--format", "{{.Name}}")).stdout.split()
    ok(rc.docker("network", "rm", "cli-net"))

    df = ok(rc.docker("system", "df")).stdout
    assert df.startswith("TYPE") and "Images" in df and "Local Volumes" in df
    info = json.loads(ok(rc.docker("info", "--format", "{{json .}}")).stdout)
    assert info["Driver"] and info["Images"] >= 1
    assert ok(rc.docker("version", "--format", "{{.Server.APIVersion}}")).stdout.strip()
    events = ok(rc.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                          "--format", "{{.Type}} {{.Action}}")).stdout.splitlines()
    for wanted in ("image push", "image pull", "image untag", "volume create", "network create",
                   "container start"):
        assert wanted in events, events


def test_a_pull_shows_its_extraction(rc: RctrUser) -> None:
    """A pull extracts the layers for the storage driver, and says so (Docker's
    "Extracting"), so the first container of the image starts at once."""
    import io
    import tarfile

    from registry import Registry

    rootfs = rc.shell.base / "one-layer.tar"
    with tarfile.open(rootfs, "w") as tar:
        payload = b"extracted at pull time\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    os.chown(rootfs, rc.shell.uid, rc.shell.gid)
    with Registry() as reg:
        remote = f"{reg.host}/extract/one:1"
        ok(rc.rctr("import", str(rootfs), remote))
        ok(rc.rctr("push", remote))
        ok(rc.rctr("rmi", remote))
        ok(rc.rctr("image", "prune", "-f"))  # its layer goes too
        out = ok(rc.rctr("pull", remote)).stdout
        assert ": Extracting" in out and ": Pull complete" in out, out
        assert out.index("Extracting") < out.index("Pull complete")
        ok(rc.rctr("rmi", remote))


# -- the Docker SDK for Python ----------------------------------------------------------------

def test_docker_sdk_for_python(rc: RctrUser) -> None:
    from registry import Registry

    script = _copy_in(rc, "sdk_usage.py")
    with Registry() as reg:
        remote = f"{reg.host}/sdk/busybox:1"
        ok(rc.rctr("tag", IMAGE, remote))
        ok(rc.rctr("push", remote))
        ok(rc.rctr("rmi", remote))
        seen = json.loads(ok(rc.shell.run([PYTHON, script, IMAGE, remote], env=rc.env(),
                                          timeout=180)).stdout)
    assert seen["ping"] is True
    assert seen["run"] == "hello world\n"
    assert seen["run_error"] == {"exit_status": 3, "stderr": "oops\n"}
    assert seen["logs_stream"] == ["line 1", "line 2", "line 3"]
    assert seen["exec_run"] == [0, "hi from exec\n"]
    assert seen["exec_run_demux"] == [5, ["out\n", "err\n"]]
    assert seen["put_archive"] is True and seen["get_archive"] == "put by the sdk\n"
    assert seen["get_archive_stat"] == {"name": "sdk.txt", "size": 15}
    assert seen["status"] == "running" and seen["labels"]["from"] == "sdk"
    assert seen["listed"] == ["sdk-detached"]
    assert seen["wait"]["StatusCode"] == 137
    assert remote in seen["pulled_tags"]
    assert seen["by_digest"] is True
    assert IMAGE in seen["loaded_tags"]
    assert seen["volume"] == ["sdk-vol", "local"] and seen["network"] == ["sdk-net", "bridge"]
    assert seen["run_volume_network"] == ["kept", "sdk-host"]
    assert "sdk-vol" not in seen["volumes_left"]
    assert "sdk-detached" not in ok(rc.rctr("ps", "-a")).stdout


# -- docker-compose 1.29 ----------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(COMPOSE), reason="docker-compose is not installed "
                    "(scripts/setup.sh installs Debian's docker-compose)")
def test_docker_compose_up_ps_logs_exec_down(rc: RctrUser) -> None:
    project = rc.shell.base / "composeproj"
    project.mkdir()
    shutil.copy(CLIENTS / "compose.yml", project / "docker-compose.yml")
    os.chmod(project / "docker-compose.yml", 0o644)
    port = _free_port()

    def compose(*args: str, timeout: float = 120) -> str:
        r = rc.shell.run([COMPOSE, "--ansi", "never", "-p", "rc", *args], env=rc.env(WEB_PORT=str(port)),
                         cwd=str(project), timeout=timeout)
        assert r.returncode == 0, f"compose {args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout + r.stderr

    try:
        compose("up", "-d")
        assert _fetch(f"http://127.0.0.1:{port}/") == "hello-from-web\n"
        ps = compose("ps")
        assert "rc_web_1" in ps and "rc_client_1" in ps and f"127.0.0.1:{port}->80/tcp" in ps
        assert ps.count(" Up ") == 2, ps
        rc.wait_for(lambda: "client fetched" in compose("logs", "client"), what="the client's log")
        logs = compose("logs")
        assert "web is up" in logs and "client fetched" in logs
        # the client reached web by its service name over the user network, into the volume
        assert compose("exec", "-T", "client", "cat", "/data/page") == "hello-from-web\n"
        names = ok(rc.rctr("network", "ls", "--format", "{{.Name}}")).stdout.split()
        assert "rc_app" in names
        assert "rc_data" in ok(rc.rctr("volume", "ls", "-q")).stdout.split()
        compose("down", "-v")
        assert "rc_" not in ok(rc.rctr("ps", "-a")).stdout
        assert "rc_app" not in ok(rc.rctr("network", "ls")).stdout
        assert "rc_data" not in ok(rc.rctr("volume", "ls", "-q")).stdout
    finally:
        rc.shell.run([COMPOSE, "-p", "rc", "down", "-v", "-t", "1"], env=rc.env(WEB_PORT=str(port)),
                     cwd=str(project), timeout=120)


# -- testcontainers-python --------------------------------------------------------------------

def test_testcontainers_generic_container_with_a_log_wait(rc: RctrUser) -> None:
    script = _copy_in(rc, "testcontainers_usage.py")
    # testcontainers looks for /.dockerenv to guess that it runs inside a container and
    # then reaches containers through their gateway; a test machine that is itself a
    # container has that file, so say what is true here: the client is on the host.
    env = rc.env(TESTCONTAINERS_RYUK_DISABLED="true", TESTCONTAINERS_CONNECTION_MODE="docker_host")
    seen = json.loads(ok(rc.shell.run([PYTHON, script, IMAGE], env=env, timeout=120)).stdout)
    assert seen["body"] == "from-testcontainers\n"
    assert "server is ready" in seen["logs"] and seen["env"] == "test"
    assert seen["id"][:12] not in ok(rc.rctr("ps", "-a", "--no-trunc")).stdout
