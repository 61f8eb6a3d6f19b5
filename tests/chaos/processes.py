"""The pipeline's processes as the Procfile starts them, under a supervisor that restarts the
worker pool the run killed, and notices any process that dies on its own.

Dramatiq's main process stops the whole pool when one of its worker processes dies, and leaves
restarting to the platform (a Procfile runner, systemd, Kubernetes); here the supervisor plays
the platform.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import scheduler_command, start, start_web, stop, worker_command

logger = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 0.2


@dataclass(frozen=True)
class Exit:
    name: str
    code: int
    expected: bool


@dataclass
class Pipeline:
    """gunicorn, a Dramatiq worker pool and the scheduler, sharing one environment."""

    env: dict[str, str]
    logs: Path
    worker_processes: int
    worker_threads: int
    url: str = ""
    exits: list[Exit] = field(default_factory=list)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _expected: set[str] = field(default_factory=set)
    _starts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    def start(self, scheduler_options: tuple[str, ...]) -> None:
        web, self.url = start_web(self.env, self.logs / "web.log")
        self._processes["web"] = web
        self._start("worker")
        self._processes["scheduler"] = start(
            scheduler_command(*scheduler_options), self.env, self.logs / "scheduler.log"
        )
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor")
        self._supervisor.start()

    def _start(self, name: str) -> None:
        count = self._starts.get(name, 0) + 1
        self._starts[name] = count
        env = {**self.env, "DATABASE_POOL_SIZE": str(self.worker_threads + 1)}
        self._processes[name] = start(
            worker_command(self.worker_processes, self.worker_threads),
            env,
            self.logs / f"{name}-{count}.log",
        )

    @property
    def worker_pool_pid(self) -> int:
        return self._processes["worker"].pid

    def expect_exit(self, name: str) -> None:
        """The run is about to make process `name` exit: restart it instead of reporting it."""
        with self._lock:
            self._expected.add(name)

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_EVERY_S):
            with self._lock:
                for name, process in list(self._processes.items()):
                    code = process.poll()
                    if code is None:
                        continue
                    expected = name in self._expected
                    self._expected.discard(name)
                    self.exits.append(Exit(name, code, expected))
                    log = logger.info if expected else logger.error
                    log("Process %s exited with %s; expected: %s.", name, code, expected)
                    if name == "worker":
                        self._start(name)
                    else:
                        del self._processes[name]

    def wait_restarted(self, name: str, starts: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._starts.get(name, 0) < starts:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not restarted within {timeout_s} s")
            time.sleep(0.05)

    def starts(self, name: str) -> int:
        return self._starts.get(name, 0)

    def stop(self) -> dict[str, int]:
        """SIGTERM every process, as a platform stops them; their exit codes."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join()
        codes = {}
        for name, process in self._processes.items():
            try:
                codes[name] = stop(process)
            except subprocess.TimeoutExpired:
                logger.error("Process %s did not stop in time; killing it.", name)
                if name == "web":
                    process.kill()
                else:  # a process group of its own, the pool's worker processes included
                    os.killpg(process.pid, signal.SIGKILL)
                codes[name] = process.wait()
        self._processes.clear()
        return codes
