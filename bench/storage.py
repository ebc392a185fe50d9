"""Benchmark: image pull and unpack against podman and skopeo; file I/O per storage driver.

Run as root (it builds the image, starts a local registry on 127.0.0.1 and
runs every tool as the unprivileged test user, rootless):

    sudo /opt/rctr/venv/bin/python bench/storage.py [--rounds 3] [--json]

Needs ``podman``, ``skopeo``, ``fuse-overlayfs`` and ``docker-registry``
(Debian packages of the same names); a tool that is missing is skipped.

1. Pull.  A deterministic image of 5 gzip layers (~200 MB unpacked: the
   busybox test image's base, many small files, a few big incompressible
   files, medium mixed files, a few big compressible files) is pushed to a
   throw-away ``docker-registry`` on 127.0.0.1.  Each round, from empty stores,
   tools interleaved (the order rotates each round):

   * rctr: ``Store.pull`` then ``store.overlay.prepare`` (pull + unpack) in
     one ``python -c``; "pull" is the process's wall time minus the unpack;
   * podman: ``podman pull`` into a throw-away ``--root`` (overlay driver):
     pull + unpack;
   * skopeo: ``skopeo copy docker://... oci:DIR`` (pull only, no unpack).

   The registry's blobs are in the page cache for every tool alike.

2. File I/O in a mounted rootfs, for the vfs, overlay, fuse-overlayfs and fusepy
   drivers and a plain host directory on the same filesystem: inside the
   user's namespace (``run_in_userns``), mount the container's RW layer
   (``store.rw.create`` + ``perform_mount``); as root ``sync`` and drop the
   page cache, create 5,000 files of 4 KiB (no
   fsync), write a 256 MB file (fsync'd, not part of any figure but the write
   rate), unmount; as root ``sync`` and drop the page cache; mount again and
   read the big file sequentially (cold), then once more (warm).

Prints medians over the rounds and the ratios rctr/podman, rctr/skopeo
(time: below 1 is faster) and driver/host (throughput: above 0.9 is the aim).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
import registry as test_registry  # noqa: E402
import testimage  # noqa: E402

PY = sys.executable
REPO, TAG = "bench/big", "latest"
SEED = 20260101
DRIVERS = ("vfs", "overlay", "fuse-overlayfs", "fusepy")
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
PULL_TIMEOUT = 900
IO_TIMEOUT = 900

# --------------------------------------------------------------------------
# the image
# --------------------------------------------------------------------------

# random bytes mapped onto 16 letters: ~4 bits of entropy a byte, gzip halves it
_TEXT = bytes.maketrans(bytes(range(256)), bytes(b"etaoinshrdlu \n.,"[i % 16] for i in range(256)))


def _content(rng: random.Random, n: int, kind: str) -> bytes:
    if kind == "random":
        return rng.randbytes(n)
    if kind == "text":
        return rng.randbytes(n).translate(_TEXT)
    if kind == "sparse":  # mostly zeros with a random block every 64 KiB
        out = bytearray(n)
        for off in range(0, n, 65536):
            block = rng.randbytes(min(4096, n - off))
            out[off:off + len(block)] = block
        return bytes(out)
    half = n // 2  # "mixed"
    return rng.randbytes(half) + rng.randbytes(n - half).translate(_TEXT)


def _entries(rng: random.Random, layer: int) -> list[testimage.Entry]:
    f, d = testimage._file, testimage._dir
    MiB = 1 << 20
    if layer == 2:  # many small files: 10,000 of 1-8 KiB in 100 directories
        out = [d("data"), d("data/small")]
        for i in range(100):
            out.append(d(f"data/small/d{i:03d}"))
            for j in range(100):
                kind = ("text", "random", "mixed")[(i + j) % 3]
                uid = 1000 if j % 10 == 0 else 0
                out.append(f(f"data/small/d{i:03d}/f{j:03d}", _content(rng, rng.randint(1024, 8192), kind),
                             uid=uid, gid=uid))
        return out
    if layer == 3:  # a few big incompressible files
        return [d("data"), d("data/big")] + \
            [f(f"data/big/blob{i}.bin", _content(rng, 12 * MiB, "random")) for i in range(4)] + \
            [f("data/big/README", _content(rng, 2 * MiB, "text"))]
    if layer == 4:  # medium mixed files: 200 of 256 KiB
        return [d("data"), d("data/medium")] + \
            [f(f"data/medium/m{i:03d}", _content(rng, 256 * 1024, ("mixed", "text", "random")[i % 3]))
             for i in range(200)]
    # layer 5: a few big compressible files
    return [d("data"), d("data/logs"),
            f("data/logs/a.log", _content(rng, 20 * MiB, "text")),
            f("data/logs/b.log", _content(rng, 20 * MiB, "text")),
            f("data/logs/sparse.img", _content(rng, 10 * MiB, "sparse"))]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_layout(out: str) -> dict:  # type: ignore[type-arg]
    """Write the bench image as an OCI layout in ``out``; the same bytes on every run."""
    rng = random.Random(SEED)
    tars = [testimage._layer_tar(testimage._layer1(testimage.BUSYBOX))]
    tars += [testimage._layer_tar(_entries(rng, n)) for n in (2, 3, 4, 5)]
    blobs = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
    diff_ids = [_sha(t) for t in tars]
    config = testimage._json_bytes({
        "created": testimage.CREATED, "architecture": testimage._host_arch(), "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": testimage.CREATED, "created_by": f"bench layer {i + 1}"}
                    for i in range(len(tars))],
    })
    blob_dir = os.path.join(out, "blobs", "sha256")
    os.makedirs(blob_dir)

    def write(data: bytes) -> dict:  # type: ignore[type-arg]
        digest = _sha(data)
        with open(os.path.join(blob_dir, digest[7:]), "wb") as fh:
            fh.write(data)
        return {"digest": digest, "size": len(data)}

    manifest = testimage._json_bytes({
        "schemaVersion": 2, "mediaType": testimage.MT_MANIFEST,
        "config": {"mediaType": testimage.MT_CONFIG, **write(config)},
        "layers": [{"mediaType": testimage.MT_LAYER_GZIP, **write(b)} for b in blobs],
    })
    index = {"schemaVersion": 2, "mediaType": testimage.MT_INDEX,
             "manifests": [{"mediaType": testimage.MT_MANIFEST, **write(manifest),
                            "annotations": {testimage.REF_NAME: TAG}}]}
    with open(os.path.join(out, "index.json"), "wb") as fh:
        fh.write(testimage._json_bytes(index))
    with open(os.path.join(out, "oci-layout"), "wb") as fh:
        fh.write(b'{"imageLayoutVersion":"1.0.0"}')
    for dirpath, _, filenames in os.walk(out):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return {"unpacked_bytes": sum(len(t) for t in tars), "gzip_bytes": sum(len(b) for b in blobs),
            "layers": len(tars)}


# --------------------------------------------------------------------------
# running as the user
# --------------------------------------------------------------------------


class Runner:
    def __init__(self, pw: pwd.struct_passwd, env: dict[str, str], cwd: str) -> None:
        self.pw, self.env, self.cwd = pw, env, cwd

    def run(self, args: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, str]:
        start = time.perf_counter()
        try:
            r = subprocess.run(args, user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[],
                               env={**self.env, **(env or {})}, cwd=self.cwd, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{args[0]} timed out after {timeout}s: {' '.join(args)}") from None
        elapsed = time.perf_counter() - start
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(args[:3])} failed ({r.returncode}): {r.stderr.strip()[-3000:]}")
        return elapsed, r.stdout

    def mkdir(self, path: Path, mode: int = 0o755) -> Path:
        path.mkdir(mode=mode, parents=True)
        os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
        return path


def _rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# 1. pull
# --------------------------------------------------------------------------

_PULL = """
import json, sys, time
t0 = time.perf_counter()
from rctr.storage import Store
store = Store(sys.argv[1])
t1 = time.perf_counter()
image = store.pull(sys.argv[2])
t2 = time.perf_counter()
store.overlay.prepare(image)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "pull": t2 - t1, "unpack": t3 - t2}))
"""


def pull_round(run: Runner, tools: list[str], ref: str, work: Path, rnd: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
    for tool in order:
        d = run.mkdir(work / f"{tool}-{rnd}", 0o700)
        tmp = run.mkdir(d / "tmp", 0o700)
        extra: list[Path] = []
        try:
            if tool == "rctr":
                wall, stdout = run.run([PY, "-c", _PULL, str(d / "store"), ref], PULL_TIMEOUT)
                inner = json.loads(stdout)
                out[tool] = {"total": wall, "pull": wall - inner["unpack"], "unpack": inner["unpack"],
                             "pull_inner": inner["pull"]}
            elif tool == "podman":
                # podman refuses a runroot longer than 50 characters: a short one under /tmp
                runroot = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
                os.chown(runroot, run.pw.pw_uid, run.pw.pw_gid)
                extra.append(runroot)
                wall, _ = run.run(["podman", "--root", str(d / "root"), "--runroot", str(runroot),
                                   "--tmpdir", str(d / "libpod-tmp"), "--storage-driver", "overlay",
                                   "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                                   "pull", "-q", "--tls-verify=false", ref], PULL_TIMEOUT,
                                  env={"TMPDIR": str(tmp)})
                out[tool] = {"total": wall}
            else:  # skopeo
                wall, _ = run.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                                   f"oci:{d / 'oci'}:{TAG}"], PULL_TIMEOUT, env={"TMPDIR": str(tmp)})
                out[tool] = {"pull": wall}
        finally:
            for path in (d, *extra):
                _rm(path)
    return out


# --------------------------------------------------------------------------
# 2. file I/O per driver
# --------------------------------------------------------------------------

_SETUP = """
import json, sys
from rctr.storage import Store
store = Store(sys.argv[1])
store.load(sys.argv[2], name="bench/big:latest")
image = store.images.get("bench/big:latest")
print(json.dumps({d: store.rw.create("bench-" + d, image, d) for d in sys.argv[3:]}))
"""

_IO = """
import json, os, sys, time
from rctr.core import linux
from rctr.core.userns import run_in_userns
from rctr.storage import perform_mount
phase, mount, root, sub = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
nfiles, fsize, big_mb = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
MB = 1 << 20

def write():
    d = os.path.join(root, sub)
    os.mkdir(d)
    data = os.urandom(fsize)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    t0 = time.perf_counter()
    for i in range(nfiles):
        fd = os.open(os.path.join(d, "f%05d" % i), flags, 0o644)
        os.write(fd, data)
        os.close(fd)
    t1 = time.perf_counter()
    chunk = os.urandom(MB)
    fd = os.open(os.path.join(root, sub + ".big"), flags, 0o644)
    try:
        for _ in range(big_mb):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    t2 = time.perf_counter()
    return {"create_s": t1 - t0, "write_s": t2 - t1}

def read_once(path):
    buf = bytearray(MB)
    n = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while k := f.readinto(buf):
            n += k
    return time.perf_counter() - t0, n

def read():
    path = os.path.join(root, sub + ".big")
    cold, n = read_once(path)
    warm, _ = read_once(path)
    return {"cold_s": cold, "warm_s": warm, "bytes": n}

def work():
    if mount:
        perform_mount(mount)
    try:
        return write() if phase == "write" else read()
    finally:
        if mount:
            linux.umount(root, linux.MNT_DETACH)

print(json.dumps(run_in_userns(work)))
"""


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True, timeout=300)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def io_round(run: Runner, targets: dict[str, dict | None], host_dir: Path, rnd: int, nfiles: int,  # type: ignore[type-arg]
             fsize: int, big_mb: int) -> tuple[dict[str, dict[str, float]], bool]:
    out: dict[str, dict[str, float]] = {}
    cold = True
    names = list(targets)
    order = names[rnd % len(names):] + names[:rnd % len(names)]
    for name in order:
        mount = targets[name]
        root = mount["destination"] if mount else str(host_dir)
        args = [json.dumps(mount), root, f"bench-r{rnd}", str(nfiles), str(fsize), str(big_mb)]
        # Every write phase starts from an empty page cache too: on this kind of VM the
        # creation rate fell 15x (50k/s to 3.5k/s, all of it kernel time) when the cache
        # held the previous phase's pages, so whichever target came second lost.
        cold = drop_caches() and cold
        _, w = run.run([PY, "-c", _IO, "write", *args], IO_TIMEOUT)
        cold = drop_caches() and cold
        _, r = run.run([PY, "-c", _IO, "read", *args], IO_TIMEOUT)
        wr, rd = json.loads(w), json.loads(r)
        mb = rd["bytes"] / 1e6
        out[name] = {"files_per_s": nfiles / wr["create_s"], "write_mb_s": big_mb * (1 << 20) / 1e6 / wr["write_s"],
                     "cold_read_mb_s": mb / rd["cold_s"], "warm_read_mb_s": mb / rd["warm_s"]}
    return out, cold


# --------------------------------------------------------------------------


def _median(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rounds:
        for tool, figs in r.items():
            for k, v in figs.items():
                out.setdefault(tool, {}).setdefault(k, []).append(v)  # type: ignore[arg-type]
    return {t: {k: statistics.median(v) for k, v in f.items()} for t, f in out.items()}  # type: ignore[arg-type]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--user", default="rctr-test")
    ap.add_argument("--files", type=int, default=5000, help="small files to create per driver")
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--big-mb", type=int, default=256, help="size of the file read, MiB")
    ap.add_argument("--skip-pull", action="store_true")
    ap.add_argument("--skip-io", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the tools run as --user)")
    pw = pwd.getpwnam(opts.user)
    base = Path(tempfile.mkdtemp(prefix="rctr-bench-storage-"))
    os.chmod(base, 0o755)
    result: dict = {"rounds": opts.rounds}  # type: ignore[type-arg]
    try:
        layout = base / "image"
        t0 = time.perf_counter()
        result["image"] = build_layout(str(layout))
        result["image"]["build_s"] = time.perf_counter() - t0
        home = base / "home"
        xdg = base / "xdg"
        env = {"PATH": PATH, "HOME": str(home), "XDG_RUNTIME_DIR": str(xdg), "LANG": "C.UTF-8"}
        run = Runner(pw, env, str(base))
        run.mkdir(home, 0o700)
        run.mkdir(xdg, 0o700)
        work = run.mkdir(base / "work")

        if not opts.skip_pull:
            tools = ["rctr"] + [t for t in ("podman", "skopeo") if shutil.which(t)]
            result["pull_tools_missing"] = [t for t in ("podman", "skopeo") if t not in tools]
            with test_registry.Registry() as reg:
                test_registry.push_oci_layout(reg.url, str(layout), REPO, TAG)
                ref = f"{reg.host}/{REPO}:{TAG}"
                pull_round(run, tools, ref, work, -1)  # warm-up: podman's pause process, imports
                rounds = [pull_round(run, tools, ref, work, i) for i in range(opts.rounds)]
            med = _median(rounds)
            result["pull"] = {"median_seconds": med, "all": rounds,
                              "rctr_vs_podman_pull_unpack": _ratio(med["rctr"]["total"],
                                                                   med.get("podman", {}).get("total")),
                              "rctr_vs_skopeo_pull": _ratio(med["rctr"]["pull"],
                                                            med.get("skopeo", {}).get("pull"))}

        if not opts.skip_io:
            drivers = [d for d in DRIVERS if d != "fuse-overlayfs" or shutil.which("fuse-overlayfs")]
            t0 = time.perf_counter()
            _, mounts_json = run.run([PY, "-c", _SETUP, str(work / "store"), str(layout), *drivers],
                                     IO_TIMEOUT)
            setup_s = time.perf_counter() - t0
            targets: dict[str, dict | None] = {"host": None, **json.loads(mounts_json)}  # type: ignore[type-arg]
            host_dir = run.mkdir(work / "host")
            rounds, cold = [], True
            for i in range(opts.rounds):
                r, c = io_round(run, targets, host_dir, i, opts.files, opts.file_size, opts.big_mb)
                rounds.append(r)
                cold = cold and c
            med = _median(rounds)
            host = med["host"]
            result["io"] = {"median": med, "all": rounds, "cold_cache": cold, "setup_s": setup_s,
                            "files": opts.files, "file_size": opts.file_size, "big_mb": opts.big_mb,
                            "vs_host": {t: {k: _ratio(v, host[k]) for k, v in f.items()}
                                        for t, f in med.items()}}
    finally:
        subprocess.run(["pkill", "-KILL", "-u", opts.user], check=False, timeout=30)
        time.sleep(0.2)
        _rm(base)

    if opts.json:
        print(json.dumps(result, indent=1))
        return
    _print(result)


def _print(result: dict) -> None:  # type: ignore[type-arg]
    img = result["image"]
    fmt = lambda v, spec: format("-", ">" + spec.split(".")[0]) if v is None else format(v, spec)  # noqa: E731
    if "pull" in result:
        med, p = result["pull"]["median_seconds"], result["pull"]
        print(f"pull of {REPO}:{TAG} from 127.0.0.1 ({img['layers']} gzip layers, "
              f"{img['unpacked_bytes'] / 1e6:.0f} MB unpacked, {img['gzip_bytes'] / 1e6:.0f} MB gzip), "
              f"median of {result['rounds']} rounds, seconds")
        print(f"  {'tool':7s} {'pull':>7s} {'unpack':>7s} {'total':>7s}")
        for tool, f in med.items():
            print(f"  {tool:7s} {fmt(f.get('pull'), '7.2f')} {fmt(f.get('unpack'), '7.2f')} "
                  f"{fmt(f.get('total'), '7.2f')}")
        print(f"  rctr/podman pull+unpack {fmt(p['rctr_vs_podman_pull_unpack'], '.2f')}x   "
              f"rctr/skopeo pull {fmt(p['rctr_vs_skopeo_pull'], '.2f')}x   (time: < 1 is faster)")
        if result.get("pull_tools_missing"):
            print(f"  not installed: {', '.join(result['pull_tools_missing'])}")
    if "io" in result:
        io_ = result["io"]
        cache = "cold" if io_["cold_cache"] else "NOT cold (drop_caches failed)"
        print(f"file I/O in a mounted rootfs, median of {result['rounds']} rounds "
              f"({io_['files']} x {io_['file_size'] // 1024} KiB files, no fsync; {io_['big_mb']} MiB file, "
              f"first read {cache}, second warm); ratio = driver/host")
        print(f"  {'target':15s} {'files/s':>8s} {'ratio':>5s} {'wr MB/s':>8s} {'ratio':>5s} "
              f"{'cold MB/s':>9s} {'ratio':>5s} {'warm MB/s':>9s} {'ratio':>5s}")
        for t, f in io_["median"].items():
            r = io_["vs_host"][t]
            print(f"  {t:15s} {f['files_per_s']:8.0f} {r['files_per_s']:5.2f} {f['write_mb_s']:8.0f} "
                  f"{r['write_mb_s']:5.2f} {f['cold_read_mb_s']:9.0f} {r['cold_read_mb_s']:5.2f} "
                  f"{f['warm_read_mb_s']:9.0f} {r['warm_read_mb_s']:5.2f}")


if __name__ == "__main__":
    main()
