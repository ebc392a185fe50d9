"""Read-only container verbs: ps, inspect, logs, top, port.

``ps`` rows carry docker's formatter fields (``.ID``, ``.Names``, ``.RunningFor``…)
so that ``--format`` templates written for docker work unchanged.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from . import _complete
from ._client import APIError, iter_frames, q, qi
from ._context import CLIError, Env
from ._format import render_rows, tabulate
from ._units import human_size, parse_timestamp, since

__all__ = ["container_row", "filters", "inspect", "inspect_objects", "logs", "port", "ps", "top"]

PS_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
              "LocalVolumes": "LOCAL VOLUMES"}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}" \
    "\t{{.Names}}"


def filters(specs: tuple[str, ...]) -> dict[str, list[str]] | None:
    """``--filter key=value`` (repeatable) to the API's ``{"key": ["value", …]}``."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise CLIError(f"bad format of filter (expected name=value): {spec}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out or None


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _ports(ports: list[dict[str, Any]]) -> str:
    shown = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""),
                                                 p.get("IP", ""))):
        private = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            shown.append(f"{host}:{p['PublicPort']}->{private}")
        else:
            shown.append(private)
    return ", ".join(dict.fromkeys(shown))


def _local_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


def container_row(c: dict[str, Any], trunc: bool = True, now: float | None = None) -> dict[str, str]:
    """One container of ``GET /containers/json`` as docker's ps formatter sees it."""
    names = [n.lstrip("/") for n in c.get("Names") or [] if n.count("/") <= 1]
    image = c.get("Image") or ""
    if trunc and image.startswith("sha256:"):
        image = image[7:19]
    command = c.get("Command") or ""
    size = ""
    if c.get("SizeRw") is not None or c.get("SizeRootFs") is not None:
        size = f"{human_size(c.get('SizeRw') or 0, 3)} " \
               f"(virtual {human_size(c.get('SizeRootFs') or 0, 3)})"
    mounts = [m.get("Name") or m.get("Source") or "" for m in c.get("Mounts") or []]
    networks = ((c.get("NetworkSettings") or {}).get("Networks") or {}).keys()
    created = c.get("Created") or 0
    return {
        "ID": c["Id"][:12] if trunc else c["Id"],
        "Image": image,
        "Command": json.dumps(_ellipsis(command, 20) if trunc else command, ensure_ascii=False),
        "CreatedAt": _local_time(created),
        "RunningFor": since(created, now),
        "Ports": _ports(c.get("Ports") or []),
        "State": c.get("State") or "",
        "Status": c.get("Status") or "",
        "Size": size,
        "Names": ",".join(names[:1] if trunc else names),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((c.get("Labels") or {}).items())),
        "Mounts": ",".join(_ellipsis(m, 15) if trunc else m for m in mounts),
        "Networks": ",".join(sorted(networks)),
    }


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Show all containers (default shows running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.option("-f", "--filter", "filter_", multiple=True, help="Filter output (key=value)")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.pass_obj
def ps(env: Env, all_: bool, quiet: bool, last: int, latest: bool, no_trunc: bool, size: bool,
       filter_: tuple[str, ...], fmt: str | None) -> None:
    """List containers."""
    limit = 1 if latest else last
    params = {"all": all_ or limit > 0 or None, "limit": limit if limit > 0 else None,
              "size": size or None, "filters": filters(filter_)}
    found = env.client.get("/containers/json", params=params) or []
    if quiet:
        for c in found:
            print(c["Id"] if no_trunc else c["Id"][:12])
        return
    rows = [container_row(c, trunc=not no_trunc) for c in found]
    fmt = fmt or (PS_TABLE + ("\t{{.Size}}" if size else ""))
    _print(render_rows(fmt, rows, PS_HEADERS))


def _print(text: str) -> None:
    if text:
        print(text)


_INSPECT_PATHS = {"container": "/containers/{}/json", "image": "/images/{}/json",
                  "volume": "/volumes/{}", "network": "/networks/{}"}
_QUOTE = {"container": q, "image": qi, "volume": q, "network": q}


def _inspect_one(env: Env, name: str, kind: str | None, size: bool) -> Any:
    for k in [kind] if kind else list(_INSPECT_PATHS):
        params = {"size": True} if size and k == "container" else None
        try:
            return env.client.get(_INSPECT_PATHS[k].format(_QUOTE[k](name)), params=params)
        except APIError as exc:
            if exc.status != 404:
                raise
    raise CLIError(f"No such object: {name}" if not kind else f"No such {kind}: {name}")


@click.command()
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.option("--type", "kind", type=click.Choice(sorted(_INSPECT_PATHS)),
              help="Return JSON for the specified type")
@click.option("-s", "--size", is_flag=True,
              help="Display total file sizes if the type is container")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.inspect_names)
@click.pass_obj
def inspect(env: Env, fmt: str | None, kind: str | None, size: bool,
            names: tuple[str, ...]) -> None:
    """Return low-level information on containers, images and volumes."""
    inspect_objects(env, names, fmt, kind, size)


def inspect_objects(env: Env, names: tuple[str, ...], fmt: str | None, kind: str | None,
                    size: bool = False) -> None:
    """Docker's inspect output: a JSON array (4-space indent), or each object through ``fmt``."""
    found, failed = [], None
    for name in names:
        try:
            found.append(_inspect_one(env, name, kind, size))
        except CLIError as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            failed = exc
    if fmt:
        _print(render_rows(fmt, found))
    else:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    if failed:
        sys.exit(failed.exit_code)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help='Number of lines to show from the end ("all")')
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--since", help="Show logs since timestamp (RFC 3339) or relative (42m)")
@click.option("--until", help="Show logs before a timestamp (RFC 3339) or relative (42m)")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.argument("container", shell_complete=_complete.containers)
@click.pass_obj
def logs(env: Env, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None, details: bool, container: str) -> None:
    """Fetch the logs of a container."""
    try:
        params = {"stdout": True, "stderr": True, "follow": follow or None, "tail": tail,
                  "timestamps": timestamps or None, "details": details or None,
                  "since": parse_timestamp(since) if since else None,
                  "until": parse_timestamp(until) if until else None}
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    client = env.client
    tty = bool((client.get(f"/containers/{q(container)}/json").get("Config") or {}).get("Tty"))
    resp = client.open("GET", f"/containers/{q(container)}/logs", params=params)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    with resp:
        if tty:
            while chunk := resp.read1(65536):
                out.write(chunk)
                out.flush()
            return
        for kind, payload in iter_frames(resp.read):
            target = err if kind == 2 else out
            target.write(payload)
            target.flush()


@click.command()
@click.argument("container", shell_complete=_complete.running_containers)
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def top(env: Env, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    params = {"ps_args": " ".join(ps_args)} if ps_args else None
    result = env.client.get(f"/containers/{q(container)}/top", params=params)
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(str(c) for c in row) for row in result.get("Processes") or []]
    print(tabulate(lines, minwidth=20))


def _host_port(binding: dict[str, Any]) -> str:
    ip = binding.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{binding.get('HostPort')}" if ":" in ip else f"{ip}:{binding.get('HostPort')}"


@click.command()
@click.argument("container", shell_complete=_complete.containers)
@click.argument("private_port", required=False)
@click.pass_obj
def port(env: Env, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    info = env.client.get(f"/containers/{q(container)}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if private_port:
        key = private_port if "/" in private_port else f"{private_port}/tcp"
        bindings = ports.get(key) or []
        if not bindings:
            raise CLIError(f"No public port '{key}' published for {container}")
        for b in bindings:
            print(_host_port(b))
        return
    def order(item: tuple[str, object]) -> tuple[int, str]:
        number, _, proto = item[0].partition("/")
        return (int(number) if number.isdigit() else 0, proto)

    for key, bindings in sorted(ports.items(), key=order):
        for b in bindings or []:
            print(f"{key} -> {_host_port(b)}")
