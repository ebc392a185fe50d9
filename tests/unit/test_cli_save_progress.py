"""``rctr save -o``: a byte count on a terminal, nothing elsewhere, the bytes unchanged."""

from __future__ import annotations

import io

from rctr.cli._cmd_image import _copy_showing_progress


def test_a_terminal_sees_the_count_redrawn_in_place() -> None:
    data = bytes(range(256)) * 10000  # 2.56 MB: three blocks
    target, terminal = io.BytesIO(), io.StringIO()
    _copy_showing_progress(io.BytesIO(data), target, terminal)
    assert target.getvalue() == data
    shown = terminal.getvalue()
    assert shown.count("\rSaving: ") == 3 and shown.endswith("\rSaved: 2.56MB\x1b[K\n")


def test_elsewhere_only_the_bytes() -> None:
    target = io.BytesIO()
    _copy_showing_progress(io.BytesIO(b"abc"), target, None)
    assert target.getvalue() == b"abc"
