"""``rctr run`` and ``rctr create``: docker's flags, one create body (see ``_runopts``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from ._context import Env

__all__ = ["create", "create_options", "run"]

_MULTI = dict(multiple=True, metavar="LIST")

_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
    click.option("--rm", is_flag=True, help="Automatically remove the container when it exits"),
    click.option("--name", help="Assign a name to the container"),
    click.option("-e", "--env", **_MULTI, help="Set environment variables"),
    click.option("--env-file", **_MULTI, help="Read in a file of environment variables"),
    click.option("-w", "--workdir", help="Working directory inside the container"),
    click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    click.option("-v", "--volume", **_MULTI, help="Bind mount a volume"),
    click.option("--mount", **_MULTI, help="Attach a filesystem mount to the container"),
    click.option("--tmpfs", **_MULTI, help="Mount a tmpfs directory"),
    click.option("-p", "--publish", **_MULTI, help="Publish a container's port(s) to the host"),
    click.option("-P", "--publish-all", is_flag=True,
                 help="Publish all exposed ports to random ports"),
    click.option("--expose", **_MULTI, help="Expose a port or a range of ports"),
    click.option("--network", "--net", "network", help="Connect a container to a network"),
    click.option("-h", "--hostname", help="Container host name"),
    click.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
    click.option("--init", is_flag=True, help="Run an init inside the container"),
    click.option("--read-only", is_flag=True,
                 help="Mount the container's root filesystem read only"),
    click.option("--restart", help="Restart policy (no, always, unless-stopped, on-failure[:N])"),
    click.option("--stop-signal", help="Signal to stop the container"),
    click.option("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container"),
    click.option("--cap-add", **_MULTI, help="Add Linux capabilities"),
    click.option("--cap-drop", **_MULTI, help="Drop Linux capabilities"),
    click.option("--privileged", is_flag=True, help="Give extended privileges to this container"),
    click.option("-m", "--memory", help="Memory limit"),
    click.option("--cpus", help="Number of CPUs"),
    click.option("--pids-limit", type=int, help="Tune container pids limit (-1 for unlimited)"),
    click.option("--shm-size", help="Size of /dev/shm"),
    click.option("--ulimit", **_MULTI, help="Ulimit options"),
    click.option("--sysctl", **_MULTI, help="Sysctl options"),
    click.option("--add-host", **_MULTI, help="Add a custom host-to-IP mapping (host:ip)"),
    click.option("--dns", **_MULTI, help="Set custom DNS servers"),
    click.option("--group-add", **_MULTI, help="Add additional groups to join"),
    click.option("--log-driver", help="Logging driver for the container"),
    click.option("--log-opt", **_MULTI, help="Log driver options"),
    click.option("--security-opt", **_MULTI, help="Security options"),
    click.option("--health-cmd", help="Command to run to check health"),
    click.option("--health-interval", help="Time between running the check (ms|s|m|h)"),
    click.option("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h)"),
    click.option("--health-retries", type=int,
                 help="Consecutive failures needed to report unhealthy"),
    click.option("--health-start-period", help="Start period for the container to initialize"),
    click.option("--no-healthcheck", is_flag=True,
                 help="Disable any container-specified HEALTHCHECK"),
    click.option("-l", "--label", **_MULTI, help="Set meta data on a container"),
    click.option("--platform", help="Set platform if server is multi-platform capable"),
    click.option("--pull", default="missing", show_default=True,
                 help='Pull image before running ("always", "missing", "never")'),
    click.argument("image"),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
]

# Flags after the image belong to the container's command, as with docker.
_SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def create_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


@click.command(context_settings=_SETTINGS)
@click.option("-d", "--detach", is_flag=True,
              help="Run container in background and print container ID")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.option("--sig-proxy/--no-sig-proxy", default=True,
              help="Proxy received signals to the process (non-TTY mode only)")
@create_options
@click.pass_obj
def run(obj: Env, detach: bool, detach_keys: str | None, sig_proxy: bool, **opts: Any) -> None:
    """Create and run a new container from an image."""
    from ._ops import attach_and_start, create_container
    from ._runopts import build_create
    from ._stream import DEFAULT_DETACH_KEYS

    req = build_create(opts, detach=detach, for_run=True)
    client = obj.client
    cid = create_container(client, req)
    if detach:
        from ._client import APIError
        from ._errors import report, start_exit_code

        try:
            client.post(f"/containers/{cid}/start")
        except APIError as exc:
            report(exc)
            sys.exit(start_exit_code(exc.message))
        print(cid)
        return
    code = attach_and_start(
        client, cid, tty=bool(opts["tty"]), stdin=bool(opts["interactive"]),
        detach_keys=detach_keys or DEFAULT_DETACH_KEYS,
        condition="removed" if opts["rm"] else "next-exit", sig_proxy=sig_proxy)
    sys.exit(code)


@click.command(context_settings=_SETTINGS)
@create_options
@click.pass_obj
def create(obj: Env, **opts: Any) -> None:
    """Create a new container (and print its id)."""
    from ._ops import create_container
    from ._runopts import build_create

    print(create_container(obj.client, build_create(opts, for_run=False)))
