"""Private PostgreSQL and Redis servers for tests that stop, restart or cut off their services.

The shared servers are never touched: each private server runs on a free port of its own, with
its files in a temporary directory. Both are context managers whose exit stops the server and
removes its directory whatever happened before (an exception, a failed start, a server already
stopped); an `atexit` hook does the same for a process that ends without unwinding its stack.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import redis

logger = logging.getLogger(__name__)

POSTGRES_BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
# initdb refuses to run as root; the cluster belongs to this system user.
POSTGRES_USER = "postgres"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


class ServerMissing(RuntimeError):
    """The server's binaries are not installed on this machine."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(0.05)


class PrivatePostgres:
    """A PostgreSQL cluster of its own: initdb in a temporary directory, pg_ctl on a free port.

    fsync stays on, as in production, so a restart proves what a real one would. The cluster
    trusts local connections; `url(database)` names one of its databases over TCP.
    """

    def __init__(self, *, max_connections: int = 200) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (POSTGRES_BIN / tool).exists():
                raise ServerMissing(f"{POSTGRES_BIN / tool} is not installed")
        if shutil.which("runuser") is None and os.geteuid() == 0:
            raise ServerMissing("runuser is not installed")
        self.port = free_port()
        self._max_connections = max_connections
        self._dir = Path(tempfile.mkdtemp(prefix="walletpipe-pg-"))
        self.data_dir = self._dir / "data"
        self.log_path = self._dir / "postgres.log"
        atexit.register(self.cleanup)

    @property
    def directory(self) -> Path:
        """Where the cluster's data, socket and log live."""
        return self._dir

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout_s: float = START_TIMEOUT_S) -> None:
        command = [str(POSTGRES_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", POSTGRES_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False, cwd="/"
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        """Create the cluster (once)."""
        if os.geteuid() == 0:
            shutil.chown(self._dir, POSTGRES_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
            # The cluster's own files need no sync to disk: the server syncs what it commits.
            "--no-sync",
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self._dir}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": str(self._max_connections),
            "log_min_messages": "warning",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "30", "start"
        )
        wait_for(self.accepts, START_TIMEOUT_S, "PostgreSQL did not accept connections")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back open transactions, as an operator's restart)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(STOP_TIMEOUT_S),
            "stop",
            timeout_s=STOP_TIMEOUT_S + 5,
        )

    def restart(self) -> None:
        self.stop()
        self.start()

    def accepts(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cleanup(self) -> None:
        """Stop the server however it stands and remove its directory; safe to call twice."""
        if not self._dir.exists():
            return
        if self._postmaster_pid() is not None:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop("immediate")
        pid = self._postmaster_pid()
        if pid is not None and self._is_our_postmaster(pid):
            # pg_ctl could not stop it: nothing may stay behind.
            logger.warning("Killing private PostgreSQL %d, which pg_ctl could not stop.", pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _is_our_postmaster(self, pid: int) -> bool:
        """Whether `pid` is still this cluster's server (never a process that reused the id)."""
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.data_dir).encode() in command

    def __enter__(self) -> Self:
        try:
            self.init()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()


class PrivateRedis:
    """A redis-server of its own on a free port, keeping nothing on disk: a restart loses every
    queued message, as a broker failover can."""

    def __init__(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise ServerMissing("redis-server is not installed")
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="walletpipe-redis-"))
        self._command = [
            server,
            *("--port", str(self.port)),
            *("--bind", "127.0.0.1"),
            *("--save", ""),
            *("--appendonly", "no"),
            *("--dir", str(self._dir)),
            *("--logfile", str(self._dir / "redis.log")),
        ]
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.cleanup)

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, cwd=self._dir)
        wait_for(self.accepts, START_TIMEOUT_S, "Redis did not accept connections")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()

    def accepts(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self._process.returncode}")
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def cleanup(self) -> None:
        """Kill the server if it runs and remove its directory; safe to call twice."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=STOP_TIMEOUT_S)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()
