"""RFC 9457 problem documents: the one shape of every HTTP error walletpipe answers."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    """A JSON problem document with `status`, served as application/problem+json."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response
