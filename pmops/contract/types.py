"""Scalar types the response models share."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema


def integral(value: float) -> int | float:
    """2.0 -> 2: an integral number is sent as a JSON integer (strictly typed clients read
    `memoryGB: 2.0` as a decimal); 2.5 stays 2.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _percent(value: object) -> object:
    """ "45%" -> 45.0 (a percentage an older server sent as text)."""
    if isinstance(value, str) and (found := re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*%?\s*", value)):
        return float(found.group(1))
    return value


# a JSON number: integral values serialise as integers, others as decimals
Number = Annotated[
    float,
    PlainSerializer(integral, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
# a percentage, 0-100
Percent = Annotated[
    float,
    BeforeValidator(_percent),
    PlainSerializer(integral, when_used="json"),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100}),
]
