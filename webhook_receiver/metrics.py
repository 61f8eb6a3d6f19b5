"""GET /metrics: the web process's counters and the ledger's backlog, for Prometheus.

Three kinds of numbers. HTTP requests are counted and timed in request hooks, labelled by the
URL rule's endpoint name (never the raw path, whose ids would make a series per request).
Webhooks are counted by gateway and outcome: each recorded event by its inbox outcome, each
refused request by its HTTP status. The backlog (open inbox events by status, undelivered
notifications, dead letters, the age of the oldest waiting) is read from PostgreSQL when
Prometheus scrapes, in one read-only statement bounded by a statement timeout; if the database
does not answer, the scrape still succeeds, with `walletpipe_database_up 0` and no backlog
gauges.

gunicorn runs several worker processes, each counting its own requests. When
PROMETHEUS_MULTIPROC_DIR names a directory, prometheus_client keeps every process's values in
files there and a scrape, whichever process answers it, sums them all; the directory must be
empty when gunicorn starts. Otherwise each app counts in a registry of its own, so that several
apps in one process (tests) never clash over metric names.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ledger import review
from ledger.models import InboxStatus
from ledger.review_reason import ReviewCode
from webhook_receiver.services import services

logger = logging.getLogger(__name__)
blueprint = Blueprint("metrics", __name__)

# The classic text format; every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
STATEMENT_TIMEOUT_MS = 2000
DATABASE_UP = "walletpipe_database_up"
UNMATCHED = "unmatched"
WEBHOOK_ENDPOINT = "webhooks.receive"
# Any other method a client invents is counted as "other", so it cannot add series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_EXTENSION = "walletpipe_metrics"


@dataclass(frozen=True)
class BacklogGauge:
    """One gauge read from PostgreSQL at each scrape.

    `sql` selects rows of (label, value): a row per value of `label`, or, for a gauge without a
    label, one row whose label is NULL. A value of NULL is reported as 0, and so is each of
    `known` that no row names, so that a series does not vanish while its count is zero.
    """

    name: str
    help: str
    sql: str
    label: str | None = None
    known: tuple[str, ...] = ()


# Read together in one statement: a new gauge is one more entry here.
# Statuses an inbox event can still leave; applied and ignored ones are history, and counting
# them would read a table that only grows.
_OPEN_STATUSES = (InboxStatus.RECEIVED, InboxStatus.PARKED, InboxStatus.NEEDS_REVIEW)

BACKLOG_GAUGES: tuple[BacklogGauge, ...] = (
    BacklogGauge(
        "walletpipe_inbox_events",
        "Gateway events in the inbox that are not settled yet, by status.",
        # Two arms, each the predicate of a partial index (ix_inbox_events_waiting and
        # ix_inbox_events_needs_review), so that neither reads the settled history.
        "SELECT status AS label, count(*) AS value FROM inbox_events"
        " WHERE status IN ('received', 'parked') GROUP BY status"
        " UNION ALL SELECT status, count(*) FROM inbox_events"
        " WHERE status = 'needs_review' GROUP BY status",
        label="status",
        known=tuple(status.value for status in _OPEN_STATUSES),
    ),
    BacklogGauge(
        "walletpipe_inbox_oldest_waiting_seconds",
        "Age of the oldest inbox event still waiting to be applied (received or parked); "
        "0 when none waits.",
        # The predicate of ix_inbox_events_waiting, so the minimum is read from that index.
        "SELECT NULL AS label, extract(epoch FROM now() - min(received_at)) AS value "
        "FROM inbox_events WHERE status IN ('received', 'parked')",
    ),
    BacklogGauge(
        "walletpipe_outbox_undelivered",
        "Notifications not yet delivered to every channel.",
        # The predicate of ix_outbox_events_undelivered.
        "SELECT NULL AS label, count(*) AS value FROM outbox_events"
        " WHERE delivered_at IS NULL AND failed_at IS NULL",
    ),
    BacklogGauge(
        "walletpipe_outbox_oldest_undelivered_seconds",
        "Age of the oldest notification not yet delivered; 0 when none waits.",
        "SELECT NULL AS label, extract(epoch FROM now() - min(created_at)) AS value"
        " FROM outbox_events WHERE delivered_at IS NULL AND failed_at IS NULL",
    ),
    BacklogGauge(
        "walletpipe_outbox_failed",
        "Notifications given up on after their last attempt; last_error says why.",
        # The predicate of ix_outbox_events_failed.
        "SELECT NULL AS label, count(*) AS value FROM outbox_events WHERE failed_at IS NOT NULL",
    ),
    BacklogGauge(
        "walletpipe_review_items",
        "Review items no operator has resolved yet (walletctl review list), by reason code.",
        review.COUNT_BY_CODE_SQL,
        label="reason",
        known=tuple(code.value for code in ReviewCode),
    ),
    BacklogGauge(
        "walletpipe_dead_letters",
        "Jobs the workers gave up on that no one has replayed yet (walletctl dlq list).",
        # The predicate of ix_dead_letters_waiting.
        "SELECT NULL AS label, count(*) AS value FROM dead_letters WHERE replayed_at IS NULL",
    ),
)


def backlog_query(gauges: Sequence[BacklogGauge]) -> str:
    """The one statement that reads every gauge: rows of (gauge index, label, value)."""
    assert gauges, "at least one backlog gauge"
    return "\nUNION ALL\n".join(
        f"SELECT {index}, label::text, value::float8 FROM ({gauge.sql}) AS gauge_{index}"
        for index, gauge in enumerate(gauges)
    )


def backlog_families(
    gauges: Sequence[BacklogGauge], rows: Iterable[tuple[int, str | None, float | None]]
) -> list[GaugeMetricFamily]:
    """The gauges' metric families from the rows `backlog_query` selected."""
    values: list[dict[str, float]] = [dict.fromkeys(gauge.known, 0.0) for gauge in gauges]
    for index, label, value in rows:
        values[index][label or ""] = float(value or 0)
    families = []
    for gauge, found in zip(gauges, values, strict=True):
        family = GaugeMetricFamily(
            gauge.name, gauge.help, labels=[gauge.label] if gauge.label else None
        )
        if gauge.label:
            for label, value in sorted(found.items()):
                family.add_metric([label], value)
        else:
            family.add_metric([], found.get("", 0.0))
        families.append(family)
    return families


class BacklogCollector:
    """Reads the backlog gauges from PostgreSQL when the registry is collected.

    Never raises for the database: a failure or a timeout is logged and reported as
    `walletpipe_database_up 0`.
    """

    def __init__(
        self, sessions: sessionmaker[Session], gauges: Sequence[BacklogGauge] = BACKLOG_GAUGES
    ) -> None:
        self._sessions = sessions
        self._gauges = tuple(gauges)
        self._query = text(backlog_query(self._gauges))

    def describe(self) -> list[Metric]:
        # Names only, so that registering the collector does not query the database.
        return [_database_up(None), *backlog_families(self._gauges, [])]

    def collect(self) -> Iterator[Metric]:
        try:
            rows = self._read()
        except SQLAlchemyError:
            logger.warning(
                "Cannot read the backlog gauges (database down or %d ms timeout); "
                "reporting walletpipe_database_up 0.",
                STATEMENT_TIMEOUT_MS,
                exc_info=True,
            )
            yield _database_up(0)
            return
        yield _database_up(1)
        yield from backlog_families(self._gauges, rows)

    def _read(self) -> list[tuple[int, str | None, float | None]]:
        with self._sessions() as session:  # closing rolls back; nothing is written
            session.execute(text("SET TRANSACTION READ ONLY"))
            session.execute(
                text("SELECT set_config('statement_timeout', :timeout, true)"),
                {"timeout": f"{STATEMENT_TIMEOUT_MS}ms"},
            )
            return [(row[0], row[1], row[2]) for row in session.execute(self._query)]


def _database_up(value: int | None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        DATABASE_UP,
        "1 when PostgreSQL answered the backlog query at this scrape, 0 when it did not.",
        value=value,
    )


@dataclass(frozen=True)
class _Metrics:
    registry: CollectorRegistry
    multiproc_dir: str | None
    backlog: BacklogCollector
    requests: Counter
    duration: Histogram
    webhooks: Counter
    inbox_commit_rows: Histogram


def init_metrics(app: Flask) -> None:
    """Count and time every request of `app` and serve GET /metrics.

    Call in create_app once the services are in place and before any other request hook, so
    that a request another hook refuses (a rate limit) is timed too. Raises ValueError when
    PROMETHEUS_MULTIPROC_DIR is set but is not a directory.
    """
    # prometheus_client decides on multiprocess mode from this variable when it is imported,
    # so the same variable decides here; a setting of our own could disagree with it.
    multiproc_dir = os.environ.get(MULTIPROC_DIR_VARIABLE) or None
    if multiproc_dir is not None and not os.path.isdir(multiproc_dir):
        raise ValueError(f"{MULTIPROC_DIR_VARIABLE}: {multiproc_dir} is not a directory")
    registry = CollectorRegistry()
    backlog = BacklogCollector(app.extensions["walletpipe"].sessions)
    if multiproc_dir is None:
        # What the default registry would hold; in multiprocess mode they would describe only
        # the process that happens to answer the scrape.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(backlog)
    app.extensions[_EXTENSION] = _Metrics(
        registry=registry,
        multiproc_dir=multiproc_dir,
        backlog=backlog,
        requests=Counter(
            "walletpipe_http_requests",
            "HTTP requests answered, by method, URL rule endpoint and status.",
            ["method", "endpoint", "status"],
            registry=registry,
        ),
        duration=Histogram(
            "walletpipe_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and URL rule endpoint.",
            ["method", "endpoint"],
            registry=registry,
        ),
        webhooks=Counter(
            "walletpipe_webhooks",
            "Webhooks of configured gateways: recorded events by inbox outcome "
            "(new, duplicate, ignored, conflict), refused requests by HTTP status.",
            ["gateway", "outcome"],
            registry=registry,
        ),
        inbox_commit_rows=Histogram(
            "walletpipe_inbox_commit_rows",
            "Inbox rows stored by one group commit of the receiver's writer.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        ),
    )
    app.register_blueprint(blueprint)
    app.before_request(_start_timer)
    app.after_request(_count_request)


def count_inbox_commit(app: Flask, rows: int) -> None:
    """Observe one group commit of `rows` inbox rows (called by the writer, off any request)."""
    found: _Metrics | None = app.extensions.get(_EXTENSION)
    if found is not None:
        found.inbox_commit_rows.observe(rows)


def count_webhook(gateway: str, outcome: str) -> None:
    """Count one event of `gateway` recorded with `outcome` (an inbox outcome's value)."""
    _metrics().webhooks.labels(gateway, outcome).inc()


def method_label(method: str) -> str:
    """The method as a label value: a standard method, else "other"."""
    return method if method in _METHODS else "other"


@blueprint.get("/metrics")
def scrape() -> Response:
    """Prometheus text exposition of this process (all processes in multiprocess mode).

    No authentication: Prometheus scrapes it on the internal network, so the proxy in front
    must not route /metrics from the internet. Answers 200 even when the database is down.
    """
    found = _metrics()
    registry = found.registry
    if found.multiproc_dir is not None:
        # A fresh registry per scrape, as prometheus_client's multiprocess mode requires.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=found.multiproc_dir)  # type: ignore[no-untyped-call]
        registry.register(found.backlog)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE)


def _metrics() -> _Metrics:
    found: _Metrics = current_app.extensions[_EXTENSION]
    return found


def _start_timer() -> None:
    g.metrics_started_s = time.perf_counter()


def _count_request(response: Response) -> Response:
    found = _metrics()
    method = method_label(request.method)
    endpoint = request.url_rule.endpoint if request.url_rule is not None else UNMATCHED
    status = str(response.status_code)
    found.requests.labels(method, endpoint, status).inc()
    started_s = g.pop("metrics_started_s", None)
    if started_s is not None:
        found.duration.labels(method, endpoint).observe(time.perf_counter() - started_s)
    if endpoint == WEBHOOK_ENDPOINT and response.status_code >= 400:
        # Only configured gateways: a 404 for any name a client makes up would add a series.
        gateway = (request.view_args or {}).get("gateway")
        if gateway in services().adapters:
            found.webhooks.labels(gateway, status).inc()
    return response
