"""The OpenAPI document carries the seed's examples and describes every request field."""

from __future__ import annotations

import json
from pathlib import Path

from api.main import create_app
from api.openapi import EXAMPLES, SEED

SEED_TEXT = Path(__file__).resolve().parents[3] / "shared" / "seed" / "async-operations-api.ja.txt"


def _seed_blocks() -> list[dict]:
    lines = SEED_TEXT.read_text().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        if lines[i] == "{":
            j = lines.index("}", i)
            blocks.append(json.loads("\n".join(lines[i : j + 1])))
            i = j
        i += 1
    return blocks


def test_examples_are_the_seeds() -> None:
    assert list(SEED.values()) == _seed_blocks()


def test_every_seed_endpoint_shows_its_examples() -> None:
    doc = create_app().openapi()
    for (method, path), (request, response) in EXAMPLES.items():
        op = doc["paths"][path][method]
        if request:
            assert op["requestBody"]["content"]["application/json"]["example"] == SEED[request]
        if response:
            status, name = response
            assert op["responses"][status]["content"]["application/json"]["example"] == SEED[name]


def test_every_request_field_is_described() -> None:
    doc = create_app().openapi()
    schemas = doc["components"]["schemas"]
    bodies = set()
    for path in doc["paths"].values():
        for op in path.values():
            ref = (
                op.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            for part in [ref, *ref.get("anyOf", [])]:
                if "$ref" in part:
                    bodies.add(part["$ref"].rsplit("/", 1)[-1])
    # the request bodies and every model they contain
    seen, todo = set(), list(bodies)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [r.rsplit("/", 1)[-1] for r in _refs(schemas[name])]
    missing = [
        f"{name}.{field}"
        for name in sorted(seen)
        if "properties" in schemas[name]
        for field, prop in schemas[name]["properties"].items()
        if not prop.get("description")
    ]
    assert missing == []


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_response_field_is_described() -> None:
    doc = create_app().openapi()
    schemas = doc["components"]["schemas"]
    todo = [
        r.rsplit("/", 1)[-1]
        for path in doc["paths"].values()
        for op in path.values()
        for answer in op.get("responses", {}).values()
        for r in _refs(answer.get("content", {}))
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [r.rsplit("/", 1)[-1] for r in _refs(schemas[name])]
    assert {"OperationStatusView", "Results", "Webhook", "Batch", "Problem"} <= seen
    missing = [
        f"{name}.{field}"
        for name in sorted(seen)
        for field, prop in schemas[name].get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []
