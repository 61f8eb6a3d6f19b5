"""Provisioning requests: accepted here as pending; the workers decide each once, with a hold.

The VM platform then confirms (the resource runs: billing starts) or releases (it failed to
start or was deleted: the hold is voided, or billing stops).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from ledger import provisioning
from ledger.plan import describe, list_plans
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import check_visible, visible_wallet
from webhook_receiver.api.mutation import after_commit, mutation
from webhook_receiver.api.validation import ID, TEXT_ID, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.services import services
from workers.jobs import DECIDE_PROVISIONING

PLAN = {
    "type": "string",
    "pattern": "^[a-z0-9_-]{1,64}$",
    "description": "a plan id: 1 to 64 of a-z, 0-9, _ and -",
}
CREATE = body_schema({"wallet_id": ID, "resource_id": TEXT_ID, "plan": PLAN})
EMPTY = body_schema({})


@blueprint.post("/provisioning-requests", endpoint="provisioning_create")
@requires("provisioning:write")
@mutation("provisioning.request")
def create(session: Session) -> tuple[dict[str, Any], int]:
    """202: pending; the decision follows from the workers (GET, or `provisioning.decided`)."""
    body = json_body(CREATE)
    wallet = visible_wallet(session, uuid.UUID(body["wallet_id"]))
    row = provisioning.request_provisioning(
        session, wallet_id=wallet.id, resource_id=body["resource_id"], plan=body["plan"]
    )
    session.flush()
    after_commit(DECIDE_PROVISIONING, str(row.id))
    return views.provisioning_request(row), 202


@blueprint.post("/provisioning-requests/<uuid:request_id>/confirm", endpoint="provisioning_confirm")
@requires("provisioning:write")
@mutation("provisioning.confirm")
def confirm(session: Session, request_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """The resource runs: the hold pays its first hour and the rest is released. Idempotent."""
    _visible(session, request_id)
    row = provisioning.confirm(session, request_id, now=datetime.now(UTC))
    return views.provisioning_request(row), 200


@blueprint.post("/provisioning-requests/<uuid:request_id>/release", endpoint="provisioning_release")
@requires("provisioning:write")
@mutation("provisioning.release")
def release(session: Session, request_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """The resource failed or was deleted: the hold is voided, or billing stops. Idempotent."""
    _visible(session, request_id)
    row = provisioning.release(session, request_id, now=datetime.now(UTC))
    return views.provisioning_request(row), 200


@blueprint.get("/provisioning-requests/<uuid:request_id>", endpoint="provisioning_show")
@requires("provisioning:write")
def show(request_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        row = _visible(session, request_id)
        return jsonify(views.provisioning_request(row))


@blueprint.get("/plans", endpoint="plan_list")
@requires("provisioning:write")
def plans() -> Response:
    """The catalogue: what each plan costs a month (730 hours), in minor units."""
    with services().sessions() as session:
        return jsonify(items=[describe(plan) for plan in list_plans(session)])


def _visible(session: Session, request_id: uuid.UUID) -> Any:
    if request.get_data(cache=True) and request.method == "POST":
        json_body(EMPTY)
    row = provisioning.get_provisioning_request(session, request_id)
    check_visible(session, row.wallet_id, "provisioning request", request_id)
    return row
