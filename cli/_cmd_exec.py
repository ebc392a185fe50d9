"""``exec`` and ``attach``: a hijacked connection copied to the terminal.

exec is two calls, as in the API: ``POST /containers/{id}/exec`` makes the
exec instance, ``POST /exec/{id}/start`` (hijacked) runs it; the exit code
comes from ``GET /exec/{id}/json`` once the output has ended.
"""

from __future__ import annotations

import os
import sys
import time

import click

from . import _complete
from ._client import APIError, Client, q
from ._context import CLIError, Env
from ._errors import report, start_exit_code

__all__ = ["attach", "exec_"]


def _exit_code(client: Client, exec_id: str) -> int:
    """ExitCode of a finished exec; the daemon may record it a moment after the EOF."""
    deadline = time.monotonic() + 5.0
    while True:
        info = client.get(f"/exec/{q(exec_id)}/json")
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() > deadline:
            return int(info.get("ExitCode") or 0)
        time.sleep(0.05)


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.option("-e", "--env", "env_vars", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.argument("container", shell_complete=_complete.running_containers)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(env: Env, detach: bool, detach_keys: str | None, env_file: tuple[str, ...],
          interactive: bool, tty: bool, user: str | None, workdir: str | None,
          privileged: bool, container: str, command: tuple[str, ...],
          env_vars: tuple[str, ...]) -> None:
    """Execute a command in a running container."""
    from ._create_request import parse_env, parse_env_file
    from ._attach_io import DEFAULT_DETACH_KEYS, RawTerminal, Session, parse_detach_keys

    variables = [v for path in env_file for v in parse_env_file(path, os.environ)]
    variables += parse_env(env_vars, os.environ)
    keys = detach_keys or DEFAULT_DETACH_KEYS
    body = {"AttachStdin": interactive and not detach, "AttachStdout": not detach,
            "AttachStderr": not detach, "Tty": tty, "Env": variables, "Cmd": list(command),
            "User": user or "", "WorkingDir": workdir or "", "Privileged": privileged,
            "DetachKeys": keys if tty else ""}
    client = env.client
    exec_id = client.post(f"/containers/{q(container)}/exec", body=body)["Id"]
    start = {"Detach": detach, "Tty": tty}
    try:
        if detach:
            client.post(f"/exec/{q(exec_id)}/start", body=start)
            return
        conn = client.hijack(f"/exec/{q(exec_id)}/start", body=start)
    except APIError as exc:
        report(exc)
        sys.exit(start_exit_code(exc.message))

    def resize(h: int, w: int) -> None:
        client.post(f"/exec/{q(exec_id)}/resize", params={"h": h, "w": w})

    session = Session(conn, tty=tty, stdin=interactive,
                      detach_keys=parse_detach_keys(keys) if tty else None, resize=resize)
    with RawTerminal(0, tty and interactive):
        session.send_size()
        detached = session.run()
    conn.close()
    sys.exit(0 if detached else _exit_code(client, exec_id))


@click.command()
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy/--no-sig-proxy", default=True,
              help="Proxy all received signals to the process")
@click.argument("container", shell_complete=_complete.running_containers)
@click.pass_obj
def attach(env: Env, detach_keys: str | None, no_stdin: bool, sig_proxy: bool,
           container: str) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    from ._ops import attach_and_start
    from ._attach_io import DEFAULT_DETACH_KEYS

    client = env.client
    info = client.get(f"/containers/{q(container)}/json")
    if not (info.get("State") or {}).get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first")
    config = info.get("Config") or {}
    code = attach_and_start(client, info["Id"], tty=bool(config.get("Tty")),
                            stdin=not no_stdin and bool(config.get("OpenStdin")),
                            detach_keys=detach_keys or DEFAULT_DETACH_KEYS, start=False,
                            sig_proxy=sig_proxy)
    sys.exit(code)
