"""Worker processes that end with the process that started them, even when it is killed with SIGKILL.

A parent killed by `kill -9` runs no clean-up: its `daemon` processes, pool workers and child commands would go
on training, unseen, and hold the CPU or GPU the next command needs. Every process a study starts for work
(cpu-study's pool, sweep's local pool, a lease's run processes, a campaign's child commands) calls
`die_with_parent` first thing, with the pid of the process that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_SECONDS = 1.0


def die_with_parent(parent: int | None, watch: bool = True) -> None:
    """Make this process end when the process `parent` (a pid; None: do nothing) ends, even by kill -9.

    On Linux the kernel sends this process SIGKILL then (prctl PR_SET_PDEATHSIG; it is kept across exec, so
    a `subprocess.Popen(..., preexec_fn=...)` child keeps it). If `parent` is already gone when this runs (it
    died between starting us and now), this process exits at once. With `watch`, a daemon thread also polls
    the parent each second and exits when it has gone: it covers systems without prctl. Give `watch=False`
    where no thread can live on (a Popen preexec_fn, before exec).

    PR_SET_PDEATHSIG fires when the *thread* of the parent that started this process ends: start workers from
    a thread that lives as long as they do (the main thread, as every caller here does)."""
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl call: no signal will come
        os._exit(1)
    if not watch:
        return

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=poll, name="die-with-parent", daemon=True).start()
