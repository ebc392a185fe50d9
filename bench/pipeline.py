"""Benchmark: the whole rctr pipeline (CLI -> rctrd -> shim -> runtime) against rootless Podman.

Run as root (it makes a dedicated unprivileged user and runs both tools as it):

    sudo /opt/rctr/venv/bin/python bench/pipeline.py [--runs 15] [--json out.json]

The user is ``rctr-bench`` (created with ``useradd -m`` if missing, given
subordinate uid/gid ranges that overlap nobody's), never ``rctr-test``, whose
processes the test suite kills at any time.  It gets its own
``XDG_RUNTIME_DIR``, ``XDG_DATA_HOME``, ``XDG_CONFIG_HOME``, ``HOME`` and
``TMPDIR`` in a temporary directory under /tmp; everything it runs is killed
(by pid) and the directory removed at the end, also on failure.

The image is the busybox test image (``tests/support/testimage.py``) as a
``docker save`` archive, loaded with ``rctr load`` and ``podman load``.
Podman runs with ``--runtime runc --cgroup-manager cgroupfs --events-backend
file --storage-driver overlay`` (the hosts are cgroup v1 hybrid without
systemd); both tools run containers with ``--network none``.

Each measurement runs in three blocks, back to back: Podman, rctr, Podman
again, so that drift on a noisy machine shows as a difference between the two
Podman blocks.  Reported: the median of each block, and rctr's ratio to the
median of both Podman blocks together (time and memory: below 1 is better).

1. ``run --rm IMG true``, wall time of the CLI (rctr's daemon already runs).
2. ``create``, ``start``, ``wait``, ``rm`` of ``true``, each timed apart.
3. 20 containers at once: 20 processes run ``run -d IMG sleep 60`` in
   parallel; the time until all have returned (each returns once its
   container runs; the count is checked with ``ps -q``), then ``rm -f`` of
   all 20 in one command.
4. Memory: proportional set size (PSS) of every process the tool keeps per
   container (the processes of the user that appear with the container and
   are not in the container's pid namespace: rctr's shim, Podman's conmon, a
   fuse-overlayfs or slirp4netns if any), with 1 and with 20 containers
   running; rctrd's own RSS/PSS with 0, 1 and 20 containers; the per-user
   processes (rctr's pause and daemon, Podman's catatonit).
5. Profile of rctr's path: ``python -c pass``, ``rctr --help``, ``rctr
   version``, ``python -m rctr.shim`` (usage error: interpreter + the shim's
   first imports), ``-X importtime`` summaries of the CLI, the shim, the
   shim's creator (the runtime) and the daemon; and the daemon's side of
   create/start/wait/remove, timed over its socket by a tiny HTTP client,
   with start split by the mtimes of the shim's files: ``shim.json``
   (daemon ready to launch the shim), ``shim.pid`` (shim interpreter up and
   imported), ``pid`` (runtime create done), ``process.json`` (shim ready),
   the response (runtime start and the daemon's bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
import testimage  # noqa: E402

PY = sys.executable
RCTR = os.path.join(os.path.dirname(PY), "rctr")  # replaced by the staged launcher in main
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
RCTR_IMAGE = f"{testimage.IMAGE_NAME}:{testimage.IMAGE_TAG}"
PODMAN_IMAGE = f"localhost/{RCTR_IMAGE}"
CMD_TIMEOUT = 120.0
PARALLEL_TIMEOUT = 300.0
SUBID_COUNT = 65536
BLOCKS = ("podman_1", "rctr", "podman_2")

# --------------------------------------------------------------------------
# the user
# --------------------------------------------------------------------------


def _subid_ranges(path: str) -> list[tuple[str, int, int]]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    out.append((parts[0], int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    return out


def ensure_user(name: str) -> pwd.struct_passwd:
    """The bench user, created if missing, with subordinate ids that overlap nobody's."""
    if name == "rctr-test":
        raise SystemExit("refusing rctr-test: the test suite kills its processes at any time")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True,
                       timeout=60)
        pw = pwd.getpwnam(name)
    for kind in ("uid", "gid"):
        path = f"/etc/sub{kind}"
        ranges = _subid_ranges(path)
        mine = [r for r in ranges if r[0] in (name, str(pw.pw_uid))]
        others = [r for r in ranges if r[0] not in (name, str(pw.pw_uid))]
        clash = [(m, o) for m in mine for o in others if m[1] < o[1] + o[2] and o[1] < m[1] + m[2]]
        if clash:
            raise SystemExit(f"{path}: {name}'s range {clash[0][0]} overlaps {clash[0][1]}; fix it by hand")
        if not mine:
            start = max([100000] + [s + c for _, s, c in ranges])
            subprocess.run(["usermod", f"--add-sub{kind}s", f"{start}-{start + SUBID_COUNT - 1}", name],
                           check=True, timeout=60)
    return pw


def user_processes(uid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["uids", "status"]):
        try:
            if p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, AttributeError):
            continue
    return out


def kill_user_processes(uid: int, timeout: float = 10.0) -> int:
    """SIGKILL every live process of the (dedicated) bench user, one pid at a time."""
    killed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = [p for p in user_processes(uid) if p.pid != os.getpid()]
        if not procs:
            break
        for p in procs:
            try:
                os.kill(p.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return killed


# --------------------------------------------------------------------------
# running as the user
# --------------------------------------------------------------------------


class Runner:
    def __init__(self, pw: pwd.struct_passwd, env: dict[str, str], cwd: str) -> None:
        self.pw, self.env, self.cwd = pw, env, cwd

    def _kw(self) -> dict[str, Any]:
        return {"user": self.pw.pw_uid, "group": self.pw.pw_gid, "extra_groups": [], "env": self.env,
                "cwd": self.cwd, "stdin": subprocess.DEVNULL}

    def run(self, args: list[str], timeout: float = CMD_TIMEOUT, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
        start = time.perf_counter()
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **self._kw())
        except subprocess.TimeoutExpired:
            raise SystemExit(f"timed out after {timeout:g}s: {' '.join(args)}") from None
        elapsed = time.perf_counter() - start
        if r.returncode not in ok:
            raise SystemExit(f"{' '.join(args[:6])} ... failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return elapsed, r.stdout

    def stderr_of(self, args: list[str], timeout: float = CMD_TIMEOUT) -> str:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **self._kw())
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(args[:6])} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return r.stderr

    def parallel(self, commands: list[list[str]], timeout: float) -> tuple[float, list[str], list[str]]:
        """Start every command at once: the time until the last one returned, the outputs of
        those that succeeded and the errors of those that failed."""
        start = time.perf_counter()
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **self._kw())
                 for c in commands]
        deadline = start + timeout
        outs, failed = [], []
        try:
            for p in procs:
                out, err = p.communicate(timeout=max(0.1, deadline - time.perf_counter()))
                if p.returncode == 0:
                    outs.append(out)
                else:
                    failed.append(err.strip()[-500:])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise SystemExit(f"parallel start timed out after {timeout:g}s") from None
        return time.perf_counter() - start, outs, failed

    def mkdir(self, path: Path, mode: int = 0o700) -> Path:
        path.mkdir(mode=mode)
        os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
        return path


def user_runner(pw: pwd.struct_passwd, base: Path, pythonpath: str) -> Runner:
    """A Runner for ``pw`` whose home, temporary and XDG directories are fresh ones in ``base``."""
    env = {"PATH": PATH, "PYTHONPATH": pythonpath, "LANG": "C.UTF-8", "HOME": str(base / "home"),
           "TMPDIR": str(base / "tmp"), "XDG_RUNTIME_DIR": str(base / "run"),
           "XDG_DATA_HOME": str(base / "data"), "XDG_CONFIG_HOME": str(base / "config")}
    run = Runner(pw, env, str(base / "home"))
    for d in ("home", "tmp", "run", "data", "config"):
        run.mkdir(base / d)
    return run


class Tool:
    def __init__(self, name: str, base: list[str], image: str, rm_force: list[str]) -> None:
        self.name, self.base, self.image, self.rm_force = name, base, image, rm_force

    def cmd(self, *args: str) -> list[str]:
        return [*self.base, *args]


def make_tools(podman_runtime: str) -> dict[str, Tool]:
    return {
        "rctr": Tool("rctr", [RCTR], RCTR_IMAGE, ["rm", "-f"]),
        "podman": Tool("podman", ["podman", "--runtime", podman_runtime, "--cgroup-manager", "cgroupfs",
                                  "--events-backend", "file", "--storage-driver", "overlay"],
                       PODMAN_IMAGE, ["rm", "-f", "-t", "0"]),
    }


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------


def _label(p: psutil.Process) -> str:
    try:
        cmdline = p.cmdline()
    except psutil.Error:
        return "?"
    if p.name() in ("rctr-shim", "rctr-zygote"):
        return p.name()
    if "rctr.shim" in cmdline:
        return "rctr-shim"
    if "rctr.daemon" in cmdline:
        return "rctrd"
    if cmdline:
        return os.path.basename(cmdline[0])
    return p.name()


def snapshot(uid: int) -> dict[int, dict[str, Any]]:
    """The user's live processes: label, PSS, RSS and whether they sit in another pid namespace."""
    host_ns = os.stat("/proc/self/ns/pid").st_ino
    out: dict[int, dict[str, Any]] = {}
    for p in user_processes(uid):
        try:
            ns = os.stat(f"/proc/{p.pid}/ns/pid").st_ino
            mem = p.memory_full_info()
            out[p.pid] = {"label": _label(p), "pss": mem.pss, "rss": mem.rss, "in_container": ns != host_ns}
        except (psutil.Error, OSError):
            continue
    return out


def per_container(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]], n: int) -> dict[str, Any]:
    """What appeared with n containers, outside their pid namespaces: the per-container helpers."""
    helpers: dict[str, dict[str, float]] = {}
    inside = 0
    for pid, info in after.items():
        if pid in before:
            continue
        if info["in_container"]:
            inside += info["pss"]
            continue
        h = helpers.setdefault(info["label"], {"count": 0, "pss": 0, "rss": 0})
        h["count"] += 1
        h["pss"] += info["pss"]
        h["rss"] += info["rss"]
    total = sum(h["pss"] for h in helpers.values())
    return {"containers": n, "helpers": helpers, "helper_pss_per_container": total / n,
            "container_processes_pss_per_container": inside / n}


def _named(snap: dict[int, dict[str, Any]], label: str) -> dict[str, int] | None:
    for info in snap.values():
        if info["label"] == label and not info["in_container"]:
            return {"pss": info["pss"], "rss": info["rss"]}
    return None


PER_USER = {"rctr": ("rctrd", "rctr-pause", "rctr-zygote"), "podman": ("catatonit",)}


def per_user(snap: dict[int, dict[str, Any]], tool: str) -> dict[str, dict[str, int]]:
    """The tool's processes that exist once per user, not per container."""
    out = {}
    for info in snap.values():
        if info["label"] in PER_USER[tool] and not info["in_container"]:
            out[info["label"]] = {"pss": info["pss"], "rss": info["rss"]}
    return out


# --------------------------------------------------------------------------
# measurements (one block of one tool)
# --------------------------------------------------------------------------


def m_run(run: Runner, tool: Tool, n: int) -> dict[str, list[float]]:
    times = [run.run(tool.cmd("run", "--rm", "--network", "none", tool.image, "true"))[0] for _ in range(n)]
    return {"run_rm_true": times}


def m_lifecycle(run: Runner, tool: Tool, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"create": [], "start": [], "wait": [], "rm": [], "sum": []}
    for _ in range(n):
        t_create, cid = run.run(tool.cmd("create", "--network", "none", tool.image, "true"))
        cid = cid.strip().splitlines()[-1]
        t_start, _ = run.run(tool.cmd("start", cid))
        t_wait, code = run.run(tool.cmd("wait", cid))
        if code.strip() != "0":
            raise SystemExit(f"{tool.name}: `true` exited with {code.strip()!r}")
        t_rm, _ = run.run(tool.cmd("rm", cid))
        for k, v in (("create", t_create), ("start", t_start), ("wait", t_wait), ("rm", t_rm)):
            out[k].append(v)
        out["sum"].append(t_create + t_start + t_wait + t_rm)
    return out


def _running(run: Runner, tool: Tool) -> int:
    return len(run.run(tool.cmd("ps", "-q"))[1].split())


def m_parallel(run: Runner, tool: Tool, rounds: int, k: int, uid: int) -> dict[str, Any]:
    out: dict[str, Any] = {"start_all": [], "rm_all": [], "failed": [], "memory_20": [], "memory_1": [],
                           "rctrd_0": [], "rctrd_1": [], "rctrd_20": [], "per_user": None}
    for _ in range(rounds):
        if _running(run, tool):
            raise SystemExit(f"{tool.name}: containers are still running before the parallel start")
        before = snapshot(uid)
        # one container, for memory with a single container
        _, one = run.run(tool.cmd("run", "-d", "--network", "none", tool.image, "sleep", "60"))
        time.sleep(0.3)
        snap1 = snapshot(uid)
        out["memory_1"].append(per_container(before, snap1, 1))
        run.run(tool.cmd(*tool.rm_force, one.strip().splitlines()[-1]))
        time.sleep(0.3)
        before = snapshot(uid)
        cmd = tool.cmd("run", "-d", "--network", "none", tool.image, "sleep", "60")
        elapsed, outs, failed = run.parallel([cmd] * k, PARALLEL_TIMEOUT)
        # A failed start is reported, not fatal: the figures are for the ones that ran.
        out["failed"] += failed
        running = _running(run, tool)
        if running != len(outs) or not outs:
            raise SystemExit(f"{tool.name}: {running} containers run after {len(outs)} of {k} "
                             f"parallel starts succeeded ({failed[:1]})")
        out["start_all"].append(elapsed)
        time.sleep(0.3)
        snap20 = snapshot(uid)
        out["memory_20"].append(per_container(before, snap20, len(outs)))
        for key, snap in (("rctrd_0", before), ("rctrd_1", snap1), ("rctrd_20", snap20)):
            d = _named(snap, "rctrd")
            if d:
                out[key].append(d)
        out["per_user"] = per_user(before, tool.name)
        ids = [o.strip().splitlines()[-1] for o in outs]
        t_rm, _ = run.run(tool.cmd(*tool.rm_force, *ids), timeout=PARALLEL_TIMEOUT)
        out["rm_all"].append(t_rm)
    return out


# --------------------------------------------------------------------------
# rctr's profile
# --------------------------------------------------------------------------

_SHIM_IMPORTS = ("rctr.shim._lifecycle", "rctr.shim._attach_server", "rctr.shim._request", "rctr.shim._create",
                 "rctr.shim._exit", "rctr.shim._io", "rctr.shim._serve", "rctr.shim._stdio",
                 "rctr.core.linux")

_API = r"""
import http.client, json, os, socket, sys, time
sock_path, image, n, shims = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

class Conn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=120)
    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(sock_path)
        self.sock = s

def call(method, path, body=None):
    c = Conn()
    data = None if body is None else json.dumps(body).encode()
    t0 = time.time()
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    payload = r.read()
    t1 = time.time()
    c.close()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {payload[:300]!r}")
    return t0, t1, payload

FILES = ("shim.json", "shim.pid", "pid", "process.json", "exit.json")
out = []
for i in range(n):
    c0, c1, p = call("POST", "/containers/create",
                     {"Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})
    cid = json.loads(p)["Id"]
    s0, s1, _ = call("POST", f"/containers/{cid}/start")
    w0, w1, wp = call("POST", f"/containers/{cid}/wait")
    d = os.path.join(shims, cid[:32])
    mt = {}
    for name in FILES:
        try:
            mt[name] = os.stat(os.path.join(d, name)).st_mtime_ns / 1e9
        except OSError:
            mt[name] = None
    r0, r1, _ = call("DELETE", f"/containers/{cid}")
    out.append({"create": c1 - c0, "start": s1 - s0, "wait": w1 - w0, "remove": r1 - r0,
                "start_sent": s0, "start_done": s1, "wait_done": w1, "mtimes": mt,
                "exit": json.loads(wp).get("StatusCode")})
print(json.dumps(out))
"""


def parse_importtime(stderr: str) -> dict[str, Any]:
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        field = name[1:]
        level = (len(field) - len(field.lstrip(" "))) // 2
        rows.append((int(self_us), int(cum_us), level, field.strip()))
    total = sum(cum for _, cum, level, _ in rows if level == 0)
    by_root: dict[str, int] = {}
    for self_us, _, _, name in rows:
        root = name.split(".")[0]
        by_root[root] = by_root.get(root, 0) + self_us
    rctr_pkgs: dict[str, int] = {}
    for self_us, _, _, name in rows:
        if name.startswith("rctr."):
            pkg = ".".join(name.split(".")[:2])
            rctr_pkgs[pkg] = rctr_pkgs.get(pkg, 0) + self_us
    return {"total_ms": total / 1000, "modules": len(rows),
            "top_roots_ms": {k: v / 1000 for k, v in sorted(by_root.items(), key=lambda kv: -kv[1])[:6]},
            "rctr_packages_ms": {k: v / 1000 for k, v in sorted(rctr_pkgs.items(), key=lambda kv: -kv[1])},
            "top_level_ms": {name: cum / 1000 for _, cum, level, name in
                             sorted(rows, key=lambda r: -r[1]) if level == 0}}


def _importtime(run: Runner, args: list[str], reps: int = 5) -> dict[str, Any]:
    """The run with the median total of ``reps`` runs of ``python -X importtime ARGS``."""
    samples = [parse_importtime(run.stderr_of([PY, "-X", "importtime", *args])) for _ in range(reps)]
    samples.sort(key=lambda s: s["total_ms"])
    best = samples[len(samples) // 2]
    best["top_level_ms"] = dict(list(best["top_level_ms"].items())[:6])
    return best


def profile(run: Runner, n: int, rundir: Path) -> dict[str, Any]:
    times: dict[str, list[float]] = {"python -c pass": [], "rctr --help": [], "rctr version": [],
                                     "python -m rctr.shim (usage)": [], "python -c 'import shim modules'": []}
    shim_import = "import " + ", ".join(_SHIM_IMPORTS)
    for _ in range(n):
        times["python -c pass"].append(run.run([PY, "-c", "pass"])[0])
        times["rctr --help"].append(run.run([RCTR, "--help"])[0])
        times["rctr version"].append(run.run([RCTR, "version"])[0])
        times["python -m rctr.shim (usage)"].append(run.run([PY, "-m", "rctr.shim"], ok=(2,))[0])
        times["python -c 'import shim modules'"].append(run.run([PY, "-c", shim_import])[0])
    imports = {
        "cli (rctr version)": _importtime(run, [RCTR, "version"]),
        "shim (before shim.pid)": _importtime(run, ["-c", shim_import]),
        "creator (rctr.rootless)": _importtime(run, ["-c", "import rctr.rootless"]),
        "daemon (rctr.daemon + Daemon)": _importtime(run, ["-c", "import rctr.daemon._main, rctr.storage, "
                                                           "rctr.daemon.containers, rctr.daemon._api_containers, "
                                                           "rctr.daemon._api_images, rctr.daemon._api_exec"]),
    }
    _, out = run.run([PY, "-c", _API, str(rundir / "rctr" / "rctr.sock"), RCTR_IMAGE, str(n),
                      str(rundir / "rctr" / "s")], timeout=CMD_TIMEOUT * max(1, n))
    api = json.loads(out)
    phases: dict[str, list[float]] = {k: [] for k in (
        "daemon create", "daemon start", "  prepare (mount, files, spec)", "  shim start-up (forked by the zygote)",
        "  runtime create (fork, import, namespaces, mounts)", "  shim reports ready",
        "  runtime start + record + event", "wait (exit of `true` reported)", "daemon remove")}
    for r in api:
        if r["exit"] != 0:
            raise SystemExit(f"API run: `true` exited with {r['exit']}")
        mt = r["mtimes"]
        phases["daemon create"].append(r["create"])
        phases["daemon start"].append(r["start"])
        phases["wait (exit of `true` reported)"].append(r["wait"])
        phases["daemon remove"].append(r["remove"])
        if all(mt.get(k) for k in ("shim.json", "shim.pid", "pid", "process.json")):
            phases["  prepare (mount, files, spec)"].append(mt["shim.json"] - r["start_sent"])
            phases["  shim start-up (forked by the zygote)"].append(mt["shim.pid"] - mt["shim.json"])
            phases["  runtime create (fork, import, namespaces, mounts)"].append(mt["pid"] - mt["shim.pid"])
            phases["  shim reports ready"].append(mt["process.json"] - mt["pid"])
            phases["  runtime start + record + event"].append(r["start_done"] - mt["process.json"])
    return {"times": times, "imports": imports, "api": phases, "api_raw": api}


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


def _med(v: list[float]) -> float | None:
    return statistics.median(v) if v else None


SUBPACKAGES = ("core", "rootless", "cli", "storage", "netstack", "shim", "daemon")


def stage_code(mode: str, dest: Path) -> dict[str, str]:
    """A frozen copy of rctr in ``dest/py/rctr`` and a launcher ``dest/rctr``, compiled by root.

    Other sessions commit to the checkout and reinstall the venv while this runs;
    the user's processes (CLI, daemon, shim) import this copy via PYTHONPATH.
    """
    pkg = dest / "py" / "rctr"
    pkg.mkdir(parents=True)
    if mode == "installed":
        import importlib.util

        spec = importlib.util.find_spec("rctr.core")
        if spec is None or spec.origin is None:
            raise SystemExit("rctr is not installed in this interpreter's environment")
        site = Path(spec.origin).parents[1]
        for sub in SUBPACKAGES:
            shutil.copytree(site / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__"))
        what = f"installed ({site})"
    elif mode == "checkout":
        for sub in SUBPACKAGES:
            shutil.copytree(REPO_ROOT / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__"))
        what = f"working tree of {REPO_ROOT}"
    else:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=30).stdout.strip()
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit, *SUBPACKAGES],
                                 capture_output=True, check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(pkg)], input=archive, check=True, timeout=60)
        what = f"HEAD {commit[:12]} of {REPO_ROOT}"
    # root compiles: the user cannot write __pycache__ here, and must not pay compilation
    subprocess.run([PY, "-m", "compileall", "-q", str(dest / "py")], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    launcher = dest / "rctr"
    launcher.write_text(f"#!{PY}\nimport sys\nfrom rctr.cli.main import main\nsys.exit(main())\n")
    for dirpath, _, filenames in os.walk(dest / "py"):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    os.chmod(launcher, 0o755)
    return {"code": what, "pythonpath": str(dest / "py"), "rctr": str(launcher)}


def three_blocks(fn: Callable[[Tool], dict[str, Any]], tools: dict[str, Tool], log: Callable[[str], None],
                 what: str) -> dict[str, dict[str, Any]]:
    out = {}
    for block in BLOCKS:
        tool = tools[block.split("_")[0]]
        t0 = time.perf_counter()
        out[block] = fn(tool)
        log(f"{what}: {block} done in {time.perf_counter() - t0:.1f}s")
    return out


def summarise(blocks: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float | None]]:
    """Per metric: the median of each block, of both Podman blocks, and rctr/podman."""
    out = {}
    for metric in blocks["rctr"]:
        p_all = blocks["podman_1"][metric] + blocks["podman_2"][metric]
        row: dict[str, float | None] = {b: _med(blocks[b][metric]) for b in BLOCKS}
        row["podman"] = _med(p_all)
        row["ratio"] = row["rctr"] / row["podman"] if row["rctr"] is not None and row["podman"] else None
        out[metric] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per block for steps 1, 2 and 5")
    ap.add_argument("--parallel", type=int, default=20, help="containers started at once (step 3)")
    ap.add_argument("--parallel-rounds", type=int, default=3, help="rounds per block of step 3/4")
    ap.add_argument("--user", default="rctr-bench")
    ap.add_argument("--podman-runtime", default="runc")
    ap.add_argument("--code", choices=("head", "checkout", "installed"), default="head",
                    help="the rctr measured: a frozen copy of the checkout's HEAD (default), of its "
                         "working tree, or of the installed package")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: run,lifecycle,parallel,profile")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the tools run as --user)")
    if not shutil.which("podman"):
        raise SystemExit("podman is not installed (apt install podman)")
    skip = set(filter(None, opts.skip.split(",")))

    def log(msg: str) -> None:
        sys.stderr.write(f"pipeline: {msg}\n")
        sys.stderr.flush()

    pw = ensure_user(opts.user)
    kill_user_processes(pw.pw_uid)
    # Short: podman refuses a runroot over 50 characters, a shim socket path has 108 bytes at most.
    base = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
    os.chmod(base, 0o755)
    result: dict[str, Any] = {"runs": opts.runs, "parallel_n": opts.parallel, "user": opts.user,
                              "podman_runtime": opts.podman_runtime}
    t_begin = time.perf_counter()
    run: Runner | None = None
    try:
        global RCTR
        staged = stage_code(opts.code, base / "code")
        RCTR = staged["rctr"]
        result["code"] = staged["code"]
        run = user_runner(pw, base, staged["pythonpath"])
        archive = base / "image.tar"
        testimage.build_docker_archive(str(archive))
        os.chmod(archive, 0o644)
        tools = make_tools(opts.podman_runtime)

        # the daemon's cold start (autostarted by the CLI), then the images
        t_cold, _ = run.run([RCTR, "version"])
        t_warm, _ = run.run([RCTR, "version"])
        result["rctr_daemon_autostart_s"] = t_cold - t_warm
        run.run([RCTR, "load", "-q", "-i", str(archive)], timeout=300)
        run.run(tools["podman"].cmd("load", "-q", "-i", str(archive)), timeout=300)
        result["versions"] = {"podman": run.run(["podman", "--version"])[1].strip(),
                              opts.podman_runtime: run.run([opts.podman_runtime, "--version"])[1].splitlines()[0]}
        log(f"user {pw.pw_name} (uid {pw.pw_uid}), dir {base}; daemon autostart "
            f"{result['rctr_daemon_autostart_s'] * 1000:.0f} ms; warming up")
        for tool in tools.values():  # warm-up: podman's pause process, page cache, imports
            m_run(run, tool, 3)
            m_lifecycle(run, tool, 2)

        if "run" not in skip:
            b = three_blocks(lambda t: m_run(run, t, opts.runs), tools, log, "run --rm")
            result["run"] = {"blocks": b, "summary": summarise(b)}
        if "lifecycle" not in skip:
            b = three_blocks(lambda t: m_lifecycle(run, t, opts.runs), tools, log, "lifecycle")
            result["lifecycle"] = {"blocks": b, "summary": summarise(b)}
        if "parallel" not in skip:
            b = three_blocks(lambda t: m_parallel(run, t, opts.parallel_rounds, opts.parallel, pw.pw_uid),
                             tools, log, "parallel")
            times = {blk: {"start_all": b[blk]["start_all"], "rm_all": b[blk]["rm_all"]} for blk in BLOCKS}
            mem = {blk: {"helper_pss_1": [m["helper_pss_per_container"] for m in b[blk]["memory_1"]],
                         "helper_pss_20": [m["helper_pss_per_container"] for m in b[blk]["memory_20"]]}
                   for blk in BLOCKS}
            result["parallel"] = {"blocks": b, "summary": summarise(times)}
            result["memory"] = {"summary": summarise(mem),
                                "helpers_20": {blk: b[blk]["memory_20"][-1]["helpers"] for blk in BLOCKS},
                                "helpers_1": {blk: b[blk]["memory_1"][-1]["helpers"] for blk in BLOCKS},
                                "rctrd": {k: {m: _med([d[m] for d in b["rctr"][k]]) for m in ("pss", "rss")}
                                          for k in ("rctrd_0", "rctrd_1", "rctrd_20") if b["rctr"][k]},
                                "per_user": {"rctr": b["rctr"]["per_user"], "podman": b["podman_1"]["per_user"]}}
        if "profile" not in skip:
            log("profile")
            result["profile"] = profile(run, opts.runs, base / "run")
    finally:
        for tool in make_tools(opts.podman_runtime).values() if run is not None else ():
            try:
                if tool.name == "rctr":
                    ids = run.run(tool.cmd("ps", "-aq"), timeout=30)[1].split()
                    if ids:
                        run.run(tool.cmd("rm", "-f", *ids), timeout=60)
                else:
                    run.run(tool.cmd("rm", "-f", "-t", "0", "-a"), timeout=60)
            except (SystemExit, Exception):  # noqa: BLE001 - best effort before the kill
                pass
        kill_user_processes(pw.pw_uid)
        time.sleep(0.2)
        shutil.rmtree(base, ignore_errors=True)
    result["elapsed_s"] = time.perf_counter() - t_begin
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1)
    _print(result)


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------


def _f(v: float | None, scale: float, spec: str) -> str:
    width = spec.split(".")[0]
    return format("-", f">{width}") if v is None else format(v * scale, spec)


def _rows(title: str, summary: dict[str, dict[str, float | None]], names: dict[str, str], scale: float,
          unit: str) -> None:
    print(f"{title}")
    print(f"  {'':34s} {'podman#1':>9s} {'rctr':>9s} {'podman#2':>9s} {'podman':>9s} {'rctr/pod':>8s}  ({unit})")
    for metric, label in names.items():
        row = summary.get(metric)
        if not row:
            continue
        print(f"  {label:34s} {_f(row['podman_1'], scale, '9.1f')} {_f(row['rctr'], scale, '9.1f')} "
              f"{_f(row['podman_2'], scale, '9.1f')} {_f(row['podman'], scale, '9.1f')} "
              f"{_f(row['ratio'], 1, '8.2f')}")


def _print(r: dict[str, Any]) -> None:
    n = r["runs"]
    print(f"rctr pipeline vs rootless Podman ({r['versions']['podman']}, --runtime {r['podman_runtime']}), "
          f"user {r['user']}, blocks podman/rctr/podman; medians; ratio to both Podman blocks")
    print(f"  rctr code: {r['code']}")
    print(f"  rctrd autostart (first `rctr version` minus a second): {r['rctr_daemon_autostart_s'] * 1000:.0f} ms")
    if "run" in r:
        _rows(f"1. run --rm IMG true, {n} runs a block", r["run"]["summary"],
              {"run_rm_true": "run --rm true"}, 1000, "ms")
    if "lifecycle" in r:
        _rows(f"2. create / start / wait / rm of `true`, {n} runs a block", r["lifecycle"]["summary"],
              {"create": "create", "start": "start", "wait": "wait", "rm": "rm", "sum": "sum"}, 1000, "ms")
    if "parallel" in r:
        k = r["parallel_n"]
        _rows(f"3. {k} containers started at once (run -d ... sleep 60 from {k} processes), then rm -f",
              r["parallel"]["summary"], {"start_all": f"all {k} running", "rm_all": f"rm -f of {k}"}, 1000, "ms")
        for blk in BLOCKS:
            b = r["parallel"]["blocks"][blk]
            if b["failed"]:
                print(f"  {blk}: {len(b['failed'])} of {k * len(b['start_all'])} starts FAILED, "
                      f"e.g. {b['failed'][0]!r}")
    if "memory" in r:
        m = r["memory"]
        _rows("4. memory kept per running container (PSS of the helpers outside the container)",
              m["summary"], {"helper_pss_1": "per container, 1 running", "helper_pss_20": f"per container, {k} running"},
              1 / 1024, "KiB")
        for blk in ("rctr", "podman_1"):
            helpers = ", ".join(f"{name} x{h['count']} PSS {h['pss'] / h['count'] / 1024:.0f} KiB "
                                f"RSS {h['rss'] / h['count'] / 1024:.0f} KiB"
                                for name, h in m["helpers_20"][blk].items())
            print(f"  {blk.split('_')[0]} helpers with {k} running: {helpers or 'none'}")
        for key, label in (("rctrd_0", "0"), ("rctrd_1", "1"), ("rctrd_20", str(k))):
            d = m["rctrd"].get(key)
            if d:
                print(f"  rctrd with {label:>2s} container(s): PSS {d['pss'] / 1024:6.0f} KiB  RSS {d['rss'] / 1024:6.0f} KiB")
        for tool, procs in m["per_user"].items():
            for name, d in (procs or {}).items():
                print(f"  per user ({tool}): {name} PSS {d['pss'] / 1024:.0f} KiB RSS {d['rss'] / 1024:.0f} KiB")
    if "profile" in r:
        p = r["profile"]
        print(f"5. rctr's path, medians of {n}")
        for name, v in p["times"].items():
            print(f"  {name:52s} {_f(_med(v), 1000, '7.1f')} ms")
        print("  daemon side over the API socket (start split by the shim's file mtimes):")
        for name, v in p["api"].items():
            print(f"  {name:52s} {_f(_med(v), 1000, '7.1f')} ms")
        print("  -X importtime (median of 5): total, modules; heaviest roots by self time")
        for name, s in p["imports"].items():
            roots = ", ".join(f"{k} {v:.0f}" for k, v in list(s["top_roots_ms"].items())[:5])
            print(f"  {name:32s} {s['total_ms']:6.1f} ms {s['modules']:4d} mods  ({roots} ms)")
    print(f"elapsed {r['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
