"""The Flask application factory: `gunicorn 'webhook_receiver:create_app()'`."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from ledger.db import make_engine, make_session_factory
from webhook_receiver import health, webhooks
from webhook_receiver.errors import WebhookError
from webhook_receiver.gateways import build_adapters
from webhook_receiver.problem import problem
from webhook_receiver.services import Services
from webhook_receiver.settings import ReceiverSettings
from workers.jobs import JobSender

logger = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def create_app(settings: ReceiverSettings | None = None) -> Flask:
    """Build the receiver: webhooks, health, and (later) the service API."""
    settings = settings or ReceiverSettings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    app.extensions["walletpipe"] = Services(
        settings=settings,
        sessions=make_session_factory(engine),
        adapters=build_adapters(settings),
        sender=JobSender(settings.broker_url),
    )
    app.register_blueprint(health.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
    app.register_error_handler(WebhookError, _webhook_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _assign_request_id() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _echo_request_id(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def _webhook_error(error: WebhookError) -> Response:
    logger.info(
        "Webhook refused (%s): %s.",
        error.status,
        error.title,
        extra={"request_id": g.get("request_id"), "path": request.path},
    )
    return problem(error.status, error.title, str(error) or None)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    return problem(status, error.name, error.description)


def _unexpected_error(error: Exception) -> Response:
    logger.exception("Unexpected error.", extra={"request_id": g.get("request_id")})
    return problem(500, "Internal error", "the error was logged; the request may be retried")
