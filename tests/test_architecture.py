"""The layering the code promises: no module outside pmops/store/ builds SQL, and no production
function runs over 80 lines without saying why (import-linter checks the imports: `make lint`).

A module builds SQL if it imports a statement or expression builder from sqlalchemy (select,
insert, update, delete, text, func, and_ ...) or calls `.execute(...)` / `.exec_driver_sql(...)`.
Parsed with ast, so comments, strings and dict.update() do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pmops", "api", "flows", "deployments", "analysis")
SQL_BUILDERS = {
    "select",
    "insert",
    "update",
    "delete",
    "text",
    "func",
    "and_",
    "or_",
    "not_",
    "case",
    "tuple_",
    "bindparam",
    "literal",
    "literal_column",
    "exists",
    "union",
    "union_all",
}
EXECUTORS = {"execute", "exec_driver_sql"}


def _modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        found += sorted((ROOT / package).rglob("*.py"))
    return found


def sql_uses(tree: ast.AST, *, calls: bool = True) -> list[str]:
    """What in this module builds or runs SQL: 'line: what'. `calls`: count .execute(...) too
    (not in analysis/, whose pm4py `semantics.execute` fires Petri net transitions; analysis may
    not import sqlalchemy at all)."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            for alias in node.names:
                if alias.name in SQL_BUILDERS:
                    uses.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sqlalchemy" or alias.name.startswith("sqlalchemy."):
                    # `import sqlalchemy as sa` then sa.select(...): as good as importing select
                    uses.append(f"{node.lineno}: import {alias.name}")
        elif (
            calls
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTORS
        ):
            uses.append(f"{node.lineno}: .{node.func.attr}(...)")
    return uses


def test_sql_only_in_the_store() -> None:
    offenders = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("pmops/store/"):
            continue
        tree = ast.parse(path.read_text(), filename=rel)
        uses = sql_uses(tree, calls=not rel.startswith("analysis/"))
        if uses:
            offenders[rel] = uses
    assert not offenders, "SQL outside pmops/store/ (move it into a store function):\n" + "\n".join(
        f"{rel}: {'; '.join(uses)}" for rel, uses in sorted(offenders.items())
    )


def test_the_check_sees_sql() -> None:
    """The checker itself: a builder import, a module import and an execute call are found; a
    dict's update() and a string are not."""
    source = (
        "from sqlalchemy import select\n"
        "import sqlalchemy as sa\n"
        "conn.execute(q)\n"
        "d.update(x=1)\n"
        "s = 'conn.execute(select(t))'\n"
    )
    assert [u.split(":")[0] for u in sql_uses(ast.parse(source))] == ["1", "2", "3"]


LIMIT = 80


def long_functions(tree: ast.AST, lines: list[str]) -> list[str]:
    """Functions over LIMIT lines whose header (decorators to the first body line) has no
    `# whole: <reason>` comment: 'line name (length)'."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        header = "\n".join(lines[first - 1 : node.body[0].lineno])
        if length > LIMIT and "# whole:" not in header:
            found.append(f"{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_production_function_is_over_80_lines_without_a_reason() -> None:
    offenders = {}
    for path in _modules():
        text = path.read_text()
        found = long_functions(ast.parse(text), text.splitlines())
        if found:
            offenders[path.relative_to(ROOT).as_posix()] = found
    assert not offenders, "split these, or say why they are whole (# whole: ...):\n" + "\n".join(
        f"{rel}: {'; '.join(found)}" for rel, found in sorted(offenders.items())
    )


def test_the_length_check_sees_a_long_function() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT))
    long = f"def f():\n{body}"
    reasoned = f"def f():  # whole: one table\n{body}"
    assert long_functions(ast.parse(long), long.splitlines()) == [f"1 f ({LIMIT + 1} lines)"]
    assert long_functions(ast.parse(reasoned), reasoned.splitlines()) == []
