"""Provisioning requests: accepted here as pending; the workers decide each once, with a hold."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify
from sqlalchemy.orm import Session

from ledger.provisioning import get_provisioning_request, request_provisioning
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import check_visible, visible_wallet
from webhook_receiver.api.mutation import mutation
from webhook_receiver.api.validation import ID, TEXT_ID, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.services import services

PLAN = {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}
CREATE = body_schema({"wallet_id": ID, "resource_id": TEXT_ID, "plan": PLAN})


@blueprint.post("/provisioning-requests", endpoint="provisioning_create")
@requires("provisioning:write")
@mutation("provisioning.request")
def create(session: Session) -> tuple[dict[str, Any], int]:
    body = json_body(CREATE)
    wallet = visible_wallet(session, uuid.UUID(body["wallet_id"]))
    row = request_provisioning(
        session, wallet_id=wallet.id, resource_id=body["resource_id"], plan=body["plan"]
    )
    return views.provisioning_request(row), 202


@blueprint.get("/provisioning-requests/<uuid:request_id>", endpoint="provisioning_show")
@requires("provisioning:write")
def show(request_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        row = get_provisioning_request(session, request_id)
        check_visible(session, row.wallet_id, "provisioning request", request_id)
        return jsonify(views.provisioning_request(row))
