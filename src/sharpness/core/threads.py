"""CPU thread control for small workloads."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_cpu_thread():
    """One torch intra-op thread for the duration, then the previous count back.

    Small models and tiny tensors gain nothing from a thread pool, and on a machine whose cores are
    shared (two processes with two threads each on two cores) the pool's synchronisation made training
    and measures 8-50x slower in measurements on the project's 2-core machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
