"""The shape of the code, per package: what a reader meets.

    python3 bench/code_shape.py [--json]

For each of rctr's packages: its lines, its largest module, its longest function
(lines of the ``def``, body included), how many functions pass 40 lines (the size
norm in ``shared/style.md``), and the ``type: ignore`` comments and ``Any`` names it
carries.  Issue 16 quotes these figures before and after the daemon's re-cut; they
are counts, so they repeat exactly for the same tree.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The top-level folders that install as rctr.<folder>, as pyproject.toml lists them.
PACKAGES = tuple(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["package-dir"].values())
LONG_FUNCTION = 40

_IGNORE = re.compile(r"#\s*type:\s*ignore")


def _functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, length in lines) of every function in a module."""
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                end = child.end_lineno or child.lineno
                found.append((name, end - child.lineno + 1))
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def package_shape(package: str) -> dict[str, object]:
    files = sorted((REPO / package).rglob("*.py"))
    lines = 0
    largest = ("", 0)
    longest = ("", 0)
    long_count = 0
    ignores = 0
    anys = 0
    for path in files:
        text = path.read_text()
        count = text.count("\n")
        lines += count
        rel = str(path.relative_to(REPO))
        if count > largest[1]:
            largest = (rel, count)
        ignores += len(_IGNORE.findall(text))
        # Any as a name in code, not in comments or docstrings: count the AST's Name nodes.
        tree = ast.parse(text, filename=rel)
        anys += sum(1 for n in ast.walk(tree)
                    if (isinstance(n, ast.Name) and n.id == "Any")
                    or (isinstance(n, ast.Attribute) and n.attr == "Any"))
        for name, length in _functions(tree):
            if length > LONG_FUNCTION:
                long_count += 1
            if length > longest[1]:
                longest = (f"{rel}:{name}", length)
    return {"package": package, "files": len(files), "lines": lines,
            "largest_file": largest[0], "largest_file_lines": largest[1],
            "longest_function": longest[0], "longest_function_lines": longest[1],
            f"functions_over_{LONG_FUNCTION}": long_count,
            "type_ignores": ignores, "any": anys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = [package_shape(p) for p in PACKAGES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'package':9} {'lines':>6} {'largest module':34} {'longest function':58} "
          f">{LONG_FUNCTION:<3} {'ignores':>7} {'Any':>5}")
    for r in rows:
        print(f"{r['package']:9} {r['lines']:>6} "
              f"{r['largest_file']} ({r['largest_file_lines']})".ljust(51) + " "
              f"{r['longest_function']} ({r['longest_function_lines']})".ljust(59)
              + f"{r[f'functions_over_{LONG_FUNCTION}']:>4} {r['type_ignores']:>7} {r['any']:>5}")
    total_ignores = sum(int(str(r["type_ignores"])) for r in rows)
    total_any = sum(int(str(r["any"])) for r in rows)
    print(f"total: {total_ignores} type: ignore, {total_any} Any")


if __name__ == "__main__":
    main()
