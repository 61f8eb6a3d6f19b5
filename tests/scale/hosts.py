"""Hosts of a test run's own: network namespaces on one virtual network, with a private
PostgreSQL cluster and a private Redis listening on the network's host side.

Each host is a namespace joined to a bridge by a veth pair; the bridge holds the first address
of a 198.18.N.0/24 network (the block set aside for network tests) and the servers listen
there. Names carry the test process's id, so a run can remove what a killed run left behind.
Everything is removed on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_NAME = re.compile(r"^wpt([0-9a-f]{6})")


class HostsUnavailable(Exception):
    """This machine cannot make namespaces or run the private servers."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Delete namespaces and bridges of earlier runs whose process no longer lives."""
    namespaces = ip("netns", "list", check=False).stdout.split()
    links = re.findall(r"^\d+: ([^:@]+)", ip("-o", "link", "show", check=False).stdout, re.M)
    for name in {*namespaces, *links}:
        found = _NAME.match(name)
        if found and not _alive(int(found.group(1), 16)):
            if name in namespaces:
                ip("netns", "delete", name, check=False)
            else:
                ip("link", "delete", name, check=False)


@dataclass
class Host:
    """A namespace with one interface on the test network."""

    name: str
    namespace: str
    address: str
    link: str  # the host side of its veth pair: set it down to cut the host off

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut_off(self) -> None:
        ip("link", "set", self.link, "down")

    def reconnect(self) -> None:
        ip("link", "set", self.link, "up")


@dataclass
class Network:
    """A bridge with the servers' address and a host per name."""

    prefix: str
    server_address: str
    hosts: dict[str, Host] = field(default_factory=dict)


def _free_network() -> ipaddress.IPv4Network:
    used = ip("-4", "-o", "addr", "show").stdout
    for _ in range(50):
        third = random.randint(1, 254)
        if f" 198.18.{third}." not in used:
            return ipaddress.IPv4Network(f"198.18.{third}.0/24")
    raise HostsUnavailable("no free 198.18.N.0/24 network")


@contextlib.contextmanager
def network(names: list[str]) -> Iterator[Network]:
    """A bridge and one namespace per name on it; removed on exit."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise HostsUnavailable("network namespaces need root and iproute2")
    remove_leftovers()
    prefix = f"wpt{os.getpid():06x}"
    subnet = _free_network()
    addresses = list(subnet.hosts())
    bridge = f"{prefix}b"
    with contextlib.ExitStack() as cleanup:
        made = ip("link", "add", bridge, "type", "bridge", check=False)
        if made.returncode:
            raise HostsUnavailable(f"cannot add a bridge: {made.stderr.strip()}")
        cleanup.callback(ip, "link", "delete", bridge, check=False)
        ip("addr", "add", f"{addresses[0]}/{subnet.prefixlen}", "dev", bridge)
        ip("link", "set", bridge, "up")
        found = Network(prefix, str(addresses[0]))
        for index, name in enumerate(names):
            namespace = f"{prefix}-{name}"
            ip("netns", "add", namespace)
            cleanup.callback(ip, "netns", "delete", namespace, check=False)
            outside, inside = f"{prefix}h{index}", f"{prefix}n{index}"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
            ip("link", "set", outside, "master", bridge, "up")
            ip("-n", namespace, "link", "set", inside, "name", "eth0")
            address = str(addresses[10 + index])
            ip("-n", namespace, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
            found.hosts[name] = Host(name, namespace, address, outside)
        yield found


def _as_postgres(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Postgres:
    url: str
    log: Path


@contextlib.contextmanager
def private_postgres(address: str, port: int, trusted: str) -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own on address:port, trusting the `trusted` network."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        raise HostsUnavailable(f"{PG_BIN}/initdb and runuser are needed")
    directory = Path(tempfile.mkdtemp(prefix="walletpipe-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    data, log = directory / "data", directory / "server.log"
    try:
        made = _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"
        )
        if made.returncode:
            raise HostsUnavailable(f"initdb failed: {made.stderr.strip()}")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {trusted} trust\n")
        options = (
            f"-c listen_addresses={address} -c port={port} -c unix_socket_directories={directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200 -c log_timezone=UTC -c log_line_prefix='%m [%p] %h '"
        )
        started = _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"
        )
        if started.returncode:
            raise HostsUnavailable(f"pg_ctl start failed: {started.stderr.strip()}")
        try:
            yield Postgres(f"postgresql://postgres@{address}:{port}/postgres", log)
        finally:
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def private_redis(address: str, port: int) -> Iterator[str]:
    """A redis-server of its own on address:port, keeping nothing on disk."""
    server = shutil.which("redis-server")
    if server is None:
        raise HostsUnavailable("redis-server is not installed")
    process = subprocess.Popen(
        [
            server,
            "--bind",
            address,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-h", address, "-p", str(port), "ping"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            != "PONG"
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise HostsUnavailable("the private redis-server did not start")
            time.sleep(0.1)
        yield f"redis://{address}:{port}/0"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
