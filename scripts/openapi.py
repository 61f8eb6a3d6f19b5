"""Write docs/openapi.json: the OpenAPI document GET /openapi.json serves.

The document names the gateways a top-up may use, which are the ones a deployment configures;
the committed copy is the one served with every gateway configured. Run `make openapi` after
changing the API; `tests/unit/test_openapi_document.py` fails while the copy is out of date.
`--check` only compares, exiting 1 when the copy differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from webhook_receiver import create_app
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
# Placeholders in each gateway's secret format; no request is ever verified with them.
_PLACEHOLDER_SECRETS = {
    "RAZORPAY_WEBHOOK_SECRET": "placeholder",
    "STRIPE_WEBHOOK_SECRET": "whsec_placeholder",
    "PAYPAL_WEBHOOK_ID": "placeholder",
    "YOCO_WEBHOOK_SECRET": "whsec_cGxhY2Vob2xkZXI=",
    "PAYFAST_PASSPHRASE": "placeholder",
    "PAYSTACK_WEBHOOK_SECRET": "placeholder",
    "ADYEN_HMAC_KEY": "00" * 32,
}


def served() -> dict[str, Any]:
    """What GET /openapi.json answers with every gateway configured; needs no running service."""
    environ = {
        # Never connected to: the document is built without the database or the broker.
        "DATABASE_URL": "postgresql://127.0.0.1:1/unused",
        "BROKER_URL": "redis://127.0.0.1:1/0",
        **{adapter.env_var: _PLACEHOLDER_SECRETS[adapter.env_var] for adapter in ADAPTERS.values()},
    }
    app = create_app(ReceiverSettings.from_env(environ))
    answer = app.test_client().get("/openapi.json")
    assert answer.status_code == 200, answer.data
    document: dict[str, Any] = answer.get_json()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = parser.parse_args(argv)
    text = render(served())
    if args.check:
        current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if current != text:
            print(f"{DOCUMENT} is out of date: run `make openapi`.", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
