"""The jobs other processes hand to the workers, and a sender that never holds a request long.

A job is sent only after the transaction that justifies it has committed. Sending can fail
(the broker is down, slow, or full); the sender then logs and reports False, and the relay
re-sends from the database later, so nothing is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """An actor the workers run, by name, and the queue it listens on."""

    actor_name: str
    queue_name: str


# Queues per kind of work, so each can be given its own workers (`dramatiq ... --queues`).
DECIDE_PROVISIONING = Job("decide_provisioning", "provisioning")
# Doorbells: no arguments; the worker claims whatever is waiting in the database, in batches,
# so one message per committing transaction serves any number of rows.
APPLY_INBOX_BATCH = Job("apply_inbox_batch", "ledger")
DELIVER_NOTIFICATIONS = Job("deliver_notifications", "notifications")
BILL_USAGE_RECORDS = Job("bill_usage_records", "billing")
# Per-row jobs the doorbells replaced: a dead letter of one is replayed as its doorbell, which
# finds the row still waiting in the database.
REPLACED_BY = {
    "apply_gateway_event": APPLY_INBOX_BATCH,
    "deliver_notification": DELIVER_NOTIFICATIONS,
    "bill_usage": BILL_USAGE_RECORDS,
}


def connect_broker(url: str, *, timeout_s: float, middleware: list[Any] | None = None) -> Any:
    """A Dramatiq broker for `url` (redis:// or amqp://) with bounded socket timeouts."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(  # type: ignore[no-untyped-call]  # dramatiq's __init__ is unannotated
            url=url,
            middleware=middleware,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        separator = "&" if "?" in url else "?"
        bounded = (
            f"{url}{separator}socket_timeout={timeout_s}"
            f"&connection_attempts=1&blocked_connection_timeout={timeout_s}"
        )
        return RabbitmqBroker(url=bounded, middleware=middleware)
    raise ValueError(f"BROKER_URL must start with redis:// or amqp://, not {url.split(':')[0]!r}")


class JobSender:
    """Sends jobs to the workers' queues; any broker failure is logged and reported, not raised."""

    def __init__(self, broker_url: str, *, timeout_s: float = 1.0) -> None:
        self._broker: dramatiq.Broker = connect_broker(
            broker_url, timeout_s=timeout_s, middleware=[]
        )

    def send(self, job: Job, *args: Any) -> bool:
        """Enqueue `job(*args)`; True when the broker took it."""
        return self.send_message(job, *args) is not None

    def send_message(self, job: Job, *args: Any, **kwargs: Any) -> str | None:
        """Enqueue `job(*args, **kwargs)`; the message id, or None when the broker refused."""
        message: Message[Any] = Message(
            queue_name=job.queue_name,
            actor_name=job.actor_name,
            args=args,
            kwargs=kwargs,
            options={},
        )
        try:
            self._broker.enqueue(message)
        except Exception:  # the row is durable; the relay re-sends what did not go out
            logger.warning(
                "Could not send %s%r; the relay will re-send it.",
                job.actor_name,
                args,
                exc_info=True,
                extra={"job": job.actor_name},
            )
            return None
        return message.message_id

    def close(self) -> None:
        self._broker.close()
