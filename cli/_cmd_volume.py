"""``rctr volume create|ls|inspect|rm|prune`` over ``/volumes``."""

from __future__ import annotations

import click

from . import _complete
from ._client import q
from ._context import Env, confirm
from ._errors import each
from ._format import render_rows
from ._units import human_size

__all__ = ["volume"]

HEADERS = {"Name": "VOLUME NAME"}


@click.group()
def volume() -> None:
    """Manage volumes."""


@volume.command()
@click.option("-d", "--driver", default="local", show_default=True,
              help="Specify volume driver name")
@click.option("--label", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.argument("name", required=False)
@click.pass_obj
def create(env: Env, driver: str, label: tuple[str, ...], opt: tuple[str, ...],
           name: str | None) -> None:
    """Create a volume."""
    from ._create_request import _kv

    body = {"Name": name or "", "Driver": driver, "DriverOpts": _kv(opt, "opt", allow_bare=False),
            "Labels": _kv(label, "label")}
    print(env.client.post("/volumes/create", body=body)["Name"])


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@click.option("-f", "--filter", "filter_", multiple=True, help="Provide filter values")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.pass_obj
def ls(env: Env, quiet: bool, filter_: tuple[str, ...], fmt: str | None) -> None:
    """List volumes."""
    from ._cmd_query import filters

    found = (env.client.get("/volumes", params={"filters": filters(filter_)}) or {}).get(
        "Volumes") or []
    if quiet:
        for v in found:
            print(v["Name"])
        return
    rows = [{"Driver": v.get("Driver", ""), "Name": v.get("Name", ""),
             "Mountpoint": v.get("Mountpoint", ""), "Scope": v.get("Scope", "local"),
             "Labels": ",".join(f"{k}={val}" for k, val in sorted((v.get("Labels") or {}).items())),
             "Size": "N/A", "Links": "N/A", "CreatedAt": v.get("CreatedAt", "")} for v in found]
    text = render_rows(fmt or "table {{.Driver}}\t{{.Name}}", rows, HEADERS)
    if text:
        print(text)


volume.add_command(ls, "list")


@volume.command()
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.volumes)
@click.pass_obj
def inspect(env: Env, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    from ._cmd_query import inspect_objects

    inspect_objects(env, names, fmt, "volume")


@volume.command()
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.volumes)
@click.pass_obj
def rm(env: Env, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes."""
    each(names, lambda name: env.client.delete(f"/volumes/{q(name)}",
                                               params={"force": force or None}))


volume.add_command(rm, "remove")


@volume.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just"
              " anonymous ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (label=…)")
@click.pass_obj
def prune(env: Env, all_: bool, force: bool, filter_: tuple[str, ...]) -> None:
    """Remove unused local volumes (anonymous ones; all of them with -a)."""
    from ._cmd_query import filters

    what = "local volumes" if all_ else "anonymous local volumes"
    if not force and not confirm(f"WARNING! This will remove {what} not used by at least one"
                                 " container."):
        return
    wanted = dict(filters(filter_) or {}, **({"all": ["true"]} if all_ else {}))
    result = env.client.post("/volumes/prune", params={"filters": wanted or None}) or {}
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        print("\n".join(deleted))
        print()
    print(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")
