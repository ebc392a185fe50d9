"""The ``rctr`` entry point.

``rctr runtime ...`` goes straight to the runtime's runc-compatible adaptor
without importing click: it is on the start-up path of every container.
So do plain ``rctr run`` and ``rctr create`` argument lists (``_run_fastpath``).
Every other command is a click command, loaded lazily, and so is every shell
completion request (``_RCTR_COMPLETE`` set: see ``_cmd_completion``), whatever
its arguments.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fast = not os.environ.get("_RCTR_COMPLETE")  # click reads a completion's words from there
    if fast and args[:1] == ["runtime"]:
        from rctr.rootless.cli import main as runtime_main

        return runtime_main(args[1:])
    if fast and args[:1] in (["run"], ["create"]):
        from ._run_fastpath import main as fast_main

        code = fast_main(args)
        if code is not None:
            return code
    from ._app import app

    try:
        app.main(args, prog_name="rctr")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
