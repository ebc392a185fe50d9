"""``rctr login`` and ``rctr logout``.

The daemon checks the credentials (``POST /auth``); the CLI keeps them (see
``_auth``) and sends them with pull and push, as docker's CLI does.
"""

from __future__ import annotations

import sys

import click

from ._context import CLIError, Env
from ._refs import DEFAULT_REGISTRY

__all__ = ["login", "logout"]


@click.command()
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.argument("server", required=False)
@click.pass_obj
def login(env: Env, username: str | None, password: str | None, password_stdin: bool,
          server: str | None) -> None:
    """Log in to a registry (default: Docker Hub)."""
    from . import _auth

    server = server or DEFAULT_REGISTRY
    if password and password_stdin:
        raise CLIError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise CLIError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=sys.stderr)
    if not username:
        username = input("Username: ").strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        raise CLIError("Error: username and password are required")
    result = env.client.post("/auth", body={"username": username, "password": password,
                                            "serveraddress": server}) or {}
    path = _auth.save(server, username, password)
    print(f"WARNING! Your password will be stored unencrypted in {path}.", file=sys.stderr)
    print(result.get("Status") or "Login Succeeded")


@click.command()
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry (default: Docker Hub)."""
    from . import _auth

    server = server or DEFAULT_REGISTRY
    if _auth.remove(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
