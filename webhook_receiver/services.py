"""What a receiver process holds once: settings, database sessions, adapters, the job sender
and the inbox's writer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from webhook_receiver.gateways import GatewayAdapter
from webhook_receiver.inbox_writer import InboxWriter
from webhook_receiver.settings import ReceiverSettings
from workers.jobs import JobSender


@dataclass(frozen=True)
class Services:
    settings: ReceiverSettings
    sessions: sessionmaker[Session]
    adapters: dict[str, GatewayAdapter]
    sender: JobSender
    inbox: InboxWriter


def services() -> Services:
    """The current app's services (built by create_app)."""
    found: Services = current_app.extensions["walletpipe"]
    return found
