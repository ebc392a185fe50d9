"""What ``rctr run`` and ``rctr create`` do, over the API, once their flags are parsed.

Both entries to these verbs end here: the click commands (``_cmd_run``) and the
click-free fast path (``_run_fastpath``), so this module imports no click, and
its heavier imports wait until a command runs.
"""

from __future__ import annotations

import sys

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._context import Env

__all__ = ["create_container_only", "run_container"]


def run_container(obj: Env, detach: bool, detach_keys: str | None, sig_proxy: bool,
                  opts: dict[str, Any]) -> None:
    """``rctr run``: create, then start detached or attached; exits with the container's code."""
    from ._attach_io import DEFAULT_DETACH_KEYS
    from ._create_request import build_create
    from ._ops import attach_and_start, create_container

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


def create_container_only(obj: Env, opts: dict[str, Any]) -> None:
    """``rctr create``: print the new container's id."""
    from ._create_request import build_create
    from ._ops import create_container

    print(create_container(obj.client, build_create(opts, for_run=False)))
