"""The OpenAPI document: the seed's own JSON examples on each endpoint, problem+json errors, and
a description for every field of every request body.

The response bodies' schemas come from the routes' `response_model`s (pmops/contract/responses.py,
each field described there). `seed_examples.json` holds the examples of
../shared/seed/async-operations-api.ja.txt as they are written there (tests/stack/test_openapi.py
checks they still match the seed). The request fields' descriptions live here, in one table, so
the request classes stay short.
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

FIELDS: dict[str, dict[str, str]] = {
    "OperationCreate": {
        "operationType": "ProcessMiningAnalysis, DataEnrichment or ReportGeneration",
        "operationName": "a name people recognise the operation by",
        "operationDescription": "free text kept with the operation",
        "priority": "Low, Normal (default), High or Critical: higher starts first when "
        "workers are busy",
        "parameters": "per operation type: datasetId (required unless a ReportGeneration "
        "names sourceOperationId), analysisType, timeWindow, algorithm, algorithmSettings, "
        "outputOptions, cleaningRules, reportType, exportFormats (see the contract)",
        "callbacks": "URLs told about this operation: onProgress, onCompletion, onError",
        "notifications": "email addresses and a Slack channel told when it ends",
        "timeout": "seconds from start until the run is stopped as Timeout (default 3600)",
        "retryPolicy": "automatic resume retries of a failed run",
    },
    "Callbacks": {
        "onProgress": "receives operation.started, .progress and .phase.completed",
        "onCompletion": "receives operation.completed and .cancelled",
        "onError": "receives operation.failed and .timeout",
    },
    "Notifications": {
        "email": "addresses emailed when the operation completes, fails, times out or is cancelled",
        "slack": "channel and people to mention, through the project's Slack incoming webhook",
    },
    "Slack": {
        "channel": "e.g. #process-mining",
        "mentionUsers": "Slack member ids (U…) are mentioned; @here, @channel work too",
    },
    "RetryPolicy": {
        "maxRetries": "how many retries at most in the chain",
        "retryDelay": "seconds before the first retry",
        "backoffMultiplier": "each later retry waits this many times longer",
    },
    "CancelRequest": {
        "reason": "why; shown in the status and the cancellation answer",
        "preservePartialResults": "keep completed phases' artifacts downloadable (default true)",
        "forceTermination": "stop now (true) or at the next checkpoint (false, default)",
        "notifyCallbacks": "tell the callbacks, email and Slack (default true)",
    },
    "WebhookCreate": {
        "webhookUrl": "http(s) URL of a public host; private and metadata addresses are refused",
        "webhookName": "a name for people",
        "events": "event types to receive",
        "filters": "which operations: operationTypes, priorities, minProgressIncrement",
        "authentication": "type hmac-sha256 and the secret that signs deliveries (never shown "
        "again); without it the project's signing secret signs",
        "retryPolicy": "retries of a failed delivery",
        "headers": "extra headers sent with every delivery",
    },
    "WebhookFilters": {
        "operationTypes": "only operations of these types (all if empty)",
        "priorities": "only operations of these priorities (all if empty)",
        "minProgressIncrement": "send a progress event only when progress grew this many points",
    },
    "WebhookAuthentication": {
        "type": "hmac-sha256",
        "secret": "a whsec_<base64> secret or any string of 8+ characters (its UTF-8 bytes)",
    },
    "WebhookRetryPolicy": {
        "maxRetries": "retries after the first attempt before the delivery is a dead letter",
        "retryDelay": "seconds before the first retry",
        "backoffMultiplier": "each later retry waits this many times longer",
        "maxDelay": "the longest wait between attempts, seconds",
    },
    "WebhookUpdate": {"status": "Active (re-enable) or Disabled (pause)"},
    "NotificationSettingsUpdate": {
        "slackWebhookUrl": "the project's Slack incoming-webhook URL; empty removes it",
        "ownerEmails": "people told when one of the project's webhooks gets disabled",
    },
    "RetryCreate": {
        "retryMode": "resume (reuse completed phases whose inputs did not change) or restart",
        "retryReason": "why; kept with the retry",
        "modifyParameters": "informative: updatedParameters are applied whenever given",
        "updatedParameters": "merged into the original parameters (null removes a key); "
        "resourceAllocation.priority sets the priority",
        "retryPolicy": "automatic retries of this retry",
        "newTimeout": "seconds, replacing the original timeout",
        "preserveOriginalResults": "the original is always kept; accepted for the seed's clients",
    },
    "ResourceAllocation": {
        "cpuUnits": "accepted; the server allocates its configured resources",
        "memoryGB": "accepted; the server allocates its configured resources",
        "priority": "the retry's priority",
    },
    "BatchCreate": {
        "batchName": "a name for people",
        "batchDescription": "free text",
        "operations": "the operations, each with a key unique in the batch and the keys it "
        "depends on",
        "batchCallbacks": "URLs told when the batch starts, each operation ends, the batch ends",
        "failurePolicy": "what a failure does to the rest",
    },
    "BatchOperation": {
        "operationName": "a name people recognise the operation by",
        "operationType": "ProcessMiningAnalysis, DataEnrichment or ReportGeneration",
        "priority": "Low, Normal, High or Critical",
        "operationKey": "unique in the batch; what dependencies name",
        "dependencies": "keys of operations that must complete first",
        "parameters": "as for a single start; without datasetId the input comes from a "
        "dependency (the enriched dataset, or for a report the analysis)",
        "operationDescription": "free text",
        "callbacks": "as for a single start",
        "notifications": "as for a single start",
        "timeout": "seconds from when it may start",
        "retryPolicy": "used when the batch's failurePolicy.retryFailedOperations is on",
    },
    "BatchCallbacks": {
        "onBatchStart": "receives batch.started",
        "onOperationComplete": "receives batch.operation.completed",
        "onBatchComplete": "receives batch.completed",
    },
    "FailurePolicy": {
        "stopOnFirstFailure": "cancel everything unfinished at the first failure",
        "continueIndependentOperations": "let branches that do not depend on a failure finish "
        "(default true)",
        "retryFailedOperations": "retry failed operations (their retryPolicy, else once) first",
    },
}


def install(app: FastAPI) -> None:
    """Replace app.openapi with a version carrying the examples and field descriptions."""

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
        for schema_name, fields in FIELDS.items():
            props = schemas.get(schema_name, {}).get("properties", {})
            for name, text in fields.items():
                if name in props:
                    props[name].setdefault("description", text)
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


# What each error status means; every /api/ operation may answer 400, 401 and 404, one with a
# request body 422, and those listed in MORE_ERRORS their further statuses.
ERRORS = {
    "400": "a path id that is not a GUID, a query or header parameter out of range, or a body "
    "that is not JSON: the problem names the field",
    "401": "no bearer token, or one that is not valid",
    "404": "no such resource in this tenant and project (another tenant's do not exist)",
    "409": "the resource's state does not allow this now (the problem says why)",
    "413": "the file is larger than PMOPS_MAX_UPLOAD_BYTES",
    "422": "the request is not valid: the problem names the fields",
    "507": "the server cannot store the upload now (disk full, quota)",
}
_OP = f"{BASE}/operation/{{operationId}}"
MORE_ERRORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/{tenantId}/{projectId}/datasets"): ("413", "507"),
    ("delete", _OP): ("409",),
    ("get", f"{_OP}/results"): ("409",),
    ("post", f"{_OP}/retry"): ("409",),
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
            statuses = ["400", "401", "404", *MORE_ERRORS.get((method, path), ())]
            if "requestBody" in op:
                statuses.append("422")
            for status in sorted(statuses):
                answers[status] = {
                    "description": ERRORS[status],
                    "content": {"application/problem+json": {"schema": ref}},
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
