"""CPU time and memory of the processes of a run, read from /proc (Linux).

CPU is utime + stime of each process (fields 14 and 15 of /proc/PID/stat, in clock ticks),
summed over a process kind: a process and all its descendants (gunicorn's master and workers,
Dramatiq's parent and worker processes), or the PostgreSQL backends serving one database
(found in pg_stat_activity). Backends can come and go during a load, so a sampler thread keeps
the last figure each one showed; a backend that ends between two samples loses at most one
sampling interval of its CPU.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the ")" that closes the command name, field 3 (state) comes first: utime is the
    # 14th field of the line, so the 12th here.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except OSError:
        return 0


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def backends(admin: psycopg.Connection, database: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to `database`."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    ).fetchall()
    return [int(pid) for (pid,) in rows]


@dataclass
class Kind:
    """One kind of process: how to find its pids now."""

    name: str
    pids: Callable[[], Iterable[int]]
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)

    def sample(self, *, starting: bool) -> None:
        for pid in self.pids():
            value = cpu_s(pid)
            if value is None:
                continue
            if starting:
                self.first.setdefault(pid, value)
            self.last[pid] = value

    def used_s(self) -> float:
        return sum(value - self.first.get(pid, 0.0) for pid, value in self.last.items())

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids())


class CpuMeter:
    """CPU seconds each kind used between start() and stop(), sampled every `interval_s`."""

    def __init__(self, kinds: list[Kind], interval_s: float = 0.2) -> None:
        self.kinds = kinds
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for kind in self.kinds:
            kind.first.clear()
            kind.last.clear()
            kind.sample(starting=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for kind in self.kinds:
                kind.sample(starting=False)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for kind in self.kinds:
            kind.sample(starting=False)
        return {kind.name: kind.used_s() for kind in self.kinds}
