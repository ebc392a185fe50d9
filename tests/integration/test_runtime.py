"""`rctr runtime` as an ordinary user, on real namespaces and mounts.

Each test runs the runtime as the unprivileged test user (see harness.py);
nothing here mocks the kernel.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from harness import Bundle, UserShell

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]


def wait_status(user: UserShell, cid: str, want: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = user.runtime("state", cid)
        state = json.loads(r.stdout) if r.returncode == 0 else {"status": r.stderr}
        if state.get("status") == want or time.monotonic() > deadline:
            assert state.get("status") == want, state
            return state
        time.sleep(0.05)


def create_detached(user: UserShell, bundle: Bundle, cid: str) -> None:
    """create with the init's stdio on files, as a shim would give it."""
    out = bundle.path.parent / f"{cid}.out"
    with open(out, "wb") as f:
        r = user.run([*_rt(user), "create", "--bundle", str(bundle.path), cid],
                     stdout=f, stderr=f, capture_output=False, text=False)
    os.chmod(out, 0o644)
    assert r.returncode == 0, out.read_text()


def _rt(user: UserShell) -> list[str]:
    from harness import RCTR

    return [RCTR, "runtime", "--root", str(user.root)]


def test_inside_view(user: UserShell, bundle: Bundle) -> None:
    bundle.args("sh", "-c", "id -u; cat /proc/self/uid_map; echo pid=$$; hostname; "
                "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo x > /dev/null && echo devnull-ok; "
                "test -c /dev/pts/ptmx && echo pts-ok; ls /proc | grep -c '^[0-9]'")
    r = user.runtime("run", "--bundle", str(bundle.path), "inside")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    maps = [line.split() for line in lines[1:3]]
    assert maps[0] == ["0", str(user.uid), "1"]
    assert maps[1] == ["1", str(user.uid_map[1][1]), str(user.uid_map[1][2])]
    assert "pid=1" in lines
    assert "rctr" in lines  # hostname from the spec
    assert "devnull-ok" in lines and "pts-ok" in lines
    # sh, ls and grep: host processes are invisible
    assert int(lines[-1]) <= 3, "host processes must be invisible in /proc"


def test_file_made_by_uid_1000_is_owned_by_the_subuid(user: UserShell, bundle: Bundle) -> None:
    bundle.update(lambda c: (c["root"].update(readonly=False),
                             c["process"]["user"].update(uid=1000, gid=1000)))
    bundle.args("sh", "-c", "id -u && touch /tmp/made-by-1000")
    r = user.runtime("run", "--bundle", str(bundle.path), "owner")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000"
    st = os.stat(bundle.rootfs / "tmp" / "made-by-1000")
    assert st.st_uid == user.host_uid(1000)


def test_lifecycle_created_running_stopped_deleted(user: UserShell, bundle: Bundle) -> None:
    bundle.args("sleep", "1000")
    create_detached(user, bundle, "life")
    state = wait_status(user, "life", "created")
    assert state["pid"] > 0 and state["bundle"] == str(bundle.path)
    assert user.runtime("start", "life").returncode == 0
    wait_status(user, "life", "running")
    listed = json.loads(user.runtime("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [("life", "running")]
    r = user.runtime("start", "life")
    assert r.returncode != 0 and "running" in r.stderr
    r = user.runtime("delete", "life")
    assert r.returncode != 0 and "running" in r.stderr
    assert user.runtime("kill", "life", "KILL").returncode == 0
    wait_status(user, "life", "stopped")
    assert user.runtime("delete", "life").returncode == 0
    r = user.runtime("state", "life")
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert not (user.root / "life").exists()


def test_kill_delivers_the_signal(user: UserShell, bundle: Bundle) -> None:
    bundle.args("sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; "
                "while true; do sleep 0.1; done")
    proc = user.popen([*_rt(user), "run", "--bundle", str(bundle.path), "sig"],
                      stdout=__import__("subprocess").PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert user.runtime("kill", "sig", "TERM").returncode == 0
        assert proc.wait(timeout=20) == 42
        assert "got-term" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)])
def test_exit_code_propagates(user: UserShell, bundle: Bundle, script: str, code: int) -> None:
    bundle.args("sh", "-c", script)
    assert user.runtime("run", "--bundle", str(bundle.path), "code").returncode == code


def test_killed_by_signal_gives_128_plus_signal(user: UserShell, bundle: Bundle) -> None:
    bundle.args("sleep", "1000")
    proc = user.popen([*_rt(user), "run", "--bundle", str(bundle.path), "killed"])
    try:
        wait_status(user, "killed", "running")
        assert user.runtime("kill", "killed", "9").returncode == 0
        assert proc.wait(timeout=20) == 137
    finally:
        proc.kill()
        proc.wait()


def test_exec_joins_the_running_container(user: UserShell, bundle: Bundle) -> None:
    bundle.args("sleep", "1000")
    create_detached(user, bundle, "ex")
    user.runtime("start", "ex", check=True)
    r = user.runtime("exec", "ex", "sh", "-c", "echo pid=$$; cat /proc/1/cmdline; echo; "
                     "id -u; hostname")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] != "pid=1" and lines[1].startswith("sleep") and lines[2:] == ["0", "rctr"]
    assert user.runtime("exec", "ex", "sh", "-c", "exit 7").returncode == 7
    proc_json = bundle.path.parent / "process.json"
    proc_json.write_text(json.dumps({"args": ["cat", "/etc/layer3"], "cwd": "/",
                                     "user": {"uid": 65534, "gid": 65534},
                                     "env": ["PATH=/bin"]}))
    os.chmod(proc_json, 0o644)
    r = user.runtime("exec", "--process", str(proc_json), "ex")
    assert r.returncode == 0 and r.stdout == "3\n", r.stderr
    user.runtime("delete", "--force", "ex", check=True)
    assert not (user.root / "ex").exists()


def test_console_socket_receives_the_pty(user: UserShell, bundle: Bundle) -> None:
    bundle.update(lambda c: c["process"].update(terminal=True))
    bundle.args("sh", "-c", "test -t 0 && tty && echo on-a-tty")
    sock_path = bundle.path.parent / "console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    os.chown(sock_path, user.uid, user.gid)
    listener.listen(1)
    listener.settimeout(20)
    out = bundle.path.parent / "tty.out"
    with open(out, "wb") as f:
        r = user.run([*_rt(user), "create", "--bundle", str(bundle.path),
                      "--console-socket", str(sock_path), "tty"],
                     stdout=f, stderr=f, capture_output=False, text=False)
    assert r.returncode == 0, out.read_text()
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    user.runtime("start", "tty", check=True)
    data = b""
    deadline = time.monotonic() + 10
    while b"on-a-tty" not in data and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        data += chunk
    os.close(master)
    listener.close()
    assert b"/dev/pts/0" in data and b"on-a-tty" in data


def test_hooks_run_with_the_state_on_stdin(user: UserShell, bundle: Bundle) -> None:
    out = bundle.path.parent / "hooks"
    out.mkdir()
    os.chown(out, user.uid, user.gid)

    def hook(kind: str) -> dict:
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{kind}.json"]}

    bundle.update(lambda c: c.update(hooks={
        "createRuntime": [hook("createRuntime")], "createContainer": [hook("createContainer")],
        "poststart": [hook("poststart")], "poststop": [hook("poststop")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/started"]}],
    }))
    bundle.args("sh", "-c", "cat /dev/shm/started")
    r = user.runtime("run", "--bundle", str(bundle.path), "hooked")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == "hooked"
    for kind in ("createRuntime", "createContainer", "poststart", "poststop"):
        state = json.loads((out / f"{kind}.json").read_text())
        assert state["id"] == "hooked" and state["pid"] >= 0, kind
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"


def test_process_settings_are_applied(user: UserShell, bundle: Bundle) -> None:
    def change(c: dict) -> None:
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 300}]
        c["process"]["user"].update(umask=0o077, additionalGids=[10, 20])
        c["process"]["cwd"] = "/www"
        c["process"]["env"].append("GREETING=hi")
        c["domainname"] = "example.test"
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}

    masked = next(p for p in ("/proc/keys", "/proc/timer_list", "/proc/sched_debug")
                  if os.path.exists(p) and Path(p).read_text())
    bundle.update(change)
    bundle.args("sh", "-c", "ulimit -n; ulimit -Hn; umask; pwd; echo $GREETING; id -G; "
                "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
                "cat /proc/sys/kernel/domainname; "
                f"cat /proc/sys/net/ipv4/ip_forward; cat {masked} | wc -c; "
                "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo proc-sys-ro")
    r = user.runtime("run", "--bundle", str(bundle.path), "settings")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[:5] == ["200", "300", "0077", "/www", "hi"]
    assert "10" in lines and "20" in lines
    status = r.stdout
    # CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE = bits 29, 5, 10
    assert "CapEff:\t0000000020000420" in status
    assert "NoNewPrivs:\t1" in status
    assert "example.test" in lines and "proc-sys-ro" in lines
    assert lines[lines.index("example.test") + 1] == "1"
    assert lines[lines.index("example.test") + 2] == "0", f"{masked} must be masked"


@pytest.mark.requires("libseccomp")
def test_seccomp_profile_is_loaded(user: UserShell, bundle: Bundle) -> None:
    bundle.update(lambda c: (c["root"].update(readonly=False), c["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    })))
    bundle.args("sh", "-c", "mkdir /tmp/blocked")
    r = user.runtime("run", "--bundle", str(bundle.path), "filtered")
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr + r.stdout
    assert not (bundle.rootfs / "tmp" / "blocked").exists()


@pytest.mark.requires("nosub-user")
def test_user_without_subids_gets_a_single_id_container(nosub_user: UserShell, test_image: str) -> None:
    bundle = Bundle.make(nosub_user, test_image)
    (bundle.path / "config.json").unlink()
    r = nosub_user.runtime("spec", "--rootless", "--bundle", str(bundle.path))
    assert r.returncode == 0
    assert "/etc/subuid" in r.stderr and "usermod --add-subuids" in r.stderr
    bundle.update(lambda c: c["process"].update(terminal=False))
    bundle.args("sh", "-c", "id -u; cat /proc/self/uid_map")
    r = nosub_user.runtime("run", "--bundle", str(bundle.path), "single")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert [line.split() for line in lines[1:]] == [["0", str(nosub_user.uid), "1"]]


# -- bad input: one clear line, a non-zero exit, nothing left behind --------------------------

def _assert_clean_failure(user: UserShell, r, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert not any(p for p in user.root.glob("*") if not p.name.startswith(".")) \
        if user.root.exists() else True


def test_missing_config(user: UserShell, bundle: Bundle) -> None:
    (bundle.path / "config.json").unlink()
    r = user.runtime("create", "--bundle", str(bundle.path), "bad")
    _assert_clean_failure(user, r, "config.json", "rctr runtime spec")


def test_invalid_json(user: UserShell, bundle: Bundle) -> None:
    (bundle.path / "config.json").write_text("{not json")
    _assert_clean_failure(user, user.runtime("create", "--bundle", str(bundle.path), "bad"),
                          "not valid JSON")


def test_missing_rootfs(user: UserShell, bundle: Bundle) -> None:
    bundle.update(lambda c: c["root"].update(path="nowhere"))
    _assert_clean_failure(user, user.runtime("create", "--bundle", str(bundle.path), "bad"),
                          "rootfs", "does not exist")


def test_unknown_namespace(user: UserShell, bundle: Bundle) -> None:
    bundle.update(lambda c: c["linux"]["namespaces"].append({"type": "bogus"}))
    _assert_clean_failure(user, user.runtime("create", "--bundle", str(bundle.path), "bad"),
                          "unknown namespace 'bogus'")


def test_missing_newuidmap(user: UserShell, bundle: Bundle, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    os.chmod(tmp_path, 0o755)
    r = user.runtime("create", "--bundle", str(bundle.path), "bad", env=user.env(PATH=str(bare)))
    _assert_clean_failure(user, r, "newuidmap is missing", "uidmap")


def test_bad_executable_fails_create(user: UserShell, bundle: Bundle) -> None:
    bundle.args("/no/such/program")
    _assert_clean_failure(user, user.runtime("create", "--bundle", str(bundle.path), "bad"),
                          "executable file not found")


def test_id_in_use_and_start_when_not_created(user: UserShell, bundle: Bundle) -> None:
    bundle.args("sleep", "1000")
    create_detached(user, bundle, "dup")
    r = user.runtime("create", "--bundle", str(bundle.path), "dup")
    assert r.returncode != 0 and "already exists" in r.stderr
    user.runtime("start", "dup", check=True)
    r = user.runtime("start", "dup")
    assert r.returncode != 0 and "only a created container can be started" in r.stderr
    user.runtime("delete", "-f", "dup", check=True)
    r = user.runtime("start", "dup")
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = user.runtime("create", "--bundle", str(bundle.path), "../escape")
    assert r.returncode != 0 and "invalid container id" in r.stderr


# -- one bundle, three runtimes: the config `spec --rootless` writes is valid for all ---------

@pytest.mark.parametrize("runtime", ["rctr", "crun", "runc"])
def test_spec_rootless_bundle_runs_under_every_runtime(user: UserShell, bundle: Bundle,
                                                       runtime: str) -> None:
    if runtime != "rctr" and not __import__("caps").has(runtime):
        pytest.fail(f"{runtime} is not installed (scripts/setup.sh installs it)")
    bundle.args("sh", "-c", "id -u; cat /proc/self/uid_map; hostname; echo pid=$$; exit 5")
    command = _rt(user) if runtime == "rctr" else [runtime]
    r = user.run([*command, "run", "--bundle", str(bundle.path), f"ref-{runtime}"],
                 cwd=str(bundle.path))
    assert r.returncode == 5, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(user.uid), "1"]
    assert lines[2].split() == ["1", str(user.uid_map[1][1]), str(user.uid_map[1][2])]
    assert lines[3:] == ["rctr", "pid=1"]


def test_run_and_exec_relay_a_terminal(user: UserShell, bundle: Bundle) -> None:
    bundle.update(lambda c: c["process"].update(terminal=True))
    bundle.args("sh", "-c", "tty; test -t 1 && echo stdout-is-a-tty")
    r = user.runtime("run", "--bundle", str(bundle.path), "term", stdin=__import__("subprocess").DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "/dev/pts/0" in r.stdout and "stdout-is-a-tty" in r.stdout
    bundle.update(lambda c: c["process"].update(terminal=False))
    bundle.args("sleep", "1000")
    create_detached(user, bundle, "term2")
    user.runtime("start", "term2", check=True)
    r = user.runtime("exec", "--tty", "term2", "sh", "-c", "tty && exit 4",
                     stdin=__import__("subprocess").DEVNULL)
    assert r.returncode == 4 and "/dev/pts/" in r.stdout, r.stderr


def test_namespaces_joined_by_path(user: UserShell, bundle: Bundle, test_image: str) -> None:
    bundle.update(lambda c: c.update(hostname="first"))
    bundle.args("sleep", "1000")
    create_detached(user, bundle, "first")
    user.runtime("start", "first", check=True)
    pid = json.loads(user.runtime("state", "first", check=True).stdout)["pid"]
    second = Bundle.make(user, test_image, name="second")

    def join(c: dict) -> None:
        c.pop("hostname")
        c["linux"].pop("uidMappings")
        c["linux"].pop("gidMappings")
        for ns in c["linux"]["namespaces"]:
            if ns["type"] in ("user", "uts", "ipc", "network"):
                ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else ns['type']}"

    second.update(join)
    second.args("sh", "-c", "hostname; cat /proc/self/uid_map; echo pid=$$")
    r = user.runtime("run", "--bundle", str(second.path), "second")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "first", "the uts namespace was joined"
    assert lines[1].split() == ["0", str(user.uid), "1"]
    assert lines[-1] == "pid=1", "a new pid namespace next to the joined ones"


def test_kill_all_and_delete_of_a_created_container(user: UserShell, bundle: Bundle) -> None:
    # sh is PID 1 with no TERM handler: only the sleeps die of TERM
    bundle.args("sh", "-c", "sleep 1000 & sleep 1000 & wait; exec sleep 999")
    create_detached(user, bundle, "many")
    user.runtime("start", "many", check=True)
    wait_status(user, "many", "running")
    count = ["sh", "-c", "ps -o args | grep -c '^sleep 1000'"]
    r = user.runtime("exec", "many", *count)
    deadline = time.monotonic() + 10
    while r.stdout.strip() != "2" and time.monotonic() < deadline:
        r = user.runtime("exec", "many", *count)
    assert r.stdout.strip() == "2"
    assert user.runtime("kill", "--all", "many", "TERM").returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = user.runtime("exec", "many", *count)
        if r.stdout.strip() == "0":
            break
    assert r.stdout.strip() == "0", "kill --all reached the children"
    user.runtime("delete", "--force", "many", check=True)
    # delete of a container that was created and never started kills its init
    create_detached(user, bundle, "never")
    pid = json.loads(user.runtime("state", "never", check=True).stdout)["pid"]
    user.runtime("delete", "never", check=True)
    assert not os.path.exists(f"/proc/{pid}") or \
        Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


def test_bind_mounts_honour_ro_and_oom_score_adj(user: UserShell, bundle: Bundle) -> None:
    shared = bundle.path.parent / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")
    os.chown(shared, user.uid, user.gid)
    bundle.update(lambda c: (c["mounts"].extend([
        {"destination": "/data", "type": "bind", "source": str(shared), "options": ["rbind", "ro"]},
        {"destination": "/rw", "type": "bind", "source": str(shared), "options": ["bind"]},
    ]), c["process"].update(oomScoreAdj=500)))
    bundle.args("sh", "-c", "cat /data/hello; touch /data/x 2>/dev/null || echo data-ro; "
                "touch /rw/made-inside && echo rw-ok; cat /proc/self/oom_score_adj")
    r = user.runtime("run", "--bundle", str(bundle.path), "binds")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["from the host", "data-ro", "rw-ok", "500"]
    assert (shared / "made-inside").stat().st_uid == user.uid
