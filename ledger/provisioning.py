"""Provisioning requests: recorded here, decided once by the workers with a hold."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from ledger.account import get_wallet
from ledger.errors import NotFound
from ledger.models import ProvisioningRequest


def request_provisioning(
    session: Session, *, wallet_id: uuid.UUID, resource_id: str, plan: str
) -> ProvisioningRequest:
    """Record a pending request to run `resource_id` on `plan`, paid from the wallet."""
    wallet = get_wallet(session, wallet_id)
    request = ProvisioningRequest(wallet_id=wallet.id, resource_id=resource_id, plan=plan)
    session.add(request)
    session.flush()
    return request


def get_provisioning_request(session: Session, request_id: uuid.UUID) -> ProvisioningRequest:
    """The request; raises NotFound."""
    request = session.get(ProvisioningRequest, request_id)
    if request is None:
        raise NotFound(f"no provisioning request with id {request_id}")
    return request
