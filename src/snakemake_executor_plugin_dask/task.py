"""What a Dask worker runs for one Snakemake job, and the guard around its subprocess.

The job's command runs under a small guard process that leads its own process group and
asks the kernel for SIGTERM when the worker thread that started it dies. Whether the
worker is cancelled, killed or loses its node, the guard then stops the whole group, so
no orphan keeps writing into outputs that Snakemake has since removed or handed to a retry.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["LOG_TAIL", "run_job_command", "tail"]

LOG_TAIL = 40
POLL_SECONDS = 1.0
STOP_GRACE = 10
_PR_SET_PDEATHSIG = 1


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
    guard = [sys.executable, "-m", "snakemake_executor_plugin_dask.task", str(os.getpid())]
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


def _guard(parent: int, command: str) -> int:
    os.setsid()  # a group of our own: one killpg reaches every descendant
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before prctl took effect
        return 128 + signal.SIGTERM
    child = subprocess.Popen(["/bin/bash", "-c", command])

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(0, signal.SIGTERM)  # Snakemake marks its outputs incomplete on TERM
        deadline = time.monotonic() + STOP_GRACE
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(_guard(int(sys.argv[1]), sys.argv[2]))
