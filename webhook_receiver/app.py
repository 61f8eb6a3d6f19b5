"""The Flask application factory: `gunicorn 'webhook_receiver:create_app()'`."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from ledger import errors as ledger_errors
from ledger.db import make_engine, make_session_factory
from webhook_receiver import api, health, metrics, webhooks
from webhook_receiver.api import openapi
from webhook_receiver.auth import init_auth
from webhook_receiver.errors import ApiError, WebhookError
from webhook_receiver.gateways import build_adapters
from webhook_receiver.inbox_writer import InboxWriter
from webhook_receiver.metrics import init_metrics
from webhook_receiver.problem import problem
from webhook_receiver.ratelimit import init_rate_limiting
from webhook_receiver.routing import UuidConverter
from webhook_receiver.services import Services
from webhook_receiver.settings import ReceiverSettings
from workers.jobs import APPLY_INBOX_BATCH, JobSender

logger = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# What a refusal by the ledger means to an API client.
_LEDGER_STATUS: dict[type[ledger_errors.LedgerError], tuple[int, str]] = {
    ledger_errors.MoneyError: (400, "Invalid amount or currency"),
    ledger_errors.AccountNotFound: (404, "Not found"),
    ledger_errors.NotFound: (404, "Not found"),
    ledger_errors.PendingNotFound: (404, "Not found"),
    ledger_errors.WalletExists: (409, "Wallet exists"),
    ledger_errors.OrderExists: (409, "Order exists"),
    ledger_errors.IdempotencyConflict: (409, "Idempotency key reused"),
    ledger_errors.PendingAlreadyResolved: (409, "Already resolved"),
    ledger_errors.ReviewAlreadyResolved: (409, "Already resolved"),
    ledger_errors.ReviewActionRefused: (422, "Resolution refused"),
    ledger_errors.ResourceBusy: (409, "Resource busy"),
    ledger_errors.ProvisioningStateError: (409, "Not allowed in this state"),
    ledger_errors.OwnerTreeError: (409, "Owner tree conflict"),
    ledger_errors.MonitorExists: (409, "Monitor exists"),
    ledger_errors.InsufficientFunds: (422, "Insufficient funds"),
    ledger_errors.CurrencyMismatch: (422, "Currency mismatch"),
    ledger_errors.OrderNotRefundable: (422, "Order not refundable"),
    ledger_errors.RefundExceedsPaid: (422, "Refund exceeds payment"),
    ledger_errors.PendingExpired: (422, "Hold expired"),
    ledger_errors.PostExceedsPending: (422, "Post exceeds hold"),
    ledger_errors.InvariantViolation: (422, "Refused by the ledger"),
}


def create_app(settings: ReceiverSettings | None = None) -> Flask:
    """Build the app: webhooks, the service API, health, metrics and the OpenAPI document."""
    settings = settings or ReceiverSettings.from_env()
    app = Flask(__name__, static_folder=None)  # it serves no files
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    # Before any blueprint: rules bind their converters when they are added.
    app.url_map.converters["uuid"] = UuidConverter
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    sender = JobSender(settings.broker_url)
    app.extensions["walletpipe"] = Services(
        settings=settings,
        sessions=make_session_factory(engine),
        adapters=build_adapters(settings),
        sender=sender,
        inbox=InboxWriter(
            settings.database_url,
            rows_max=settings.inbox_commit_rows_max,
            wait_ms=settings.inbox_commit_wait_ms,
            doorbell_interval_ms=settings.doorbell_interval_ms,
            ring=lambda: sender.send(APPLY_INBOX_BATCH),
            on_commit=lambda rows: metrics.count_inbox_commit(app, rows),
        ),
    )
    init_metrics(app)  # first request hook: times requests that later hooks refuse
    init_auth(app, settings)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
    app.register_error_handler(WebhookError, _webhook_error)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(ledger_errors.LedgerError, _ledger_error)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    init_rate_limiting(app, settings)  # after init_auth: the limit is per token subject
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


def _api_error(error: ApiError) -> Response:
    response = problem(error.status, error.title, str(error), **error.extra)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _ledger_error(error: ledger_errors.LedgerError) -> Response:
    status, title = next(
        (found for cls, found in _LEDGER_STATUS.items() if isinstance(error, cls)),
        (422, "Refused by the ledger"),
    )
    return problem(status, title, str(error))


def _database_unavailable(error: OperationalError) -> Response:
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    if sqlstate.startswith("40"):  # serialization failure, deadlock: nothing was changed
        logger.info(
            "A concurrent change conflicted (%s); answering 503 to retry.",
            sqlstate,
            extra={"request_id": g.get("request_id")},
        )
        return problem(
            503, "Concurrent change", "another change to the same data won; retry the request"
        )
    logger.warning(
        "The database is unreachable.", exc_info=True, extra={"request_id": g.get("request_id")}
    )
    return problem(503, "Storage unavailable", "the database is not reachable; retry later")


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404 and request.url_rule is None:
        return problem(
            404, "Not found", f"no such path: {request.path[:200]}; GET /openapi.json lists the API"
        )
    return problem(status, error.name, error.description)


def _unexpected_error(error: Exception) -> Response:
    logger.exception("Unexpected error.", extra={"request_id": g.get("request_id")})
    return problem(500, "Internal error", "the error was logged; the request may be retried")
