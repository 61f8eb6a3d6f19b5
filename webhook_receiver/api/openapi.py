"""GET /openapi.json: the API described in OpenAPI 3.1, from the schemas the views check with.

A test runs schemathesis against the app with this document, so it stays true to the code.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Response, jsonify

from ledger import review
from ledger.models import ReviewAction
from ledger.review_reason import ReviewCode
from webhook_receiver.api import (
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
from webhook_receiver.api.validation import CURRENCY, ID
from webhook_receiver.services import services

blueprint = Blueprint("openapi", __name__)

_NULLABLE_TEXT = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_MINOR = {"type": "integer"}
_NULLABLE_MINOR = {"type": ["integer", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": sorted(properties)}


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
        "required": ["type", "title", "status"],
    },
    "Wallet": _object(
        {
            "id": ID,
            "owner_id": {"type": "string"},
            "currency": CURRENCY,
            "balance_minor": _MINOR,
            "available_minor": _MINOR,
            "held_minor": _MINOR,
            "paid_minor": _MINOR,
            "granted_minor": _MINOR,
            "grants": {"type": "array", "items": {"$ref": "#/components/schemas/Grant"}},
        }
    ),
    "Grant": _object(
        {
            "id": ID,
            "amount_minor": _MINOR,
            "remaining_minor": _MINOR,
            "expired_minor": _MINOR,
            "currency": CURRENCY,
            "priority": {"type": "integer"},
            "expires_at": _NULLABLE_TIME,
            "reason": {"type": "string"},
            "granted_by": {"type": "string"},
            "created_at": _NULLABLE_TIME,
            "expired_at": _NULLABLE_TIME,
        }
    ),
    "GrantCreated": _object(
        {
            "id": ID,
            "wallet_id": ID,
            "amount_minor": _MINOR,
            "remaining_minor": _MINOR,
            "expired_minor": _MINOR,
            "currency": CURRENCY,
            "priority": {"type": "integer"},
            "expires_at": _NULLABLE_TIME,
            "reason": {"type": "string"},
            "granted_by": {"type": "string"},
            "created_at": _NULLABLE_TIME,
            "expired_at": _NULLABLE_TIME,
        }
    ),
    "Monitor": _object(
        {
            "id": ID,
            "wallet_id": ID,
            "direction": {"enum": ["below", "above"]},
            "threshold_minor": _MINOR,
            "crossed": {"type": "boolean"},
            "crossings": _MINOR,
        }
    ),
    "MonitorList": _object(
        {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Monitor"}}}
    ),
    "MonitorRemoved": _object({"id": ID, "removed": {"const": True}}),
    "AutoTopupRule": _object(
        {
            "wallet_id": ID,
            "threshold_minor": _MINOR,
            "target_minor": _NULLABLE_MINOR,
            "amount_minor": _NULLABLE_MINOR,
            "gateway": {"type": "string"},
            "per_day_max": {"type": "integer"},
            "stripe_customer_id": _NULLABLE_TEXT,
            "stripe_payment_method_id": _NULLABLE_TEXT,
            "armed": {"type": "boolean"},
        }
    ),
    "AutoTopupRemoved": _object({"wallet_id": ID, "removed": {"const": True}}),
    "BalanceAt": _object(
        {
            "at": _TIME,
            "balance_minor": _MINOR,
            "available_minor": _MINOR,
            "held_minor": _MINOR,
            "paid_minor": _MINOR,
            "granted_minor": _MINOR,
        }
    ),
    "WalletBalanceAt": _object(
        {
            "wallet_id": ID,
            "at": _TIME,
            "balance_minor": _MINOR,
            "available_minor": _MINOR,
            "held_minor": _MINOR,
            "paid_minor": _MINOR,
            "granted_minor": _MINOR,
        }
    ),
    "StatementEntry": _object(
        {
            "at": _TIME,
            "transfer_id": {"type": "integer"},
            "type": {
                "enum": [
                    "topup",
                    "refund",
                    "order",
                    "order_refund",
                    "usage",
                    "resource_hour",
                    "hold",
                    "hold_released",
                    "transfer",
                    "adjustment",
                    "grant",
                    "expiry",
                ]
            },
            "category": {"type": "string"},
            "memo": _NULLABLE_TEXT,
            "amount_minor": _MINOR,
            "held_change_minor": _MINOR,
            "paid_change_minor": _MINOR,
            "granted_change_minor": _MINOR,
            "balance_minor": _MINOR,
            "available_minor": _MINOR,
            "held_minor": _MINOR,
        }
    ),
    "Statement": _object(
        {
            "wallet_id": ID,
            "owner_id": {"type": "string"},
            "currency": CURRENCY,
            "from": _TIME,
            "to": _TIME,
            "opening": {"$ref": "#/components/schemas/BalanceAt"},
            "entries": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/StatementEntry"},
            },
            "closing": {"$ref": "#/components/schemas/BalanceAt"},
        }
    ),
    "Transfer": _object(
        {
            "id": {"type": "string"},
            "kind": {"enum": ["posted", "pending", "post_pending", "void_pending"]},
            "category": {"type": "string"},
            "direction": {"enum": ["debit", "credit"]},
            "counterparty_account_id": ID,
            "amount_minor": _MINOR,
            "currency": CURRENCY,
            "pending_id": _NULLABLE_TEXT,
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "memo": _NULLABLE_TEXT,
            "created_at": _TIME,
        }
    ),
    "TransferPage": _object(
        {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Transfer"}},
            "next_cursor": _NULLABLE_TEXT,
        }
    ),
    "Topup": _object(
        {
            "id": ID,
            "wallet_id": ID,
            "amount_minor": _MINOR,
            "currency": CURRENCY,
            "gateway": {"type": "string"},
            "status": {"enum": ["pending", "succeeded", "failed"]},
            "created_at": _TIME,
            "settled_at": {"type": ["string", "null"], "format": "date-time"},
        }
    ),
    "Order": _object(
        {
            "id": ID,
            "wallet_id": ID,
            "reference": {"type": "string"},
            "amount_minor": _MINOR,
            "currency": CURRENCY,
            "status": {"enum": ["pending", "paid", "partially_refunded", "refunded", "rejected"]},
            "paid_minor": _MINOR,
            "refunded_minor": _MINOR,
            "reason": _NULLABLE_TEXT,
            "created_at": _TIME,
        }
    ),
    "ProvisioningRequest": _object(
        {
            "id": ID,
            "wallet_id": ID,
            "resource_id": {"type": "string"},
            "plan": {"type": "string"},
            "status": {"enum": ["pending", "approved", "rejected", "active", "released"]},
            "reason": _NULLABLE_TEXT,
            "reserve_minor": _NULLABLE_MINOR,
            "shortfall_minor": _NULLABLE_MINOR,
            "monthly_price_minor": _NULLABLE_MINOR,
            "billed_hours": _MINOR,
            "created_at": _TIME,
            "decided_at": _NULLABLE_TIME,
            "activated_at": _NULLABLE_TIME,
            "released_at": _NULLABLE_TIME,
            "grace_started_at": _NULLABLE_TIME,
            "suspend_requested_at": _NULLABLE_TIME,
        }
    ),
    "Plan": _object(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "vcpus": {"type": "integer"},
            "memory_gb": {"type": "integer"},
            "monthly_price_minor": _MINOR,
            "currency": CURRENCY,
            "active": {"type": "boolean"},
        }
    ),
    "PlanList": _object(
        {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Plan"}}}
    ),
    "BurnRate": _object(
        {
            "wallet_id": ID,
            "currency": CURRENCY,
            "available_minor": _MINOR,
            "burn_minor_per_month": _MINOR,
            "hours_to_zero": {"type": ["integer", "null"]},
        }
    ),
    "UsageRecord": _object(
        {
            "id": {"type": "string"},
            "wallet_id": ID,
            "resource_id": {"type": "string"},
            "description": {"type": "string"},
            "amount_minor": _MINOR,
            "currency": CURRENCY,
            "occurred_at": _TIME,
            "status": {"enum": ["pending", "billed"]},
        }
    ),
    "UsageResult": {
        "type": "object",
        "properties": {
            "usage_id": {"type": ["string", "null"]},
            "status": {"enum": ["recorded", "duplicate", "conflict", "invalid"]},
            "record": {"$ref": "#/components/schemas/UsageRecord"},
            "problem": {"$ref": "#/components/schemas/Problem"},
        },
        "required": ["usage_id", "status"],
        "description": "recorded and duplicate carry the stored record; conflict and invalid"
        " a problem document (409, or 400 / 404 for a wallet out of the token's reach).",
    },
    "UsageBatchResult": _object(
        {
            "records": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/UsageResult"},
                "description": "One result per record sent, in the same order.",
            },
            "counts": _object(
                {status: _MINOR for status in ("recorded", "duplicate", "conflict", "invalid")}
            ),
        }
    ),
    "UsageAnswer": {
        "oneOf": [
            {"$ref": "#/components/schemas/UsageRecord"},
            {"$ref": "#/components/schemas/UsageBatchResult"},
        ]
    },
}

_REVIEW_ITEM = _object(
    {
        "id": {"type": "string", "pattern": "^(event|conflict)-[0-9]+$"},
        "gateway": {"type": "string"},
        "event_id": {"type": "string"},
        "kind": {"type": "string"},
        "payment_id": _NULLABLE_TEXT,
        "amount_minor": _NULLABLE_MINOR,
        "currency": _NULLABLE_TEXT,
        "reference": _NULLABLE_TEXT,
        "reason": {"type": "string"},
        "reason_code": {"enum": [code.value for code in ReviewCode]},
        "received_at": _TIME,
    }
)
_RESOLUTION = _object(
    {
        "action": {"enum": [action.value for action in ReviewAction]},
        "topup_id": {"type": ["string", "null"]},
        "wallet_id": {"type": ["string", "null"]},
        "transfer_id": _NULLABLE_MINOR,
        "actor": {"type": "string"},
        "note": {"type": "string"},
        "resolved_at": _TIME,
    }
)
SCHEMAS["ReviewItemList"] = _object({"items": {"type": "array", "items": _REVIEW_ITEM}})
SCHEMAS["ReviewItem"] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["open", "resolved"]},
        "reason": {"type": "string"},
        "reason_code": {"enum": [code.value for code in ReviewCode]},
        "event": {"type": "object"},
        "topup": {"type": ["object", "null"]},
        "payload": {},
        "conflicting_payload": {},
        "resolution": {"oneOf": [{"type": "null"}, _RESOLUTION]},
    },
    "required": ["id", "status", "reason", "reason_code", "event", "topup", "resolution"],
}
SCHEMAS["ReviewResolution"] = {
    **_RESOLUTION,
    "properties": {"id": {"type": "string"}, **_RESOLUTION["properties"]},
    "required": ["id", *_RESOLUTION["required"]],
}

_ERRORS = {
    "400": "Invalid request",
    "401": "Missing, malformed, expired or wrongly signed token",
    "403": "The token lacks the scope",
    "404": "Not found, or not visible to this token",
    "409": "Conflict with the resource or an earlier request",
    "422": "Refused by the ledger's rules",
    "429": "Too many requests; see Retry-After",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(
    summary: str,
    scope: str,
    status: int,
    result: str,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    idempotent: bool = False,
    key_required: bool = False,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {
            "description": summary,
            "content": {"application/json": {"schema": _ref(result)}},
        }
    }
    for code, text in _ERRORS.items():
        responses[code] = {
            "description": text,
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    operation: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs scope `{scope}` (or `admin`).",
        "security": [{"bearer": [scope]}],
        "responses": responses,
        "parameters": list(parameters or []),
    }
    if idempotent:
        operation["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": key_required,
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                "description": "Same key and body: the first response. Other body: 409."
                + (" Required: the call moves money." if key_required else ""),
            }
        )
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _statement_operation() -> dict[str, Any]:
    operation = _operation(
        "A wallet's statement: opening balance, each entry with the balance after, closing",
        "wallets:read",
        200,
        "Statement",
        parameters=[
            _path_id("wallet_id"),
            {"name": "from", "in": "query", "required": True, "schema": _TIME},
            {"name": "to", "in": "query", "required": True, "schema": _TIME},
            {"name": "format", "in": "query", "schema": {"enum": list(credits.FORMATS)}},
        ],
    )
    operation["responses"]["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    return operation


def _item_id() -> dict[str, Any]:
    return {
        "name": "item_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^(event|conflict)-[0-9]{1,18}$"},
    }


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _usage_batch() -> dict[str, Any]:
    """The batch form as documented: the views check each record on its own (so one bad
    record fails only itself), but a client sees what each record must be."""
    batch = copy.deepcopy(usage.CREATE_BATCH)
    batch["properties"]["records"]["items"] = usage.CREATE
    return batch


def document(gateways: list[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of /api/v1, for a deployment with these `gateways`."""
    create_topup = copy.deepcopy(topups.CREATE_TOPUP)
    create_topup["properties"]["gateway"] = {"enum": sorted(gateways)}
    page = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": wallets.PAGE_LIMIT_MAX},
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "pattern": f"^[0-9]{{1,{wallets.CURSOR_DIGITS_MAX}}}$"},
            "description": "The next_cursor of the page before.",
        },
    ]
    paths = {
        "/api/v1/wallets": {
            "post": _operation(
                "Create a wallet",
                "wallets:write",
                201,
                "Wallet",
                wallets.CREATE_WALLET,
                idempotent=True,
            ),
        },
        "/api/v1/wallets/{wallet_id}": {
            "get": _operation(
                "Show a wallet", "wallets:read", 200, "Wallet", parameters=[_path_id("wallet_id")]
            ),
        },
        "/api/v1/wallets/{wallet_id}/transfers": {
            "get": _operation(
                "A wallet's transfers, newest first",
                "wallets:read",
                200,
                "TransferPage",
                parameters=[_path_id("wallet_id"), *page],
            ),
        },
        "/api/v1/wallets/{wallet_id}/grants": {
            "post": _operation(
                "Grant credit (admin from promotions, a reseller from its own wallet)",
                "wallets:write",
                201,
                "GrantCreated",
                credits.CREATE_GRANT,
                parameters=[_path_id("wallet_id")],
                idempotent=True,
            ),
        },
        "/api/v1/wallets/{wallet_id}/statement": {
            "get": _statement_operation(),
        },
        "/api/v1/wallets/{wallet_id}/balance": {
            "get": _operation(
                "A wallet's balance, available and held amounts at a time",
                "wallets:read",
                200,
                "WalletBalanceAt",
                parameters=[
                    _path_id("wallet_id"),
                    {"name": "at", "in": "query", "schema": _TIME, "description": "Default now."},
                ],
            ),
        },
        "/api/v1/wallets/{wallet_id}/monitors": {
            "post": _operation(
                "Watch available balance: wallet.balance_crossed once per crossing",
                "wallets:write",
                201,
                "Monitor",
                watch.CREATE_MONITOR,
                parameters=[_path_id("wallet_id")],
                idempotent=True,
            ),
            "get": _operation(
                "A wallet's balance monitors",
                "wallets:read",
                200,
                "MonitorList",
                parameters=[_path_id("wallet_id")],
            ),
        },
        "/api/v1/wallets/{wallet_id}/monitors/{monitor_id}": {
            "delete": _operation(
                "Stop a balance monitor",
                "wallets:write",
                200,
                "MonitorRemoved",
                parameters=[_path_id("wallet_id"), _path_id("monitor_id")],
                idempotent=True,
            ),
        },
        "/api/v1/wallets/{wallet_id}/auto-topup": {
            "put": _operation(
                "Set the wallet's auto top-up rule",
                "wallets:write",
                200,
                "AutoTopupRule",
                watch.SET_AUTO_TOPUP,
                parameters=[_path_id("wallet_id")],
                idempotent=True,
            ),
            "get": _operation(
                "The wallet's auto top-up rule",
                "wallets:read",
                200,
                "AutoTopupRule",
                parameters=[_path_id("wallet_id")],
            ),
            "delete": _operation(
                "Remove the wallet's auto top-up rule",
                "wallets:write",
                200,
                "AutoTopupRemoved",
                parameters=[_path_id("wallet_id")],
                idempotent=True,
            ),
        },
        "/api/v1/topups": {
            "post": _operation(
                "Start a top-up",
                "wallets:write",
                201,
                "Topup",
                topups.CREATE_TOPUP,
                idempotent=True,
            ),
        },
        "/api/v1/topups/{topup_id}": {
            "get": _operation(
                "Show a top-up", "wallets:read", 200, "Topup", parameters=[_path_id("topup_id")]
            ),
        },
        "/api/v1/orders": {
            "post": _operation(
                "Create an order",
                "orders:write",
                201,
                "Order",
                orders.CREATE_ORDER,
                idempotent=True,
            ),
        },
        "/api/v1/orders/{order_id}": {
            "get": _operation(
                "Show an order", "wallets:read", 200, "Order", parameters=[_path_id("order_id")]
            ),
        },
        "/api/v1/orders/{order_id}/pay": {
            "post": _operation(
                "Pay an order from its wallet",
                "orders:write",
                200,
                "Order",
                parameters=[_path_id("order_id")],
                idempotent=True,
            ),
        },
        "/api/v1/orders/{order_id}/refunds": {
            "post": _operation(
                "Refund part or all of an order",
                "orders:write",
                200,
                "Order",
                orders.REFUND,
                parameters=[_path_id("order_id")],
                idempotent=True,
                key_required=True,
            ),
        },
        "/api/v1/provisioning-requests": {
            "post": _operation(
                "Ask to provision a resource",
                "provisioning:write",
                202,
                "ProvisioningRequest",
                provisioning.CREATE,
                idempotent=True,
            ),
        },
        "/api/v1/provisioning-requests/{request_id}": {
            "get": _operation(
                "Show a provisioning request",
                "provisioning:write",
                200,
                "ProvisioningRequest",
                parameters=[_path_id("request_id")],
            ),
        },
        "/api/v1/provisioning-requests/{request_id}/confirm": {
            "post": _operation(
                "The resource runs: post the hold as its first hour",
                "provisioning:write",
                200,
                "ProvisioningRequest",
                parameters=[_path_id("request_id")],
                idempotent=True,
            ),
        },
        "/api/v1/provisioning-requests/{request_id}/release": {
            "post": _operation(
                "The resource failed or was deleted: void the hold, or stop billing",
                "provisioning:write",
                200,
                "ProvisioningRequest",
                parameters=[_path_id("request_id")],
                idempotent=True,
            ),
        },
        "/api/v1/plans": {
            "get": _operation("The plans and their prices", "provisioning:write", 200, "PlanList"),
        },
        "/api/v1/wallets/{wallet_id}/burn-rate": {
            "get": _operation(
                "What a wallet's running resources cost, and hours until it runs out",
                "wallets:read",
                200,
                "BurnRate",
                parameters=[_path_id("wallet_id")],
            ),
        },
        "/api/v1/usage": {
            "post": _operation(
                "Report a usage record, or a batch of up to"
                f" {usage.RECORDS_MAX} as {{records: [...]}} answered record by record",
                "billing:write",
                202,
                "UsageAnswer",
                {"oneOf": [usage.CREATE, _usage_batch()]},
                idempotent=True,
            ),
        },
        "/api/v1/review-items": {
            "get": _operation(
                "Open review items: parked gateway events and payload conflicts",
                "admin",
                200,
                "ReviewItemList",
                parameters=[
                    {
                        "name": "gateway",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[a-z]{2,32}$"},
                    },
                    {
                        "name": "reason",
                        "in": "query",
                        "schema": {"enum": [code.value for code in ReviewCode]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": review.LIST_LIMIT_MAX,
                        },
                    },
                ],
            ),
        },
        "/api/v1/review-items/{item_id}": {
            "get": _operation(
                "A review item in full: event, reason, top-up, payload, resolution",
                "admin",
                200,
                "ReviewItem",
                parameters=[_item_id()],
            ),
        },
        "/api/v1/review-items/{item_id}/resolve": {
            "post": _operation(
                "Resolve a review item once: credit its top-up or a wallet, or dismiss it",
                "admin",
                200,
                "ReviewResolution",
                review_items.RESOLVE,
                parameters=[_item_id()],
                idempotent=True,
            ),
        },
        "/api/v1/transfers": {
            "post": _operation(
                "Move credit between wallets (a reseller to its customers, or an admin)",
                "wallets:write",
                201,
                "Transfer",
                transfers.CREATE,
                idempotent=True,
                key_required=True,
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "walletpipe", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document(list(services().adapters)))
