"""Request bodies and query parameters checked against JSON Schema (2020-12).

The same schemas describe the API in /openapi.json, so the document and the checks cannot
drift apart. Unknown fields are refused, and an integer is an integer: 10.0 is not 10.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from ledger.money import AMOUNT_MINOR_MAX, iso_currencies
from webhook_receiver.errors import Invalid

_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
StrictValidator = validators.extend(Draft202012Validator, type_checker=_TYPES)

AMOUNT = {"type": "integer", "minimum": 1, "maximum": AMOUNT_MINOR_MAX}
ID = {"type": "string", "format": "uuid"}
CURRENCY = {"enum": sorted(iso_currencies()), "description": "ISO 4217 code"}
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
TEXT_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[\\x21-\\x7e]+$",
    "description": "printable ASCII without spaces",
}
_SHOWN_CHARS_MAX = 40
_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_FORMAT_NAMES = {"uuid": "a UUID", "date-time": "an RFC 3339 date-time"}
_BOUNDS = {
    "minimum": "must be at least {expected}, not {value}",
    "maximum": "must be at most {expected}, not {value}",
    "minLength": "must be at least {expected} characters long",
    "maxLength": "must be at most {expected} characters long",
}


def body_schema(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object schema with these required and optional properties and nothing else."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
        "additionalProperties": False,
    }


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON object, checked against `schema`; raises Invalid saying what is wrong."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw or b"null", parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Invalid("the body is not JSON") from None
    check(body, schema, "body")
    assert isinstance(body, dict)
    return body


def check(value: Any, schema: dict[str, Any], where: str) -> None:
    """Raise Invalid with the first problem `value` has against `schema`.

    Beyond the schema, no string may hold a control character or a lone surrogate: JSON Schema
    patterns let a trailing newline through, and PostgreSQL refuses NUL.
    """
    unprintable = _unprintable(value)
    if unprintable is not None:
        raise Invalid(f"{where}{unprintable}: control characters and lone surrogates are refused")
    validator = StrictValidator(schema, format_checker=FormatChecker())
    error: ValidationError | None = next(iter(validator.iter_errors(value)), None)
    if error is not None:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        raise Invalid(f"{where}{path}: {describe(error)}")


def shown(value: Any) -> str:
    """A value as the client wrote it, in JSON (`null`, `true`, `"text"`), kept short."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS_MAX else text[:_SHOWN_CHARS_MAX] + "..."


def describe(error: ValidationError) -> str:
    """What is wrong, in JSON's words: jsonschema's own messages quote Python reprs."""
    rule, expected, value, schema = (
        error.validator,
        error.validator_value,
        error.instance,
        error.schema,
    )
    if rule == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return f"must be {' or '.join(_TYPE_NAMES.get(t, t) for t in types)}, not {shown(value)}"
    if rule == "required":
        missing = [name for name in expected if name not in value]
        return f'"{missing[0]}" is required'
    if rule == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(name for name in value if name not in allowed)
        return f'"{unknown[0]}" is not a known field (known: {", ".join(allowed) or "none"})'
    if rule == "enum":
        if "description" in schema:
            return f"{shown(value)} is not a valid {schema['description']}"
        return f"must be one of {', '.join(shown(v) for v in expected)}, not {shown(value)}"
    if rule == "format":
        return f"must be {_FORMAT_NAMES.get(expected, expected)}, not {shown(value)}"
    if rule == "pattern":
        wanted = schema.get("description") or f"text matching {shown(expected)}"
        return f"must be {wanted}, not {shown(value)}"
    if rule in _BOUNDS:
        return _BOUNDS[rule].format(expected=expected, value=shown(value))
    return f"{shown(value)} breaks the rule {rule!s} of the schema"


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _unprintable(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) with a control character or surrogate."""
    if isinstance(value, str):
        return path if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unprintable(key, f"{path}.{shown(key)}") or _unprintable(item, f"{path}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unprintable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
