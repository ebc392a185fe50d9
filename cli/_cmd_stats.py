"""``rctr stats``: docker's resource table from ``GET /containers/{id}/stats``.

The percentages are docker's: CPU from the delta between ``precpu_stats``
and ``cpu_stats``, memory as usage (minus page cache) over the limit.  The
live view polls one-shot stats once a second and redraws the table.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from . import _complete
from ._client import APIError, Client, q
from ._context import Env
from ._format import render_rows
from ._units import bytes_size, human_size

__all__ = ["stats", "stats_row"]

STATS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}" \
    "\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
HEADERS = {"ID": "CONTAINER ID", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
           "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "Container": "CONTAINER"}


def _cpu_percent(s: dict[str, Any]) -> float:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system, pre_system = cpu.get("system_cpu_usage", 0), pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) \
        or 1
    cpu_delta, system_delta = total - pre_total, system - pre_system
    if cpu_delta > 0 and system_delta > 0:
        return float(cpu_delta / system_delta * cpus * 100.0)
    return 0.0


def stats_row(name: str, s: dict[str, Any], trunc: bool = True) -> dict[str, str]:
    """One ``stats`` sample as docker's stats formatter fields."""
    mem = s.get("memory_stats") or {}
    cache = (mem.get("stats") or {}).get("inactive_file", (mem.get("stats") or {}).get("cache", 0))
    usage = max(0, (mem.get("usage") or 0) - (cache or 0))
    limit = mem.get("limit") or 0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write")
    cid = str(s.get("id") or name)
    return {
        "Container": name, "ID": cid[:12] if trunc else cid,
        "Name": str(s.get("name") or name).lstrip("/"),
        "CPUPerc": f"{_cpu_percent(s):.2f}%",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
        "MemPerc": f"{usage / limit * 100.0:.2f}%" if limit else "0.00%",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        "BlockIO": f"{human_size(read, 3)} / {human_size(write, 3)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }


def _sample(client: Client, name: str, trunc: bool) -> dict[str, str] | None:
    try:
        s = client.get(f"/containers/{q(name)}/stats", params={"stream": False})
    except APIError as exc:
        if exc.status == 404:
            return None
        raise
    return stats_row(name, s, trunc)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Show all containers (default shows running)")
@click.option("--no-stream", is_flag=True,
              help="Disable streaming stats and only pull the first result")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.argument("containers", nargs=-1, shell_complete=_complete.running_containers)
@click.pass_obj
def stats(env: Env, all_: bool, no_stream: bool, no_trunc: bool, fmt: str | None,
          containers: tuple[str, ...]) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    client = env.client
    fmt = fmt or STATS_TABLE
    live = not no_stream and sys.stdout.isatty()
    with ThreadPoolExecutor(max_workers=8) as pool:
        while True:
            began = time.monotonic()
            names = list(containers) or [c["Id"] for c in client.get(
                "/containers/json", params={"all": all_ or None}) or []]
            rows = [r for r in pool.map(lambda n: _sample(client, n, not no_trunc), names) if r]
            text = render_rows(fmt, rows, HEADERS)
            if live:
                sys.stdout.write("\x1b[2J\x1b[H")
            print(text, flush=True)
            if no_stream:
                return
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
