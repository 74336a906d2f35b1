"""PRELOAD_AUDIO: decode and extract features on CPU threads while the model works.

Jobs come out in the order they went in (the engine sorts them by length first), so batches stay
length-sorted. The look-ahead is bounded both in items and in bytes: before a job starts, its
feature size is reserved from its probed duration, and the reservation is released only when the
model has taken the item, so a 500-file batch never holds all its features at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

log = logging.getLogger(__name__)

Job = TypeVar("Job")


@dataclass
class Prepared:
    """One input made ready for the model, or the reason it could not be."""

    index: int
    name: str
    duration_s: float = 0.0
    segments: list[torch.Tensor] = field(default_factory=list)
    starts_s: list[float] = field(default_factory=list)  # where each segment starts in the recording
    decode_s: float = 0.0
    vad_s: float = 0.0
    features_s: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    diarization: Any = None  # the file's speakers (asr.text.speakers.Diarization) when asked for
    warnings: list[str] = field(default_factory=list)  # the file goes on, but the user should know

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.segments)


def run_inline(prepare: Callable[[Job], Prepared], jobs: list[Job]) -> Iterator[Prepared]:
    """The same stages, one input at a time, on the caller's thread."""
    for job in jobs:
        yield prepare(job)


class PreloadPipeline(Generic[Job]):
    """Ordered, bounded look-ahead over `prepare(job)` in a small thread pool."""

    def __init__(self, prepare: Callable[[Job], Prepared], jobs: list[Job],
                 estimate_bytes: Callable[[Job], int], workers: int, max_items: int,
                 max_bytes: int):
        self._prepare = prepare
        self._jobs = jobs
        self._estimate = estimate_bytes
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preload")
        self._ready: queue.Queue[tuple[Future, int] | None] = queue.Queue()
        self._budget = threading.Condition()
        self._reserved_items = 0
        self._reserved_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._producer = threading.Thread(target=self._produce, name="preload-feeder", daemon=True)

    def _produce(self) -> None:
        try:
            for job in self._jobs:
                need = max(0, self._estimate(job))
                with self._budget:
                    # An item larger than the whole budget may still run, alone.
                    self._budget.wait_for(
                        lambda need=need: self._stop.is_set() or (
                            self._reserved_items < self._max_items
                            and (self._reserved_bytes + need <= self._max_bytes
                                 or self._reserved_items == 0)
                        )
                    )
                    if self._stop.is_set():
                        return
                    self._reserved_items += 1
                    self._reserved_bytes += need
                    self.peak_bytes = max(self.peak_bytes, self._reserved_bytes)
                try:
                    future = self._pool.submit(self._prepare, job)
                except RuntimeError:  # close() shut the pool down between the check and here
                    return
                self._ready.put((future, need))
        finally:
            self._ready.put(None)

    def _release(self, need: int) -> None:
        with self._budget:
            self._reserved_items -= 1
            self._reserved_bytes -= need
            self._budget.notify_all()

    def __iter__(self) -> Iterator[Prepared]:
        self._producer.start()
        try:
            while (entry := self._ready.get()) is not None:
                future, need = entry
                item = future.result()  # prepare() turns every failure into Prepared.error
                self._release(need)
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        with self._budget:
            self._budget.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
