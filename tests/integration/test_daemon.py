"""The create/start pipeline end to end, as the unprivileged user: rctr CLI and docker CLI.

A real rctrd (started by the CLI on first use), real shims, real containers in
the user's namespaces; the image is the busybox test image.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import time

import psutil
import pytest
from daemonenv import IMAGE, RctrUser, ok
from harness import RCTR

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(180)]


# -- rctr CLI -------------------------------------------------------------------------------

def test_run_prints_and_exits_with_the_containers_code(rc: RctrUser) -> None:
    r = ok(rc.rctr("run", "--rm", IMAGE, "echo", "hello"))
    assert r.stdout == "hello\n"
    assert rc.daemon_pid() is not None, "the CLI should have started rctrd"
    r = rc.rctr("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_a_fast_commands_output_is_never_lost(rc: RctrUser) -> None:
    """The attach connects before the start; a command that ends before the shim's loop
    begins must still have its output delivered (it was lost about once in ten)."""
    lost = [i for i in range(25)
            if rc.rctr("run", "--rm", IMAGE, "echo", f"run-{i}").stdout != f"run-{i}\n"]
    assert lost == []


def test_run_interactive_copies_stdin(rc: RctrUser) -> None:
    r = ok(rc.rctr("run", "-i", "--rm", IMAGE, "cat", input="hi\n"))
    assert r.stdout == "hi\n"


def test_run_with_a_terminal(rc: RctrUser) -> None:
    master, slave = pty.openpty()
    proc = rc.popen([RCTR, "run", "-t", "--rm", IMAGE, "sh", "-c", "tty; stty size; echo done"],
                    stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(30) == 0, out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text and "done" in text, text


def test_detached_ps_logs_exec_stop_rm(rc: RctrUser) -> None:
    cid = ok(rc.rctr("run", "-d", "--name", "web", IMAGE, "sh", "-c",
                     "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done")).stdout.strip()
    assert len(cid) == 64
    try:
        ps = ok(rc.rctr("ps")).stdout
        assert "web" in ps and cid[:12] in ps
        rc.wait_for(lambda: "started" in rc.rctr("logs", "web").stdout, what="logs")
        r = ok(rc.rctr("exec", "web", "sh", "-c", "echo in-$HOSTNAME; exit 0"))
        assert r.stdout == f"in-{cid[:12]}\n"
        assert rc.rctr("exec", "web", "sh", "-c", "exit 5").returncode == 5
        exec_ids = rc.api("GET", f"/containers/{cid}/json")[1]["ExecIDs"]
        assert len(exec_ids) == 2
        status, last = rc.api("GET", f"/exec/{exec_ids[-1]}/json")
        assert status == 200 and last["ExitCode"] == 5 and not last["Running"]
        follow = rc.popen([RCTR, "logs", "-f", "web"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
        time.sleep(0.5)
        ok(rc.rctr("stop", "-t", "5", "web"))
        out, _ = follow.communicate(timeout=20)
        assert "started" in out and "bye" in out
        inspect = ok(rc.rctr("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", "web"))
        assert inspect.stdout.strip() == "false 0"
        # Its exec instances went with it, as Docker's do: a daemon keeps no exec forever.
        assert rc.api("GET", f"/containers/{cid}/json")[1]["ExecIDs"] is None
        assert rc.api("GET", f"/exec/{exec_ids[0]}/json")[0] == 404
        assert "web" not in ok(rc.rctr("ps")).stdout
        assert "web" in ok(rc.rctr("ps", "-a")).stdout
    finally:
        rc.rctr("rm", "-f", "web")
    assert "web" not in ok(rc.rctr("ps", "-a")).stdout


def test_a_wait_whose_client_left_ends_its_thread(rc: RctrUser) -> None:
    """A wait on a long-running container, its client killed: the daemon's thread ends
    within a second or so, not at the container's exit (a script's ``timeout 5 docker
    wait`` in a loop would otherwise pile threads up)."""
    ok(rc.rctr("run", "-d", "--name", "waited", IMAGE, "sleep", "300"))
    try:
        daemon = psutil.Process(rc.daemon_pid())
        before = daemon.num_threads()
        waiters = [rc.popen([RCTR, "wait", "waited"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL) for _ in range(5)]
        rc.wait_for(lambda: daemon.num_threads() >= before + 5, what="the five waits")
        for w in waiters:
            w.kill()
            w.wait(10)
        rc.wait_for(lambda: daemon.num_threads() <= before, timeout=10,
                    what="the wait threads to end")
        assert rc.state("waited")["Running"]
    finally:
        rc.rctr("rm", "-f", "waited")


def test_stop_falls_back_to_sigkill(rc: RctrUser) -> None:
    ok(rc.rctr("run", "-d", "--name", "stubborn", IMAGE, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"))
    try:
        t0 = time.monotonic()
        ok(rc.rctr("stop", "-t", "1", "stubborn"))
        assert time.monotonic() - t0 < 15
        code = ok(rc.rctr("inspect", "--format", "{{.State.ExitCode}}", "stubborn")).stdout.strip()
        assert code == "137"
    finally:
        rc.rctr("rm", "-f", "stubborn")


def test_named_volume_keeps_data(rc: RctrUser) -> None:
    ok(rc.rctr("run", "--rm", "-v", "keep:/data", IMAGE, "sh", "-c", "echo kept > /data/f"))
    r = ok(rc.rctr("run", "--rm", "-v", "keep:/data", IMAGE, "cat", "/data/f"))
    assert r.stdout == "kept\n"
    assert "keep" in ok(rc.rctr("volume", "ls")).stdout
    ok(rc.rctr("volume", "rm", "keep"))


def test_new_volume_gets_the_images_content(rc: RctrUser) -> None:
    r = ok(rc.rctr("run", "--rm", "-v", "etcvol:/etc", IMAGE, "cat", "/etc/hostname"))
    assert r.stdout.strip()
    r = ok(rc.rctr("run", "--rm", "-v", "etcvol:/mnt", IMAGE, "ls", "/mnt"))
    assert "passwd" in r.stdout.split()
    ok(rc.rctr("volume", "rm", "etcvol"))


def test_errors_are_clear_and_the_daemon_survives(rc: RctrUser) -> None:
    r = rc.rctr("run", "--rm", "rctr-test/no-such-image:1", "true")
    assert r.returncode == 125
    assert "no-such-image" in r.stderr
    r = rc.rctr("run", "--rm", IMAGE, "no-such-command")
    assert r.returncode == 127, r.stderr
    ok(rc.rctr("create", "--name", "taken", IMAGE, "true"))
    try:
        r = rc.rctr("create", "--name", "taken", IMAGE, "true")
        assert r.returncode == 125 and "already in use" in r.stderr
    finally:
        ok(rc.rctr("rm", "taken"))
    status, body = rc.api("POST", "/v1.43/containers/create", raw="{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body = rc.api("POST", "/v1.43/containers/create", raw='["a list"]')
    assert status == 400
    status, body = rc.api("POST", "/v1.43/containers/create", body={"Image": IMAGE, "Entrypoint": [""],
                                                                     "Cmd": []})
    assert status == 400 and "no command" in body["message"]
    status, body = rc.api("GET", "/v1.43/containers/nope/json")
    assert status == 404 and "No such container" in body["message"]
    status, body = rc.api("GET", "/v1.43/no/such/endpoint")
    assert status == 404
    assert ok(rc.rctr("run", "--rm", IMAGE, "true")).returncode == 0


def test_ten_parallel_runs(rc: RctrUser) -> None:
    procs = [rc.popen([RCTR, "run", "-d", IMAGE, "sleep", "30"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True) for _ in range(10)]
    ids = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            ids.append(out.strip())
        assert len(set(ids)) == 10
        names = ok(rc.rctr("ps", "--format", "{{.Names}}")).stdout.split()
        assert len(names) == len(set(names)) and len(names) >= 10
    finally:
        if ids:
            rc.rctr("rm", "-f", *ids, timeout=120)
    assert ok(rc.rctr("ps", "-aq")).stdout.strip() == ""


def _named_processes(rc: RctrUser, name: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name", "uids"])
            if p.info["name"] == name and p.info["uids"].real == rc.shell.uid]


def test_daemon_killed_containers_keep_running(rc: RctrUser) -> None:
    ok(rc.rctr("run", "-d", "--name", "survivor", IMAGE, "sleep", "60"))
    ok(rc.rctr("run", "-d", "--name", "quitter", IMAGE, "sh", "-c", "sleep 2; exit 7"))
    try:
        pid = rc.daemon_pid()
        assert pid is not None
        # The shims were forked by the user's zygote, so they are nobody's children.
        [zygote] = _named_processes(rc, "rctr-zygote")
        shims = _named_processes(rc, "rctr-shim")
        assert len(shims) >= 2 and all(s.ppid() not in (pid, zygote.pid) for s in shims)
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)  # quitter exits while no daemon runs
        ps = ok(rc.rctr("ps")).stdout  # the CLI starts a new daemon
        assert rc.daemon_pid() not in (None, pid)
        assert "survivor" in ps
        r = ok(rc.rctr("wait", "quitter"))
        assert r.stdout.strip() == "7"
        assert ok(rc.rctr("exec", "survivor", "echo", "alive")).stdout == "alive\n"
        ok(rc.rctr("run", "--rm", IMAGE, "true"))
        assert [z.pid for z in _named_processes(rc, "rctr-zygote")] == [zygote.pid]  # reused
    finally:
        rc.rctr("rm", "-f", "survivor", "quitter")


def test_a_dead_zygote_is_replaced(rc: RctrUser) -> None:
    ok(rc.rctr("run", "--rm", IMAGE, "true"))
    [zygote] = _named_processes(rc, "rctr-zygote")
    zygote.kill()
    zygote.wait(10)
    assert ok(rc.rctr("run", "--rm", IMAGE, "echo", "again")).stdout == "again\n"
    assert [z.pid for z in _named_processes(rc, "rctr-zygote")] != [zygote.pid]


def test_restart_policy_and_autoremove(rc: RctrUser) -> None:
    ok(rc.rctr("run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh", "-c", "exit 1"))
    try:
        rc.wait_for(lambda: rc.rctr("inspect", "--format", "{{.RestartCount}} {{.State.Running}}",
                                    "flaky").stdout.strip() == "2 false", timeout=30, what="two restarts")
    finally:
        rc.rctr("rm", "-f", "flaky")
    ok(rc.rctr("run", "-d", "--rm", "--name", "gone", IMAGE, "true"))
    rc.wait_for(lambda: "gone" not in rc.rctr("ps", "-a").stdout, what="auto-removal")


def test_always_and_unless_stopped_across_a_daemon_restart(rc: RctrUser) -> None:
    names = ("al", "us", "us-flaky")
    try:
        ok(rc.rctr("run", "-d", "--name", "us-flaky", "--restart", "unless-stopped", IMAGE,
                   "sh", "-c", "sleep 0.3; exit 1"))
        rc.wait_for(lambda: int(rc.rctr("inspect", "--format", "{{.RestartCount}}",
                                        "us-flaky").stdout.strip() or 0) >= 2,
                    timeout=30, what="unless-stopped restarts a failing container")
        ok(rc.rctr("stop", "-t", "0", "us-flaky"))
        ok(rc.rctr("run", "-d", "--name", "al", "--restart", "always", IMAGE, "sleep", "60"))
        ok(rc.rctr("run", "-d", "--name", "us", "--restart", "unless-stopped", IMAGE, "sleep", "60"))
        ok(rc.rctr("stop", "-t", "0", "al", "us"))
        pid = rc.daemon_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        ok(rc.rctr("ps"))  # a new daemon: stopped "always" containers start again, Docker's rule
        rc.wait_for(lambda: rc.rctr("inspect", "--format", "{{.State.Running}}", "al").stdout
                    .strip() == "true", timeout=30, what="the always container to start again")
        states = ok(rc.rctr("inspect", "--format", "{{.State.Running}}", "us", "us-flaky")).stdout
        assert states.split() == ["false", "false"]
    finally:
        rc.rctr("rm", "-f", *names)


def test_update_the_restart_policy_and_resources(rc: RctrUser) -> None:
    def policy() -> str:
        return ok(rc.rctr("inspect", "--format", "{{.HostConfig.RestartPolicy.Name}}:"
                          "{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.HostConfig.Memory}}",
                          "upd")).stdout.strip()

    ok(rc.rctr("run", "-d", "--name", "upd", IMAGE, "sleep", "60"))
    ok(rc.rctr("run", "-d", "--rm", "--name", "upd-rm", IMAGE, "sleep", "60"))
    try:
        r = ok(rc.rctr("update", "--restart", "always", "--memory", "64m", "upd"))
        assert r.stdout == "upd\n" and "--memory is not enforced" in r.stderr
        assert policy() == f"always:0 {64 << 20}"
        ok(rc.docker("update", "--restart", "on-failure:3", "upd"))
        assert policy() == f"on-failure:3 {64 << 20}"  # what is not given stays
        ok(rc.docker("update", "--memory", "32m", "upd"))
        assert policy() == f"on-failure:3 {32 << 20}"
        r = rc.rctr("update", "--restart", "bogus", "upd")
        assert r.returncode == 125 and "invalid restart policy" in r.stderr
        r = rc.docker("update", "--restart", "always", "upd-rm")
        assert r.returncode != 0 and "AutoRemove" in r.stderr
        assert rc.rctr("update", "upd").returncode == 125  # nothing to change
    finally:
        rc.rctr("rm", "-f", "upd", "upd-rm")


# -- the stock docker CLI --------------------------------------------------------------------

def test_docker_cli_scenarios(rc: RctrUser) -> None:
    r = ok(rc.docker("run", "--rm", IMAGE, "echo", "hello"))
    assert r.stdout == "hello\n"
    assert rc.docker("run", "--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3
    r = ok(rc.docker("run", "-i", "--rm", IMAGE, "cat", input="hi\n"))
    assert r.stdout == "hi\n"
    cid = ok(rc.docker("run", "-d", "--name", "dweb", IMAGE, "sh", "-c",
                       "echo up; while true; do sleep 0.1; done")).stdout.strip()
    try:
        assert "dweb" in ok(rc.docker("ps")).stdout
        rc.wait_for(lambda: "up" in rc.docker("logs", "dweb").stdout, what="docker logs")
        assert ok(rc.docker("exec", "dweb", "echo", "x")).stdout == "x\n"
        assert ok(rc.docker("inspect", "-f", "{{.State.Running}}", "dweb")).stdout.strip() == "true"
        ok(rc.docker("stop", "-t", "1", "dweb"))
        ok(rc.docker("rm", "dweb"))
    finally:
        rc.docker("rm", "-f", cid)
    ok(rc.docker("volume", "create", "dvol"))
    ok(rc.docker("run", "--rm", "-v", "dvol:/v", IMAGE, "sh", "-c", "echo d > /v/f"))
    assert ok(rc.docker("run", "--rm", "-v", "dvol:/v", IMAGE, "cat", "/v/f")).stdout == "d\n"
    ok(rc.docker("volume", "rm", "dvol"))
    r = rc.docker("run", "--rm", IMAGE, "no-such-command")
    assert r.returncode == 127, r.stderr
    assert "rctr-test/busybox" in ok(rc.docker("images")).stdout
    ok(rc.docker("info"))


# -- images through the daemon: a real registry on loopback --------------------------------

def test_save_and_load_round_trip_with_both_clis(rc: RctrUser) -> None:
    image_id = ok(rc.rctr("inspect", "--format", "{{.Id}}", IMAGE)).stdout.strip()
    archive = rc.shell.base / "saved.tar"
    for cli, name in ((rc.rctr, "saved/rctr:1"), (rc.docker, "saved/docker:1")):
        ok(cli("tag", IMAGE, name))
        ok(cli("save", "-o", str(archive), name))
        ok(cli("rmi", name))
        assert name not in ok(rc.rctr("images")).stdout
        r = ok(cli("load", "-i", str(archive)))
        assert f"Loaded image: {name}" in r.stdout
        assert ok(rc.rctr("inspect", "--format", "{{.Id}}", name)).stdout.strip() == image_id
        ok(cli("rmi", name))
        archive.unlink()


def test_push_rmi_pull_through_the_daemon(rc: RctrUser) -> None:
    from registry import Registry

    with Registry() as reg:
        remote = f"{reg.host}/pipeline/busybox:1"
        ok(rc.rctr("tag", IMAGE, remote))
        ok(rc.rctr("push", remote))
        digests = ok(rc.rctr("inspect", "--format", "{{json .RepoDigests}}", remote)).stdout
        assert f'"{reg.host}/pipeline/busybox@sha256:' in digests, digests
        ok(rc.rctr("rmi", remote))  # the repository's last tag: its digest goes too
        assert remote not in ok(rc.rctr("images")).stdout
        assert "pipeline/busybox" not in ok(rc.rctr("images", "--digests")).stdout
        r = ok(rc.rctr("pull", remote))
        assert "Downloaded newer image" in r.stdout or "Status" in r.stdout
        assert ok(rc.rctr("run", "--rm", remote, "echo", "pulled")).stdout == "pulled\n"
        ok(rc.rctr("rmi", remote))
        # docker pulls too, and run pulls what is missing
        ok(rc.docker("pull", remote))
        ok(rc.docker("rmi", remote))
        r = ok(rc.rctr("run", "--rm", remote, "echo", "fetched"))
        assert r.stdout == "fetched\n" and "Unable to find image" in r.stderr
        ok(rc.rctr("rmi", remote))


def test_system_service_takes_the_daemons_options(rc: RctrUser) -> None:
    """``rctr system service --storage-driver vfs`` runs rctrd with vfs (a user of its own:
    the fixture's daemon holds the lock of the usual directories)."""
    base = rc.shell.base / "svc"
    for d in (base, base / "run", base / "data"):
        d.mkdir(mode=0o700)
        os.chown(d, rc.shell.uid, rc.shell.gid)
    env = rc.shell.env(XDG_RUNTIME_DIR=str(base / "run"), XDG_DATA_HOME=str(base / "data"))
    service = rc.shell.popen([RCTR, "system", "service", "--storage-driver", "vfs"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        rc.wait_for(lambda: (base / "run" / "rctr" / "rctr.sock").exists(), timeout=30,
                    what="the service's socket")
        r = ok(rc.shell.run([RCTR, "info", "--format", "{{.Driver}}"], env=env))
        assert r.stdout.strip() == "vfs"
    finally:
        service.terminate()
        _, err = service.communicate(timeout=30)
    assert "storage driver vfs" in err


def test_records_it_cannot_read_are_left_alone(rc: RctrUser) -> None:
    """A record of a later rctrd, or of a shape this one cannot read, stays on disk for
    whoever can read it; only a half-written one (not JSON) is a leftover to collect."""
    ids = {name: ok(rc.rctr("create", "--name", name, IMAGE, "true")).stdout.strip()
           for name in ("later", "misshapen", "torn")}
    containers = rc.data / "rctr" / "containers"
    try:
        pid = rc.daemon_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        rc.wait_for(lambda: rc.daemon_pid() is None or not os.path.exists(f"/proc/{pid}"),
                    what="rctrd to die")
        for name, text in (("later", '{"version": 99, "id": "x"}'),
                           ("misshapen", '{"version": 2, "id": "x"}'),
                           ("torn", '{"version": 2, "id"')):
            # Overwritten in place: the file keeps its owner, the test user.
            (containers / ids[name] / "config.json").write_text(text)
        names = ok(rc.rctr("ps", "-a", "--format", "{{.Names}}")).stdout.split()
        assert not {"later", "misshapen", "torn"} & set(names)
        assert (containers / ids["later"] / "config.json").exists()
        assert (containers / ids["misshapen"] / "config.json").exists()
        assert not (containers / ids["torn"]).exists()
    finally:
        for name in ("later", "misshapen"):
            shutil.rmtree(containers / ids[name], ignore_errors=True)
