"""Per-thread CPU thread counts for torch, set so that they stick.

torch keeps its intra-op thread count per calling thread, which is what lets side-by-side lanes
share the cores and lets the small VAD model run on one thread while the recogniser uses all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def set_thread_count(count: int) -> None:
    """torch.set_num_threads for the calling thread, made to stick in a thread torch has not met.

    torch initialises a thread's OpenMP count lazily, on its first parallel op, from the last
    count *any* thread set. A fresh lane that set 2 threads would be reset to 1 there when the
    other lane had since set 1 (found on a 2-core Intel CI machine: lanes of 2 + 1 ran as 1 + 1,
    for the whole first batch of every new lane). Asking for the count first runs that lazy
    initialisation now, so the count set next is the one the thread keeps.
    """
    torch.get_num_threads()
    torch.set_num_threads(count)


@contextlib.contextmanager
def thread_count(count: int) -> Iterator[None]:
    """Run the block on `count` torch threads in this thread, then restore the previous count.

    For small models (the VAD): their ops are too short to gain from a second thread, and
    OpenMP's spinning threads make them many times slower when the cores are busy elsewhere.
    """
    previous = torch.get_num_threads()
    set_thread_count(count)
    try:
        yield
    finally:
        set_thread_count(previous)


def default_cpu_threads() -> int:
    """Physical cores where known; FunASR's default of 4 oversubscribes small machines."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, count or 1)
