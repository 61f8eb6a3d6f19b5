"""Builders shared by the API auth and rate-limit tests: a tiny app, keys and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from flask import Blueprint, Flask, Response, jsonify

from webhook_receiver.auth import current_principal, init_auth, requires
from webhook_receiver.errors import ApiError
from webhook_receiver.problem import problem
from webhook_receiver.settings import ReceiverSettings

SECRET = "unit-test-jwt-secret-0123456789abcdef"
OLD_SECRET = "unit-test-jwt-secret-rotated-out-0000"


def make_app(settings: ReceiverSettings, scope: str = "wallets:read") -> Flask:
    """An app with GET /api/v1/ping under requires(scope) and POST /webhooks/x, unprotected."""
    app = Flask(__name__)
    init_auth(app, settings)
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @api.get("/ping")
    @requires(scope)
    def ping() -> Response:
        principal = current_principal()
        return jsonify(
            sub=principal.subject, scopes=sorted(principal.scopes), owner_id=principal.owner_id
        )

    app.register_blueprint(api)

    @app.post("/webhooks/x")
    def webhook() -> Response:
        return jsonify(status="accepted")

    # The real app's ApiError handler renders the same document.
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return problem(error.status, error.title, str(error), **error.extra)

    return app


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for a minute, scope wallets:read; None values are left out."""
    base: dict[str, Any] = {
        "sub": "shop",
        "scope": "wallets:read",
        "exp": int(time.time()) + 60,
        "iat": int(time.time()),
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs256(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand: unsigned when `hmac_key` is None, else HMAC-SHA256 with it."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if hmac_key is None:
        return f"{signing_input}."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
