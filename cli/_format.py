"""``--format``: a small translator of Go templates, and docker's tables.

What it supports, the forms people type in scripts:

- fields: ``{{.ID}}``, ``{{.State.ExitCode}}``, ``{{.}}``, ``$var`` and ``$var.Field``;
- functions: ``json``, ``index X KEY…`` (map keys and list indices), ``join X SEP``,
  ``upper``, ``lower``, ``title``, ``len``, ``println``; pipes into them
  (``{{.Config.Env | json}}``);
- blocks: ``{{range X}}…{{end}}`` (also ``range $v := X`` and ``range $k, $v := X``),
  ``{{if X}}…{{else}}…{{end}}``; ``{{- `` and `` -}}`` trim spaces;
- ``table …`` prefix: a header row and columns aligned like Go's tabwriter;
  ``json`` alone prints each object as one line of JSON;
- ``\\t`` and ``\\n`` typed literally become a tab and a newline.

Values print as Go prints them: ``[a b]`` for lists, ``map[k:v]`` for maps,
``<no value>`` for a missing key, ``<nil>`` for null.  Not supported:
``printf``, ``with``, parentheses, comparisons (``eq``) — a template that uses
them fails with a clear error rather than printing something wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MISSING", "Template", "TemplateError", "go_str", "render_rows", "tabulate"]


class TemplateError(ValueError):
    """The template uses something this translator does not know."""


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


def go_str(value: Any) -> str:
    """``fmt.Print`` of a decoded JSON value."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _to_json(value: Any) -> str:
    return json.dumps(None if value is MISSING else value, separators=(",", ":"),
                      ensure_ascii=False)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(str(key), MISSING)
        elif isinstance(value, list) and isinstance(key, int) and -1 < key < len(value):
            value = value[key]
        else:
            raise TemplateError(f"index of {go_str(value)} with {key!r}")
    return value


def _join(value: Any, sep: str) -> str:
    return sep.join(go_str(v) for v in (value or []))


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _to_json,
    "index": _index,
    "join": _join,
    "upper": lambda v: go_str(v).upper(),
    "lower": lambda v: go_str(v).lower(),
    "title": lambda v: go_str(v).title(),
    "len": lambda v: len(v) if v not in (None, MISSING) else 0,
    "println": lambda *v: " ".join(go_str(x) for x in v) + "\n",
}

_ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|[^\s|]+|\|')


@dataclass
class _Node:
    kind: str  # "text", "expr", "range", "if"
    text: str = ""
    pipeline: list[list[str]] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


def _tokens(action: str) -> list[str]:
    return _TOKEN.findall(action)


def _parse(source: str) -> list[_Node]:
    """Nodes of ``source``; blocks nest through a stack of open bodies."""
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    pos = 0
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if text:
            stack[-1][1].append(_Node("text", text))
        pos = m.end()
        if m.group(3):
            after = source[pos:]
            pos += len(after) - len(after.lstrip())
        toks = _tokens(m.group(2).strip())
        if toks and not toks[0].startswith("/*"):
            _action(toks, stack)
    if len(stack) != 1:
        raise TemplateError("unclosed {{range}} or {{if}}")
    tail = source[pos:]
    if tail:
        root.append(_Node("text", tail))
    return root


def _action(toks: list[str], stack: list[tuple[_Node | None, list[_Node]]]) -> None:
    """One ``{{…}}``: opens a block, switches to its else, closes it, or is an expression."""
    head = toks[0]
    if head == "end":
        if len(stack) == 1:
            raise TemplateError("unexpected {{end}}")
        stack.pop()
    elif head == "else":
        node = stack[-1][0]
        if node is None:
            raise TemplateError("unexpected {{else}}")
        stack[-1] = (node, node.orelse)
    elif head in ("range", "if"):
        node = _Node(head)
        rest = toks[1:]
        if ":=" in rest:
            i = rest.index(":=")
            node.variables = [v.rstrip(",") for v in rest[:i]]
            rest = rest[i + 1:]
        node.pipeline = _split_pipes(rest)
        stack[-1][1].append(node)
        stack.append((node, node.body))
    elif head in ("with", "define", "template", "block", "printf") or head.startswith("("):
        raise TemplateError(f"{{{{{head}}}}} is not supported by rctr's --format")
    else:
        stack[-1][1].append(_Node("expr", pipeline=_split_pipes(toks)))


def _split_pipes(toks: list[str]) -> list[list[str]]:
    stages: list[list[str]] = [[]]
    for tok in toks:
        if tok == "|":
            stages.append([])
        else:
            stages[-1].append(tok)
    if any(not s for s in stages):
        raise TemplateError("empty command in a pipeline")
    return stages


class Template:
    """A parsed template; ``render(obj)`` is the text for one object."""

    def __init__(self, source: str) -> None:
        self.source = source.replace("\\t", "\t").replace("\\n", "\n")
        self.nodes = _parse(self.source)

    def render(self, obj: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, obj, {"$": obj}, out)
        return "".join(out)

    def _run(self, nodes: list[_Node], dot: Any, env: dict[str, Any], out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "expr":
                value = self._pipeline(node.pipeline, dot, env)
                out.append(value if isinstance(value, str) else go_str(value))
            elif node.kind == "if":
                branch = node.body if _truthy(self._pipeline(node.pipeline, dot, env)) else \
                    node.orelse
                self._run(branch, dot, env, out)
            else:
                self._range(node, dot, env, out)

    def _range(self, node: _Node, dot: Any, env: dict[str, Any], out: list[str]) -> None:
        value = self._pipeline(node.pipeline, dot, env)
        items: Iterable[tuple[Any, Any]]
        if isinstance(value, dict):
            items = ((k, value[k]) for k in sorted(value))
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            items = ()
        ran = False
        for key, item in items:
            ran = True
            scope = dict(env)
            if len(node.variables) == 1:
                scope[node.variables[0]] = item
            elif len(node.variables) == 2:
                scope[node.variables[0]], scope[node.variables[1]] = key, item
            self._run(node.body, item, scope, out)
        if not ran:
            self._run(node.orelse, dot, env, out)

    def _pipeline(self, stages: list[list[str]], dot: Any, env: dict[str, Any]) -> Any:
        value: Any = MISSING
        for i, stage in enumerate(stages):
            extra = [value] if i else []
            value = self._command(stage, dot, env, extra)
        return value

    def _command(self, toks: list[str], dot: Any, env: dict[str, Any], extra: list[Any]) -> Any:
        head, args = toks[0], toks[1:]
        if head in FUNCS:
            values = [self._operand(a, dot, env) for a in args] + extra
            return FUNCS[head](*values)
        if args or extra:
            raise TemplateError(f"{head} is not a function rctr's --format knows")
        return self._operand(head, dot, env)

    @staticmethod
    def _operand(tok: str, dot: Any, env: dict[str, Any]) -> Any:
        if tok.startswith('"'):
            return json.loads(tok)
        if tok.startswith("`"):
            return tok[1:-1]
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok in ("true", "false"):
            return tok == "true"
        if tok.startswith("$"):
            name, _, path = tok.partition(".")
            if name not in env:
                raise TemplateError(f"undefined variable {name}")
            return _path(env[name], path)
        if tok.startswith("."):
            return _path(dot, tok[1:])
        raise TemplateError(f"function {tok!r} is not supported by rctr's --format")


def _path(value: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        value = value.get(part, MISSING) if isinstance(value, dict) else MISSING
    return value


def _truthy(value: Any) -> bool:
    return value not in (MISSING, None, False, 0, "") and value != [] and value != {}


def tabulate(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells as ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`` does."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, minwidth), len(cell) + padding)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        out.append("".join(cells).rstrip() if len(row) > 1 else row[0])
    return "\n".join(out)


def _header(expr: list[list[str]], headers: dict[str, str]) -> str:
    fields = [t for stage in expr for t in stage if t.startswith(".")]
    if not fields:
        return ""
    name = fields[-1].lstrip(".").split(".")[-1] if fields[-1] != "." else ""
    return headers.get(name, name.upper())


def render_rows(fmt: str, rows: list[Any], headers: dict[str, str] | None = None) -> str:
    """Every row through ``fmt``: ``table …`` gets a header row and aligned columns."""
    if fmt.strip() == "json":
        return "\n".join(_to_json(r) for r in rows)
    is_table = fmt.lstrip().startswith("table")
    source = fmt.lstrip()[len("table"):].lstrip(" ") if is_table else fmt
    template = Template(source)
    lines = [template.render(r) for r in rows]
    if not is_table:
        return "\n".join(lines)
    head = "".join(n.text if n.kind == "text" else _header(n.pipeline, headers or {})
                   for n in template.nodes)
    body = [ln for text in lines for ln in text.split("\n")]
    return tabulate(head.split("\n") + body)
