"""Exactly-once through chaos, at a small size: gateways deliver at least once, forge some
requests, and a worker, the broker and PostgreSQL fail under them; afterwards every
acknowledged event is applied once, no wallet is off by a cent, and the ledger verifies.

`make chaos` runs the same at a large size and prints its figures.
"""

from __future__ import annotations

import pytest

from tests.chaos.harness import ChaosConfig, ChaosRun
from tests.chaos.plan import ChaosSize
from tests.conftest import require_service
from tests.servers import PrivatePostgres, PrivateRedis, ServerMissing

EVENTS = 200


@pytest.fixture
def servers_installed() -> None:
    for server in (PrivatePostgres, PrivateRedis):
        try:
            server().cleanup()
        except ServerMissing as exc:
            require_service(server.__name__, exc)


@pytest.mark.slow
def test_every_acknowledged_event_is_applied_once_through_crashes_and_restarts(
    servers_installed, tmp_path
):
    report = ChaosRun(ChaosConfig(ChaosSize(events=EVENTS)), tmp_path).run()

    print("\n".join(report.lines()))
    assert report.problems == []
    # The faults happened as described, each proven by the harness while it brought them about.
    assert [fault.name for fault in report.faults] == [
        "worker SIGKILL",
        "broker restart",
        "PostgreSQL restart",
    ]
    assert report.figures["forged_refused_401"] == report.figures["forged_sent"] > 0
    assert report.figures["duplicates_sent"] > 0
