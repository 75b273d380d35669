"""The OpenAPI document: the seed's own JSON examples on each endpoint and problem+json errors.

The bodies' schemas, each field described, are the contract's models (pmops/contract/requests.py
and responses.py): the routes' bodies and `response_model`s. `seed_examples.json` holds the
examples of ../shared/seed/async-operations-api.ja.txt as they are written there
(tests/stack/test_openapi.py checks they still match the seed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pmops.contract.responses import Event

SEED = json.loads((Path(__file__).with_name("seed_examples.json")).read_text())
BASE = "/api/{tenantId}/{projectId}/async"
REF = "#/components/schemas/{model}"

# (method, path) -> (request example, (status, response example))
EXAMPLES: dict[tuple[str, str], tuple[str | None, tuple[str, str] | None]] = {
    ("post", f"{BASE}/operation"): ("start_request", ("202", "start_response")),
    ("get", f"{BASE}/operation/{{operationId}}"): (None, ("200", "status_response")),
    ("get", f"{BASE}/operations"): (None, ("200", "list_response")),
    ("delete", f"{BASE}/operation/{{operationId}}"): ("cancel_request", ("200", "cancel_response")),
    ("get", f"{BASE}/operation/{{operationId}}/results"): (None, ("200", "results_response")),
    ("post", f"{BASE}/webhooks"): ("webhook_request", ("201", "webhook_response")),
    ("post", f"{BASE}/operation/{{operationId}}/retry"): (
        "retry_request",
        ("202", "retry_response"),
    ),
    ("post", f"{BASE}/batch"): ("batch_request", ("202", "batch_response")),
}


def install(app: FastAPI) -> None:
    """Replace app.openapi with a version carrying the seed's examples and problem+json errors."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for (method, path), (request, response) in EXAMPLES.items():
            op = doc["paths"].get(path, {}).get(method)
            if op is None:
                continue
            if request is not None and "requestBody" in op:
                content = op["requestBody"]["content"]["application/json"]
                content["example"] = SEED[request]
            if response is not None:
                status, name = response
                answer = op.setdefault("responses", {}).setdefault(
                    status, {"description": "Successful Response"}
                )
                answer.setdefault("content", {}).setdefault("application/json", {})["example"] = (
                    SEED[name]
                )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        # the event stream's and webhook deliveries' body: no JSON answer refers to it
        schemas.setdefault("Event", Event.model_json_schema(ref_template=REF))
        _problems(doc, schemas)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details: every error answer",
    "properties": {
        "type": {"type": "string", "description": "a URI naming the kind of problem"},
        "title": {"type": "string", "description": "the HTTP status in words"},
        "status": {"type": "integer", "description": "the HTTP status code"},
        "detail": {"type": "string", "description": "what went wrong, for people"},
        "instance": {"type": "string", "description": "the path of the request"},
        "errors": {
            "type": "array",
            "description": "one entry per offending field",
            "items": {"$ref": "#/components/schemas/ProblemField"},
        },
        "operationStatus": {
            "type": "string",
            "description": "a cancel that did not take effect: the status the operation ended with",
        },
        "activeRetryId": {
            "type": "string",
            "description": "a retry refused: the original's retry that has not ended yet",
        },
        "operationId": {
            "type": "string",
            "description": "a dataset that cannot be deleted: an operation that reads it",
        },
        "limit": {
            "type": "string",
            "description": "a limit reached (429, or 422 for webhooks): the setting that sets it, "
            "e.g. PMOPS_TOKEN_REQUESTS_PER_SECOND (docs/limits.md)",
        },
        "retryAfterSeconds": {
            "type": "integer",
            "description": "a 429: the Retry-After header's seconds",
        },
        "queuedOperations": {
            "type": "integer",
            "description": "the project's queue is full: its operations waiting now",
        },
        "maxQueuedOperations": {
            "type": "integer",
            "description": "the project's queue is full: how many may wait",
        },
        "registeredWebhooks": {
            "type": "integer",
            "description": "the project has all the webhooks it may: how many it has",
        },
        "maxWebhooks": {"type": "integer", "description": "how many webhooks a project may have"},
    },
    "required": ["type", "title", "status", "detail"],
}
PROBLEM_FIELD_SCHEMA = {
    "title": "ProblemField",
    "type": "object",
    "properties": {
        "field": {"type": "string", "description": "the field, e.g. parameters.datasetId"},
        "message": {"type": "string", "description": "what is wrong with it"},
    },
}


# What each error status means; every /api/ operation may answer 400, 401, 404 and 429, one with a
# request body 422, and those listed in MORE_ERRORS their further statuses.
ERRORS = {
    "400": "a path id that is not a GUID, a query or header parameter out of range, or a body "
    "that is not JSON: the problem names the field",
    "401": "no bearer token, or one that is not valid",
    "403": "the priority asked for is above the token's max priority (`pmops tokens create "
    "--max-priority`): the problem names the field",
    "404": "no such resource in this tenant and project (another tenant's do not exist)",
    "409": "the resource's state does not allow this now (the problem says why)",
    "413": "the body is larger than its limit: PMOPS_MAX_JSON_BYTES for a JSON body, "
    "PMOPS_MAX_UPLOAD_BYTES for an upload",
    "422": "the request is not valid: the problem names the fields",
    "429": "a limit per tenant was reached (docs/limits.md): requests per token, failed "
    "authentications per address, queued operations per project, event streams per token; "
    "`limit` names the setting, Retry-After says when to try again",
    "507": "the server cannot store the upload now (disk full, quota)",
}
_OP = f"{BASE}/operation/{{operationId}}"
MORE_ERRORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/{tenantId}/{projectId}/datasets"): ("413", "507"),
    ("delete", "/api/{tenantId}/{projectId}/datasets/{datasetId}"): ("409",),
    ("delete", _OP): ("409",),
    ("get", f"{_OP}/results"): ("409",),
    ("post", f"{_OP}/retry"): ("403", "409"),
    ("post", f"{BASE}/operation"): ("403",),
    ("post", f"{BASE}/batch"): ("403",),
    ("post", f"{_OP}/deliveries/{{deliveryId}}/redeliver"): ("409",),
    ("post", f"{BASE}/webhooks/{{webhookId}}/deliveries/{{deliveryId}}/redeliver"): ("409",),
    ("delete", f"{BASE}/batch/{{batchId}}"): ("409",),
    ("get", f"{BASE}/signing-secret"): ("409",),
}
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API token of a tenant (and project): `pmops tokens create`",
}


def _problems(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Errors are problem+json (api/problems.py), not FastAPI's default validation body; every
    status an operation can answer is documented, and the bearer token it needs."""
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ProblemField"] = PROBLEM_FIELD_SCHEMA
    doc["components"]["securitySchemes"] = {"bearerAuth": SECURITY_SCHEME}
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            answers = op.setdefault("responses", {})
            answers.pop("422", None)
            for param in op.get("parameters", []):
                _not_nullable(param)
            if path == "/health":
                answers["503"] = {
                    "description": "the store or Prefect is not answering: `checks` says which",
                    "content": answers.get("200", {}).get("content", {"application/json": {}}),
                }
            if not path.startswith("/api/"):
                continue
            op["security"] = [{"bearerAuth": []}]
            statuses = ["400", "401", "404", "429", *MORE_ERRORS.get((method, path), ())]
            if "requestBody" in op:
                statuses += ["413", "422"]
            for status in sorted(set(statuses)):
                answers[status] = {
                    "description": ERRORS[status],
                    "content": {"application/problem+json": {"schema": ref}},
                }
            answers["429"]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            }
            answers["401"]["headers"] = {
                "WWW-Authenticate": {
                    "description": 'the scheme to use: Bearer realm="pmops"',
                    "required": True,
                    "schema": {"type": "string"},
                }
            }


def _not_nullable(param: dict[str, Any]) -> None:
    """An optional query or header parameter is one left out: `str | None` must not read as
    "may be null", which a client can only send as the string "null"."""
    schema = param.get("schema", {})
    kinds = schema.get("anyOf", [])
    rest = [k for k in kinds if k != {"type": "null"}]
    if len(rest) == 1 and len(kinds) == 2:
        del schema["anyOf"]
        schema.update(rest[0])
