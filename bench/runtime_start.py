"""Benchmark: `rctr runtime run` of `true` against `crun run` and `runc run`.

Run as root (it makes a bundle for the unprivileged test user and runs every
runtime as that user, rootless, on the same bundle):

    sudo /opt/rctr/venv/bin/python bench/runtime_start.py [--runs 30]

Prints the median wall time of each runtime and its ratio to crun, from one
run, runtimes interleaved so that machine noise hits all three alike.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
import testimage  # noqa: E402

RCTR = os.path.join(os.path.dirname(sys.executable), "rctr")


def _as_user(pw: pwd.struct_passwd, env: dict[str, str], args: list[str], cwd: str) -> float:
    start = time.perf_counter()
    r = subprocess.run(args, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {r.stderr.decode().strip()}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--user", default="rctr-test")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = ap.parse_args()
    pw = pwd.getpwnam(opts.user)
    base = Path(tempfile.mkdtemp(prefix="rctr-bench-"))
    os.chmod(base, 0o755)
    try:
        layout = base / "image"
        testimage.build_oci_layout(str(layout))
        uid_map = testimage.subid_map(opts.user, pw.pw_uid, "uid")
        gid_map = testimage.subid_map(opts.user, pw.pw_gid, "gid")
        bundle = base / "bundle"
        testimage.make_bundle(str(layout), str(bundle), pw.pw_uid, pw.pw_gid, uid_map, gid_map)
        xdg = base / "xdg"
        xdg.mkdir(mode=0o700)
        os.chown(xdg, pw.pw_uid, pw.pw_gid)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": pw.pw_dir,
               "XDG_RUNTIME_DIR": str(xdg)}
        _as_user(pw, env, [RCTR, "runtime", "spec", "--rootless", "--bundle", str(bundle)], str(bundle))
        config = json.loads((bundle / "config.json").read_text())
        config["process"].update(terminal=False, args=["true"])
        (bundle / "config.json").write_text(json.dumps(config))
        commands = {"rctr": [RCTR, "runtime", "run"]}
        for other in ("crun", "runc"):
            if shutil.which(other):
                commands[other] = [other, "run"]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(opts.runs + 2):
            for name, command in commands.items():
                t = _as_user(pw, env, [*command, "--bundle", str(bundle), f"b-{name}-{i}"], str(bundle))
                if i >= 2:  # the first runs warm the page cache
                    times[name].append(t)
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        ref = medians.get("crun")
        if opts.json:
            print(json.dumps({"runs": opts.runs, "median_seconds": medians}))
            return
        print(f"runtime run of `true`, rootless, median of {opts.runs} runs")
        for name, m in medians.items():
            ratio = f"{m / ref:.2f}x crun" if ref else ""
            print(f"  {name:5s} {m * 1000:7.1f} ms  {ratio}")
    finally:
        subprocess.run(["pkill", "-KILL", "-u", opts.user], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
