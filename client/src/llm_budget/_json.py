"""JSON with exact money: Decimal in, Decimal out.

The service renders money as JSON numbers; parsing them with ``parse_float=Decimal`` keeps every
digit it sent. Sending, a Decimal is written as the JSON number it is (``str(Decimal)`` is valid
JSON number syntax for finite values), never through a float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def loads(text: str | bytes) -> Any:
    """Parse JSON, reading every non-integer number as an exact ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


def dumps(value: object) -> str:
    """Serialise JSON values, Decimals (as exact numbers), tuples (as arrays).

    Raises ValueError for a non-finite Decimal or float (JSON has no NaN) and TypeError for
    anything else that is not JSON.
    """
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: object, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        out.append(str(value))
    elif value is None or isinstance(value, (str, bool, int)):
        out.append(json.dumps(value))
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            if i:
                out.append(",")
            out.append(json.dumps(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
