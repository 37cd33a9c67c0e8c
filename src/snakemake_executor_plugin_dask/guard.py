"""Guard around one job's command on a Dask worker: ``python guard.py WORKER_PID COMMAND``.

It leads a process group of its own and asks the kernel for SIGTERM when the worker
thread that started it dies. Whether the worker is cancelled, killed or loses its node,
the guard then stops the whole group, so no orphan keeps writing into outputs that
Snakemake has since removed or handed to a retry. Standard library only: it starts fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

STOP_GRACE = 10
_PR_SET_PDEATHSIG = 1


def guard(parent: int, command: str) -> int:
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
    raise SystemExit(guard(int(sys.argv[1]), sys.argv[2]))
