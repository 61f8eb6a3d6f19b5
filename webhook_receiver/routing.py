"""Path converters whose refusals say what was wrong, instead of a bare 404.

Werkzeug's own `uuid` converter does not match a malformed id at all, so the client hears
"not found, check your spelling". This one matches any path segment and refuses a malformed id
with a 400 problem that says an id is a UUID.
"""

from __future__ import annotations

import re
import uuid

from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter

# The spelling Werkzeug accepts: hyphenated hex, either case; no braces, no urn: prefix.
_UUID = re.compile(r"[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}")
_SHOWN_CHARS_MAX = 40


class MalformedId(BadRequest):
    """A path segment that should be a UUID is not one (HTTP 400)."""

    name = "Invalid request"


class UuidConverter(BaseConverter):
    """`<uuid:name>`: any one path segment; a UUID becomes a uuid.UUID, anything else a 400."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> uuid.UUID:
        if not _UUID.fullmatch(value):
            shown = value if len(value) <= _SHOWN_CHARS_MAX else value[:_SHOWN_CHARS_MAX] + "..."
            raise MalformedId(
                f'"{shown}" is not an id: ids in this path are UUIDs, '
                "like 123e4567-e89b-12d3-a456-426614174000"
            )
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID) -> str:
        return str(value)
