"""The service API, /api/v1: thin views that parse, authorise, call one ledger function, answer."""

from flask import Blueprint

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

# The modules add their routes to the blueprint.
from webhook_receiver.api import (  # noqa: E402
    credits,
    orders,
    provisioning,
    review_items,
    topups,
    transfers,
    usage,
    wallets,
    watch,
)

__all__ = [
    "blueprint",
    "credits",
    "orders",
    "provisioning",
    "review_items",
    "topups",
    "transfers",
    "usage",
    "wallets",
    "watch",
]
