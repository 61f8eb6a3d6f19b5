"""The webhook receiver and service API: a thin Flask app in front of the ledger and workers."""

from webhook_receiver.app import create_app

__all__ = ["create_app"]
