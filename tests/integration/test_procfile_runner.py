"""`make run`'s Procfile runner: Ctrl-C gives each process one SIGTERM and time to finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "scripts" / "procfile.py"

# A parent that, like Dramatiq's, passes SIGTERM on to a child in its own process group and
# takes a while to finish; each records the signals it got.
PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    log = open(sys.argv[1], "a", buffering=1)
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]])
    def stop(signum, frame):
        log.write("parent: SIGTERM\\n")
        child.send_signal(signal.SIGTERM)
        child.wait()
        time.sleep(1.5)  # work in flight
        log.write("parent: finished\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    log.write("parent: ready\\n")
    while True:
        time.sleep(0.1)
    """
)
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    log = open(sys.argv[1], "a", buffering=1)
    terms = []
    def stop(signum, frame):
        terms.append(signum)
        log.write(f"child: SIGTERM {len(terms)}\\n")
        if len(terms) == 1:
            time.sleep(1.0)  # its job in flight
            log.write("child: finished\\n")
            sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
    """
)


def _wait_for(path: Path, text: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"no {text!r} in {path}"
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_sends_one_sigterm_to_each_main_process_and_waits(tmp_path):
    log = tmp_path / "signals.log"
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f'pair: {sys.executable} {tmp_path / "parent.py"} {log} "$CHILD_CODE"\n'
        f"other: {sys.executable} {tmp_path / 'other.py'}\n"
    )
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "other.py").write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "time.sleep(600)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, str(RUNNER), "--procfile", str(procfile), "pair", "other"],
        env={**os.environ, "CHILD_CODE": CHILD},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a terminal's foreground group of its own
    )
    try:
        _wait_for(log, "parent: ready")
        time.sleep(0.5)  # the child has installed its handlers
        os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C does
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()

    assert log.read_text().splitlines() == [
        "parent: ready",
        "parent: SIGTERM",
        "child: SIGTERM 1",  # from its parent only, never from the runner as well
        "child: finished",
        "parent: finished",
    ]
    assert "pair exited with 0" in output
    assert "killed" not in output
    assert runner.returncode == 0


@pytest.mark.slow
def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"stubborn: {sys.executable} -c 'import signal, time;"
        ' signal.signal(signal.SIGTERM, signal.SIG_IGN); print("up", flush=True);'
        " time.sleep(600)'\n"
    )
    runner = subprocess.Popen(
        [sys.executable, str(RUNNER), "--procfile", str(procfile), "stubborn"],
        env={**os.environ, "STOP_GRACE_S": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert runner.stdout is not None
    for line in runner.stdout:
        if line.rstrip().endswith("| up"):
            break
    runner.send_signal(signal.SIGTERM)
    output = runner.stdout.read()
    runner.wait(timeout=30)

    assert "stubborn still running after 1 s: killed" in output
    assert runner.returncode == 1
