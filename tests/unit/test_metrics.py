"""The pure parts of /metrics: the backlog statement, its rows as gauges, bounded labels."""

from __future__ import annotations

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest

from webhook_receiver.metrics import (
    BACKLOG_GAUGES,
    BacklogGauge,
    backlog_families,
    backlog_query,
    init_metrics,
    method_label,
)

BY_STATUS = BacklogGauge(
    "t_rows", "Rows by status.", "SELECT 1", label="status", known=("done", "waiting")
)
OLDEST = BacklogGauge("t_oldest_seconds", "Age of the oldest row.", "SELECT 2")


def samples(families):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def test_every_gauge_is_one_branch_of_a_single_statement():
    query = backlog_query([BY_STATUS, OLDEST])

    assert query.count("UNION ALL") == 1
    assert "SELECT 0, label::text, value::float8 FROM (SELECT 1) AS gauge_0" in query
    assert "SELECT 1, label::text, value::float8 FROM (SELECT 2) AS gauge_1" in query


def test_known_label_values_absent_from_the_rows_read_zero():
    families = backlog_families([BY_STATUS, OLDEST], [(0, "waiting", 3.0), (1, None, 12.5)])

    assert samples(families) == {
        ("t_rows", (("status", "done"),)): 0.0,
        ("t_rows", (("status", "waiting"),)): 3.0,
        ("t_oldest_seconds", ()): 12.5,
    }


def test_an_unknown_label_value_is_reported_too():
    families = backlog_families([BY_STATUS], [(0, "new_status", 1.0)])

    assert samples(families)[("t_rows", (("status", "new_status"),))] == 1.0


def test_a_null_value_reads_zero():
    # min() over no waiting rows is NULL: nothing waits, so the oldest wait is 0.
    assert samples(backlog_families([OLDEST], [(0, None, None)])) == {("t_oldest_seconds", ()): 0.0}


def test_the_gauges_are_well_formed_for_prometheus():
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):
            return backlog_families(BACKLOG_GAUGES, [])

    registry.register(Fixed())
    exposed = generate_latest(registry).decode()

    assert "walletpipe_inbox_events{status=" in exposed
    assert "walletpipe_inbox_oldest_waiting_seconds 0.0" in exposed


@pytest.mark.parametrize(
    ("method", "label"),
    [("GET", "GET"), ("POST", "POST"), ("HEAD", "HEAD"), ("PROPFIND", "other"), ("get", "other")],
)
def test_a_method_outside_the_standard_ones_is_counted_as_other(method, label):
    assert method_label(method) == label


def test_a_multiprocess_directory_that_does_not_exist_stops_the_start(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "absent"))

    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        init_metrics(Flask(__name__))
