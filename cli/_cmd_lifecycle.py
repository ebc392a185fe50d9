"""Lifecycle verbs: start, stop, restart, kill, rm, wait, rename.

Each takes several containers, as docker's do: one failure is reported on
its own line and the rest still run; the exit status says whether any failed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import _complete
from ._client import q
from ._context import CLIError, Env
from ._errors import each

__all__ = ["kill", "rename", "restart", "rm", "start", "stop", "wait"]


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.argument("containers", nargs=-1, required=True,
                shell_complete=_complete.stopped_containers)
@click.pass_obj
def start(env: Env, attach: bool, interactive: bool, detach_keys: str | None,
          containers: tuple[str, ...]) -> None:
    """Start one or more stopped containers."""
    client = env.client
    if not (attach or interactive):
        each(containers, lambda c: client.post(f"/containers/{q(c)}/start"))
        return
    if len(containers) > 1:
        raise CLIError("you cannot start and attach multiple containers at once")
    from ._ops import attach_and_start
    from ._attach_io import DEFAULT_DETACH_KEYS

    info = client.get(f"/containers/{q(containers[0])}/json")
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    code = attach_and_start(client, info["Id"], tty=tty,
                            stdin=interactive and bool(config.get("OpenStdin")),
                            detach_keys=detach_keys or DEFAULT_DETACH_KEYS)
    sys.exit(code)


def _timeout(seconds: int | None) -> dict[str, int]:
    return {"t": seconds} if seconds is not None else {}


@click.command()
@click.option("-t", "--time", "seconds", type=int, help="Seconds to wait before killing it")
@click.option("-s", "--signal", "sig", help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True,
                shell_complete=_complete.running_containers)
@click.pass_obj
def stop(env: Env, seconds: int | None, sig: str | None, containers: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    params = dict(_timeout(seconds), signal=sig)
    each(containers, lambda c: env.client.post(f"/containers/{q(c)}/stop", params=params))


@click.command()
@click.option("-t", "--time", "seconds", type=int, help="Seconds to wait before killing it")
@click.argument("containers", nargs=-1, required=True, shell_complete=_complete.containers)
@click.pass_obj
def restart(env: Env, seconds: int | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    params = _timeout(seconds)
    each(containers, lambda c: env.client.post(f"/containers/{q(c)}/restart", params=params))


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True,
              help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True,
                shell_complete=_complete.running_containers)
@click.pass_obj
def kill(env: Env, sig: str, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    params = {"signal": sig}
    each(containers, lambda c: env.client.post(f"/containers/{q(c)}/kill", params=params))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes of the container")
@click.option("-l", "--link", is_flag=True, hidden=True)
@click.argument("containers", nargs=-1, required=True, shell_complete=_complete.containers)
@click.pass_obj
def rm(env: Env, force: bool, volumes: bool, link: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    if link:
        raise CLIError("--link is not supported: rctr has no container links")
    params = {"force": force, "v": volumes}
    each(containers, lambda c: env.client.delete(f"/containers/{q(c)}", params=params))


@click.command()
@click.option("--condition", default="not-running", show_default=True, hidden=True)
@click.argument("containers", nargs=-1, required=True, shell_complete=_complete.containers)
@click.pass_obj
def wait(env: Env, condition: str, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""

    def one(c: str) -> int:
        result = env.client.post(f"/containers/{q(c)}/wait", params={"condition": condition})
        return int(result.get("StatusCode", -1))

    each(containers, one)


@click.command()
@click.argument("container", shell_complete=_complete.containers)
@click.argument("new_name")
@click.pass_obj
def rename(env: Env, container: str, new_name: str) -> None:
    """Rename a container."""
    env.client.post(f"/containers/{q(container)}/rename", params={"name": new_name})


@click.command()
@click.option("--restart", help="Restart policy to apply when a container exits")
@click.option("-m", "--memory", help="Memory limit")
@click.option("--memory-swap", help="Swap limit equal to memory plus swap: -1 for unlimited")
@click.option("--memory-reservation", help="Memory soft limit")
@click.option("--cpus", help="Number of CPUs")
@click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
@click.option("--pids-limit", type=int, help="Tune container pids limit (-1 for unlimited)")
@click.argument("containers", nargs=-1, required=True, shell_complete=_complete.containers)
@click.pass_obj
def update(env: Env, /, containers: tuple[str, ...], **options: Any) -> None:
    """Update configuration of one or more containers."""
    from ._create_request import parse_restart, resource_settings

    body = resource_settings(options)
    if options.get("restart"):
        body["RestartPolicy"] = parse_restart(options["restart"])
    if not body:
        raise CLIError("you must provide one or more flags when using this command")

    def one(c: str) -> None:
        reply = env.client.post(f"/containers/{q(c)}/update", body=body) or {}
        for warning in reply.get("Warnings") or []:
            print(f"WARNING: {warning}", file=sys.stderr)

    each(containers, one)
