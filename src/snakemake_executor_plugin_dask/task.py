"""What a Dask worker runs for one Snakemake job: its command, under guard.py, into a log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["LOG_TAIL", "run_job_command", "tail"]

LOG_TAIL = 40
POLL_SECONDS = 1.0
STOP_GRACE = 10
GUARD = Path(__file__).with_name("guard.py")


def tail(path: str | Path, lines: int) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> int:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_GRACE + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_job_command(command: str, log: str, key: str, cancel_event: str) -> int:
    """Run one job's command on this worker; return its exit code."""
    from distributed import Event, get_worker

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    worker = get_worker()
    # Run as a script: importing this package (Dask and all) would slow every job down.
    guard = [sys.executable, str(GUARD), str(os.getpid())]
    with open(log, "ab") as fh:
        fh.write(f"dask task {key} on worker {worker.address} (pid {os.getpid()})\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            [*guard, command],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    cancelled = Event(cancel_event)
    while True:
        try:
            code = proc.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if cancelled.is_set():
                code = _stop(proc)
                break
    with open(log, "ab") as fh:
        fh.write(f"dask task {key} exit code {code}\n".encode())
    return code
