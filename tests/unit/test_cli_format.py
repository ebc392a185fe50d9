"""--format templates, tables, units, progress display, references, detach keys."""

from __future__ import annotations

import io
import json

import pytest

from rctr.cli._client import APIError
from rctr.cli._format import Template, TemplateError, go_str, render_rows, tabulate
from rctr.cli._progress import show_stream
from rctr.cli._refs import normalize, registry_of, split
from rctr.cli._attach_io import DetachMatcher, parse_detach_keys
from rctr.cli._units import (bytes_size, human_duration, human_size, parse_bytes, parse_duration,
                             parse_timestamp)

INSPECT = {
    "Id": "abc123", "Name": "/web",
    "State": {"Running": False, "ExitCode": 3, "Status": "exited"},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"x": "1", "a.b": "2"}, "Cmd": None},
    "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
    "Mounts": [{"Source": "/h", "Destination": "/c"}, {"Source": "/h2", "Destination": "/d"}],
}


@pytest.mark.parametrize("template, expected", [
    ("{{.Id}}", "abc123"),
    ("{{.State.ExitCode}}", "3"),
    ("{{.State.Running}}", "false"),
    ("{{json .Config.Env}}", '["A=1","B=2"]'),
    ("{{.Config.Env | json}}", '["A=1","B=2"]'),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels}}", "map[a.b:2 x:1]"),
    ('{{index .Config.Labels "a.b"}}', "2"),
    ('{{(index .NetworkSettings.Ports "80/tcp")}}', None),
    ('{{index .NetworkSettings.Ports "80/tcp" 0 "HostPort"}}', "8080"),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{.Config.Cmd}}", "<nil>"),
    ("{{.Nope}}", "<no value>"),
    ("{{.State.Nope.Deeper}}", "<no value>"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ("{{upper .State.Status}} {{len .Mounts}}", "EXITED 2"),
    ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/h:/c /h2:/d "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a.b=2;x=1;"),
    ("{{range $m := .Mounts}}{{$m.Source}}{{end}}", "/h/h2"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "down"),
    ("{{range .Config.Cmd}}x{{else}}none{{end}}", "none"),
    ("{{- .Id -}} \n", "abc123"),
    ("name={{.Name}}\\tid={{.Id}}", "name=/web\tid=abc123"),
])
def test_templates(template: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(TemplateError):
            Template(template).render(INSPECT)
        return
    assert Template(template).render(INSPECT) == expected


def test_json_of_the_whole_object() -> None:
    assert json.loads(Template("{{json .}}").render(INSPECT)) == INSPECT


@pytest.mark.parametrize("template", ["{{printf \"%s\" .Id}}", "{{with .State}}x{{end}}",
                                      "{{range .Mounts}}", "{{end}}", "{{eq .Id 1}}",
                                      "{{.Id | nosuch}}"])
def test_unsupported_templates_fail_clearly(template: str) -> None:
    with pytest.raises(TemplateError):
        Template(template).render(INSPECT)


def test_go_str() -> None:
    assert go_str(True) == "true" and go_str(None) == "<nil>" and go_str(2.0) == "2"
    assert go_str([1, [2, 3]]) == "[1 [2 3]]"
    assert go_str({"b": 1, "a": [True]}) == "map[a:[true] b:1]"


def test_table_has_headers_and_aligned_columns() -> None:
    rows = [{"ID": "abc", "Names": "web", "Status": "Up 2 seconds"},
            {"ID": "defdefdefdefdef", "Names": "db", "Status": "Exited (0)"}]
    text = render_rows("table {{.ID}}\\t{{.Names}}\\t{{.Status}}", rows, {"ID": "CONTAINER ID"})
    assert text.splitlines() == [
        "CONTAINER ID".ljust(18) + "NAMES".ljust(10) + "STATUS",
        "abc".ljust(18) + "web".ljust(10) + "Up 2 seconds",
        "defdefdefdefdef   db        Exited (0)",
    ]
    assert render_rows("{{.Names}}", rows) == "web\ndb"
    assert [json.loads(line) for line in render_rows("json", rows).splitlines()] == rows
    assert render_rows("table {{.Names}}", []) == "NAMES"


def test_tabulate_minimum_width() -> None:
    assert tabulate(["a\tb", "cc\td"]) == "a         b\ncc        d"


@pytest.mark.parametrize("size, text", [(0, "0B"), (999, "999B"), (1000, "1kB"),
                                        (4_261_234, "4.261MB"), (1.5e9, "1.5GB")])
def test_human_size(size: float, text: str) -> None:
    assert human_size(size) == text


def test_human_size_precision_and_bytes_size() -> None:
    assert human_size(4_261_234, 3) == "4.26MB"
    assert bytes_size(1536) == "1.5KiB" and bytes_size(512 << 20) == "512MiB"


@pytest.mark.parametrize("seconds, text", [
    (0.2, "Less than a second"), (1, "1 second"), (42, "42 seconds"), (90, "About a minute"),
    (600, "10 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
    (21 * 86400, "3 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_parsers() -> None:
    assert parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5
    assert parse_duration("1.5h") == 5400 and parse_duration("0") == 0
    assert parse_bytes("512m") == 512 << 20 and parse_bytes("1g") == 1 << 30
    assert parse_bytes("100") == 100 and parse_bytes("1.5kb") == 1536
    assert parse_bytes("2MiB") == 2 << 20
    for bad in ("", "1x", "m"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    with pytest.raises(ValueError):
        parse_duration("10 minutes")
    assert parse_timestamp("1700000000") == "1700000000"
    assert parse_timestamp("10m", now=1000.0) == "400"
    assert parse_timestamp("2023-11-14T22:13:20Z") == "1700000000"
    assert parse_timestamp("2023-11-14T22:13:20.5+00:00") == "1700000000.5"
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


PULL = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "id": "a1"},
    {"status": "Pulling fs layer", "id": "b2"},
    {"status": "Downloading", "id": "a1", "progress": "[==>   ] 1kB/2kB",
     "progressDetail": {"current": 1, "total": 2}},
    {"status": "Pull complete", "id": "a1"},
    {"status": "Digest: sha256:ff"},
    {"status": "Status: Downloaded newer image for busybox:latest"},
]


def test_progress_plain_skips_ticks() -> None:
    out = io.StringIO()
    result = show_stream(PULL, out, tty=False)
    assert out.getvalue().splitlines() == [
        "latest: Pulling from library/busybox", "a1: Pulling fs layer", "b2: Pulling fs layer",
        "a1: Pull complete", "Digest: sha256:ff",
        "Status: Downloaded newer image for busybox:latest"]
    assert result.statuses[-1].startswith("Status: Downloaded")


def test_progress_terminal_redraws_lines_in_place() -> None:
    out = io.StringIO()
    show_stream(PULL[:5], out, tty=True)
    text = out.getvalue()
    # a1 is the second of three id lines: two up, clear, redraw, two down.
    assert "\x1b[2A\r\x1b[2Ka1: Downloading [==>   ] 1kB/2kB\x1b[2B\r" in text
    assert text.endswith("\x1b[2A\r\x1b[2Ka1: Pull complete\x1b[2B\r")


def test_progress_quiet_and_errors_and_aux() -> None:
    out = io.StringIO()
    result = show_stream([{"stream": "Loaded image: x:1\n"}, {"aux": {"ID": "sha256:1"}}], out,
                         quiet=True)
    assert out.getvalue() == "" and result.aux == [{"ID": "sha256:1"}]
    assert result.streams == ["Loaded image: x:1\n"]
    with pytest.raises(APIError, match="manifest unknown"):
        show_stream([{"status": "x"}, {"errorDetail": {"message": "manifest unknown"},
                                       "error": "manifest unknown"}], io.StringIO())


@pytest.mark.parametrize("ref, parts, norm", [
    ("busybox", ("busybox", "", ""), "docker.io/library/busybox:latest"),
    ("user/app:1.0", ("user/app", "1.0", ""), "docker.io/user/app:1.0"),
    ("localhost:5000/a/b", ("localhost:5000/a/b", "", ""), "localhost:5000/a/b:latest"),
    ("reg.io/x@sha256:ab", ("reg.io/x", "", "sha256:ab"), "reg.io/x@sha256:ab"),
    ("docker.io/library/alpine:3", ("docker.io/library/alpine", "3", ""),
     "docker.io/library/alpine:3"),
])
def test_references(ref: str, parts: tuple[str, str, str], norm: str) -> None:
    assert split(ref) == parts and normalize(ref) == norm


def test_registry_of() -> None:
    assert registry_of("busybox") == "docker.io" and registry_of("a/b") == "docker.io"
    assert registry_of("localhost/x") == "localhost" and registry_of("127.0.0.1:5000/x") == \
        "127.0.0.1:5000"


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@,ctrl-]") == b"a\x00\x1d"
    m = DetachMatcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == (b"ab", False)  # the ctrl-p is held back
    assert m.feed(b"x") == (b"\x10x", False)  # and sent when the sequence breaks
    assert m.feed(b"\x10\x10") == (b"\x10", False)
    assert m.feed(b"\x11rest") == (b"", True)
    with pytest.raises(Exception, match="invalid detach keys"):
        parse_detach_keys("ctrl-1")
