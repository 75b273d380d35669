"""The OpenAPI document types every JSON answer: each 2xx application/json response has a schema
that is a $ref to a component with properties, or has properties itself (issue #13)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.main import create_app
from pmops.contract.enums import PhaseName


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


@pytest.fixture(scope="module")
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def _json_answers(doc: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for status, answer in op.get("responses", {}).items():
                content = answer.get("content", {})
                if not status.startswith("2") or "application/json" not in content:
                    continue
                # a file download whose media type is JSON (an artifact) is a file, not an answer
                if content["application/json"].get("schema", {}).get("format") == "binary":
                    continue
                found.append((method, path, status, content["application/json"]))
    return found


def test_every_json_success_answer_has_a_typed_schema(doc: dict[str, Any]) -> None:
    answers = _json_answers(doc)
    assert len(answers) >= 25  # every JSON endpoint of the API, not a handful
    untyped = []
    for method, path, status, content in answers:
        schema = content.get("schema") or {}
        resolved = _resolve(doc, schema)
        if not ("$ref" in schema or resolved.get("properties")) or not resolved.get("properties"):
            untyped.append(f"{method.upper()} {path} {status}")
    assert untyped == []


def test_every_field_of_a_response_schema_is_described(doc: dict[str, Any]) -> None:
    seen: set[str] = set()
    todo = [
        content["schema"]["$ref"].removeprefix("#/components/schemas/")
        for *_, content in _json_answers(doc)
    ]
    undescribed = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        schema = doc["components"]["schemas"][name]
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                undescribed.append(f"{name}.{field}")
            text = repr(prop)
            todo.extend(part.split("'")[0] for part in text.split("#/components/schemas/")[1:])
    assert undescribed == []
    assert {"OperationStatusView", "OperationList", "Results", "Webhook", "Batch"} <= seen


def test_every_json_route_declares_its_response_model(app: FastAPI) -> None:
    missing = [
        f"{sorted(route.methods or ())} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute)
        and route.include_in_schema
        and route.status_code != 204
        and "text/event-stream" not in repr(route.responses)
        and getattr(route.response_class, "__name__", "")
        not in ("FileResponse", "StreamingResponse")
        and route.response_model is None
    ]
    assert missing == []


def test_the_fields_the_service_sends_are_in_the_schemas(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "heartbeatAt" in schemas["Execution"]["properties"]
    assert {"memoryBytes", "averageCpuUsage"} <= set(schemas["ResourceUsage"]["properties"])
    assert "callbacksPending" in schemas["CallbacksInfo"]["properties"]
    for field in ("cpuUnits", "memoryGB"):
        assert schemas["ResourcesAllocated"]["properties"][field]["anyOf"][0] == {"type": "number"}


def test_the_results_phase_filter_takes_english_and_japanese_names(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/{tenantId}/{projectId}/async/operation/{operationId}/results"]["get"]
    (phase,) = [p for p in op["parameters"] if p["name"] == "phase"]
    pattern = phase["schema"]["pattern"]
    for name in PhaseName:
        assert name.value in pattern and name.ja in pattern


def test_seed_examples_stay_on_the_answers(doc: dict[str, Any]) -> None:
    status = doc["paths"]["/api/{tenantId}/{projectId}/async/operation/{operationId}"]["get"]
    content = status["responses"]["200"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/OperationStatusView"}
    assert content["example"]["progress"]["currentPhase"] == "Machine Learning Analysis"


def test_the_event_stream_names_its_event_schema(doc: dict[str, Any]) -> None:
    event = doc["components"]["schemas"]["Event"]
    assert {"id", "type", "timestamp", "sequence", "operationId", "data"} <= set(
        event["properties"]
    )
    assert all(prop.get("description") for prop in event["properties"].values())
    stream = doc["paths"]["/api/{tenantId}/{projectId}/async/operation/{operationId}/events"]
    assert "Event" in stream["get"]["responses"]["200"]["description"]
