"""Run some of the Procfile's processes in the foreground (`make run`); Ctrl-C stops them gently.

Each process runs in a session of its own, so Ctrl-C at the terminal reaches only this runner,
which then sends SIGTERM to each process's main pid, once. Signalling their process groups
instead (as general-purpose Procfile runners do) would reach Dramatiq's worker processes twice,
directly and again from their parent, and a second SIGTERM tells them to drop their jobs; and
those runners kill whatever still runs after a few seconds, before gunicorn's graceful timeout.
Here a process gets STOP_GRACE_S to finish its work; only one still running then is killed.
When one process exits on its own, the others are stopped too.

    procfile.py [--procfile Procfile] NAME...
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Longer than gunicorn's graceful timeout (WEB_GRACEFUL_TIMEOUT_S, default 20).
STOP_GRACE_S = float(os.environ.get("STOP_GRACE_S", "30"))


def read_procfile(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and name.strip() and not line.lstrip().startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def relay(name: str, stream: object, width: int, lock: threading.Lock) -> None:
    """Copy a process's output to ours, each line prefixed with its name."""
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            print(f"{name:<{width}} | {line}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    entries = read_procfile(args.procfile)
    unknown = [name for name in args.names if name not in entries]
    if unknown:
        parser.error(f"not in {args.procfile}: {', '.join(unknown)}")

    width = max(map(len, args.names))
    lock = threading.Lock()
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name in args.names:
        # `exec`: the shell becomes the command, so SIGTERM reaches the program itself.
        processes[name] = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {entries[name]}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(
            target=relay, args=(name, processes[name].stdout, width, lock), daemon=True
        ).start()
        print(f"{'run':<{width}} | {name} started (pid {processes[name].pid})", flush=True)

    while not stopping.is_set() and all(p.poll() is None for p in processes.values()):
        stopping.wait(0.2)

    for name, process in processes.items():
        if process.poll() is None:
            print(f"{'run':<{width}} | stopping {name} (SIGTERM)", flush=True)
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{'run':<{width}} | {name} still running after {STOP_GRACE_S:.0f} s: killed")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for name, process in processes.items():
        print(f"{'run':<{width}} | {name} exited with {process.returncode}", flush=True)
        try:  # anything its program left behind in its group
            os.killpg(process.pid, signal.SIGKILL)
            print(f"{'run':<{width}} | killed what {name} left running")
        except ProcessLookupError:
            pass
    return 0 if all(p.returncode == 0 for p in processes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
