"""The Engine API's routing and its error answers: which handler serves a method and path, and
which status an exception becomes.  The connection side is in ``_http_conn``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote

from rctr.core.errors import (AlreadyExists, no_space, Conflict, FailedPrecondition, InvalidArgument,
                              NotFound, RctrError, Unsupported)

if TYPE_CHECKING:
    from ._http import Request

__all__ = ["API_VERSION", "MIN_API_VERSION", "HTTPError", "NotModified", "Router", "Handler",
           "status_for", "message_for"]

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"


class HTTPError(Exception):
    """An answer other than success, with Docker's status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotModified(Exception):
    """304: Docker's answer to starting a running container or stopping a stopped one."""


def status_for(exc: BaseException) -> int:
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (AlreadyExists, Conflict)):
        return 409
    if isinstance(exc, (InvalidArgument, ValueError)):
        return 400
    if isinstance(exc, FailedPrecondition):
        return 409
    if isinstance(exc, Unsupported):
        return 501
    return 500  # Unavailable and anything unexpected


def message_for(exc: BaseException) -> str:
    """The message of an error (its hint apart); a full disk says what to do."""
    if isinstance(exc, OSError) and (full := no_space(exc)) is not None:
        return str(full)
    if isinstance(exc, RctrError):
        return exc.message  # the hint is added once, by the caller
    return str(exc) or type(exc).__name__


Handler = Callable[["Request"], None]


class Router:
    """Method + path pattern → handler; ``{name}`` matches one segment (or the rest, ``{name:path}``)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.patterns: list[tuple[str, str]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.routes.append((method, re.compile(f"^{regex}/?$"), handler))
        self.patterns.append((method, pattern))

    def table(self) -> list[tuple[str, str]]:
        """(method, pattern) of every route, in the order added (the API fuzz tests read it)."""
        return list(self.patterns)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for m, regex, handler in self.routes:
            found = regex.match(path)
            if found:
                if m == method or (method == "HEAD" and m == "GET"):
                    # Matched on the path as sent, so an escaped "/" stays in its segment;
                    # the values decoded, as Go's router gives them (docker-py escapes the
                    # "@" of "name@sha256:…", for one).
                    return handler, {k: unquote(v) for k, v in found.groupdict().items()}
                allowed = True
        if allowed:
            raise HTTPError(405, f"method {method} not allowed on {path}")
        raise HTTPError(404, f"page not found: {path}")
