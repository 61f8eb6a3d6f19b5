"""gunicorn settings for the `web` process; every number can be set from the environment."""

import os
from typing import Any

# Every interface by default, as platforms that set only PORT expect; `make run` sets HOST to
# 127.0.0.1, since /metrics asks for no credentials.
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
# Threads, because a request spends its time waiting for its group commit; one process a core,
# because the fewer the processes, the more requests each writer's commit serves. Measured on
# 2 cores (docs/benchmarks.md): one process a core with 8 threads cost 1.6 to 1.9 ms of web
# CPU per webhook against 2.3 to 2.4 for two a core with 4; gevent, also measured, cost the
# same as threads and accepted less, and would be one more dependency.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1)))
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = int(os.environ.get("WEB_TIMEOUT_S", "30"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT_S", "20"))
keepalive = 5
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG") else None
# gunicorn's control socket has one fixed path per user: two servers on one machine would
# fight over it, and nothing here uses it.
control_socket_disable = True


def post_fork(server: object, worker: object) -> None:
    """Each worker logs one JSON object a line (LOG_FORMAT=text for people reading along)."""
    from ledger.logs import configure_logging

    configure_logging(
        as_json=os.environ.get("LOG_FORMAT", "json") != "text",
        level=os.environ.get("LOG_LEVEL", "INFO"),
    )


def child_exit(server: object, worker: Any) -> None:
    """In Prometheus multiprocess mode, drop a dead worker's live gauges from the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # unannotated
