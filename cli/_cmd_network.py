"""``rctr network create|ls|inspect|rm|connect|disconnect|prune`` over ``/networks``."""

from __future__ import annotations

import click

from . import _complete
from ._client import q
from ._context import Env, confirm
from ._errors import each
from ._format import render_rows

__all__ = ["network"]

HEADERS = {"ID": "NETWORK ID"}


@click.group()
def network() -> None:
    """Manage networks."""


@network.command()
@click.option("-d", "--driver", default="bridge", show_default=True, help="Driver to manage the Network")
@click.option("--subnet", help="Subnet in CIDR format that represents a network segment")
@click.option("--gateway", help="IPv4 Gateway for the master subnet")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--label", multiple=True, help="Set metadata on a network")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.argument("name")
@click.pass_obj
def create(env: Env, driver: str, subnet: str | None, gateway: str | None, internal: bool,
           attachable: bool, label: tuple[str, ...], opt: tuple[str, ...], name: str) -> None:
    """Create a network."""
    from ._create_request import _kv

    ipam = {"Driver": "default", "Config": [{"Subnet": subnet, "Gateway": gateway or ""}]
            if subnet else []}
    body = {"Name": name, "Driver": driver, "Internal": internal, "Attachable": attachable,
            "IPAM": ipam, "Labels": _kv(label, "label"),
            "Options": _kv(opt, "opt", allow_bare=False), "CheckDuplicate": True}
    print(env.client.post("/networks/create", body=body)["Id"])


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.option("-f", "--filter", "filter_", multiple=True, help="Provide filter values")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.pass_obj
def ls(env: Env, quiet: bool, filter_: tuple[str, ...], fmt: str | None, no_trunc: bool) -> None:
    """List networks."""
    from ._cmd_query import filters

    found = env.client.get("/networks", params={"filters": filters(filter_)}) or []
    rows = [{"ID": n["Id"] if no_trunc else n["Id"][:12], "Name": n["Name"],
             "Driver": n["Driver"], "Scope": n.get("Scope", "local"),
             "Internal": str(bool(n.get("Internal"))).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items())),
             "CreatedAt": n.get("Created", "")} for n in found]
    if quiet:
        for row in rows:
            print(row["ID"])
        return
    text = render_rows(fmt or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows, HEADERS)
    if text:
        print(text)


network.add_command(ls, "list")


@network.command()
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.networks)
@click.pass_obj
def inspect(env: Env, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    from ._cmd_query import inspect_objects

    inspect_objects(env, names, fmt, "network")


@network.command()
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.networks)
@click.pass_obj
def rm(env: Env, names: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    each(names, lambda name: env.client.delete(f"/networks/{q(name)}"))


network.add_command(rm, "remove")


@network.command()
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container")
@click.option("--ip", help="IPv4 address (e.g., 172.30.100.104)")
@click.argument("name", shell_complete=_complete.networks)
@click.argument("container", shell_complete=_complete.containers)
@click.pass_obj
def connect(env: Env, alias: tuple[str, ...], ip: str | None, name: str, container: str) -> None:
    """Connect a container to a network."""
    endpoint = {"Aliases": list(alias), "IPAMConfig": {"IPv4Address": ip} if ip else None}
    env.client.post(f"/networks/{q(name)}/connect",
                    body={"Container": container, "EndpointConfig": endpoint})


@network.command()
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.argument("name", shell_complete=_complete.networks)
@click.argument("container", shell_complete=_complete.containers)
@click.pass_obj
def disconnect(env: Env, force: bool, name: str, container: str) -> None:
    """Disconnect a container from a network."""
    env.client.post(f"/networks/{q(name)}/disconnect", body={"Container": container, "Force": force})


@network.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.pass_obj
def prune(env: Env, force: bool) -> None:
    """Remove all unused networks."""
    if not force and not confirm("WARNING! This will remove all custom networks not used by at "
                                 "least one container."):
        return
    deleted = (env.client.post("/networks/prune") or {}).get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        for name in deleted:
            print(name)
