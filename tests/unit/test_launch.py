"""core.launch: the table of rctr's own helper processes and the argv it builds."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from rctr.core import launch


def test_a_module_helper_runs_with_dash_m() -> None:
    assert launch.argv("shim", "/state", "--ready-fd", "5") == \
        [sys.executable, "-m", "rctr.shim", "/state", "--ready-fd", "5"]
    assert launch.argv("zygote", "/run/z.sock", "--ready-fd", "7") == \
        [sys.executable, "-m", "rctr.shim", "--zygote", "/run/z.sock", "--ready-fd", "7"]
    assert launch.argv("daemon") == [sys.executable, "-m", "rctr.daemon"]
    assert launch.argv("links", "detach", "/ns", "eth1") == \
        [sys.executable, "-m", "rctr.netstack._links", "detach", "/ns", "eth1"]


def test_the_pause_process_keeps_its_name_and_runs_no_rctr_code() -> None:
    assert launch.argv("pause", "-c", "pass") == ["rctr-pause", "-I", "-S", "-c", "pass"]
    assert launch.HELPERS["pause"].module is None


def test_a_forked_helper_has_no_command_line() -> None:
    with pytest.raises(ValueError, match="forked"):
        launch.argv("port-forwarder")


def test_every_listed_module_exists() -> None:
    modules = [h.module for h in launch.HELPERS.values() if h.module]
    assert len(modules) == 6
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_every_entry_says_what_starts_holds_and_ends_it() -> None:
    for kind, helper in launch.HELPERS.items():
        assert helper.kind == kind
        assert helper.started_by and helper.holds and helper.ended_by, kind
