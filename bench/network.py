"""Benchmark: network throughput of rctr's modes against rootless Podman's, and loopback.

Run as root (it makes a dedicated unprivileged user and runs both tools as it):

    sudo /opt/rctr/venv/bin/python bench/network.py [--seconds 5] [--rounds 3] [--json out.json]

Everything is iperf3 (Debian's ``iperf3``) over loopback: the binary and the
host's libraries are bind-mounted read-only into the busybox test image
(``-v /usr/lib:/lib -v /usr/lib64:/lib64 -v /usr/bin/iperf3:/bin/iperf3``).
The user, its directories and the images are set up as in ``pipeline.py``.

1. **loopback**: iperf3 client and server on the host's 127.0.0.1, the limit.
2. **published port (in)**: the server in a container, published on
   ``127.0.0.1:P``; the client on the host.  rctr: slirp4netns with its
   default port handler (rctr's splice forwarder) and with
   ``port_handler=slirp4netns``; pasta with its own forwarding and with
   ``port_handler=rctr``.  Podman: slirp4netns with rootlessport (its
   default) and with ``port_handler=slirp4netns``; pasta if this Podman has it.
3. **outbound to the host (out)**: the server on the host's 127.0.0.1, the
   client in a container: slirp4netns with ``allow_host_loopback=true``
   (10.0.2.2), pasta with ``--map-gw`` (the gateway address), for both tools.

Each case runs ``--rounds`` times, cases interleaved so that drift shows up
across rounds; reported: the median of the receiver's bits per second, and
the ratio to loopback and to Podman's equivalent (above 1 is better here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # noqa: E402
from pipeline import Runner, ensure_user, kill_user_processes, stage_code, user_runner  # noqa: E402

IPERF_MOUNTS = ["-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro",
                "-v", "/usr/bin/iperf3:/bin/iperf3:ro"]
SERVER_PORT = 5201


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gbits(iperf_json: str) -> float:
    data = json.loads(iperf_json)
    if "error" in data:
        raise SystemExit(f"iperf3: {data['error']}")
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


class Bench:
    def __init__(self, run: Runner, tools: dict[str, pipeline.Tool], seconds: int) -> None:
        self.run, self.tools, self.seconds = run, tools, seconds

    def client(self, target: str, port: int) -> list[str]:
        return ["iperf3", "-c", target, "-p", str(port), "-t", str(self.seconds), "-J"]

    def host_server(self, port: int) -> subprocess.Popen:  # type: ignore[type-arg]
        p = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             **self.run._kw())
        wait_port(port)
        return p

    def loopback(self) -> float:
        port = free_port()
        server = self.host_server(port)
        try:
            return gbits(self.run.run(self.client("127.0.0.1", port), timeout=120)[1])
        finally:
            server.kill()
            server.wait()

    def inbound(self, tool: str, network: str) -> float:
        t = self.tools[tool]
        port = free_port()
        name = f"iperf-in-{port}"
        self.run.run(t.cmd("run", "-d", "--name", name, "--network", network,
                           "-p", f"127.0.0.1:{port}:{SERVER_PORT}", *IPERF_MOUNTS, t.image,
                           "iperf3", "-s", "-p", str(SERVER_PORT)))
        try:
            # The published port listens before the server does: ask until it answers.
            deadline = time.monotonic() + 20
            while True:
                try:
                    out = self.run.run(self.client("127.0.0.1", port), timeout=120)[1]
                    return gbits(out)
                except SystemExit:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            self.run.run(t.cmd(*t.rm_force, name), ok=(0, 1, 2, 125))

    def outbound(self, tool: str, network: str, target: str) -> float:
        t = self.tools[tool]
        port = free_port()
        server = self.host_server(port)
        try:
            out = self.run.run(t.cmd("run", "--rm", "--network", network, *IPERF_MOUNTS,
                                     t.image, *self.client(target, port)), timeout=120)[1]
            return gbits(out)
        finally:
            server.kill()
            server.wait()


def podman_has_pasta(run: Runner, tool: pipeline.Tool) -> bool:
    try:
        run.run(tool.cmd("run", "--rm", "--network", "pasta", tool.image, "true"), timeout=60)
        return True
    except SystemExit:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t of each run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--user", default="rctr-bench")
    ap.add_argument("--podman-runtime", default="runc")
    ap.add_argument("--code", choices=("head", "checkout", "installed"), default="head")
    ap.add_argument("--json", metavar="FILE")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the tools run as --user)")
    for needed in ("iperf3", "podman", "slirp4netns", "pasta"):
        if not shutil.which(needed):
            raise SystemExit(f"{needed} is not installed (apt install iperf3 podman "
                             "slirp4netns passt)")

    def log(msg: str) -> None:
        sys.stderr.write(f"network: {msg}\n")
        sys.stderr.flush()

    pw = ensure_user(opts.user)
    kill_user_processes(pw.pw_uid)
    base = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp"))
    os.chmod(base, 0o755)
    result: dict[str, Any] = {"seconds": opts.seconds, "rounds": opts.rounds}
    try:
        staged = stage_code(opts.code, base / "code")
        pipeline.RCTR = staged["rctr"]
        run = user_runner(pw, base, staged["pythonpath"])
        archive = base / "image.tar"
        pipeline.testimage.build_docker_archive(str(archive))
        os.chmod(archive, 0o644)
        tools = pipeline.make_tools(opts.podman_runtime)
        run.run([pipeline.RCTR, "load", "-q", "-i", str(archive)], timeout=300)
        run.run(tools["podman"].cmd("load", "-q", "-i", str(archive)), timeout=300)
        bench = Bench(run, tools, opts.seconds)
        gateway = _default_gateway()
        cases: dict[str, Any] = {
            "loopback": bench.loopback,
            "in rctr slirp4netns (rctr forwarder)": lambda: bench.inbound("rctr", "slirp4netns"),
            "in rctr slirp4netns (slirp4netns)":
                lambda: bench.inbound("rctr", "slirp4netns:port_handler=slirp4netns"),
            "in rctr pasta (pasta)": lambda: bench.inbound("rctr", "pasta"),
            "in rctr pasta (rctr forwarder)":
                lambda: bench.inbound("rctr", "pasta:port_handler=rctr"),
            "in podman slirp4netns (rootlessport)": lambda: bench.inbound("podman", "slirp4netns"),
            "in podman slirp4netns (slirp4netns)":
                lambda: bench.inbound("podman", "slirp4netns:port_handler=slirp4netns"),
            "out rctr slirp4netns": lambda: bench.outbound(
                "rctr", "slirp4netns:allow_host_loopback=true", "10.0.2.2"),
            "out podman slirp4netns": lambda: bench.outbound(
                "podman", "slirp4netns:allow_host_loopback=true", "10.0.2.2"),
        }
        if gateway:
            cases["out rctr pasta"] = lambda: bench.outbound("rctr", "pasta:--map-gw", gateway)
        if podman_has_pasta(run, tools["podman"]):
            cases["in podman pasta"] = lambda: bench.inbound("podman", "pasta")
            if gateway:
                cases["out podman pasta"] = lambda: bench.outbound("podman", "pasta:--map-gw",
                                                                   gateway)
        else:
            log("this Podman has no pasta network mode: its pasta cases are left out")
        figures: dict[str, list[float]] = {name: [] for name in cases}
        for rnd in range(opts.rounds):
            for name, case in cases.items():
                figures[name].append(case())
                log(f"round {rnd + 1}: {name}: {figures[name][-1]:.2f} Gbit/s")
        result["gbits"] = figures
        result["median"] = {k: statistics.median(v) for k, v in figures.items()}
        result["versions"] = {"podman": run.run(["podman", "--version"])[1].strip(),
                              "slirp4netns": run.run(["slirp4netns", "--version"])[1]
                              .splitlines()[0]}
    finally:
        kill_user_processes(pw.pw_uid)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2))
    _print(result)


def _default_gateway() -> str | None:
    sys.path.insert(0, str(pipeline.REPO_ROOT.parent))
    try:
        from rctr.netstack import default_route
    except ImportError:
        return None
    route = default_route()
    return str(route["gateway"]) if route else None


def _print(r: dict[str, Any]) -> None:
    med = r["median"]
    loop = med["loopback"]
    podman = {"in rctr slirp4netns (rctr forwarder)": "in podman slirp4netns (rootlessport)",
              "in rctr slirp4netns (slirp4netns)": "in podman slirp4netns (slirp4netns)",
              "in rctr pasta (pasta)": "in podman pasta",
              "out rctr slirp4netns": "out podman slirp4netns",
              "out rctr pasta": "out podman pasta"}
    print(f"iperf3, {r['seconds']} s per run, median of {r['rounds']} ({r['versions']})")
    print(f"{'case':44} {'Gbit/s':>8} {'/loopback':>10} {'/podman':>8}")
    for name, value in med.items():
        other = med.get(podman.get(name, ""))
        ratio = f"{value / other:8.2f}" if other else f"{'':8}"
        print(f"{name:44} {value:8.2f} {value / loop:10.2f} {ratio}")


if __name__ == "__main__":
    main()
