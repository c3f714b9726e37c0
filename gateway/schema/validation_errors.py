"""msgspec's validation messages, rewritten as `$.inputs[3].hp: expected number, got string`."""

from __future__ import annotations

import re

import msgspec

from gateway.errors import InputValidationError, shown

__all__ = ["validation_error"]

_JSON_NAMES = {
    "float": "number",
    "int": "integer",
    "str": "string",
    "bool": "boolean",
    "array": "array",
    "object": "object",
    "null": "null",
}
_EXPECTED = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`(?: - at `([^`]+)`)?$")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`(?: - at `([^`]+)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]+)`(?: - at `([^`]+)`)?$")
_BOUND = re.compile(r"^Expected `int` ([<>]=) (-?\d+)(?: - at `([^`]+)`)?$")
_AT = re.compile(r" - at `([^`]+)`$")


def _json_type(name: str) -> str:
    # long/integer inputs decode as `int | float` (integral floats are integers): say integer.
    parts = [part.strip() for part in name.split("|")]
    if "int" in parts and "float" in parts:
        parts.remove("float")
    return " or ".join(_JSON_NAMES.get(part, part) for part in parts)


def validation_error(exc: msgspec.ValidationError, prefix: str = "$") -> InputValidationError:
    """Turn msgspec's message into `$.inputs[3].hp: expected number, got string`.

    Only recognised shapes are passed on; anything else keeps the path and drops the rest, so
    an error body never echoes a value the client sent.
    """
    text = str(exc)
    if m := _EXPECTED.match(text):
        path = prefix + (m[3] or "$")[1:]
        kind = "missing" if m[2] == "null" else "type"
        return InputValidationError(
            path, f"expected {_json_type(m[1])}, got {_json_type(m[2])}", kind
        )
    if m := _MISSING.match(text):
        path = prefix + (m[2] or "$")[1:] + "." + m[1]
        return InputValidationError(path, "required field is missing", "missing")
    if m := _UNKNOWN.match(text):
        # The one name here that the client made up: only a bounded, sanitised prefix of it.
        path = prefix + (m[2] or "$")[1:] + "." + shown(m[1])
        return InputValidationError(path, "unknown field", "unknown")
    if m := _BOUND.match(text):
        path = prefix + (m[3] or "$")[1:]
        return InputValidationError(path, f"expected an integer {m[1]} {m[2]}", "range")
    at = _AT.search(text)
    path = prefix + (at[1] if at else "$")[1:]
    if text.startswith("Number out of range"):
        return InputValidationError(path, "number out of range (non-finite)", "non_finite")
    return InputValidationError(path, "invalid value", "type")
