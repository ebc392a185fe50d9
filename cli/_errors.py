"""Failures to one line on stderr and an exit code, once, for every command.

Docker's conventions: ``Error response from daemon: <message>`` and 125 for
errors of the CLI or the daemon (usage errors included); 126 and 127 when the
container's command cannot be invoked or found (see :func:`start_exit_code`);
otherwise the container's own status.  The client's module is imported only
when an error needs it, and ``--help`` needs none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["EXIT_ERROR", "each", "report", "run_guarded", "start_exit_code"]

EXIT_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


def start_exit_code(message: str) -> int:
    """The exit code for a failed start, as docker's CLI derives it from the message."""
    text = message.lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return EXIT_NOT_FOUND
    if "permission denied" in text or "is a directory" in text:
        return EXIT_CANNOT_INVOKE
    return EXIT_ERROR


def each(names: tuple[str, ...], action: Callable[[str], object], echo: bool = True) -> None:
    """``action`` on every name, as docker's commands on several objects: a failure is
    reported and the rest go on; print the name (or the action's result); exit 125 if any
    failed."""
    from ._client import APIError

    failed = False
    for name in names:
        try:
            result = action(name)
        except APIError as exc:
            report(exc)
            failed = True
            continue
        if echo:
            print(name if result is None else result, flush=True)
    if failed:
        sys.exit(EXIT_ERROR)


def report(exc: BaseException) -> int | None:
    """Print ``exc`` as one line (plus hints); return its exit code, None if not ours."""
    from ._client import APIError, ConnectionFailed
    from ._context import CLIError
    from ._daemon import DaemonStartFailed

    if isinstance(exc, APIError):
        _err(f"Error response from daemon: {exc.message}")
        return EXIT_ERROR
    if isinstance(exc, ConnectionFailed):
        _err(f"Cannot connect to the rctr daemon at unix://{exc.path}: "
             f"{exc.error.strerror or exc.error}. Is rctrd running? Start it with "
             "`rctr system service`, or see rctrd.log in the same directory.")
        return EXIT_ERROR
    if isinstance(exc, DaemonStartFailed):
        _err(f"rctr: {exc}; the end of rctrd.log:")
        for line in exc.log.splitlines():
            _err(f"    {line}")
        return EXIT_ERROR
    if isinstance(exc, CLIError):
        _err(f"rctr: {exc.message}")
        return exc.exit_code
    if isinstance(exc, OSError):
        _err(f"rctr: {exc}")
        return EXIT_ERROR
    return None


def run_guarded(main: Callable[[], object]) -> int:
    """Run a command's ``main`` (click's, not standalone, or the fast path's) and turn every
    outcome into an exit code."""
    try:
        rv = main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _err("")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        # click's own exceptions, when click is loaded at all (the fast path never loads it).
        click = sys.modules.get("click")
        if click is not None and isinstance(exc, click.Abort):
            _err("")
            return 130
        if click is not None and isinstance(exc, click.ClickException):
            exc.show()
            return EXIT_ERROR if isinstance(exc, click.UsageError) else exc.exit_code
        code = report(exc)
        if code is None:
            raise
        return code
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def _err(line: str) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(line, file=sys.stderr, flush=True)
