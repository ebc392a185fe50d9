"""System verbs: info, version, events, ``system prune|df|reset|service``, unshare.

``system service`` and ``unshare`` are not API calls: the first runs rctrd in
the foreground, the second joins rctr's user namespace (held by the pause
process) and execs a command there; both import their module only when run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from ._client import API_VERSION, APIError, q, qi
from ._context import CLIError, Env, confirm
from ._format import Template, render_rows
from ._units import bytes_size, human_size, parse_timestamp

__all__ = ["container_prune", "events", "format_event", "info", "system", "unshare", "version"]


def _client_version() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    try:
        v = pkg_version("rctr")
    except PackageNotFoundError:
        v = "unknown"
    from rctr.core.arch import go_arch

    return {"Version": v, "ApiVersion": API_VERSION, "PythonVersion": platform.python_version(),
            "Os": sys.platform, "Arch": go_arch()}


def _lines(pairs: list[tuple[str, object]], indent: str) -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0) + 2
    return [f"{indent}{(k + ':').ljust(width)}{v}" for k, v in pairs if v not in (None, "")]


@click.command()
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.pass_obj
def version(env: Env, fmt: str | None) -> None:
    """Show the rctr version information."""
    client_v = _client_version()
    try:
        server: Any = env.client.get("/version")
        error = None
    except Exception as exc:  # the client part is printed even without a daemon
        server, error = None, exc
    if fmt:
        print(Template(fmt).render({"Client": client_v, "Server": server}))
    else:
        print("Client:")
        print("\n".join(_lines([("Version", client_v["Version"]), ("API version", API_VERSION),
                                ("Python version", client_v["PythonVersion"]),
                                ("OS/Arch", f"{client_v['Os']}/{client_v['Arch']}")], " ")))
        if server:
            api = server.get("ApiVersion", "")
            if server.get("MinAPIVersion"):
                api += f" (minimum version {server['MinAPIVersion']})"
            print("\nServer:")
            for comp in server.get("Components") or [{"Name": "Engine", "Version":
                                                      server.get("Version")}]:
                print(f" {comp.get('Name', 'Engine')}:")
                details = comp.get("Details") or {}
                pairs = [("Version", comp.get("Version"))]
                if comp.get("Name", "Engine") == "Engine":
                    pairs += [("API version", api), ("Git commit", server.get("GitCommit")),
                              ("Built", server.get("BuildTime")),
                              ("OS/Arch", f"{server.get('Os', '')}/{server.get('Arch', '')}"),
                              ("Kernel Version", server.get("KernelVersion"))]
                shown = {"ApiVersion", "MinAPIVersion", "Os", "Arch", "KernelVersion",
                         "GitCommit", "BuildTime"}
                pairs += [(k, v) for k, v in details.items() if k not in shown]
                print("\n".join(_lines(pairs, "  ")))
    if error is not None:
        raise error


_INFO_FIELDS = [
    ("Server Version", "ServerVersion"), ("Storage Driver", "Driver"),
    ("Logging Driver", "LoggingDriver"), ("Cgroup Driver", "CgroupDriver"),
    ("Cgroup Version", "CgroupVersion"), ("Kernel Version", "KernelVersion"),
    ("Operating System", "OperatingSystem"), ("OSType", "OSType"),
    ("Architecture", "Architecture"), ("CPUs", "NCPU"), ("Name", "Name"), ("ID", "ID"),
    ("Default Runtime", "DefaultRuntime"),
    ("Docker Root Dir", "DockerRootDir"), ("Debug Mode", "Debug"),
]


@click.command()
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.pass_obj
def info(env: Env, fmt: str | None) -> None:
    """Display system-wide information."""
    data = env.client.get("/info")
    if fmt:
        print(Template(fmt).render(data))
        return
    client_v = _client_version()
    print("Client:")
    print("\n".join(_lines([("Version", client_v["Version"]),
                            ("Host", env.host or f"unix://{env.socket_path}")], " ")))
    print("\nServer:")
    print(f" Containers: {data.get('Containers', 0)}")
    for key in ("Running", "Paused", "Stopped"):
        print(f"  {key}: {data.get('Containers' + key, 0)}")
    print(f" Images: {data.get('Images', 0)}")
    pairs: list[tuple[str, object]] = []
    for label, key in _INFO_FIELDS:
        value = data.get(key)
        pairs.append((label, str(value).lower() if isinstance(value, bool) else value))
        if key == "Driver":
            pairs += [(f" {k}", v) for k, v in data.get("DriverStatus") or []]
    if data.get("MemTotal"):
        pairs.insert(-3, ("Total Memory", bytes_size(data["MemTotal"])))
    if data.get("SecurityOptions"):
        pairs.append(("Security Options", ", ".join(data["SecurityOptions"])))
    print("\n".join(_lines(pairs, " ")))
    registries = data.get("RegistryConfig") or {}
    for title, items in (("Insecure Registries", registries.get("InsecureRegistryCIDRs")),
                         ("Registry Mirrors", _mirrors(registries.get("IndexConfigs")))):
        if items:  # docker's layout: a title, then one item a line
            print(f" {title}:")
            print("\n".join(f"  {item}" for item in items))
    for warning in data.get("Warnings") or []:
        text = warning if warning.startswith("WARNING") else f"WARNING: {warning}"
        print(text, file=sys.stderr)


def _mirrors(index_configs: object) -> list[str]:
    """``registry → mirror`` for every mirrored registry in /info's IndexConfigs."""
    if not isinstance(index_configs, dict):
        return []
    return [f"{name} → {mirror}" for name, cfg in sorted(index_configs.items())
            if isinstance(cfg, dict) for mirror in cfg.get("Mirrors") or []]


def _rfc3339nano(nanos: int) -> str:
    seconds, frac = divmod(nanos, 1_000_000_000)
    local = time.localtime(seconds)
    offset = time.strftime("%z", local)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{frac:09d}" + \
        f"{offset[:3]}:{offset[3:]}"


def format_event(ev: dict[str, Any]) -> str:
    """Docker's default event line: time, type, action, id, (attributes)."""
    nanos = ev.get("timeNano") or int(ev.get("time") or 0) * 1_000_000_000
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    action = ev.get("Action", ev.get("status", ""))
    line = f"{_rfc3339nano(int(nanos))} {ev.get('Type', '')} {action}"
    line += f" {actor.get('ID') or ev.get('id', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


@click.command()
@click.option("--since", help="Show all events created since timestamp")
@click.option("--until", help="Stream events until this timestamp")
@click.option("-f", "--filter", "filter_", multiple=True, help="Filter output (key=value)")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.pass_obj
def events(env: Env, since: str | None, until: str | None, filter_: tuple[str, ...],
           fmt: str | None) -> None:
    """Get real time events from the daemon."""
    from ._cmd_query import filters

    try:
        params = {"since": parse_timestamp(since) if since else None,
                  "until": parse_timestamp(until) if until else None,
                  "filters": filters(filter_)}
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    for ev in env.client.stream("GET", "/events", params=params):
        print(render_rows(fmt, [ev]) if fmt else format_event(ev), flush=True)


def _prune(env: Env, what: str, params: Mapping[str, object] | None = None) -> dict[str, Any]:
    try:
        return env.client.post(f"/{what}/prune", params=params) or {}
    except APIError as exc:
        if what == "networks" and exc.status == 404:
            return {}  # a daemon without networks
        raise


def _print_deleted(title: str, items: list[str]) -> None:
    if items:
        print(f"Deleted {title}:")
        print("\n".join(items))
        print()


def _image_lines(items: list[dict[str, str]]) -> list[str]:
    return [f"{k.lower()}: {item[k]}" for item in items for k in ("Untagged", "Deleted")
            if item.get(k)]


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (until=…)")
@click.pass_obj
def container_prune(env: Env, force: bool, filter_: tuple[str, ...]) -> None:
    """Remove all stopped containers."""
    from ._cmd_query import filters

    if not force and not confirm("WARNING! This will remove all stopped containers."):
        return
    result = _prune(env, "containers", {"filters": filters(filter_)})
    _print_deleted("Containers", result.get("ContainersDeleted") or [])
    print(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")


@click.group()
def system() -> None:
    """Manage rctr."""


@system.command("prune")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove all unused images, not just dangling")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--volumes", is_flag=True, help="Prune volumes")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values")
@click.pass_obj
def system_prune(env: Env, all_: bool, force: bool, volumes: bool,
                 filter_: tuple[str, ...]) -> None:
    """Remove unused data: stopped containers, unused networks, dangling images, volumes."""
    from ._cmd_query import filters

    items = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        items.append("all volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if all_
                 else "all dangling images")
    warning = "WARNING! This will remove:\n" + "\n".join(f"  - {i}" for i in items) + "\n"
    if not force and not confirm(warning):
        return
    base = filters(filter_) or {}
    reclaimed = 0
    result = _prune(env, "containers", {"filters": base or None})
    _print_deleted("Containers", result.get("ContainersDeleted") or [])
    reclaimed += result.get("SpaceReclaimed") or 0
    result = _prune(env, "networks", {"filters": base or None})
    _print_deleted("Networks", result.get("NetworksDeleted") or [])
    if volumes:
        result = _prune(env, "volumes", {"filters": base or None})
        _print_deleted("Volumes", result.get("VolumesDeleted") or [])
        reclaimed += result.get("SpaceReclaimed") or 0
    result = _prune(env, "images", {"filters": dict(base, dangling=["false" if all_ else "true"])})
    _print_deleted("Images", _image_lines(result.get("ImagesDeleted") or []))
    reclaimed += result.get("SpaceReclaimed") or 0
    print(f"Total reclaimed space: {human_size(reclaimed)}")


def _reclaim(size: int, reclaimable: int) -> str:
    text = human_size(reclaimable)
    return f"{text} ({reclaimable * 100 // size}%)" if size > 0 else text


@system.command("df")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.pass_obj
def system_df(env: Env, fmt: str | None) -> None:
    """Show rctr disk usage."""
    data = env.client.get("/system/df") or {}
    imgs = data.get("Images") or []
    ctrs = data.get("Containers") or []
    vols = data.get("Volumes") or []
    img_size = data.get("LayersSize") or sum(i.get("Size") or 0 for i in imgs)
    img_free = sum(i.get("Size") or 0 for i in imgs if not i.get("Containers"))
    ctr_size = sum(c.get("SizeRw") or 0 for c in ctrs)
    ctr_free = sum(c.get("SizeRw") or 0 for c in ctrs if c.get("State") != "running")
    usage = [(v.get("UsageData") or {}) for v in vols]
    vol_size = sum(max(0, u.get("Size", 0)) for u in usage)
    vol_free = sum(max(0, u.get("Size", 0)) for u in usage if u.get("RefCount", 0) <= 0)
    rows = [
        {"Type": "Images", "TotalCount": str(len(imgs)),
         "Active": str(sum(1 for i in imgs if i.get("Containers"))),
         "Size": human_size(img_size), "Reclaimable": _reclaim(img_size, img_free)},
        {"Type": "Containers", "TotalCount": str(len(ctrs)),
         "Active": str(sum(1 for c in ctrs if c.get("State") == "running")),
         "Size": human_size(ctr_size), "Reclaimable": _reclaim(ctr_size, ctr_free)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)),
         "Active": str(sum(1 for u in usage if u.get("RefCount", 0) > 0)),
         "Size": human_size(vol_size), "Reclaimable": _reclaim(vol_size, vol_free)},
    ]
    fmt = fmt or "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    print(render_rows(fmt, rows, {"TotalCount": "TOTAL"}))


@system.command("reset")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.pass_obj
def system_reset(env: Env, force: bool) -> None:
    """Remove every container, image and volume, then all of rctr's state on disk."""
    local = not env.host
    if not force and not confirm("WARNING! This will remove:\n  - all containers\n"
                                 "  - all images\n  - all volumes\n"
                                 + ("  - rctr's data and run directories (the daemon and the "
                                    "pause process stop)\n" if local else "")):
        return
    client = env.client
    errors = 0
    targets = [(f"/containers/{q(c['Id'])}", {"force": True, "v": True})
               for c in client.get("/containers/json", params={"all": True}) or []]
    targets += [(f"/images/{qi(i['Id'])}", {"force": True})
                for i in client.get("/images/json", params={"all": True}) or []]
    for path, params in targets:
        errors += _delete(env, path, params)
    vols = (client.get("/volumes") or {}).get("Volumes") or []
    for v in vols:
        errors += _delete(env, f"/volumes/{q(v['Name'])}", {"force": True})
    if errors:
        raise CLIError(f"system reset: {errors} objects could not be removed")
    if local:
        _wipe_local_state(env.rundir)


def _wipe_local_state(rundir: str) -> None:
    """Stop rctrd and the pause process, and remove the data and run directories.

    The store holds files owned by subordinate ids, which only a process in a user
    namespace with the user's mapping can remove: the removal runs in one.
    """
    import shutil
    import signal

    from rctr.core.pause import find_pause
    from rctr.core.paths import data_dir
    from rctr.core.userns import run_in_userns

    from ._daemon import stop_daemon

    if not stop_daemon(rundir):
        raise CLIError("system reset: rctrd did not stop; nothing on disk was removed")
    pause = find_pause(rundir)
    if pause is not None:
        pause.signal(signal.SIGKILL)  # no container is left to need its namespaces
    paths = [p for p in (data_dir(), rundir) if os.path.lexists(p)]

    def wipe() -> None:
        for path in paths:
            shutil.rmtree(path)

    try:
        run_in_userns(wipe)
    except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
        raise CLIError(f"system reset: could not remove {' and '.join(paths)}: {exc}") from None


def _delete(env: Env, path: str, params: Mapping[str, object]) -> int:
    from ._errors import report

    try:
        env.client.delete(path, params=params)
    except APIError as exc:
        if exc.status == 404:
            return 0  # gone with its container, or by a parallel reset
        report(exc)
        return 1
    return 0


@system.command("service")
@click.option("--config", "config_file", metavar="FILE",
              help="Config file (default: $RCTR_CONFIG, else ~/.config/rctr/rctr.toml)")
@click.option("--storage-driver", metavar="NAME",
              help="Storage driver: overlay, fuse-overlayfs, fusepy or vfs (default: "
                   "$RCTR_STORAGE_DRIVER, [storage] driver, else the fastest that works here)")
@click.option("--runtime", type=click.Choice(["rctr", "crun", "runc"]),
              help="OCI runtime for containers (default: $RCTR_RUNTIME, [daemon] runtime, rctr)")
@click.option("--network", metavar="MODE",
              help="Network of containers that name none (default: $RCTR_NETWORK, "
                   "[network] default, slirp4netns)")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Log level (default: $RCTR_LOG_LEVEL, [daemon] log_level, info)")
@click.option("-v", "--verbose", is_flag=True, help="Log every request (--log-level debug)")
def system_service(config_file: str | None, storage_driver: str | None, runtime: str | None,
                   network: str | None, log_level: str | None, verbose: bool) -> None:
    """Run rctrd, the API daemon, in the foreground (also as a systemd socket-activated
    service: see docs/systemd.md)."""
    from rctr.daemon import main as daemon_main

    options = {"--config": config_file, "--storage-driver": storage_driver,
               "--runtime": runtime, "--network": network, "--log-level": log_level}
    argv = [arg for flag, value in options.items() if value for arg in (flag, value)]
    raise SystemExit(daemon_main(argv + (["--verbose"] if verbose else [])))


system.add_command(info, "info")
system.add_command(events, "events")


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def unshare(command: tuple[str, ...]) -> None:
    """Run a command (default: $SHELL) in rctr's user namespace, as its root."""
    try:
        from rctr.core.pause import join_and_exec
    except ImportError as exc:
        raise CLIError(f"rctr unshare is not available in this build: {exc}") from None
    argv = list(command) or [os.environ.get("SHELL") or "/bin/sh"]
    join_and_exec(argv)  # execs argv in the namespace, or raises

