"""How long a PostgreSQL connection may hang on a peer that vanished, on both of its ends.

A worker host cut off from the network mid-transaction leaves its backend holding row locks
that other workers wait on. The server learns of the loss only through timeouts, so every
connection sets them for its own backend (they are per-session settings, sent in the startup
packet; the server's configuration is not touched):

- `idle_in_transaction_session_timeout`: a backend waiting for the next statement of an open
  transaction is terminated, its locks released, after this long;
- `client_connection_check_interval`: a backend running a statement polls its socket and
  stops the statement when the client is gone (PostgreSQL 14 and later);
- `tcp_keepalives_*` and `tcp_user_timeout`: the server's side of the socket is closed once
  the peer stops answering keepalives, or leaves sent data unacknowledged this long.

The same keepalives and user timeout on the client's side bound how long the cut-off process
itself waits before its own statement fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

APPLICATION_NAME = "walletpipe"
# Above a legitimate pause, so that a slow but live peer is never taken for a lost one.
IDLE_MARGIN_S = 5


@dataclass(frozen=True)
class ConnectionTimeouts:
    """The bounds above, in seconds; at the defaults a lost client's locks are freed within
    30 s (`lost_peer_s`)."""

    connect_s: int = 5
    idle_in_transaction_s: int = 15
    client_check_s: int = 5
    keepalives_idle_s: int = 10
    keepalives_interval_s: int = 5
    keepalives_count: int = 3
    user_timeout_s: int = 25

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")

    @property
    def lost_peer_s(self) -> int:
        """The longest a backend keeps the locks of a client that vanished mid-transaction."""
        by_keepalive = self.keepalives_idle_s + self.keepalives_interval_s * self.keepalives_count
        return max(self.idle_in_transaction_s, self.client_check_s + by_keepalive)

    def allowing_idle(self, idle_s: float) -> ConnectionTimeouts:
        """These bounds, with the idle-in-transaction timeout raised above `idle_s` (a pause
        inside a transaction that is legitimate, such as a notification's HTTP call)."""
        needed = math.ceil(idle_s) + IDLE_MARGIN_S if idle_s > 0 else 0
        return replace(self, idle_in_transaction_s=max(self.idle_in_transaction_s, needed))

    def connect_args(self) -> dict[str, Any]:
        """libpq connection parameters that set these bounds on both ends of the socket."""
        server = {
            "idle_in_transaction_session_timeout": f"{self.idle_in_transaction_s}s",
            "client_connection_check_interval": f"{self.client_check_s}s",
            "tcp_keepalives_idle": str(self.keepalives_idle_s),
            "tcp_keepalives_interval": str(self.keepalives_interval_s),
            "tcp_keepalives_count": str(self.keepalives_count),
            "tcp_user_timeout": str(self.user_timeout_s * 1000),
        }
        return {
            "connect_timeout": self.connect_s,
            "application_name": APPLICATION_NAME,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle_s,
            "keepalives_interval": self.keepalives_interval_s,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.user_timeout_s * 1000,
            "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        }
