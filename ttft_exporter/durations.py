"""The one duration type of the config: `250ms`, `5s`, `1m`, `1h30m` or plain seconds."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Duration", "format_duration", "parse_duration"]

# Decimal, so `700ms` is exactly the float 0.7 (as `0.7s` is), not 0.7000000000000001:
# thresholds become bucket boundaries and `le` labels, where noise would show.
_UNITS = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Prometheus-style duration string."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 250ms, 5s or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _WHOLE.fullmatch(text):
            seconds = float(sum(Decimal(n) * _UNITS[u] for n, u in _PART.findall(text)))
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"invalid duration {value!r}: use a number of seconds or "
                    "a string such as 250ms, 5s, 1m"
                ) from None
    else:
        raise ValueError("must be a duration such as 250ms, 5s or 1m")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite value >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.25 -> `250ms`, 15 -> `15s`, 90 -> `1m30s`."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^((\d+(\.\d+)?)(ms|s|m|h|d))+$"},
            ],
            "description": "seconds, or a duration such as 250ms, 5s, 1m",
        }
    ),
]
