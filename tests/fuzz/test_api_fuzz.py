"""The Engine API under hostile input (issue 7), against a real rctrd as the test user.

Every route of the daemon's own table (``Daemon.router``, so a new endpoint is
fuzzed without a change here) gets random and malformed requests from
hypothesis: bodies (wrong types, huge numbers, deep nesting, invalid UTF-8,
truncated JSON, Content-Length lies, chunked garbage), headers, query strings
and path parameters; a last test sends request lines and headers that are not
HTTP at all.  Every answer must be well-formed HTTP with a status below 500
(the few 5xx that are not about the input are listed in ``_ALLOWED_5XX``); at
the end the daemon is the same process, holds no more file descriptors or
threads than before, and still runs a container.

The requests come from ``rawclient.py``, run as the user (rctrd admits only
its owner), one JSON line per request.  Registry names are pinned to a closed
loopback port, so no pull, push or login leaves the machine.  The containers,
images, networks and volumes the fuzz may hit are fixtures of this module; a
keeper container holds the test image so no prune or remove can take it.
Counts per endpoint and status class go to ``$RCTR_FUZZ_REPORT``
(``/tmp/rctr-api-fuzz.json``) and to stdout.
"""

from __future__ import annotations

import base64
import collections
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from daemonenv import IMAGE, PYTHON, RctrUser, ok
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              # the requests are big on purpose; hypothesis warns about printing them
              pytest.mark.filterwarnings("ignore:Generating overly large repr")]

REPORT = os.environ.get("RCTR_FUZZ_REPORT", "/tmp/rctr-api-fuzz.json")
EXAMPLES = int(os.environ.get("RCTR_FUZZ_EXAMPLES", "100"))
STREAM_EXAMPLES = max(1, EXAMPLES // 3)  # each may hold the line for the stream window
BODY_SEEN = 2000  # characters of each answer's body the client reports
REGISTRY = "127.0.0.1:1"  # nothing listens: every pull, push and login is refused at once
ALIAS = "fuzz/victim:latest"
PUSHABLE = f"{REGISTRY}/fuzz/victim:latest"

# Endpoints whose answer is a stream, or that may wait on a container: a head with a body
# still coming, or (stop, restart, exec start) no head before the client gives up, is
# "no answer yet" for these only.
_SLOW = re.compile(r"^(GET /events|GET /containers/\{id\}/(logs|stats)|POST /containers/\{id\}/"
                   r"(wait|attach|stop|restart)|POST /exec/\{id\}/start|POST /images/create|"
                   r"POST /images/load|GET /images/(get|\{name:path\}/get)|"
                   r"POST /images/\{name:path\}/push)$")

# 5xx answers that say something about the host, not the request (Docker answers so too).
_ALLOWED_5XX = [
    (501, re.compile(r".")),  # Unsupported: a feature rctr does not have, with its message
    (500, re.compile(r"cannot reach the registry 127\.0\.0\.1:1")),  # POST /auth, closed port
    (505, None),  # a request line claiming HTTP/2 or later: Go's net/http answers 505 too
    (503, re.compile(r"not a swarm manager|not part of a swarm")),  # no swarm: dockerd's 503
]


_PARAM_USE = re.compile(r"""req\.(arg|flag|int_arg|json_arg)\(\s*["']([\w-]+)["']|"""
                        r"""req\.query\.get\(\s*["']([\w-]+)["']|req\.(filters)\(""")


def _params(handler: Any) -> dict[str, str]:
    """The query parameters a handler reads, from its source: {name: arg|flag|int_arg|json_arg}."""
    try:
        source = inspect.getsource(handler)
    except (OSError, TypeError):
        return {}
    found = {}
    for kind, name, listed, filters in _PARAM_USE.findall(source):
        if filters:
            found["filters"] = "json_arg"
        else:
            found[name or listed] = kind or "arg"
    return found


def _routes() -> list[tuple[str, str, dict[str, str]]]:
    """(method, pattern, query parameters) of every route the daemon registers."""
    from rctr.daemon._main import Daemon

    router = Daemon.router(mock.MagicMock())
    handlers = [handler for _method, _regex, handler in router.routes]
    return [(m, p, _params(h)) for (m, p), h in zip(router.table(), handlers, strict=True)]


ROUTES = _routes()

# -- what the fuzz can name ---------------------------------------------------------------
# Filled by the fixture and from 201 answers; a strategy draws an index, read at send time.
POOL: dict[str, list[str]] = {"container": [], "exec": [], "volume": ["fuzz-vol"],
                              "network": ["fuzz-net", "bridge", "host", "none"],
                              "image": [ALIAS, "fuzz/victim", PUSHABLE]}
_HEXISH = re.compile(r"(sha256:)?[0-9a-f]*")


def _not_a_prefix(text: str) -> str:
    """Junk that cannot be a prefix of a real id (the keeper's, the test image's)."""
    return "x" + text if _HEXISH.fullmatch(text) else text


NASTY = ["..", ".", "../../../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%00", "a%00b",
         "\x00", "\u00e9\u00e8", "\U0001f600", "A" * 5000, "%ff%fe", "-1", "null", "{}", " ",
         "%20", "..%2f..%2f", "\\..\\..\\", "$(id)", "\r\nX-Injected: 1", "con", "sha256:",
         "sha256:zz", "a" * 65, "\ud800"[:0] + "\u202e", "x:y@z", "UPPER", "-", "_", "*", "%"]

junk_text = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))
ident_junk = junk_text.filter(bool).map(_not_a_prefix)


def pooled(kind: str) -> st.SearchStrategy[str]:
    # Half the time one of the first two (fuzz-target, fuzz/victim, fuzz-net...), which the
    # fixture keeps alive; else any, the dead included.
    index = st.one_of(st.integers(0, 1), st.integers(0, 1 << 16))
    return index.map(lambda i: f"~pool~{kind}~{i}~")  # resolved at send time


def _resolve(text: str) -> str:
    def one(found: re.Match[str]) -> str:
        pool = POOL[found.group(1)] or ["none-yet"]
        return pool[int(found.group(2)) % len(pool)]
    return re.sub(r"~pool~(\w+)~(\d+)~", one, text)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(),
                      st.sampled_from([2 ** 63, -2 ** 63 - 1, 10 ** 40, 1e308, -0.0]),
                      st.floats(), junk_text)
json_junk = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(junk_text, inner, max_size=4)), max_leaves=12)


def junky(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes anything."""
    return st.one_of(strategy, strategy, strategy, json_junk)


def shape(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with a few of these keys (each value junky), and a junk key now and then: few, so
    that one wrong value at a time meets the daemon's checks, not always the first of many."""
    names = sorted(fields)

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        out = {k: draw(junky(fields[k])) for k in draw(st.lists(st.sampled_from(names), max_size=4,
                                                                unique=True))}
        if draw(st.integers(0, 9)) == 0:
            out[draw(junk_text)] = draw(json_junk)
        return out
    return build()


# Commands that can do no harm, whatever else the body says (a bind of / included).
safe_cmd = st.sampled_from([["true"], ["sleep", "2"], ["echo", "fuzz"], ["false"], ["/nonexistent"],
                            [], [""], ["sh", "-c", "exit 3"], "true", None])
small_int = st.one_of(st.integers(-3, 10), st.sampled_from([0, -1, 2 ** 31, 2 ** 63, 10 ** 30, 6]))
ports = st.dictionaries(st.sampled_from(["80/tcp", "53/udp", "x/tcp", "99999/tcp", "80/sctp", ""]),
                        st.one_of(st.just({}), st.lists(shape(HostPort=st.sampled_from(
                            ["0", "", "x", "70000", "-1"]), HostIp=st.sampled_from(
                            ["127.0.0.1", "::1", "999.1.1.1", "", "localhost"])), max_size=2)),
                        max_size=2)
mount = shape(Type=st.sampled_from(["volume", "bind", "tmpfs", "npipe", "", "cluster"]),
              Source=st.one_of(st.sampled_from(["fuzz-vol", "/nonexistent", "/tmp", "", "rel"]),
                               junk_text),
              Target=st.one_of(st.sampled_from(["/data", "/", "relative", "/proc/x", ""]), junk_text),
              ReadOnly=st.booleans(), VolumeOptions=shape(NoCopy=st.booleans()),
              TmpfsOptions=shape(SizeBytes=small_int, Mode=small_int),
              BindOptions=shape(Propagation=st.sampled_from(["rprivate", "shared", "bogus"])))
host_config = shape(
    Binds=st.lists(st.one_of(st.sampled_from(["fuzz-vol:/data", "/nonexistent:/x", ":/x", "a:b:c:d",
                                              "/tmp:/tmp:rw,z", "fuzz-vol:/data:ro,nocopy", "/:/host:ro"]),
                             junk_text), max_size=3),
    Mounts=st.lists(mount, max_size=2), PortBindings=ports, Memory=small_int,
    MemorySwap=small_int, NanoCpus=small_int, CpuShares=small_int, PidsLimit=small_int,
    RestartPolicy=shape(Name=st.sampled_from(["no", "always", "on-failure", "unless-stopped", "x", ""]),
                        MaximumRetryCount=small_int),
    NetworkMode=st.one_of(st.sampled_from(["bridge", "host", "none", "fuzz-net", "container:x",
                                           "slirp4netns", "pasta:--x", "default", ""]), junk_text),
    CapAdd=st.lists(st.sampled_from(["ALL", "NET_ADMIN", "CAP_SYS_ADMIN", "bogus", ""]), max_size=3),
    CapDrop=st.lists(st.sampled_from(["ALL", "CHOWN", "bogus"]), max_size=2),
    Privileged=st.booleans(), AutoRemove=st.booleans(), ShmSize=small_int, Init=st.booleans(),
    ReadonlyRootfs=st.booleans(), Tmpfs=st.dictionaries(junk_text, junk_text, max_size=2),
    Dns=st.lists(junk_text, max_size=2), ExtraHosts=st.lists(junk_text, max_size=2),
    SecurityOpt=st.lists(st.sampled_from(["seccomp=unconfined", "no-new-privileges", "label=x",
                                          "seccomp=/nonexistent", "apparmor=x"]), max_size=2),
    Ulimits=st.lists(shape(Name=st.sampled_from(["nofile", "nproc", "bogus"]), Soft=small_int,
                           Hard=small_int), max_size=2),
    Sysctls=st.dictionaries(st.sampled_from(["net.ipv4.ip_forward", "kernel.x", "bogus"]), junk_text,
                            max_size=2),
    LogConfig=shape(Type=st.sampled_from(["json-file", "none", "syslog"]), Config=json_junk),
    Devices=st.lists(shape(PathOnHost=st.sampled_from(["/dev/null", "/dev/fuse", "/nonexistent"]),
                           PathInContainer=junk_text, CgroupPermissions=junk_text), max_size=1),
    CpuQuota=small_int, CpuPeriod=small_int, OomKillDisable=st.booleans(), IpcMode=junk_text,
    PidMode=st.sampled_from(["host", "container:x", ""]), UsernsMode=st.sampled_from(["host", ""]))
container_config = shape(
    Image=st.one_of(st.sampled_from([ALIAS, ALIAS, "fuzz/victim", "", "busybox"]), ident_junk),
    Cmd=safe_cmd, Entrypoint=safe_cmd, Env=st.lists(junk_text, max_size=3), User=st.one_of(
        st.sampled_from(["root", "nobody", "1000:1000", "0:0", "x:y", "99999999999"]), junk_text),
    WorkingDir=junk_text, Labels=st.dictionaries(junk_text, junk_text, max_size=2),
    ExposedPorts=ports, Tty=st.booleans(), OpenStdin=st.booleans(), AttachStdin=st.booleans(),
    StopSignal=st.sampled_from(["SIGTERM", "9", "SIGBOGUS", ""]), StopTimeout=small_int,
    Healthcheck=shape(Test=st.sampled_from([["CMD", "true"], ["NONE"], ["CMD-SHELL", "exit 1"], []]),
                      Interval=small_int, Timeout=small_int, Retries=small_int, StartPeriod=small_int),
    Volumes=st.dictionaries(st.sampled_from(["/data", "rel", "", "/"]), st.just({}), max_size=2),
    Hostname=junk_text, Domainname=junk_text, HostConfig=host_config,
    NetworkingConfig=shape(EndpointsConfig=st.dictionaries(
        st.sampled_from(["fuzz-net", "bridge", "nope"]), shape(
            Aliases=st.lists(junk_text, max_size=2),
            IPAMConfig=shape(IPv4Address=st.sampled_from(["10.99.0.5", "x", "999.0.0.1", ""]))),
        max_size=2)))

BODIES: dict[str, st.SearchStrategy[Any]] = {
    "POST /containers/create": st.builds(lambda image, rest: {**rest, "Image": image}, st.one_of(
        st.just(ALIAS), st.just(ALIAS), st.just(ALIAS), ident_junk, json_junk), container_config),
    "POST /containers/{id}/update": shape(Memory=small_int, MemorySwap=small_int, NanoCpus=small_int,
                                          CpuShares=small_int, PidsLimit=small_int, CpuQuota=small_int,
                                          RestartPolicy=shape(Name=junk_text, MaximumRetryCount=small_int)),
    "POST /containers/{id}/exec": st.builds(lambda cmd, rest: {**rest, "Cmd": cmd}, safe_cmd, shape( AttachStdin=st.booleans(),
                                        AttachStdout=st.booleans(), AttachStderr=st.booleans(),
                                        Tty=st.booleans(), Env=st.lists(junk_text, max_size=2),
                                        User=junk_text, WorkingDir=junk_text, Privileged=st.booleans())),
    "POST /exec/{id}/start": shape(Detach=st.booleans(), Tty=st.booleans(),
                                   ConsoleSize=st.lists(small_int, max_size=3)),
    "POST /volumes/create": shape(Name=st.one_of(st.just("fuzz-vol"), ident_junk), Driver=junk_text,
                                  DriverOpts=st.dictionaries(junk_text, junk_text, max_size=2),
                                  Labels=st.dictionaries(junk_text, junk_text, max_size=2)),
    "POST /networks/create": st.builds(lambda name, rest: {**rest, "Name": name}, st.one_of(
        st.just("fuzz-net"), ident_junk, ident_junk, json_junk), shape( Driver=st.sampled_from(["bridge", "x", ""]),
        Internal=st.booleans(), EnableIPv6=st.booleans(), Options=json_junk, Labels=json_junk,
        IPAM=shape(Config=st.lists(shape(
            Subnet=st.sampled_from(["10.99.0.0/24", "10.99.0.0/33", "x", "::/0", "0.0.0.0/0", ""]),
            Gateway=st.sampled_from(["10.99.0.1", "10.98.0.1", "x"]),
            IPRange=st.sampled_from(["10.99.0.0/28", "x"])), max_size=2)))),
    "POST /networks/{id}/connect": shape(Container=pooled("container"), EndpointConfig=shape(
        Aliases=st.lists(junk_text, max_size=2),
        IPAMConfig=shape(IPv4Address=st.sampled_from(["10.99.0.9", "x", ""])))),
    "POST /networks/{id}/disconnect": shape(Container=pooled("container"), Force=st.booleans()),
    "POST /auth": shape(username=junk_text, password=junk_text, email=junk_text,
                        identitytoken=st.sampled_from(["", "tok"]), serveraddress=junk_text),
}


def _tar(entries: list[tuple[str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "device":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            else:
                info.size = 4
            tar.addfile(info, io.BytesIO(b"fuzz") if info.isreg() else None)
    return buf.getvalue()


tar_body = st.one_of(
    st.lists(st.tuples(st.sampled_from(["f", "../escape", "/abs", "d/", "a/../../b", "manifest.json",
                                        "index.json", "oci-layout", "blobs/sha256/x", ".wh.f", "\u00e9"]),
                       st.sampled_from(["file", "symlink", "dir", "device"])), max_size=4).map(_tar),
    st.binary(max_size=600), st.just(b""))
TAR_ROUTES = {"PUT /containers/{id}/archive", "POST /images/load", "POST /images/create"}

PARAMS = ["all", "limit", "size", "filters", "name", "platform", "t", "timeout", "signal", "condition",
          "force", "v", "link", "w", "h", "stdin", "stdout", "stderr", "stream", "logs", "follow",
          "tail", "since", "until", "timestamps", "one-shot", "fromImage", "fromSrc", "repo", "tag",
          "changes", "names", "noprune", "path", "noOverwriteDirToNonDir", "copyUIDGID",
          "detachKeys", "ps_args", "quiet", "dangling", "reference"]
QUERY_VALUES = ["", "0", "1", "true", "false", "yes", "-1", "99999999999999999999999", "1e9", "NaN",
                "inf", "0x10", " 1", "1.5", "all", "SIGKILL", "SIGSTOP", "SIGCONT", "15", "0",
                "not-running", "next-exit", "removed", "bogus", "{}", "[]", "null", '"str"',
                '{"status":["running"]}', '{"label":{"a=b":true}}', '{"id":"x"}', '{"a":1}',
                '{"dangling":["true"]}', '{"reference":[1,2]}', '{"label":[null]}', '{"name":{"a":1}}',
                '{"until":["1h"]}', "[1,", "2006-01-02T15:04:05Z", "1700000000.5", "-9999999999999",
                "/", "/etc", "../../..", "/tmp/../..", "-", "a=b", "1h", "10m"]
query_value = st.one_of(st.sampled_from(QUERY_VALUES), junk_text,
                        st.dictionaries(junk_text, json_junk, max_size=2).map(json.dumps))
# Names the daemon might pull, push to or log in to: only the closed loopback port.
_SAFE_IMAGE = st.one_of(st.just(REGISTRY + "/"), st.just(f"http://{REGISTRY}/")).flatmap(
    lambda head: junk_text.map(lambda tail: head + tail))


def _encode_query(items: list[tuple[str, str]], mode: str) -> bytes:
    if mode == "raw":  # unescaped: spaces and non-ASCII straight into the request line
        return "&".join(f"{k}={v}" for k, v in items).encode("utf-8", "surrogateescape")
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items).encode()


FAULTS = ["none", "none", "method", "prefix", "path", "path", "query", "query", "headers", "framing",
          "body", "body", "body"]
PLAIN_VALUE = {"flag": st.sampled_from(["1", "0", "true", "false", ""]),
               "int_arg": st.one_of(st.integers(-2, 5).map(str), st.sampled_from(["x", "1.5", "-1", "99" * 20])),
               "json_arg": st.dictionaries(st.sampled_from(["status", "label", "id", "name", "dangling",
                                                            "reference", "until", "type", "driver"]),
                                           st.one_of(st.lists(junk_text, max_size=2), json_junk),
                                           max_size=2).map(json.dumps),
               "arg": st.one_of(st.sampled_from(QUERY_VALUES), pooled("container"), pooled("image"),
                                junk_text)}


@st.composite
def requests(draw: Any, method: str, pattern: str, params: dict[str, str]) -> dict[str, Any]:
    """One request for ``method pattern``, as bytes, and how to read its answer.

    One part of it is hostile (``fault``); the rest is what a client would send, with the
    body's values wrong now and then, so that requests reach past the first check."""
    key = f"{method} {pattern}"
    fault = draw(st.sampled_from(FAULTS))
    if fault == "method":
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS",
                                       "TRACE", "CONNECT", "get", "FUZZ", "G\u00e9T"]))
    pieces = re.split(r"\{(\w+)(?::path)?\}", pattern)
    path = ""
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            path += piece
            continue
        kind = {"id": "exec" if pattern.startswith("/exec") else
                "network" if pattern.startswith("/networks") else "container",
                "name": "volume" if pattern.startswith("/volumes") else "image"}[piece]
        value = draw(st.one_of(pooled(kind), ident_junk) if fault == "path" else pooled(kind))
        if kind == "image" and "/push" in pattern:
            value = draw(st.one_of(st.just(PUSHABLE), _SAFE_IMAGE))
        how = draw(st.sampled_from(["quote", "quote", "keep-slash", "raw"])) if fault == "path" \
            else "keep-slash"
        path += value if how == "raw" else quote(value, safe="/:" if how == "keep-slash" else "")
    prefix = draw(st.sampled_from(["/v0.1", "/v99.99", "/vx", "/v1.43.1", "//", "/v1.43/v1.43",
                                   "/v1.44", "/v1.24"] if fault == "prefix" else ["", "/v1.43", "/v1.41"]))
    query = [(name, draw(PLAIN_VALUE.get(kind, PLAIN_VALUE["arg"])))
             for name, kind in params.items() if draw(st.booleans())]
    if fault == "query":
        query += draw(st.lists(st.tuples(st.one_of(st.sampled_from(sorted(params) or PARAMS), junk_text),
                                         query_value), min_size=1, max_size=5))
    if key == "POST /images/create":  # pulls only from the closed port
        query = [(k, v) for k, v in query if k not in ("fromImage", "fromSrc", "platform")]
        if draw(st.booleans()):
            query.append(("fromImage", draw(_SAFE_IMAGE)))
        else:
            query.append(("fromSrc", draw(st.sampled_from(["-", "-", "http://127.0.0.1:1/x", ""]))))
    if key == "GET /events" and draw(st.booleans()):
        query.append(("until", str(int(time.time()) - draw(st.integers(-1, 5)))))
    target = (prefix + path).encode("utf-8", "surrogateescape")
    if query:
        target += b"?" + _encode_query(query, "raw" if fault == "query" and draw(st.booleans())
                                       else "quote")
    framing = draw(_framings()) if fault == "framing" else "length"
    return {"key": key, "method": method, "target": target, "body": draw(_bodies(key, fault == "body")),
            "headers": draw(_headers()) if fault == "headers" else [], "framing": framing,
            # Kept open, a misframed request is rightly waited for: those end the sending side.
            "half_close": draw(st.sampled_from([True, True, True, False]))
            if framing in ("length", "chunked") else True}


def _bodies(key: str, hostile: bool) -> st.SearchStrategy[Any]:
    shaped = BODIES.get(key, json_junk)
    if key == "POST /auth":  # whatever the body says, a login goes to the closed port
        shaped = shaped.map(lambda b: {**b, "serveraddress": REGISTRY} if isinstance(b, dict) else b)
    encoded = shaped.map(lambda b: json.dumps(b).encode())
    if key in TAR_ROUTES:
        encoded = st.one_of(tar_body, tar_body, encoded)
    if not hostile:
        return st.one_of(encoded, encoded, encoded, st.none()) if key.startswith(("POST", "PUT")) \
            else st.none()
    choices = [encoded, st.none(), json_junk.map(lambda b: json.dumps(b).encode()),
               st.sampled_from([b"[" * 100000, b"{\"a\":" * 50000, b"\xff\xfe\x00", b"{\"Image\":\"\xff\"}",
                                b"nul\x00l", b"1e99999", b"-", b"\"\\ud800\"", b"{\"a\":1}{}",
                                b"{\"Cmd\": [1, 2]}", b"[]", b"null", b"\"x\"", b"9" * 5000]),
               shaped.flatmap(lambda b: st.integers(0, 40).map(
                   lambda n: json.dumps(b).encode()[:n])),  # truncated
               st.binary(max_size=200)]
    return st.one_of(choices)


def _headers() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    name = st.one_of(st.sampled_from([b"Content-Type", b"X-Registry-Auth", b"X-Registry-Config",
                                      b"Upgrade", b"Connection", b"Expect", b"Host", b"Accept",
                                      b"User-Agent", b"Content-Encoding", b"Range", b"Cookie"]),
                     st.binary(min_size=1, max_size=12))
    value = st.one_of(st.sampled_from([b"application/json", b"application/x-tar", b"text/plain;;",
                                       b"tcp", b"h2c", b"Upgrade", b"close", b"keep-alive",
                                       b"100-continue", b"bogus-expectation", b"gzip",
                                       b"eyJ1c2VybmFtZSI6ImEiLCJwYXNzd29yZCI6ImIifQ", b"!!!notbase64",
                                       b"e30", b"bnVsbA", b"x" * 70000, b"\xff\xfe", b""]),
                      st.binary(max_size=30))
    few = st.lists(st.tuples(name, value), max_size=4)
    many = st.integers(101, 140).map(lambda n: [(b"X-Many-%d" % i, b"1") for i in range(n)])
    return st.one_of(few, few, few, many)


def _framings() -> st.SearchStrategy[str]:
    return st.sampled_from(["length", "length", "length", "none", "chunked", "chunked-garbage",
                            "length-short", "length-long", "length-junk", "length-twice",
                            "length-and-chunked", "length-negative"])


def render(req: dict[str, Any]) -> bytes:
    """The request as bytes: request line, headers, the body framed (or misframed) as asked."""
    body: bytes | None = req["body"]
    framing = req["framing"]
    method = req["method"].encode("utf-8")
    head = [method + b" " + _resolve(req["target"].decode("utf-8", "surrogateescape")).encode(
        "utf-8", "surrogateescape") + b" HTTP/1.1", b"Host: localhost"]
    head += [n + b": " + v for n, v in req["headers"]]
    data = body or b""
    if body is not None and b"~pool~" in body:
        data = _resolve(body.decode()).encode()
    if framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        data = (b"%x\r\n%s\r\n" % (len(data), data) if data else b"") + b"0\r\n\r\n"
    elif framing == "chunked-garbage":
        head.append(b"Transfer-Encoding: chunked")
        data = b"zz\r\n" + data + b"\r\nffffffffffffffffff\r\n"
    elif framing == "length-short":
        head.append(b"Content-Length: %d" % max(0, len(data) - 3))
    elif framing == "length-long":
        head.append(b"Content-Length: %d" % (len(data) + 1000))
    elif framing == "length-junk":
        head.append(b"Content-Length: 1e3, x")
    elif framing == "length-twice":
        head += [b"Content-Length: %d" % len(data), b"Content-Length: 7"]
    elif framing == "length-and-chunked":
        head += [b"Content-Length: %d" % len(data), b"Transfer-Encoding: chunked"]
    elif framing == "length-negative":
        head.append(b"Content-Length: -5")
    elif framing == "length" or data:
        head.append(b"Content-Length: %d" % len(data))
    return b"\r\n".join(head) + b"\r\n\r\n" + data


# -- the daemon, the client, the counts ---------------------------------------------------------


class Fuzz:
    def __init__(self, rc: RctrUser) -> None:
        self.rc = rc
        script = rc.shell.base / "rawclient.py"
        shutil.copy(Path(__file__).parent / "rawclient.py", script)
        os.chmod(script, 0o644)
        self.proc = rc.popen([PYTHON, str(script), str(rc.socket)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.pid = rc.daemon_pid()
        self.trace: dict[str, tuple[int, int]] = {}
        self.messages: dict[str, set[str]] = collections.defaultdict(set)  # a few, for the report

    def send(self, raw: bytes, method: str, half_close: bool = True) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"raw": base64.b64encode(raw).decode(), "method": method,
                                          "half_close": half_close}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the request client died"
        return json.loads(line)  # type: ignore[no-any-return]

    def ensure_target(self) -> None:
        """fuzz-target running again: an earlier route's fuzz may have stopped, renamed or removed
        it, and then every later request about it would only meet a 404 or 409."""
        r = self.rc.rctr("inspect", "-f", "{{.State.Running}}", "fuzz-target")
        if r.stdout.strip() == "true":
            return
        self.rc.rctr("rm", "-f", "fuzz-target")
        target = ok(self.rc.rctr("run", "-d", "--init", "--name", "fuzz-target", IMAGE, "sleep", "100000"))
        POOL["container"][0] = target.stdout.strip()

    def log_tail(self) -> str:
        try:
            return (self.rc.rundir / "rctrd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def check(self, key: str, raw: bytes, method: str, half_close: bool = True) -> dict[str, Any]:
        """Send; count; fail unless the answer is well-formed HTTP below 500 and the daemon lives."""
        out = self.send(raw, method, half_close)
        why = f"request {raw[:300]!r}\nanswer {out}\nrctrd.log:\n{self.log_tail()}"
        assert "connect_error" not in out and "client_error" not in out, why
        assert os.path.exists(f"/proc/{self.pid}"), f"rctrd died\n{why}"
        answers = out["answers"]
        assert out["malformed"] is None, why
        first = next((a for a in answers if not 100 <= a["status"] < 200 or a["status"] == 101), None)
        if first is None:
            if out["timed_out"] and _SLOW.match(key):
                self.counts[key]["no answer yet"] += 1
                return out
            # Closed without a word: allowed for a request with no request line at all (the
            # stdlib's answer to a blank one), or when the daemon had stopped reading already.
            assert not raw.split(b"\n", 1)[0].strip() or out.get("send_error") or \
                out.get("recv_error"), f"no answer\n{why}"
            self.counts[key]["closed"] += 1
            return out
        status = first["status"]
        self.counts[key][f"{status // 100}xx"] += 1
        seen = self.messages[key]
        if status >= 400 and len(seen) < 6:
            seen.add(f"{status} {first.get('body', '')[:90].strip()}")
        if status >= 500:
            body = first.get("body", "")
            assert any(code == status and (rx is None or rx.search(body)) for code, rx in _ALLOWED_5XX), \
                f"{status} for a malformed request\n{why}"
        if 400 <= status < 600 and first["headers"].get("content-type") == "application/json" \
                and first["complete"] and method != "HEAD":
            body = first["body"]
            if len(body) < BODY_SEEN:
                message = json.loads(body).get("message")
                assert isinstance(message, str) and message, f"an error without a message\n{why}"
            else:
                assert body.startswith('{"message": "'), f"an error without a message\n{why}"
        if not first["complete"]:
            assert _SLOW.match(key) or first["status"] == 101 or method == "HEAD", \
                f"an unfinished answer from a non-streaming endpoint\n{why}"
        if status == 201 and first.get("complete"):
            self._learn(key, first.get("body", ""))
        return out

    def _learn(self, key: str, body: str) -> None:
        try:
            new = json.loads(body).get("Id")
        except (ValueError, AttributeError):
            return
        kind = {"POST /containers/create": "container", "POST /containers/{id}/exec": "exec",
                "POST /networks/create": "network"}.get(key)
        if kind and isinstance(new, str) and len(POOL[kind]) < 12:
            POOL[kind].append(new)

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                pipe.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


@pytest.fixture(scope="module")
def fuzz(rc: RctrUser) -> Any:
    ok(rc.rctr("info"))
    ok(rc.rctr("tag", IMAGE, ALIAS))
    ok(rc.rctr("tag", IMAGE, PUSHABLE))
    # The keeper holds the test image: no fuzzed prune or remove can take it. Never named below.
    ok(rc.rctr("run", "-d", "--init", "--name", "keeper-9q", IMAGE, "sleep", "100000"))
    ok(rc.rctr("run", "--rm", IMAGE, "true"))  # warm-up: the zygote, the store, a shim's round
    ok(rc.rctr("volume", "create", "fuzz-vol"))
    ok(rc.rctr("network", "create", "fuzz-net"))
    f = Fuzz(rc)
    for key in ("GET /_ping", "GET /containers/json", "GET /version"):
        f.check(key, b"%s HTTP/1.1\r\nHost: x\r\n\r\n" % key.encode(), "GET")
    time.sleep(1)
    f.baseline = (_fds(f.pid), _threads(f.pid))  # type: ignore[attr-defined]
    target = ok(rc.rctr("run", "-d", "--init", "--name", "fuzz-target", IMAGE, "sleep", "100000"))
    created = ok(rc.rctr("create", "--name", "fuzz-created", IMAGE, "sleep", "2"))
    POOL["container"][:] = [target.stdout.strip(), "fuzz-target", created.stdout.strip()]
    f.started = time.monotonic()  # type: ignore[attr-defined]
    yield f
    f.close()


# Reproducible (derandomize, no example database), and no shrinking: each attempt is a real
# request that may wait seconds, so the first failing example is reported as found.
SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def _settings(key: str) -> settings:
    return settings(SETTINGS, max_examples=STREAM_EXAMPLES if _SLOW.match(key) else EXAMPLES)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("route", [f"{m} {p}" for m, p, _ in ROUTES])
def test_endpoint(fuzz: Fuzz, route: str) -> None:
    method, pattern = route.split(" ", 1)
    params = next(q for m, p, q in ROUTES if m == method and p == pattern)
    if "{id}" in pattern and not pattern.startswith("/networks") or pattern.startswith("/networks/{id}/"):
        fuzz.ensure_target()

    @_settings(route)
    @given(requests(method, pattern, params))
    def one(req: dict[str, Any]) -> None:
        fuzz.check(route, render(req), req["method"], req["half_close"])

    one()
    fuzz.trace[route] = (_fds(fuzz.pid), _threads(fuzz.pid))  # where a leak began, if one did


garbage_line = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"GET /_ping", b"GET", b"", b" ", b"GET /_ping HTTP/1.1 extra", b"GET /_ping HTTP/2.0",
                     b"GET /_ping HTTP/3.0", b"GET /_ping HTTP/0.9", b"GET /_ping HTTP/1.x",
                     b"GET /_ping HTTP/11.1", b"GET /_ping FTP/1.0", b"GET /" + b"a" * 70000 + b" HTTP/1.1",
                     b"PRI * HTTP/2.0", b"\x16\x03\x01\x02\x00\x01\x00", b"GET http://x/_ping HTTP/1.1",
                     b"GET * HTTP/1.1", b"GET ?a=b HTTP/1.1", b"GET /_ping\x00 HTTP/1.1",
                     b"GET\t/_ping\tHTTP/1.1", b"POST /containers/create HTTP/1.1"]),
    st.tuples(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"X"]),
              st.binary(max_size=40), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b""])).map(b" ".join))
garbage_headers = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(
    [b"no colon", b": empty name", b" folded: line", b"\tcontinued", b"Content-Length: 5",
     b"Transfer-Encoding: chunked", b"Expect: 100-continue", b"Content-Length: 999999999999999999999",
     b"X: " + b"y" * 70000, b"Host: a\rb"])), max_size=5)


@pytest.mark.timeout(600)
@settings(SETTINGS, max_examples=EXAMPLES * 10)
@given(line=garbage_line, headers=garbage_headers, ending=st.sampled_from([b"\r\n\r\n", b"\n\n", b"", b"\r\n"]),
       tail=st.binary(max_size=40), half_close=st.booleans())
def test_garbage_that_is_not_http(fuzz: Fuzz, line: bytes, headers: list[bytes], ending: bytes,
                                  tail: bytes, half_close: bool) -> None:
    raw = b"\r\n".join([line, *headers]) + ending + tail
    method = line.split(b" ", 1)[0].decode("latin-1")
    complete = ending in (b"\r\n\r\n", b"\n\n")  # else the daemon rightly waits for the rest
    fuzz.check("raw garbage", raw, method, half_close or not complete)


@pytest.mark.timeout(180)
def test_the_daemon_survived_and_holds_nothing_more(fuzz: Fuzz, rc: RctrUser) -> None:
    assert rc.daemon_pid() == fuzz.pid, f"rctrd is not the same process\n{fuzz.log_tail()}"
    seconds = time.monotonic() - fuzz.started  # type: ignore[attr-defined]
    # What the fuzz made goes; the keeper stays, as it was in the baseline.
    names = ok(rc.rctr("ps", "-aq", "--no-trunc")).stdout.split()
    keeper = ok(rc.rctr("inspect", "-f", "{{.Id}}", "keeper-9q")).stdout.strip()
    for cid in names:
        if cid != keeper:
            rc.rctr("rm", "-f", cid, timeout=60)
    rc.rctr("network", "prune", "-f")
    rc.rctr("volume", "prune", "-af")
    base_fds, base_threads = fuzz.baseline  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fds, threads = _fds(fuzz.pid), _threads(fuzz.pid)
        if fds <= base_fds and threads <= base_threads:
            break
        time.sleep(0.5)
    leaked = sorted(os.readlink(f"/proc/{fuzz.pid}/fd/{n}") for n in os.listdir(f"/proc/{fuzz.pid}/fd"))
    report = {"seconds": round(seconds, 1), "endpoints": len(ROUTES),
              "requests": sum(sum(c.values()) for c in fuzz.counts.values()),
              "fds": {"before": base_fds, "after": fds}, "threads": {"before": base_threads,
                                                                     "after": threads},
              "by_endpoint": {k: dict(v) for k, v in sorted(fuzz.counts.items())},
              "fds_threads_after_each": fuzz.trace,
              "some_errors": {k: sorted(v) for k, v in sorted(fuzz.messages.items())}}
    with open(REPORT, "w") as f:
        json.dump(report, f, indent=1)
    totals: collections.Counter[str] = collections.Counter()
    for c in fuzz.counts.values():
        totals.update(c)
    print(f"\nAPI fuzz: {report['requests']} requests over {len(fuzz.counts)} endpoints in "
          f"{seconds:.0f}s: {dict(totals)}; fds {base_fds}->{fds}, threads {base_threads}->{threads}"
          f" (details in {REPORT})")
    assert fds <= base_fds, f"rctrd holds {fds - base_fds} more fds: {leaked}"
    assert threads <= base_threads, f"rctrd runs {threads - base_threads} more threads"
    assert ok(rc.rctr("run", "--rm", IMAGE, "echo", "still here")).stdout == "still here\n"
    untested = {f"{m} {p}" for m, p, _ in ROUTES} - set(fuzz.counts)
    assert not untested, f"endpoints never fuzzed: {sorted(untested)}"
