"""JSON answers built from the contract's response models (pmops/contract/responses.py).

Each route declares its model as `response_model` (so the OpenAPI document shows it) and answers
with `typed(...)`: the service's view is validated against the model once and serialised by
pydantic straight to bytes, so FastAPI neither validates it a second time nor goes through
`jsonable_encoder`. Fields the view leaves out stay out (`exclude_unset`); integral numbers
go out as JSON integers (pmops.contract.types.Number).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel


def typed(
    model: type[BaseModel],
    view: Mapping[str, Any],
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = model.model_validate(view).model_dump_json(exclude_unset=True)
    return Response(body, status_code, dict(headers or {}), media_type="application/json")
