"""`python -m tests.chaos` (`make chaos`): one chaos run at a size set by the environment.

CHAOS_EVENTS (genuine events, default 3000), CHAOS_CLIENTS (concurrent gateway clients,
default 8), CHAOS_SEED (default 1). Prints the run's figures and exits 1 if a check failed.
Logs stay in CHAOS_LOGS (default .run/chaos/<time>).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from tests.chaos.harness import ChaosConfig, ChaosRun
from tests.chaos.plan import ChaosSize


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    size = ChaosSize(
        events=int(os.environ.get("CHAOS_EVENTS", "3000")),
        seed=int(os.environ.get("CHAOS_SEED", "1")),
    )
    config = ChaosConfig(
        size,
        clients=int(os.environ.get("CHAOS_CLIENTS", "8")),
        # A bigger run leaves a longer backlog after its last fault.
        drain_timeout_s=max(180.0, size.events * 0.06),
    )
    logs = Path(os.environ.get("CHAOS_LOGS", f".run/chaos/{time.strftime('%Y%m%dT%H%M%S')}"))
    logs.mkdir(parents=True, exist_ok=True)
    report = ChaosRun(config, logs).run()
    print(
        f"chaos run: {size.events} events, {config.clients} clients, seed {size.seed};"
        f" logs in {logs}"
    )
    for line in report.lines():
        print(line)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
