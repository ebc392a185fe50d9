"""Nobody gets in: other users stay out of rctr, and a container stays in its box.

Two halves, both through the whole pipeline as the unprivileged test user:

* from outside: another ordinary user of the machine (``rctr-nosub``) tries
  the daemon's socket (plain, then with its permissions opened up by mistake,
  so SO_PEERCRED alone must refuse), the docker CLI pointed at it, the store,
  the container records, the json-file logs and the runtime directory;
* from inside: host processes, Docker's masked and read-only paths, the
  capability sets, things only the host's root may do, no-new-privileges,
  the default seccomp profile (syscalls made directly, through ctypes in the
  host's Python bound read-only into the busybox image), and ``--privileged``,
  which gives every capability of the user namespace and nothing of the host.

``tests/integration/test_run_flags.py`` has the first-order checks (CapEff,
``Seccomp: 2``, ``unshare -U``, three masked files, ``ps``); this file goes
further and does not repeat them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from daemonenv import IMAGE, RctrUser, detached, ok
from harness import RCTR, UserShell

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(180)]

# Docker's default capability set as a mask (oci/defaults.go's DefaultCapabilities).
DEFAULT_CAPS = 0x00000000a80425fb
# Docker's lists (moby oci/defaults.go, with /sys/devices/virtual/powercap of Docker 25).
MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
PYTHON = os.path.realpath("/usr/bin/python3")
PYTHON_MOUNTS = ("-e", "PYTHONHOME=/", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro",
                 "-v", f"{PYTHON}:/bin/python3:ro")


def run(rc: RctrUser, *args: str, timeout: float = 60) -> str:
    return ok(rc.rctr("run", "--rm", *args, timeout=timeout)).stdout  # type: ignore[no-any-return]


def status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def host_path(rc: RctrUser, name: str, text: str, mode: int, owner: int = 0) -> Path:
    """A file on the host under the test's directory, owned by ``owner`` (root by default)."""
    path = rc.shell.base / name
    path.write_text(text)
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def exposed(rc: RctrUser) -> RctrUser:
    """``rc`` with its XDG directories as a careless distribution leaves them: 0755.

    rctr's own directories below them must then be what keeps others out.
    """
    for d in (rc.data, rc.shell.runtime_dir):
        os.chmod(d, 0o755)
    return rc


# ==============================================================================================
# From outside: another ordinary user
# ==============================================================================================

_CONNECT = r"""
import json, socket, sys
out = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
    s.sendall(b"GET /_ping HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    out["reply"] = data.decode(errors="replace")
except OSError as exc:
    out["error"] = exc.__class__.__name__
print(json.dumps(out))
"""


def _connect_as(shell: UserShell, sock: Path) -> dict[str, str]:
    r = shell.run([sys.executable, "-c", _CONNECT, str(sock)], timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.mark.requires("nosub-user")
def test_other_user_cannot_use_the_socket(exposed: RctrUser, nosub_user: UserShell) -> None:
    rc = exposed
    ok(rc.rctr("version"))  # the daemon is up
    assert _connect_as(rc.shell, rc.socket)["reply"].startswith("HTTP/1.")
    got = _connect_as(nosub_user, rc.socket)
    assert got.get("error") == "PermissionError", got
    # The stock docker CLI of the other user, pointed at the socket.
    r = nosub_user.run(["docker", "-H", f"unix://{rc.socket}", "ps"],
                       env=nosub_user.env(DOCKER_CONFIG=str(nosub_user.base / "docker")))
    assert r.returncode != 0 and "permission denied" in r.stderr.lower(), r.stderr
    # The permissions opened by mistake: SO_PEERCRED still turns the other user away
    # (the connection is closed before a byte is answered), and still lets the owner in.
    opened = [(p, stat.S_IMODE(os.stat(p).st_mode)) for p in (rc.shell.runtime_dir, rc.rundir)]
    sock_mode = stat.S_IMODE(os.stat(rc.socket).st_mode)
    try:
        for p, _ in opened:
            os.chmod(p, 0o711)
        os.chmod(rc.socket, 0o666)
        got = _connect_as(nosub_user, rc.socket)
        assert "HTTP/" not in got.get("reply", ""), got
        r = nosub_user.run(["docker", "-H", f"unix://{rc.socket}", "ps"],
                           env=nosub_user.env(DOCKER_CONFIG=str(nosub_user.base / "docker")))
        assert r.returncode != 0 and "CONTAINER ID" not in r.stdout, r.stdout
        assert _connect_as(rc.shell, rc.socket)["reply"].startswith("HTTP/1.")
    finally:
        for p, mode in opened:
            os.chmod(p, mode)
        os.chmod(rc.socket, sock_mode)
    ok(rc.rctr("version"))  # refusing a stranger did not hurt the daemon


_PROBE_FILES = r"""
import json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        out[path] = "read"
    except OSError as exc:
        out[path] = exc.__class__.__name__
print(json.dumps(out))
"""


def _private_modes(top: Path) -> list[str]:
    """Everything under ``top`` that another user could read or enter, with its mode."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            if st.st_mode & 0o007 and os.stat(dirpath).st_mode & 0o001:
                found.append(f"{p} {stat.filemode(st.st_mode)}")
    return found


@pytest.mark.requires("nosub-user")
def test_other_user_cannot_read_the_store_records_logs_or_runtime_dir(
        exposed: RctrUser, nosub_user: UserShell) -> None:
    rc = exposed
    with detached(rc, "talker", "-v", "privvol:/vol", IMAGE, "sh", "-c",
                  "echo 'a private line of output'; echo secret > /vol/f; sleep 300") as cid:
        rc.wait_for(lambda: "a private line" in rc.rctr("logs", "talker").stdout, what="a log line")
        datadir = rc.data / "rctr"
        cdir = datadir / "containers" / cid
        log = cdir / f"{cid}-json.log"
        assert "a private line of output" in log.read_text()
        shimdir = rc.rundir / "s" / cid[:32]
        targets = [datadir, datadir / "storage", datadir / "storage" / "images.json",
                   datadir / "containers", cdir, cdir / "config.json", log,
                   datadir / "volumes", datadir / "volumes" / "privvol" / "_data" / "f",
                   rc.rundir, rc.rundir / "runtime", shimdir, shimdir / "shim.json"]
        targets = [t for t in targets if t.exists()]
        assert log in targets and cdir / "config.json" in targets
        r = nosub_user.run([sys.executable, "-c", _PROBE_FILES, *map(str, targets)])
        got = json.loads(ok(r).stdout)
        assert {p for p, what in got.items() if what != "PermissionError"} == set(), got
        # The modes that make it so, whatever the parents' modes: 0700 at the top of
        # each tree, and the records and logs 0600 as well.
        for top in (datadir, rc.rundir):
            assert stat.S_IMODE(os.stat(top).st_mode) == 0o700, top
        for private in (cdir, datadir / "containers", datadir / "storage", datadir / "volumes"):
            assert not os.stat(private).st_mode & 0o077, private
        assert not os.stat(cdir / "config.json").st_mode & 0o077
        # The log is 0640 as Docker's (the user's own group), inside the 0700 directories.
        assert not os.stat(log).st_mode & 0o007, oct(os.stat(log).st_mode)
        assert stat.S_IMODE(os.stat(rc.socket).st_mode) & 0o077 == 0
        assert os.stat(log).st_uid == rc.shell.uid
    rc.rctr("volume", "rm", "-f", "privvol")


@pytest.mark.requires("nosub-user")
def test_a_run_dir_taken_first_by_another_user_is_refused(rc: RctrUser,
                                                          nosub_user: UserShell) -> None:
    """Without $XDG_RUNTIME_DIR the run dir is /tmp/rctr-UID: another user may make it first,
    as an open directory, or as a symlink of theirs to a directory of the user's (which
    they can later point elsewhere)."""
    taken = Path(f"/tmp/rctr-{rc.shell.uid}")
    assert not os.path.lexists(taken), f"{taken} exists: left over from something else"
    data = rc.shell.base / "data-tmp-rundir"
    data.mkdir(mode=0o700)
    users = rc.shell.base / "users-own-dir"
    users.mkdir(mode=0o700)
    for d in (data, users):
        os.chown(d, rc.shell.uid, rc.shell.gid)
    env = rc.shell.env(XDG_DATA_HOME=str(data))
    del env["XDG_RUNTIME_DIR"]
    for take in (["mkdir", "-m", "777", str(taken)], ["ln", "-s", str(users), str(taken)]):
        ok(nosub_user.run(take))
        try:
            r = rc.shell.run([RCTR, "version"], env=env, timeout=60)
            assert r.returncode != 0, (take, r.stdout)
            for d in (taken, users):
                assert not (d / "rctr.sock").exists() and not (d / "pause.json").exists(), take
        finally:
            rc.shell.kill_all()  # a daemon that did start, in the broken case
            if taken.is_symlink():
                taken.unlink()
            shutil.rmtree(taken, ignore_errors=True)
    rc.rctr("version")  # the module's daemon, killed above, comes back on demand


# An impostor's daemon: answers every request, the ping with OK and anything else with a
# version that says who it is.
_IMPOSTOR = r"""
import os, socket, sys
path = sys.argv[1]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
os.chmod(path, 0o777)
listener.listen(16)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    try:  # a client that only checks the socket is there sends nothing and goes
        request = conn.recv(65536)
        body = b"OK" if b"/_ping" in request else b'{"Version": "IMPOSTOR", "ApiVersion": "1.43"}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass
    conn.close()
"""


def test_the_cli_does_not_talk_to_a_socket_in_another_users_run_dir(
        rc: RctrUser, nosub_user: UserShell) -> None:
    """The CLI's half of the taken /tmp/rctr-UID: another user made it and serves a socket
    of theirs there, ready before the user's first command.  The CLI must not send its
    requests (image names, environment, registry credentials) to that impostor."""
    taken = Path(f"/tmp/rctr-{rc.shell.uid}")
    assert not os.path.lexists(taken), f"{taken} exists: left over from something else"
    env = rc.shell.env()
    del env["XDG_RUNTIME_DIR"]
    ok(nosub_user.run(["mkdir", "-m", "777", str(taken)]))
    impostor = nosub_user.popen([sys.executable, "-c", _IMPOSTOR, str(taken / "rctr.sock")],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert impostor.stdout is not None and impostor.stdout.readline() == "ready\n"
        r = rc.shell.run([RCTR, "version"], env=env, timeout=60)
        assert "IMPOSTOR" not in r.stdout
        assert r.returncode != 0 and f"belongs to uid {nosub_user.uid}" in r.stderr, r.stderr
        assert "XDG_RUNTIME_DIR" in r.stderr
    finally:
        impostor.kill()
        impostor.communicate(timeout=10)
        shutil.rmtree(taken, ignore_errors=True)


# ==============================================================================================
# From inside: processes, /proc and /sys
# ==============================================================================================

def test_host_processes_cannot_be_seen_or_signalled(rc: RctrUser) -> None:
    # A process of the same user on the host: container root has the user's uid,
    # so only the pid namespace keeps it out of reach.
    victim = rc.popen(["sleep", "300"])
    daemon = rc.daemon_pid()
    assert daemon is not None
    try:
        script = ('ls /proc | grep "^[0-9]*$" | sort -n | tr "\\n" " "; echo; '
                  'for p in "$@"; do ls -d /proc/$p 2>/dev/null; kill -0 $p 2>/dev/null && '
                  'echo "alive $p"; kill -9 $p 2>/dev/null && echo "killed $p"; done; '
                  'cat /proc/1/cmdline | tr "\\0" " "; echo')
        for flags in ((), ("--privileged",)):
            out = run(rc, *flags, IMAGE, "sh", "-c", script, "sh", str(victim.pid), str(daemon))
            lines = out.splitlines()
            pids = [int(p) for p in lines[0].split()]
            assert pids[0] == 1 and max(pids) < 100, out  # only the container's own
            assert lines[1:-1] == [], out  # neither seen nor signalled
            assert lines[-1].startswith("sh -c "), out
            assert victim.poll() is None and os.path.exists(f"/proc/{daemon}")
    finally:
        victim.kill()
        victim.wait()


def _mountinfo(text: str) -> dict[str, list[str]]:
    """Mount point -> options (per-mount and per-superblock) of the last mount there."""
    points: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        sep = fields.index("-")
        points[fields[4]] = fields[5].split(",") + fields[sep + 3].split(",")
    return points


def test_every_masked_and_read_only_path_of_docker(rc: RctrUser) -> None:
    masked = [p for p in MASKED if os.path.exists(p)]
    readonly = [p for p in READONLY if os.path.exists(p)]
    # A small VM kernel lacks some (kcore, sched_debug, sysrq-trigger): check what exists.
    assert len(masked) >= 3 and len(readonly) >= 3, (masked, readonly)
    script = r"""
cat /proc/self/mountinfo; echo ===
for p in $MASKED; do
  if [ -d $p ]; then echo "$p dir [$(ls -A $p | tr '\n' ' ')]"; (touch $p/x) 2>/dev/null && echo "$p writable"
  else echo "$p file $(stat -c %t:%T $p) $(wc -c < $p)"; fi
  (umount $p) 2>/dev/null && echo "$p unmounted"
done
echo h > /proc/sysrq-trigger 2>/dev/null && echo "sysrq written"
echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo "drop_caches written"
echo x > /proc/sys/kernel/hostname 2>/dev/null && echo "hostname written"
for f in /proc/irq/default_smp_affinity /proc/fs/nfsd/threads /proc/bus/pci/devices; do
  [ -e $f ] && (echo 1 > $f) 2>/dev/null && echo "$f written"
done
(umount /proc/sys) 2>/dev/null && echo "proc/sys unmounted"
(mount -o remount,rw /proc/sys) 2>/dev/null && echo "proc/sys remounted"
(mount -o remount,rw /sys) 2>/dev/null && echo "sys remounted"
echo done
"""
    out = ok(rc.rctr("run", "--rm", "-e", f"MASKED={' '.join(masked)}", IMAGE, "sh", "-c",
                     script)).stdout
    info, _, probes = out.partition("===\n")
    points = _mountinfo(info)
    for p in readonly:
        assert p in points and "ro" in points[p][:1], (p, points.get(p))
    for p in masked:
        assert p in points, p
        if os.path.isdir(p):
            assert f"{p} dir []" in probes, probes
        else:
            assert f"{p} file 1:3 0" in probes, probes  # /dev/null over it, read as empty
    assert "ro" in points["/sys"][:1]
    assert probes.strip().splitlines()[-1] == "done"
    leaked = [line for line in probes.splitlines() if line.split()[-1] in
              ("writable", "unmounted", "written", "remounted")]
    assert leaked == [], probes
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "x"


# ==============================================================================================
# From inside: capabilities and what container root cannot do
# ==============================================================================================

def test_capability_sets_are_dockers_and_only_in_the_user_namespace(rc: RctrUser) -> None:
    root_file = host_path(rc, "root-0644", "host root's file\n", 0o644)
    root_dir = rc.shell.base / "root-dir"
    root_dir.mkdir(mode=0o755)
    hostname = socket.gethostname()
    script = r"""
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status
(echo owned > /hostfile) 2>&1
(chown 0:0 /hostfile) 2>&1
(chmod 777 /hostfile) 2>&1
(touch /hostdir/new) 2>&1
(hostname evil) 2>&1
(mkdir -p /mnt/p /mnt/s; mount -t proc proc /mnt/p) 2>&1
(mount -t sysfs sysfs /mnt/s) 2>&1
(mount -t tmpfs tmpfs /etc) 2>&1
(mknod /tmp/blk b 254 0 && cat /tmp/blk | head -c1 | wc -c) 2>&1
cat /proc/self/uid_map
echo done
"""
    out = run(rc, "-v", f"{root_file}:/hostfile", "-v", f"{root_dir}:/hostdir", IMAGE,
              "sh", "-c", script)
    for refusal in ("can't create /hostfile: Permission denied",
                    "chown: /hostfile: Operation not permitted",
                    "chmod: /hostfile: Operation not permitted",
                    "touch: /hostdir/new: Permission denied",
                    "sethostname: Operation not permitted",
                    "mknod: /tmp/blk: Operation not permitted"):
        assert refusal in out, (refusal, out)
    assert out.count("mount: permission denied") == 3, out
    st = status(out)
    for field in ("CapPrm", "CapEff", "CapBnd"):
        assert int(st[field], 16) == DEFAULT_CAPS, (field, out)
    assert int(st["CapAmb"], 16) == 0 and int(st["CapInh"], 16) & ~DEFAULT_CAPS == 0
    assert root_file.read_text() == "host root's file\n"
    assert os.stat(root_file).st_mode & 0o777 == 0o644 and os.stat(root_file).st_uid == 0
    assert list(root_dir.iterdir()) == []
    assert socket.gethostname() == hostname
    lines = out.splitlines()
    assert lines[-1] == "done"
    # Container root is the user, never the host's root: uid 0 maps to the user's uid.
    uid_map = [line.split() for line in lines if line.split()[:1] == ["0"]]
    assert [int(f) for f in uid_map[0]][:2] == [0, rc.shell.uid], out


def test_privileged_is_only_the_users_power(rc: RctrUser) -> None:
    secret = host_path(rc, "root-0600", "host root's secret\n", 0o600)
    public = host_path(rc, "root-0644-priv", "host root's file\n", 0o644)
    root_dir = rc.shell.base / "root-dir-priv"
    root_dir.mkdir(mode=0o755)
    hostname = socket.gethostname()
    sysctls = {p: Path(p).read_text() for p in ("/proc/sys/kernel/core_pattern",
                                                  "/proc/sys/vm/swappiness")}
    script = r"""
grep -E '^(CapEff|Seccomp):' /proc/self/status
(cat /secret) 2>&1
(echo owned > /public) 2>&1
(touch /hostdir/new) 2>&1
(echo '|/tmp/evil' > /proc/sys/kernel/core_pattern) 2>&1
(echo 1 > /proc/sys/vm/swappiness) 2>&1
(head -c1 /dev/vda | wc -c) 2>&1
(mknod /tmp/vda b 254 0 && head -c1 /tmp/vda | wc -c) 2>&1
hostname inside-only && hostname
(insmod /no-such-module.ko) 2>&1
echo done
"""
    out = run(rc, "--privileged", "-v", f"{secret}:/secret", "-v", f"{public}:/public",
              "-v", f"{root_dir}:/hostdir", IMAGE, "sh", "-c", script)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    st = status(out)
    assert int(st["CapEff"], 16) == (1 << (last + 1)) - 1 and st["Seccomp"] == "0", out
    assert "host root's secret" not in out
    assert public.read_text() == "host root's file\n" and list(root_dir.iterdir()) == []
    assert {p: Path(p).read_text() for p in sysctls} == sysctls
    assert socket.gethostname() == hostname and "inside-only" in out  # its own UTS namespace
    assert out.splitlines()[-1] == "done"
    for refusal in ("can't open '/secret': Permission denied",
                    "can't create /public: Permission denied",
                    "touch: /hostdir/new: Permission denied",
                    "core_pattern: Permission denied", "swappiness: Permission denied",
                    "mknod: /tmp/vda: Operation not permitted"):
        assert refusal in out, (refusal, out)
    assert "vda" not in out.replace("/dev/vda: No such file", "").replace("/tmp/vda", ""), out
    # Loading a kernel module is checked against the host's namespace: refused even with
    # every capability of the container (init_module made directly: busybox's insmod
    # refuses before the syscall when the file is missing).
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "buf = ctypes.create_string_buffer(b'\\x7fELF' + bytes(60))\n"
            f"r = libc.syscall({_NR['init_module']}, buf, 64, b'')\n"
            "print(r, os.strerror(ctypes.get_errno()))\n")
    out = run(rc, "--privileged", *PYTHON_MOUNTS, IMAGE, "python3", "-c", code)
    # ENOSYS on a kernel built without modules (no /proc/modules), EPERM otherwise.
    refused = "Operation not permitted" if os.path.exists("/proc/modules") else "Function not"
    assert out.startswith(f"-1 {refused}"), out


# ==============================================================================================
# From inside: no-new-privileges and seccomp
# ==============================================================================================

def test_no_new_privileges_reaches_exec_and_docker_cli(rc: RctrUser) -> None:
    with detached(rc, "nnp", "--security-opt", "no-new-privileges:true", IMAGE, "sleep", "300"):
        r = ok(rc.rctr("exec", "nnp", "grep", "NoNewPrivs", "/proc/self/status"))
        assert status(r.stdout)["NoNewPrivs"] == "1"
        r = ok(rc.rctr("exec", "-u", "1000", "nnp", "grep", "NoNewPrivs", "/proc/self/status"))
        assert status(r.stdout)["NoNewPrivs"] == "1"
    with detached(rc, "pnp", IMAGE, "sleep", "300"):
        r = ok(rc.rctr("exec", "pnp", "grep", "NoNewPrivs", "/proc/self/status"))
        assert status(r.stdout)["NoNewPrivs"] == "0"
    r = ok(rc.docker("run", "--rm", "--security-opt", "no-new-privileges=true", IMAGE,
                     "grep", "NoNewPrivs", "/proc/self/status"))
    assert status(r.stdout)["NoNewPrivs"] == "1"


_NR_X86_64 = {"init_module": 175, "keyctl": 250, "add_key": 248, "request_key": 249,
              "unshare": 272, "clone": 56, "clone3": 435, "io_uring_setup": 425,
              "open_by_handle_at": 304, "kexec_load": 246, "syslog": 103, "setns": 308,
              "mount": 165, "pivot_root": 155, "userfaultfd": 323, "bpf": 321}
_NR_AARCH64 = {"init_module": 105, "keyctl": 219, "add_key": 217, "request_key": 218,
               "unshare": 97, "clone": 220, "clone3": 435, "io_uring_setup": 425,
               "open_by_handle_at": 265, "kexec_load": 104, "syslog": 116, "setns": 268,
               "mount": 40, "pivot_root": 41, "userfaultfd": 282, "bpf": 280}
_NR = _NR_AARCH64 if platform.machine() == "aarch64" else _NR_X86_64

# Each probe in a child of its own (a clone that succeeds must end at once); the child
# exits with the errno (0: the call succeeded).
_SECCOMP_PROBES = r"""
import ctypes, json, os, signal, sys
NR = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
SIGCHLD = int(signal.SIGCHLD)

def call(name, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(NR[name], *args)
    if r == 0 and name in ("clone", "clone3"):
        os._exit(0)  # the new process: leave at once
    if r > 0 and name in ("clone", "clone3"):
        os.waitpid(r, 0)
    return 0 if r >= 0 else ctypes.get_errno()

def clone3(flags):
    args = (ctypes.c_uint64 * 11)(flags, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0)
    return call("clone3", ctypes.cast(args, ctypes.c_void_p), ctypes.sizeof(args))

probes = {
    "keyctl": lambda: call("keyctl", 0, -3, 0),                  # KEYCTL_GET_KEYRING_ID
    "add_key": lambda: call("add_key", b"user", b"rctr", b"x", 1, -3),
    "request_key": lambda: call("request_key", b"user", b"rctr-none", 0, 0),
    "unshare_user": lambda: call("unshare", CLONE_NEWUSER),
    "unshare_net": lambda: call("unshare", CLONE_NEWNET),
    "clone_user": lambda: call("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone_ns": lambda: call("clone", CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0),
    "clone_plain": lambda: call("clone", SIGCHLD, 0, 0, 0, 0),
    "clone3_user": lambda: clone3(CLONE_NEWUSER),
    "io_uring_setup": lambda: call("io_uring_setup", 1, (ctypes.c_char * 120)()),
    "open_by_handle_at": lambda: call("open_by_handle_at", -100, (ctypes.c_char * 136)(), 0),
    "kexec_load": lambda: call("kexec_load", 0, 0, 0, 0),
    "syslog": lambda: call("syslog", 10, 0, 0),                  # SYSLOG_ACTION_SIZE_BUFFER
    "setns": lambda: call("setns", os.open("/proc/self/ns/net", os.O_RDONLY), 0),
    "mount": lambda: call("mount", b"none", b"/tmp", b"tmpfs", 0, 0),
    "pivot_root": lambda: call("pivot_root", b"/tmp", b"/tmp"),
    "userfaultfd": lambda: call("userfaultfd", 0),
    "bpf": lambda: call("bpf", 0, 0, 0),
}
out = {}
for name, probe in probes.items():
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(probe())
        except BaseException:
            os._exit(255)
    _, st = os.waitpid(pid, 0)
    out[name] = os.waitstatus_to_exitcode(st)
print(json.dumps(out))
"""

EPERM, ENOSYS = 1, 38


def _seccomp_probe(rc: RctrUser, *flags: str) -> dict[str, int]:
    out = run(rc, *flags, *PYTHON_MOUNTS, IMAGE, "python3", "-c", _SECCOMP_PROBES, json.dumps(_NR))
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.requires("libseccomp")
def test_default_seccomp_profile_refuses_syscalls_with_eperm(rc: RctrUser) -> None:
    confined = _seccomp_probe(rc)
    unconfined = _seccomp_probe(rc, "--security-opt", "seccomp=unconfined")
    # Refused with EPERM by the profile (Docker's errno for what it does not allow) ...
    for name in ("keyctl", "add_key", "request_key", "unshare_user", "unshare_net", "clone_user",
                 "clone_ns", "io_uring_setup", "open_by_handle_at", "kexec_load", "syslog",
                 "setns", "mount", "pivot_root", "userfaultfd", "bpf"):
        assert confined[name] == EPERM, (name, confined)
    # ... clone3 with ENOSYS, as Docker's: its flags are out of seccomp's sight, and libc
    # falls back to clone on ENOSYS only.
    assert confined["clone3_user"] == ENOSYS, confined
    assert confined["clone_plain"] == 0 and unconfined["clone_plain"] == 0
    # And the profile is what refused these: without it they succeed.  (A new network
    # or mount namespace still needs CAP_SYS_ADMIN, which the container lacks.)
    for name in ("keyctl", "add_key", "unshare_user", "clone_user", "clone3_user"):
        assert unconfined[name] == 0, (name, unconfined)
    assert unconfined["unshare_net"] == unconfined["clone_ns"] == EPERM, unconfined


@pytest.mark.requires("libseccomp")
def test_seccomp_follows_cap_sys_admin_as_dockers(rc: RctrUser) -> None:
    """With CAP_SYS_ADMIN added, Docker's profile allows the namespace calls again."""
    got = _seccomp_probe(rc, "--cap-add", "SYS_ADMIN")
    assert got["unshare_net"] == 0 and got["clone_ns"] == 0 and got["clone3_user"] == 0, got
    assert got["keyctl"] == EPERM and got["kexec_load"] == EPERM, got


def test_helpers_are_cleaned_up(rc: RctrUser) -> None:
    """Every container this module made is gone (the fixtures kill the rest)."""
    r = ok(rc.rctr("ps", "-aq"))
    assert r.stdout.strip() == "", r.stdout
