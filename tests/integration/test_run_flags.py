"""``run`` flags end to end, as the unprivileged user: what the container sees.

Each test runs the busybox test image through the whole pipeline (rctr CLI or
the stock docker CLI → rctrd → shim → runtime) and looks from inside the
container: environment, ids, mounts, capabilities, seccomp, /proc, signals,
restart and logs.  Every container a test makes is removed in ``finally``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from daemonenv import IMAGE, RctrUser, detached, ok
from harness import RCTR

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(120)]

# Docker's default capability set as a CapEff mask: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
# SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DEFAULT_CAPS = 0x00000000a80425fb
CAP_CHOWN, CAP_NET_ADMIN, CAP_SYS_ADMIN = 0, 12, 21


def run(rc: RctrUser, *args: str, timeout: float = 60) -> str:
    """``rctr run --rm ARGS``; its stdout, after checking it succeeded."""
    return ok(rc.rctr("run", "--rm", *args, timeout=timeout)).stdout  # type: ignore[no-any-return]


def host_dir(rc: RctrUser, name: str) -> Path:
    """A directory on the host owned by the user (under the test's base)."""
    path = rc.shell.base / name
    path.mkdir(mode=0o755)
    os.chown(path, rc.shell.uid, rc.shell.gid)
    return path


def status_field(text: str, field: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return value.strip()
    raise AssertionError(f"{field} not in {text!r}")


def cap_eff(rc: RctrUser, *flags: str) -> int:
    return int(status_field(run(rc, *flags, IMAGE, "cat", "/proc/self/status"), "CapEff"), 16)


def inspect(rc: RctrUser, name: str, fmt: str) -> str:
    return ok(rc.rctr("inspect", "--format", fmt, name)).stdout.strip()  # type: ignore[no-any-return]


# -- environment, working directory, user ------------------------------------------------------

def test_env_and_env_file(rc: RctrUser) -> None:
    env_file = rc.shell.base / "vars.env"
    env_file.write_text("# a comment\nFROM_FILE=file\nBOTH=file\n\nSPACED=a b\n")
    os.chmod(env_file, 0o644)
    out = run(rc, "--env-file", str(env_file), "-e", "BOTH=flag", "-e", "ONLY=1", IMAGE, "env")
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["FROM_FILE"] == "file" and env["BOTH"] == "flag" and env["ONLY"] == "1"
    assert env["SPACED"] == "a b"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == "/root" and len(env["HOSTNAME"]) == 12
    # The request's HOSTNAME wins over Docker's default, as with dockerd.
    assert run(rc, "-e", "HOSTNAME=mine", IMAGE, "sh", "-c", "echo $HOSTNAME") == "mine\n"
    # A bare -e KEY takes the client's value; the daemon's own environment never leaks in.
    r = ok(rc.shell.run([RCTR, "run", "--rm", "-e", "FROM_CLIENT", "-e", "UNSET_HERE", IMAGE, "env"],
                        env=rc.env(FROM_CLIENT="client")))
    assert "FROM_CLIENT=client" in r.stdout.splitlines() and "UNSET_HERE" not in r.stdout
    status, body = rc.api("POST", "/v1.43/containers/create?name=rf-bare",
                          {"Image": IMAGE, "Cmd": ["env"], "Env": ["XDG_RUNTIME_DIR", "USER"]})
    assert status == 201, body
    try:
        out = ok(rc.rctr("start", "-a", "rf-bare")).stdout
        assert "XDG_RUNTIME_DIR" not in out and "USER=" not in out, out
    finally:
        rc.rctr("rm", "-f", "rf-bare")


def test_workdir_is_created_if_missing(rc: RctrUser) -> None:
    assert run(rc, "-w", "/new/work/dir", IMAGE, "pwd") == "/new/work/dir\n"
    assert run(rc, "-w", "/tmp", IMAGE, "pwd") == "/tmp\n"
    # Created for a non-root user too, and usable.
    assert run(rc, "-u", "1000", "-w", "/made/for/user", IMAGE, "pwd") == "/made/for/user\n"


def test_user_by_uid_uid_gid_and_name(rc: RctrUser) -> None:
    # The primary group from /etc/passwd; no supplementary groups (the image lists no members).
    assert run(rc, "-u", "1000", IMAGE, "id").strip() == "uid=1000(user) gid=1000(user)"
    assert run(rc, "-u", "1000:65534", IMAGE, "id").startswith("uid=1000(user) gid=65534(nogroup)")
    out = run(rc, "-u", "user", IMAGE, "sh", "-c", "id -u; id -g; echo $HOME")
    assert out.split() == ["1000", "1000", "/home/user"]
    assert run(rc, "-u", "nobody", IMAGE, "id", "-u") == "65534\n"
    assert run(rc, "-u", "4242:4242", IMAGE, "id", "-u") == "4242\n"  # not in /etc/passwd
    r = rc.rctr("run", "--rm", "-u", "no-such-user", IMAGE, "true")
    assert r.returncode != 0 and "no-such-user" in r.stderr


def test_group_add(rc: RctrUser) -> None:
    out = run(rc, "-u", "1000", "--group-add", "nogroup", "--group-add", "4242", IMAGE, "id")
    ids, _, groups = out.strip().partition(" groups=")
    assert ids == "uid=1000(user) gid=1000(user)"
    assert sorted(groups.split(",")) == ["4242", "65534(nogroup)"], out  # the kernel sorts them
    r = rc.rctr("run", "--rm", "--group-add", "no-such-group", IMAGE, "true")
    assert r.returncode == 125 and "no-such-group" in r.stderr


def test_bad_settings_are_refused_at_create(rc: RctrUser) -> None:
    before = ok(rc.rctr("ps", "-aq")).stdout
    for flags, message in ((["-w", "relative"], "needs to be an absolute path"),
                           (["--stop-signal", "SIGNOPE"], "invalid signal"),
                           (["--cap-add", "NO_SUCH_CAP"], "NO_SUCH_CAP"),
                           (["--ulimit", "bogus=1"], "invalid ulimit"),
                           (["--ulimit", "nofile=20:10"], "above the hard limit")):
        r = rc.rctr("create", *flags, IMAGE, "true")
        assert r.returncode == 125 and message in r.stderr, (flags, r.stderr)
    assert ok(rc.rctr("ps", "-aq")).stdout == before, "a refused create leaves no container"


# -- mounts ------------------------------------------------------------------------------------

def test_bind_mount_rw_and_ro(rc: RctrUser) -> None:
    src = host_dir(rc, "bind-src")
    (src / "from-host").write_text("host\n")
    out = run(rc, "-v", f"{src}:/data", IMAGE, "sh", "-c", "cat /data/from-host; echo c > /data/from-ctr")
    assert out == "host\n"
    made = src / "from-ctr"
    assert made.read_text() == "c\n"
    assert made.stat().st_uid == rc.shell.uid, "container root is the user on the host"
    r = rc.rctr("run", "--rm", "-v", f"{src}:/data:ro", IMAGE, "sh", "-c", "echo x > /data/nope")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (src / "nope").exists()
    assert run(rc, "-v", f"{src}:/data:ro", IMAGE, "cat", "/data/from-host") == "host\n"


def test_mount_flag_bind_volume_tmpfs(rc: RctrUser) -> None:
    src = host_dir(rc, "mount-src")
    (src / "f").write_text("bound\n")
    script = ("cat /b/f; (echo x > /b/g) 2>/dev/null || echo ro-refused; echo v > /v/f; "
              "grep ' /t ' /proc/mounts; echo t > /t/f && cat /t/f")
    out = run(rc, "--mount", f"type=bind,src={src},dst=/b,readonly",
              "--mount", "type=volume,src=mvol,dst=/v",
              "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m",
              IMAGE, "sh", "-c", script)
    lines = out.splitlines()
    assert lines[0] == "bound" and lines[1] == "ro-refused"
    assert lines[2].split()[2] == "tmpfs" and "size=1024k" in lines[2], lines[2]
    assert lines[3] == "t"
    assert run(rc, "--mount", "type=volume,source=mvol,target=/again", IMAGE, "cat", "/again/f") == "v\n"
    ok(rc.rctr("volume", "rm", "mvol"))


def test_bind_source_is_created_or_explained(rc: RctrUser) -> None:
    parent = host_dir(rc, "made")
    run(rc, "-v", f"{parent}/a/b:/x", IMAGE, "touch", "/x/f")
    assert (parent / "a" / "b" / "f").exists()
    r = rc.rctr("run", "--rm", "-v", "/rctr-no-such-dir/x:/x", IMAGE, "true")
    assert r.returncode == 125 and "error while creating mount source path" in r.stderr, r.stderr
    r = rc.rctr("run", "--rm", "--mount", f"type=bind,src={parent}/missing,dst=/x", IMAGE, "true")
    assert r.returncode == 125 and "does not exist" in r.stderr, r.stderr


def test_tmpfs_flag_with_size(rc: RctrUser) -> None:
    line = run(rc, "--tmpfs", "/run:size=1m", IMAGE, "grep", " /run ", "/proc/mounts")
    fields = line.split()
    assert fields[2] == "tmpfs" and "size=1024k" in fields[3], line
    r = rc.rctr("run", "--rm", "--tmpfs", "/run:size=1m", IMAGE, "dd", "if=/dev/zero", "of=/run/big",
                "bs=1k", "count=2048")
    assert r.returncode != 0 and "No space left" in r.stderr


def test_read_only_root(rc: RctrUser) -> None:
    r = rc.rctr("run", "--rm", "--read-only", IMAGE, "touch", "/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert run(rc, "--read-only", "--tmpfs", "/tmp", IMAGE, "sh", "-c",
               "echo w > /tmp/x && cat /tmp/x") == "w\n"
    # The per-container files and /dev/shm stay writable, as with Docker.
    run(rc, "--read-only", IMAGE, "sh", "-c", "echo s > /dev/shm/x")


def test_shm_size_and_ulimit(rc: RctrUser) -> None:
    line = run(rc, "--shm-size", "8m", IMAGE, "grep", " /dev/shm ", "/proc/mounts")
    assert "size=8192k" in line.split()[3], line
    out = run(rc, "--ulimit", "nofile=100:200", "--ulimit", "nproc=500", IMAGE, "sh", "-c",
              "ulimit -n; ulimit -Hn; ulimit -u")
    assert out.split() == ["100", "200", "500"]


# -- identity of the container: hostname, entrypoint, init -----------------------------------

def test_hostname_and_etc_files(rc: RctrUser) -> None:
    out = run(rc, "--hostname", "box1", IMAGE, "sh", "-c",
              "hostname; cat /etc/hostname; echo $HOSTNAME; grep -c box1 /etc/hosts; "
              "grep localhost /etc/hosts | head -1; test -f /etc/resolv.conf && echo resolv")
    lines = out.splitlines()
    assert lines[:3] == ["box1", "box1", "box1"]
    assert int(lines[3]) >= 1 and "127.0.0.1" in lines[4] and lines[5] == "resolv"


def test_entrypoint(rc: RctrUser) -> None:
    assert run(rc, "--entrypoint", "echo", IMAGE, "a", "b") == "a b\n"
    assert run(rc, "--entrypoint", "/bin/hostname", "--hostname", "ep", IMAGE) == "ep\n"
    with detached(rc, "rf-entry", "--entrypoint", "sleep", IMAGE, "30"):
        assert inspect(rc, "rf-entry", "{{.Path}} {{json .Args}}") == 'sleep ["30"]'


def test_init_is_pid_1_and_forwards_signals(rc: RctrUser) -> None:
    out = run(rc, "--init", IMAGE, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; ps -o pid,args")
    cmdline = out.splitlines()[0].split()
    assert cmdline[0] == "/sbin/docker-init" and cmdline[1:3] == ["--", "sh"], out
    assert "/sbin/docker-init" in out.splitlines()[2]
    # sleep as PID 1 would ignore SIGTERM; under the init it gets it and dies at once.
    with detached(rc, "rf-init", "--init", IMAGE, "sleep", "60"):
        t0 = time.monotonic()
        ok(rc.rctr("stop", "-t", "20", "rf-init"))
        assert time.monotonic() - t0 < 10
        assert inspect(rc, "rf-init", "{{.State.ExitCode}}") == "143"


# -- capabilities, privileged, seccomp, no-new-privileges ------------------------------------

def test_default_capabilities_and_cap_add_drop(rc: RctrUser) -> None:
    assert cap_eff(rc) == DEFAULT_CAPS
    assert cap_eff(rc, "--cap-drop", "ALL") == 0
    assert cap_eff(rc, "--cap-drop", "all", "--cap-add", "CHOWN") == 1 << CAP_CHOWN
    expected = (DEFAULT_CAPS | 1 << CAP_NET_ADMIN) & ~(1 << CAP_CHOWN)
    assert cap_eff(rc, "--cap-add", "NET_ADMIN", "--cap-drop", "CAP_CHOWN") == expected
    r = rc.rctr("run", "--rm", "--cap-drop", "ALL", IMAGE, "chown", "1000", "/etc/motd")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    r = rc.rctr("run", "--rm", "--cap-add", "NO_SUCH_CAP", IMAGE, "true")
    assert r.returncode != 0 and "NO_SUCH_CAP" in r.stderr
    # A non-root user has no effective capabilities, as with Docker.
    assert cap_eff(rc, "-u", "1000") == 0


def test_privileged(rc: RctrUser) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    root_file = rc.shell.base / "root-owned"
    root_file.write_text("host root's\n")
    os.chmod(root_file, 0o644)
    status = run(rc, "--privileged", IMAGE, "cat", "/proc/self/status")
    assert int(status_field(status, "CapEff"), 16) == (1 << (last + 1)) - 1
    assert status_field(status, "Seccomp") == "0"
    mounts = run(rc, "--privileged", IMAGE, "cat", "/proc/mounts")
    for point in ("/sys", "/proc/sys"):
        options = [line.split()[3] for line in mounts.splitlines() if line.split()[1] == point]
        assert not options or options[-1].split(",")[0] == "rw", (point, options)
    assert "/proc/kcore" not in mounts and "/proc/keys" not in mounts, "no masked paths"
    r = rc.rctr("run", "--rm", "--privileged", "-v", f"{root_file}:/f", IMAGE, "sh", "-c",
                "cat /f; echo owned > /f")
    assert r.stdout == "host root's\n"
    assert r.returncode != 0 and "denied" in r.stderr, r.stderr
    assert root_file.read_text() == "host root's\n"


def test_default_seccomp_profile(rc: RctrUser) -> None:
    assert status_field(run(rc, IMAGE, "cat", "/proc/self/status"), "Seccomp") == "2"
    # unshare(CLONE_NEWUSER) needs no capability, so only the profile refuses it.
    r = rc.rctr("run", "--rm", IMAGE, "unshare", "-U", "true")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    run(rc, "--security-opt", "seccomp=unconfined", IMAGE, "unshare", "-U", "true")
    r = rc.rctr("run", "--rm", IMAGE, "swapoff", "/dev/null")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr


def test_custom_seccomp_profile(rc: RctrUser) -> None:
    # Docker's profile format: archMap, and rules gated by the container's capabilities.
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                           {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                            {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
                             "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    path = rc.shell.base / "profile.json"
    path.write_text(json.dumps(profile))
    os.chmod(path, 0o644)
    script = "(mkdir /x) 2>&1; chmod 700 /tmp 2>&1 && echo chmod-ok; unshare -U true && echo unshared"
    out = run(rc, "--security-opt", f"seccomp={path}", IMAGE, "sh", "-c", script)
    assert out.splitlines() == ["mkdir: can't create directory '/x': Operation not permitted",
                                "chmod-ok", "unshared"], out
    out = run(rc, "--security-opt", f"seccomp={path}", "--cap-add", "SYS_ADMIN", IMAGE, "sh", "-c",
              "chmod 700 /tmp 2>&1; true")
    assert "Operation not permitted" in out
    r = rc.rctr("run", "--rm", "--security-opt", 'seccomp={"defaultAction": "SCMP_ACT_NOPE"}',
                IMAGE, "true")
    assert r.returncode != 0


def test_no_new_privileges(rc: RctrUser) -> None:
    status = run(rc, "--security-opt", "no-new-privileges", IMAGE, "cat", "/proc/self/status")
    assert status_field(status, "NoNewPrivs") == "1"
    status = run(rc, IMAGE, "cat", "/proc/self/status")
    assert status_field(status, "NoNewPrivs") == "0"


# -- /dev, /proc, processes --------------------------------------------------------------------

def test_dev_shm_and_proc_masking(rc: RctrUser) -> None:
    out = run(rc, IMAGE, "sh", "-c",
              "grep ' /dev/shm ' /proc/mounts; grep ' /proc/sys ' /proc/mounts; "
              "(echo 1 > /proc/sys/kernel/domainname) 2>&1; true")
    lines = out.splitlines()
    shm = lines[0].split()
    assert shm[2] == "tmpfs" and "size=65536k" in shm[3], lines[0]
    cid = ok(rc.rctr("create", IMAGE, "true")).stdout.strip()
    try:  # inspect tells the size, as Docker's does
        assert ok(rc.rctr("inspect", "-f", "{{.HostConfig.ShmSize}}", cid)).stdout.strip() \
            == str(64 << 20)
    finally:
        rc.rctr("rm", cid)
    assert lines[1].split()[3].split(",")[0] == "ro", lines[1]
    assert "Read-only file system" in lines[2]
    # Masked files read as /dev/null (the kernel may lack some, e.g. /proc/kcore).
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    assert masked, "the host has none of the masked files to look at"
    out = run(rc, IMAGE, "sh", "-c", 'for p in "$@"; do stat -c "%t:%T" $p; wc -c < $p; done',
              "sh", *masked)
    assert out.split() == ["1:3", "0"] * len(masked), out


def test_host_processes_are_invisible(rc: RctrUser) -> None:
    out = run(rc, IMAGE, "ps", "-o", "pid,args")
    rows = out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["1"], out
    assert rows[0].split()[1:] == ["ps", "-o", "pid,args"]


# -- stopping, restarting, logs --------------------------------------------------------------

def test_stop_signal(rc: RctrUser) -> None:
    script = "trap 'echo got-usr1; exit 0' USR1; trap 'echo got-term; exit 9' TERM; " \
             "echo ready; while true; do sleep 0.1; done"
    with detached(rc, "rf-sig", "--stop-signal", "USR1", IMAGE, "sh", "-c", script):
        rc.wait_for(lambda: "ready" in rc.rctr("logs", "rf-sig").stdout, what="ready")
        assert inspect(rc, "rf-sig", "{{.Config.StopSignal}}") == "USR1"
        ok(rc.rctr("stop", "-t", "10", "rf-sig"))
        assert "got-usr1" in rc.rctr("logs", "rf-sig").stdout
        assert inspect(rc, "rf-sig", "{{.State.ExitCode}}") == "0"


def test_stop_timeout(rc: RctrUser) -> None:
    with detached(rc, "rf-tmo", "--stop-timeout", "1", IMAGE, "sh", "-c",
                  "trap '' TERM; while true; do sleep 0.1; done"):
        assert inspect(rc, "rf-tmo", "{{.Config.StopTimeout}}") == "1"
        t0 = time.monotonic()
        ok(rc.rctr("stop", "rf-tmo"))  # no -t: the container's own timeout
        elapsed = time.monotonic() - t0
        assert 0.9 < elapsed < 8, elapsed
        assert inspect(rc, "rf-tmo", "{{.State.ExitCode}}") == "137"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_restart_always_until_stopped(rc: RctrUser) -> None:
    with detached(rc, "rf-always", "--restart", "always", IMAGE, "sh", "-c", "echo run; sleep 0.3"):
        rc.wait_for(lambda: int(inspect(rc, "rf-always", "{{.RestartCount}}")) >= 2, timeout=60,
                    what="two restarts")
        ok(rc.rctr("stop", "-t", "2", "rf-always"))
        assert inspect(rc, "rf-always", "{{.State.Running}}") == "false"
        count = inspect(rc, "rf-always", "{{.RestartCount}}")
        time.sleep(2)
        assert inspect(rc, "rf-always", "{{.State.Running}} {{.RestartCount}}") == f"false {count}"
        assert rc.rctr("logs", "rf-always").stdout.count("run") >= 3


def test_log_rotation(rc: RctrUser) -> None:
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done"
    with detached(rc, "rf-logs", "--log-opt", "max-size=1k", "--log-opt", "max-file=2",
                  IMAGE, "sh", "-c", script):
        rc.wait_for(lambda: inspect(rc, "rf-logs", "{{.State.Running}}") == "false", what="exit")
        log_path = Path(inspect(rc, "rf-logs", "{{.LogPath}}"))
        files = sorted(p.name for p in log_path.parent.iterdir() if p.name.startswith(log_path.name))
        assert files == [log_path.name, log_path.name + ".1"], files
        for p in files:
            assert (log_path.parent / p).stat().st_size <= 2048
        out = ok(rc.rctr("logs", "rf-logs")).stdout.splitlines()
        assert out and out[-1] == "line-399"
        assert "line-0" not in out
        assert ok(rc.rctr("logs", "--tail", "2", "rf-logs")).stdout == "line-398\nline-399\n"


def test_resource_limits_run_with_a_warning(rc: RctrUser) -> None:
    r = ok(rc.rctr("run", "--rm", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "100",
                   IMAGE, "echo", "ran"))
    assert r.stdout == "ran\n"
    for flag in ("--memory", "--cpus", "--pids-limit"):
        assert f"{flag} is not enforced" in r.stderr, r.stderr


# -- inspecting and managing a running container ---------------------------------------------

def test_top_stats_rename_port(rc: RctrUser) -> None:
    with detached(rc, "rf-mgmt", IMAGE, "sleep", "60") as cid:
        top = ok(rc.rctr("top", "rf-mgmt")).stdout
        assert "PID" in top.splitlines()[0] and "sleep 60" in top
        assert top.splitlines()[1].split()[0] == "root"  # named from the container's passwd
        # A container that turns its passwd into a FIFO must not hang the daemon.
        ok(rc.rctr("exec", "rf-mgmt", "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd"))
        assert ok(rc.rctr("top", "rf-mgmt", timeout=20)).stdout.splitlines()[1].split()[0] == "0"
        stats = ok(rc.rctr("stats", "--no-stream", "rf-mgmt")).stdout
        assert "rf-mgmt" in stats and "MEM USAGE" in stats.splitlines()[0]
        assert ok(rc.rctr("port", "rf-mgmt")).stdout == ""
        ok(rc.rctr("rename", "rf-mgmt", "rf-renamed"))
        try:
            assert inspect(rc, cid, "{{.Name}}") == "/rf-renamed"
            assert rc.rctr("inspect", "rf-mgmt").returncode != 0
            assert "rf-renamed" in ok(rc.rctr("ps")).stdout
            ok(rc.rctr("stop", "-t", "1", "rf-renamed"))
        finally:
            rc.rctr("rm", "-f", "rf-renamed")


def test_inspect_fields_scripts_read(rc: RctrUser) -> None:
    src = host_dir(rc, "inspect-src")
    with detached(rc, "rf-insp", "-e", "FOO=bar", "-v", "insvol:/vol", "-v", f"{src}:/host:ro",
                  IMAGE, "sh", "-c", "sleep 1; exit 3"):
        assert inspect(rc, "rf-insp", "{{.State.Running}}") == "true"
        rc.wait_for(lambda: inspect(rc, "rf-insp", "{{.State.Running}}") == "false", what="exit")
        assert inspect(rc, "rf-insp", "{{.State.ExitCode}}") == "3"
        env = json.loads(inspect(rc, "rf-insp", "{{json .Config.Env}}"))
        assert "FOO=bar" in env and any(e.startswith("PATH=") for e in env)
        mounts = {m["Destination"]: m for m in json.loads(inspect(rc, "rf-insp", "{{json .Mounts}}"))}
        assert mounts["/vol"]["Type"] == "volume" and mounts["/vol"]["Name"] == "insvol"
        assert mounts["/vol"]["RW"] is True
        assert mounts["/host"]["Type"] == "bind" and mounts["/host"]["Source"] == str(src)
        assert mounts["/host"]["RW"] is False
    ok(rc.rctr("volume", "rm", "insvol"))


# -- the stock docker CLI ----------------------------------------------------------------------

def test_docker_cli_run_flags(rc: RctrUser) -> None:
    def drun(*args: str) -> str:
        return ok(rc.docker("run", "--rm", *args)).stdout  # type: ignore[no-any-return]

    ok(rc.rctr("ps"))  # docker does not start rctrd; rctr does
    out = drun("-e", "A=1", "-w", "/dwork", "-u", "1000:1000", "--hostname", "dbox", IMAGE,
               "sh", "-c", "echo $A; pwd; id -u; hostname")
    assert out.split() == ["1", "/dwork", "1000", "dbox"]
    assert int(status_field(drun("--cap-drop", "ALL", IMAGE, "cat", "/proc/self/status"),
                            "CapEff"), 16) == 0
    status = drun("--security-opt", "no-new-privileges", IMAGE, "cat", "/proc/self/status")
    assert status_field(status, "NoNewPrivs") == "1"
    r = rc.docker("run", "--rm", "--read-only", IMAGE, "touch", "/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    profile = rc.shell.base / "docker-profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    os.chmod(profile, 0o644)
    r = rc.docker("run", "--rm", "--security-opt", f"seccomp={profile}", IMAGE, "mkdir", "/x")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    line = drun("--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", IMAGE, "grep", " /t ", "/proc/mounts")
    assert "size=1024k" in line
    assert drun("--init", IMAGE, "cat", "/proc/1/cmdline").startswith("/sbin/docker-init\0")
    assert drun("--entrypoint", "echo", IMAGE, "x") == "x\n"
    cid = ok(rc.docker("run", "-d", "--name", "rf-docker", "-e", "K=v", IMAGE, "sh", "-c", "exit 4")).stdout.strip()
    try:
        ok(rc.docker("wait", cid))
        assert ok(rc.docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Running}}",
                            "rf-docker")).stdout.strip() == "4 false"
        assert "K=v" in json.loads(ok(rc.docker("inspect", "-f", "{{json .Config.Env}}",
                                                 "rf-docker")).stdout)
    finally:
        rc.docker("rm", "-f", "rf-docker")
    with detached(rc, "rf-dtop", IMAGE, "sleep", "60"):
        assert "sleep 60" in ok(rc.docker("top", "rf-dtop")).stdout
        assert "rf-dtop" in ok(rc.docker("stats", "--no-stream", "rf-dtop")).stdout
        assert ok(rc.docker("port", "rf-dtop")).stdout == ""
        ok(rc.docker("rename", "rf-dtop", "rf-dtop2"))
        try:
            assert "rf-dtop2" in ok(rc.docker("ps")).stdout
        finally:
            rc.docker("rm", "-f", "rf-dtop2")
