"""The log channel, the default: one structured line per event, for operators and log shippers."""

from __future__ import annotations

import logging

from ledger.outbox import Notice
from workers.channels.base import Channel

logger = logging.getLogger(__name__)


class LogChannel(Channel):
    name = "log"
    waits_on_network = False

    def send(self, notice: Notice) -> None:
        logger.info(
            "Notification %s %s.",
            notice.event_type,
            notice.id,
            extra={"outbox_id": notice.id, "event_type": notice.event_type, "data": notice.data},
        )
