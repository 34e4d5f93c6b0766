"""JSON equality as the lake promises it: key order, whitespace and number spelling do not count; repeated keys do."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

import orjson


def _object(pairs: list[tuple[str, Any]]) -> tuple[str, list[tuple[str, Any]]]:
    return ("object", sorted(pairs, key=repr))


def _number(text: str) -> tuple[str, Decimal]:
    value = Decimal(text)
    return ("number", value.normalize() if value else Decimal(0))


def json_normal(text: bytes | str) -> str:
    """A text equal for exactly the JSON-equal texts (lone surrogates and deep nesting included)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return repr(json.loads(text, object_pairs_hook=_object, parse_float=_number, parse_int=_number))
    finally:
        sys.setrecursionlimit(limit)


def json_equal(a: bytes | str, b: bytes | str) -> bool:
    return json_normal(a) == json_normal(b)


def value_text(value: Any) -> bytes:
    """JSON text of a Python value, fragments of exact text included."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()
