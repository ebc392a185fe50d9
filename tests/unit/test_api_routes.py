"""The Engine API's route table (rctr.daemon._routes): one place, handlers over a daemon.

No daemon runs here: the router is built over a stand-in daemon, and a handler is called
with a stand-in request that records the answer.
"""

from __future__ import annotations

import inspect
import re
from typing import Any
from unittest import mock

import pytest

from rctr.daemon import _routes
from rctr.daemon._main import Daemon


def _example(pattern: str) -> str:
    """A path the pattern matches: ``{id}`` one segment, ``{name:path}`` two."""
    return re.sub(r"\{\w+\}", "x1", re.sub(r"\{\w+:path\}", "reg:5000/a/b:1", pattern))


def test_the_daemon_serves_the_table_in_its_order() -> None:
    router = Daemon.router(mock.MagicMock())  # the API fuzz builds it so too
    assert router.table() == [(method, pattern) for method, pattern, _ in _routes.ROUTES]


def test_no_route_is_listed_twice() -> None:
    keys = [(method, pattern) for method, pattern, _ in _routes.ROUTES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("method,pattern,handler", _routes.ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in _routes.ROUTES])
def test_each_route_is_the_first_match_for_its_paths(method: str, pattern: str,
                                                      handler: Any) -> None:
    """No earlier route of the same method takes a path meant for a later one, so the
    table's order is the reference's to choose."""
    router = _routes.router(mock.MagicMock())
    found, _params = router.match(method, _example(pattern))
    assert found.__wrapped__ is handler  # set by functools.wraps


@pytest.mark.parametrize("method,pattern,handler", _routes.ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in _routes.ROUTES])
def test_handlers_are_module_functions_of_daemon_and_request(method: str, pattern: str,
                                                             handler: Any) -> None:
    assert inspect.isfunction(handler) and handler.__qualname__ == handler.__name__
    assert list(inspect.signature(handler).parameters) == ["daemon", "req"]
    assert handler.__module__.startswith("rctr.daemon._api_")


def test_a_bound_handler_keeps_its_source_for_the_fuzz() -> None:
    """tests/fuzz/test_api_fuzz.py reads the query parameters a handler takes from its
    source, through the bound function."""
    router = _routes.router(mock.MagicMock())
    found, _ = router.match("GET", "/containers/json")
    assert 'req.flag("all")' in inspect.getsource(found)


class _Req:
    def __init__(self, params: dict[str, str]) -> None:
        self.params = params
        self.sent: list[tuple[Any, int]] = []

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.sent.append((obj, status))


def test_the_router_hands_each_handler_the_daemon() -> None:
    daemon = mock.MagicMock()
    daemon.volumes.inspect.return_value = {"Name": "data"}
    handler, params = _routes.router(daemon).match("GET", "/volumes/data")
    req = _Req(params)
    handler(req)  # a stand-in with what the handler uses
    daemon.volumes.inspect.assert_called_once_with("data")
    assert req.sent == [({"Name": "data"}, 200)]
