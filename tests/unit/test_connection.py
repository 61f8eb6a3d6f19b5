"""The bounds on a lost peer: read from the environment, sent to both ends of the socket."""

import pytest

from ledger.connection import ConnectionTimeouts
from ledger.settings import LedgerSettings


def test_the_timeouts_are_read_from_the_environment():
    settings = LedgerSettings.from_env(
        {
            "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S": "7",
            "DATABASE_KEEPALIVES_IDLE_S": "4",
            "DATABASE_KEEPALIVES_INTERVAL_S": "2",
            "DATABASE_KEEPALIVES_COUNT": "5",
        }
    )
    assert settings.timeouts == ConnectionTimeouts(
        idle_in_transaction_s=7, keepalives_idle_s=4, keepalives_interval_s=2, keepalives_count=5
    )
    # Idle in a transaction after 7 s; running a statement: 5 s check + 4 + 2 x 5 s keepalives.
    assert settings.timeouts.lost_peer_s == 19


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_a_bad_timeout_names_its_variable(value):
    with pytest.raises(ValueError, match="DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        LedgerSettings.from_env({"DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S": value})


def test_both_ends_of_the_socket_get_the_bounds():
    args = ConnectionTimeouts(idle_in_transaction_s=9, user_timeout_s=20).connect_args()
    assert args["keepalives"] == 1
    assert args["tcp_user_timeout"] == 20_000
    options = args["options"].split(" ")
    assert "idle_in_transaction_session_timeout=9s" in options
    assert "tcp_user_timeout=20000" in options
    assert "client_connection_check_interval=5s" in options


def test_a_legitimate_pause_raises_the_idle_bound_above_it():
    timeouts = ConnectionTimeouts(idle_in_transaction_s=15)
    assert timeouts.allowing_idle(0) == timeouts
    assert timeouts.allowing_idle(8) == timeouts
    assert timeouts.allowing_idle(30.5).idle_in_transaction_s == 36
