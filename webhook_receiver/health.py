"""Liveness and readiness."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webhook_receiver.problem import problem
from webhook_receiver.services import services

logger = logging.getLogger(__name__)
blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> Response:
    """The database answers; a load balancer sends traffic only then."""
    try:
        with services().sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        logger.warning("Readiness check failed: the database does not answer.", exc_info=True)
        return problem(503, "Not ready", "the database is not reachable")
    return jsonify(status="ready")
