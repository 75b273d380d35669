"""The seed's examples (../shared/seed/async-operations-api.ja.txt), read from the seed text.

`endpoint_examples()` gives each endpoint section's JSON request and response examples, in the
order the seed shows them (the same blocks api/seed_examples.json holds; tests/stack/test_openapi.py
checks that copy). `script_requests()` gives the request bodies of the seed's JavaScript workflow
(`body: JSON.stringify({...})`), turned from object literals into JSON, with the method and path of
the `fetch` they belong to. Nothing here knows what the examples contain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "seed" / "async-operations-api.ja.txt"
ENDPOINT = re.compile(r"^(GET|POST|DELETE|PUT|PATCH) (/api/\S+)$")
REQUEST_HEADING = "リクエストボディ"  # "request body" (also "リクエストボディ(任意)": optional)
RESPONSE_HEADING = "レスポンス"  # "response"


@dataclass(frozen=True)
class Example:
    """One endpoint section of the seed: its method, path and JSON examples (None: not shown)."""

    method: str
    path: str
    request: dict[str, Any] | None
    response: dict[str, Any] | None


@dataclass(frozen=True)
class ScriptRequest:
    """A request body of the seed's JavaScript workflow, as JSON, with its fetch's method and
    path (`${operationId}` left as written)."""

    function: str
    method: str
    path: str
    body: dict[str, Any]


def seed_lines() -> list[str]:
    return SEED_TEXT.read_text(encoding="utf-8").split("\n")


def _block(lines: list[str], start: int) -> tuple[dict[str, Any], int]:
    """The JSON object whose first line `{` is lines[start]; and the index of its last line."""
    end = lines.index("}", start)
    return json.loads("\n".join(lines[start : end + 1])), end


def endpoint_examples() -> list[Example]:
    """Each `METHOD /api/...` section with the JSON blocks under its request and response
    headings. The JavaScript and Python examples after the sections are not JSON blocks."""
    found: list[Example] = []
    lines = seed_lines()
    current: dict[str, Any] | None = None
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        match = ENDPOINT.match(line)
        if match:
            current = {"method": match[1], "path": match[2], "request": None, "response": None}
            found.append(current)  # type: ignore[arg-type]
        elif line.startswith(REQUEST_HEADING):
            heading = "request"
        elif line == RESPONSE_HEADING:
            heading = "response"
        elif lines[i] == "{" and current is not None:
            block, i = _block(lines, i)
            current[heading] = block
        i += 1
    return [Example(**e) for e in found]  # type: ignore[arg-type]


def example(method: str, path_end: str) -> Example:
    """The section whose method is `method` and whose path ends with `path_end`."""
    (hit,) = [e for e in endpoint_examples() if e.method == method and e.path.endswith(path_end)]
    return hit


def json_blocks() -> list[dict[str, Any]]:
    """Every JSON example block of the seed, in order."""
    return [
        block for e in endpoint_examples() for block in (e.request, e.response) if block is not None
    ]


FUNCTION = re.compile(r"^const (\w+) = async")
FETCH = re.compile(r"fetch\([`'](/api/[^`'?]+)(?:\?[^`']*)?[`']")
METHOD = re.compile(r"method: '(\w+)'")
KEY = re.compile(r"^(\s*)([A-Za-z_$][\w$]*):", re.MULTILINE)


def js_literal_to_json(text: str) -> dict[str, Any]:
    """A JavaScript object literal as the seed writes them (bare keys, 'single-quoted' strings,
    no quotes inside strings) parsed as JSON."""
    quoted = KEY.sub(r'\1"\2":', text)
    quoted = re.sub(r"'([^'\n]*)'", lambda m: json.dumps(m[1], ensure_ascii=False), quoted)
    quoted = re.sub(r",(\s*[}\]])", r"\1", quoted)
    return dict(json.loads(quoted))


def script_requests() -> list[ScriptRequest]:
    """The `body: JSON.stringify({...})` of each `fetch` in the seed's JavaScript workflow."""
    lines = seed_lines()
    found: list[ScriptRequest] = []
    function, method, path = "", "GET", ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := FUNCTION.match(line):
            function, method, path = m[1], "GET", ""
        if m := FETCH.search(line):
            path = m[1]
        if m := METHOD.search(line):
            method = m[1]
        if line.strip() == "body: JSON.stringify({":
            indent = len(line) - len(line.lstrip())
            end = next(j for j in range(i + 1, len(lines)) if lines[j] == " " * indent + "})")
            body = js_literal_to_json("{\n" + "\n".join(lines[i + 1 : end]) + "\n}")
            found.append(ScriptRequest(function, method, path, body))
            i = end
        i += 1
    return found


def script_query(function: str) -> dict[str, str]:
    """The query string the seed's JavaScript function `function` puts on its fetch URL."""
    text = "\n".join(seed_lines())
    start = text.index(f"const {function} = async")
    url = re.search(r"fetch\(`([^`]*)`", text[start:])
    assert url is not None, function
    query = url[1].partition("?")[2]
    return dict(pair.split("=", 1) for pair in query.split("&") if pair)


# -- comparing an answer with the seed's example ------------------------------------------------
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ABSOLUTE_URL = re.compile(r"^https?://")
# keys whose values are enums: the values the seed shows at the same place in any example, plus
# the lists the seed's list-filter table documents (status, operationType, priority)
ENUM_PATHS = {
    "status",
    "operationType",
    "priority",
    "retryMode",
    "authentication.type",
    "operations[].status",
    "operations[].operationType",
    "operations[].priority",
    "phases[].status",
    "phaseResults[].status",
    "artifacts[].type",
    "artifacts[].format",
    "recommendations[].priority",
    "eventsSubscribed[]",
    "filters.operationTypes[]",
    "filters.priorities[]",
}
DOCUMENTED_FILTER = re.compile(r"^(status|operationType|priority) string \S+?[:：](.+)$")


@dataclass(frozen=True, order=True)
class Difference:
    """Where an answer differs from the seed's example: `seed` and `pmops` say what each has
    there (a JSON type, `absent`, an enum value, a URL or date form)."""

    answer: str
    path: str
    seed: str
    pmops: str

    def __str__(self) -> str:
        return f"{self.answer}: {self.path}: seed {self.seed}, pmops {self.pmops}"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def normalised(path: str) -> str:
    """`phases[2].status` -> `phases[].status`."""
    return re.sub(r"\[\d*\]", "[]", path)


def documented_enums() -> dict[str, set[str]]:
    """The value lists of the seed's list-filter table, by field name."""
    found: dict[str, set[str]] = {}
    for line in seed_lines():
        if m := DOCUMENTED_FILTER.match(line.strip()):
            found[m[1]] = {v.strip() for v in m[2].split(",")}
    return found


def _leaves(node: object, path: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [
            leaf
            for key, value in node.items()
            for leaf in _leaves(value, f"{path}.{key}" if path else key)
        ]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, node)]


def enum_values() -> dict[str, set[str]]:
    """Allowed values for each path of ENUM_PATHS: what the seed shows there, in any example,
    and the documented list for the field's name (`priorities[]` takes `priority`'s)."""
    documented = documented_enums()
    allowed: dict[str, set[str]] = {}
    for path in ENUM_PATHS:
        name = path.rsplit(".", 1)[-1].removesuffix("[]")
        name = {"operationTypes": "operationType", "priorities": "priority"}.get(name, name)
        # a recommendation's priority is not an operation's: only what the seed shows
        own = path == "recommendations[].priority"
        allowed[path] = set() if own else set(documented.get(name, set()))
    for block in json_blocks():
        for path, value in _leaves(block):
            if normalised(path) in allowed and isinstance(value, str):
                allowed[normalised(path)].add(value)
    allowed["phaseResults[].status"] |= allowed["phases[].status"]  # the same phases
    return allowed


class Comparison:
    """Compares an answer with the seed's example key by key, types included.

    Rules: a key of the seed missing from the answer, or one the answer has and the seed has
    not, is a difference; so is another JSON type, where an integer the seed writes as `2` must
    not come back as `2.0` (a decimal in the seed accepts an integer: every typed client widens
    it), and a seed `null` accepts any type (the seed does not say which). Where the seed shows
    an absolute URL or a UTC date-time the answer must have one too, and an enum value must be
    one of the seed's. Arrays: when the seed's items all have one shape, each item is compared
    with the first; otherwise item i with the seed's item i when both have the same `status`,
    else with what every seed item of that status (or every seed item) has in common.
    """

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.found: set[Difference] = set()
        self.enums = enum_values()

    def add(self, path: str, seed: str, pmops: str) -> None:
        self.found.add(Difference(self.answer, path, seed, pmops))

    def compare(self, seed: object, actual: object, path: str = "") -> set[Difference]:
        self._value(seed, actual, path)
        return self.found

    def _value(self, seed: object, actual: object, path: str) -> None:
        if seed is None:
            return
        kind, got = json_type(seed), json_type(actual)
        if kind != got and not (kind == "number" and got == "integer"):
            self.add(path, kind, got)
            return
        if isinstance(seed, dict):
            self._object(seed, actual, path)  # type: ignore[arg-type]
        elif isinstance(seed, list):
            self._array(seed, actual, path)  # type: ignore[arg-type]
        elif isinstance(seed, str):
            self._string(seed, str(actual), path)

    def _string(self, seed: str, actual: str, path: str) -> None:
        allowed = self.enums.get(normalised(path))
        if allowed is not None and actual not in allowed:
            self.add(path, "one of " + ", ".join(sorted(allowed)), json.dumps(actual))
        if DATE_TIME.match(seed) and not DATE_TIME.match(actual):
            self.add(path, "UTC date-time", json.dumps(actual))
        if ABSOLUTE_URL.match(seed) and not ABSOLUTE_URL.match(actual):
            self.add(path, "absolute URL", "relative URL")

    def _object(
        self, seed: dict[str, Any], actual: dict[str, Any], path: str, loose: bool = False
    ) -> None:
        for key, value in seed.items():
            where = f"{path}.{key}" if path else key
            if key in actual:
                self._value(value, actual[key], where)
            elif not loose:
                self.add(where, json_type(value), "absent")
        for key, value in actual.items():
            if key not in seed:
                self.add(f"{path}.{key}" if path else key, "absent", json_type(value))

    def _array(self, seed: list[Any], actual: list[Any], path: str) -> None:
        if not seed:
            return
        if not actual:
            self.add(path, "non-empty array", "empty array")
            return
        if len({shape(i) for i in seed}) == 1:
            for item in actual:
                self._value(seed[0], item, f"{path}[]")
            return
        for i, item in enumerate(actual):
            self._item(seed, i, item, f"{path}[{i}]")

    def _item(self, seed: list[Any], i: int, item: Any, path: str) -> None:
        """Item i of an array whose seed items differ in shape: the seed's item i; in `phases`,
        whose shape follows the status, only when the statuses match, else what the seed's
        phases of that status (or all of them) have in common."""
        by_status = normalised(path).endswith(STATUS_SHAPED)
        status = item.get("status") if isinstance(item, dict) else None
        if i < len(seed) and (not by_status or seed[i].get("status") == status):
            self._value(seed[i], item, path)
        elif not isinstance(item, dict):
            self.add(path, "object", json_type(item))
        else:
            alike = [s for s in seed if by_status and s.get("status") == status] or seed
            self._loose(alike, item, path)

    def _loose(self, alike: list[dict[str, Any]], item: dict[str, Any], path: str) -> None:
        """Keys every item of `alike` has are required; keys none has are extra; a value is
        compared in depth only where all of `alike` agree on its shape, else by type."""
        names = {k for s in alike for k in s}
        for key in sorted(names):
            values = [s[key] for s in alike if key in s]
            common = len(values) == len(alike)
            if key not in item:
                if common:
                    self.add(f"{path}.{key}", json_type(values[0]), "absent")
            elif common and len({shape(v) for v in values}) == 1:
                self._value(values[0], item[key], f"{path}.{key}")
            elif json_type(values[0]) != json_type(item[key]) and values[0] is not None:
                self.add(f"{path}.{key}", json_type(values[0]), json_type(item[key]))
        for key, value in item.items():
            if key not in names:
                self.add(f"{path}.{key}", "absent", json_type(value))


STATUS_SHAPED = ("phases[]",)


def shape(value: object) -> object:
    """A value's shape: its keys and their shapes, an array's first item's, else its JSON type
    (integers and decimals alike)."""
    if isinstance(value, dict):
        return tuple(sorted((k, shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", shape(value[0]) if value else None)
    kind = json_type(value)
    return "number" if kind == "integer" else kind


def echoes(seed_request: dict[str, Any], seed_answer: dict[str, Any]) -> list[tuple[str, str]]:
    """(answer path, request path) pairs where the seed's answer repeats a value of its request:
    the same field name (an array item counts as its array's name) and the same value."""

    def name(path: str) -> str:
        last = path.rsplit(".", 1)[-1]
        return re.sub(r"\[\d+\]$", "[]", last)

    asked = [(p, v) for p, v in _leaves(seed_request) if not isinstance(v, bool) and v is not None]
    pairs = []
    for path, value in _leaves(seed_answer):
        if isinstance(value, bool) or value is None:
            continue
        same = [p for p, v in asked if v == value and name(p) == name(path)]
        if len(same) == 1:
            pairs.append((path, same[0]))
    return pairs


def at(node: Any, path: str) -> Any:
    """The value at a path such as `operations[1].dependencies[0]` (KeyError/IndexError if none)."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


# -- docs/seed-differences.md ----------------------------------------------------------------
DIFFERENCES_DOC = Path(__file__).resolve().parents[1] / "docs" / "seed-differences.md"


def listed_differences(text: str | None = None) -> set[Difference]:
    """The rows of the table in docs/seed-differences.md: | answers | `path` | seed | pmops |
    reason |; one row may name several answers, separated by commas."""
    text = DIFFERENCES_DOC.read_text(encoding="utf-8") if text is None else text
    rows: set[Difference] = set()
    for line in text.splitlines():
        cells = [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 5 or set(cells[1]) <= {"-", ":", " "}:
            continue
        if cells[0] == "Answer":
            continue
        for answer in cells[0].split(","):
            rows.add(Difference(answer.strip(), cells[1], cells[2], cells[3]))
    return rows
