"""One batcher in front of the model: segments of every request share its batches.

Requests (web UI tabs, the API, the CLI, the wizard) each open a `Ticket` and hand the batcher
ready segments (`Unit`s). One thread owns the model and forms padded batches from whatever is
waiting: sorted by length, within the padding limit, only among units that share a hotword set
(SeACo's hotword filter is per batch) and the timestamp switch. A batch fires when it is full or
when its first unit has waited `max_wait_s`, so a lone request pays at most that much extra.

Fairness: each batch is anchored by the request with the least audio waiting, so a request of
500 files cannot hold back a 5-second file sent after it: that file anchors the next batch and
fills it with segments of similar length from anyone. A request whose oldest segment has waited
`STARVATION_S` goes first, so long runs advance however many short requests arrive.

Safety, as before batching was shared: an out-of-memory halves the batch (and every later batch
until the queue drains) down to one unit, then halves that unit at a quiet frame down to a floor;
any other failure retries the batch one unit at a time so only the culprit fails. Given a memory
model (asr/memory_model.py), a batch whose predicted peak exceeds the memory budget is split into
smaller batches before it runs, so the out-of-memory is predicted rather than hit; the back-off
stays as the safety net for whatever the prediction misses. Each unit's
model result depends on nothing but its own frames (see recognizer.py), so sharing a batch with
another request's audio cannot change its tokens or times.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from asr.recognition.memory_model import memory_budget
from asr.recognition.recognizer import BatchTimings, Decoded
from asr.speech.segment import quiet_split_frame

log = logging.getLogger(__name__)

OOM_SPLIT_FLOOR_S = 2.0  # a unit that runs out of memory alone is halved while halves are this long
STARVATION_S = 30.0  # a request whose oldest unit waited this long anchors the next batch


class QueueFull(RuntimeError):
    """The batcher holds more audio than `max_queued_s`: the caller should come back later."""


class Cancelled(RuntimeError):
    """The requester gave up (a client disconnected); its waiting segments were dropped."""


@dataclass
class Unit:
    """One segment of one file (or a piece of one), owned by a ticket."""

    owner: Ticket
    file: int  # the file's index within its request
    key: tuple[int, ...]  # orders a file's pieces: (segment,), after a split (segment, 0), ...
    feats: torch.Tensor
    start_s: float = 0.0  # where it starts in its recording
    name: str = ""
    queued_at: float = 0.0

    @property
    def frames(self) -> int:
        return int(self.feats.shape[0])


@dataclass
class Outcome:
    """What the batcher tells a ticket about one of its units."""

    unit: Unit
    decoded: Decoded | None = None
    error: str | None = None
    halves: list[Unit] = field(default_factory=list)  # set when the unit was split after an OOM
    model_s: float = 0.0  # its share (by frames) of its batch's model time
    batch_size: int = 0
    backed_off: bool = False


class Ticket:
    """One request's place at the batcher: what its units need and where their outcomes go.

    `deliver` runs on the batcher's thread and must be quick (it only records the outcome).
    """

    def __init__(self, batcher: Batcher, hotword_ids, timestamps: bool, size: int,
                 deliver: Callable[[Outcome], None], name: str = ""):
        self.batcher = batcher
        self.hotword_ids = hotword_ids
        self.timestamps = timestamps
        self.size = max(1, size)
        self.deliver = deliver
        self.name = name
        self.group = (_hotword_key(hotword_ids), timestamps)
        self.timings = BatchTimings()
        self.batches = 0
        self.backoffs = 0
        self.cancelled = False
        self.in_flight = 0  # units handed over and not yet answered (guarded by the batcher)

    def submit(self, units: list[Unit]) -> None:
        self.batcher.submit(self, units)

    def cancel(self) -> None:
        """The requester went away: its waiting units are dropped, no one else is affected."""
        self.batcher.cancel(self)


@dataclass
class BatcherStats:
    batches: int = 0
    shared_batches: int = 0  # batches holding units of two or more requests
    units: int = 0
    mixed_hotword_batches: int = 0  # must stay 0: a batch never mixes hotword sets
    largest_batch: int = 0
    predicted_splits: int = 0  # batches split before running: the memory model predicted too much
    queued_s: float = 0.0
    requests_waiting: int = 0


class Batcher:
    """Owns the model's thread; thread-safe for everything else.

    `memory_model` (a MemoryModel, or anything with `predict(batch, frames)` and
    `largest_batch(frames, budget_bytes)`) and `memory_budget` (bytes a batch may use now, asked
    before each batch) turn on the split by prediction; without a model nothing changes. Both
    are plain attributes: setting them later takes effect from the next batch.
    """

    def __init__(self, run_batch: Callable[..., list[Decoded]], frames_per_second: float,
                 padding_limit: float, max_wait_s: float = 0.01, max_queued_s: float = 3600.0,
                 release_memory: Callable[[], Any] | None = None,
                 is_out_of_memory: Callable[[BaseException], bool] | None = None,
                 memory_model: Any | None = None, memory_budget: Callable[[], float] | None = None):
        self._run_batch = run_batch
        self.memory_model = memory_model
        self.memory_budget = memory_budget
        self.frames_per_second = frames_per_second
        self.padding_limit = padding_limit
        self.max_wait_s = max_wait_s
        self.max_queued_s = max_queued_s
        self._release_memory = release_memory or (lambda: None)
        self._is_oom = is_out_of_memory or (lambda exc: isinstance(exc, torch.OutOfMemoryError))
        self._cond = threading.Condition()
        self._pending: list[Unit] = []
        self._turns: deque[Ticket] = deque()  # tickets with pending units, in serving order
        self._ceiling: int | None = None  # lowered by out-of-memory until the queue drains
        self._exclusive: Ticket | None = None
        self._running = 0  # units in the batch being run now
        self._stats = BatcherStats()
        self._thread = threading.Thread(target=self._serve, name="asr-batcher", daemon=True)
        self._thread.start()

    # ---- what requests call -------------------------------------------------------------------

    def ticket(self, hotword_ids, timestamps: bool, size: int, deliver: Callable[[Outcome], None],
               name: str = "") -> Ticket:
        return Ticket(self, hotword_ids, timestamps, size, deliver, name)

    def check_room(self) -> None:
        """Refuse new work while more than `max_queued_s` of audio waits for the model."""
        with self._cond:
            queued = self._queued_s()
        if queued > self.max_queued_s:
            raise QueueFull(f"the server is busy: {queued:.0f} s of audio are waiting for the model "
                            f"(batching.max_queued_s is {self.max_queued_s:.0f}); try again shortly")

    def submit(self, ticket: Ticket, units: list[Unit]) -> None:
        now = time.monotonic()
        with self._cond:
            if ticket.cancelled:
                return
            for unit in units:
                unit.queued_at = now
            self._pending.extend(units)
            ticket.in_flight += len(units)
            if ticket not in self._turns:
                self._turns.append(ticket)
            self._cond.notify_all()

    def cancel(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.cancelled = True
            dropped = [u for u in self._pending if u.owner is ticket]
            self._pending = [u for u in self._pending if u.owner is not ticket]
            ticket.in_flight -= len(dropped)
            if ticket in self._turns:
                self._turns.remove(ticket)
            self._cond.notify_all()
        if dropped:
            log.info("request %s cancelled: %d waiting segment(s) dropped", ticket.name, len(dropped))

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    @contextlib.contextmanager
    def exclusive(self, ticket: Ticket) -> Iterator[None]:
        """Only `ticket`'s units run inside the block (the wizard measures a quiet model).

        Waits for the batch running now to finish; other requests' units wait meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self._exclusive is None)
            self._exclusive = ticket
            self._cond.wait_for(lambda: self._running == 0)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = None
                self._cond.notify_all()

    def stats(self) -> BatcherStats:
        with self._cond:
            snapshot = BatcherStats(**vars(self._stats))
            snapshot.queued_s = self._queued_s()
            snapshot.requests_waiting = len(self._turns)
            return snapshot

    # ---- the model's thread -------------------------------------------------------------------

    def _queued_s(self) -> float:
        return sum(u.frames for u in self._pending) / self.frames_per_second

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._run(batch)
            except Exception:  # noqa: BLE001 - the model's thread must outlive any one batch
                log.exception("unexpected failure running a batch; failing its units")
                for unit in batch:
                    self._answer(Outcome(unit, error="recognition failed: unexpected server error"))
            finally:
                with self._cond:
                    self._running = 0
                    self._cond.notify_all()

    def _next_batch(self) -> list[Unit]:
        with self._cond:
            while True:
                batch, deadline = self._form()
                if batch and (deadline is None or time.monotonic() >= deadline):
                    # The anchor's request goes to the back of the line: the next batch is
                    # anchored by the next request.
                    self._turns.remove(batch[0].owner)
                    self._turns.append(batch[0].owner)
                    taken = {id(u) for u in batch}
                    self._pending = [u for u in self._pending if id(u) not in taken]
                    for ticket in {id(u.owner): u.owner for u in batch}.values():
                        if not any(u.owner is ticket for u in self._pending) and ticket in self._turns:
                            self._turns.remove(ticket)
                    self._running = len(batch)
                    self._book(batch)
                    return batch
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._cond.wait(timeout)

    def _form(self) -> tuple[list[Unit], float | None]:
        """The next batch and when it may fire (None: now, it is full); ([], None): nothing waits."""
        candidates = [u for u in self._pending
                      if self._exclusive is None or u.owner is self._exclusive]
        if not candidates:
            return [], None
        anchor_owner = self._next_owner(candidates)
        own = [u for u in candidates if u.owner is anchor_owner]
        anchor = max(own, key=lambda u: (u.frames, -u.queued_at))
        size = min(anchor_owner.size, self._ceiling or anchor_owner.size)
        # Mates from anyone with the same hotwords, closest in length first (longer ones too: the
        # anchor may be a short file), while the batch's padding stays within the limit.
        mates = sorted((u for u in candidates if u is not anchor and u.owner.group == anchor_owner.group),
                       key=lambda u: (abs(u.frames - anchor.frames), u.queued_at))
        batch = [anchor]
        real, longest = anchor.frames, anchor.frames
        for unit in mates:
            if len(batch) >= size:
                break
            if len(batch) >= unit.owner.size:  # every member's own batch size is respected
                continue
            padded = (len(batch) + 1) * max(longest, unit.frames)
            if padded - (real + unit.frames) > self.padding_limit * padded:
                continue
            batch.append(unit)
            real += unit.frames
            longest = max(longest, unit.frames)
        oldest = min(u.queued_at for u in batch)
        return batch, None if len(batch) >= size else oldest + self.max_wait_s

    def _next_owner(self, candidates: list[Unit]) -> Ticket:
        """Whose unit anchors the next batch: the request with the least audio waiting (a 5 s file
        goes ahead of a 500-file run instead of waiting its turn behind every other request's
        long batches), unless some request's oldest unit has waited `STARVATION_S`: then the
        longest-waiting request, so a long run still advances under a stream of short ones."""
        waiting: dict[int, float] = {}
        oldest: dict[int, float] = {}
        for unit in candidates:
            key = id(unit.owner)
            waiting[key] = waiting.get(key, 0.0) + unit.frames
            oldest[key] = min(oldest.get(key, unit.queued_at), unit.queued_at)
        owners = [t for t in self._turns if id(t) in waiting]
        starved = [t for t in owners if time.monotonic() - oldest[id(t)] > STARVATION_S]
        if starved:
            return min(starved, key=lambda t: oldest[id(t)])
        return min(owners, key=lambda t: waiting[id(t)])  # min keeps the first of equals: turn order

    def _book(self, batch: list[Unit]) -> None:
        s = self._stats
        s.batches += 1
        s.units += len(batch)
        s.largest_batch = max(s.largest_batch, len(batch))
        s.shared_batches += len({id(u.owner) for u in batch}) > 1
        s.mixed_hotword_batches += len({u.owner.group[0] for u in batch}) > 1

    def _run(self, units: list[Unit]) -> None:
        queue = [units]
        while queue:
            batch = []
            for unit in queue.pop(0):
                if unit.owner.cancelled:
                    self._answer(Outcome(unit, error="cancelled"))  # not delivered; leaves the count
                else:
                    batch.append(unit)
            if not batch:
                continue
            parts = self._split_to_fit(batch)
            if len(parts) > 1:
                queue = parts + queue
                continue
            first = batch[0].owner
            timings = BatchTimings()
            started = time.perf_counter()
            try:
                decoded = self._run_batch([u.feats for u in batch], first.hotword_ids, timings,
                                          first.timestamps)
            except Exception as exc:  # noqa: BLE001 - sorted below: memory, or anything else
                queue = self._after_failure(batch, exc) + queue
                continue
            elapsed = time.perf_counter() - started
            frames = sum(u.frames for u in batch)
            for owner in {id(u.owner): u.owner for u in batch}.values():
                share = sum(u.frames for u in batch if u.owner is owner) / frames
                owner.timings.add_scaled(timings, share)
                owner.batches += 1
            for unit, result in zip(batch, decoded, strict=True):
                self._answer(Outcome(unit, decoded=result, model_s=elapsed * unit.frames / frames,
                                     batch_size=len(batch)))
        with self._cond:
            if not self._pending:
                self._ceiling = None  # the queue drained: the next burst may try full size again

    def _split_to_fit(self, batch: list[Unit]) -> list[list[Unit]]:
        """The batch as it is, or, when the memory model predicts it needs more than the budget,
        smaller batches that each fit: longest units first, each part as many as fit at its own
        longest length. A unit predicted not to fit even alone still runs alone (the OOM back-off
        and its quiet split remain the safety net)."""
        model = self.memory_model
        if model is None or len(batch) < 2:
            return [batch]
        longest = max(u.frames for u in batch)
        try:
            budget = self._budget(model)
            needed = model.predict(len(batch), longest)
            if needed <= budget:
                return [batch]
            parts: list[list[Unit]] = []
            ordered = sorted(batch, key=lambda u: -u.frames)
            while ordered:
                fits = max(1, min(len(ordered), int(model.largest_batch(ordered[0].frames, budget))))
                parts.append(ordered[:fits])
                ordered = ordered[fits:]
        except Exception:  # noqa: BLE001 - a prediction must never cost a batch its run
            log.exception("memory prediction failed; running the batch of %d as formed", len(batch))
            return [batch]
        if len(parts) < 2:
            return [batch]
        log.info("batch of %d (longest %d frames) predicted to need %.0f MB, over the %.0f MB memory "
                 "budget; running it as %s", len(batch), longest, needed / 2**20, budget / 2**20,
                 " + ".join(str(len(p)) for p in parts))
        with self._cond:
            self._stats.predicted_splits += 1
        return parts

    def _budget(self, model) -> float:
        if self.memory_budget is not None:
            return float(self.memory_budget())
        # The default: 85% of free memory on its device.
        return float(memory_budget(getattr(model, "device", "cpu"), 85.0))

    def _after_failure(self, batch: list[Unit], exc: BaseException) -> list[list[Unit]]:
        if not self._is_oom(exc):
            if len(batch) > 1:
                log.warning("recognition failed for a batch of %d (%s: %s); retrying one by one",
                            len(batch), type(exc).__name__, exc)
                return [[unit] for unit in batch]
            log.error("recognition failed for %s: %s: %s", batch[0].name, type(exc).__name__, exc)
            self._answer(Outcome(batch[0], error=f"recognition failed: {type(exc).__name__}: {exc}"))
            return []
        self._release_memory()
        for owner in {id(u.owner): u.owner for u in batch}.values():
            owner.backoffs += 1
        if len(batch) == 1:
            return self._split_or_fail(batch[0], exc)
        half = max(1, len(batch) // 2)
        log.warning("out of memory at batch size %d; retrying at %d", len(batch), half)
        with self._cond:
            self._ceiling = min(self._ceiling or half, half)  # later batches start smaller
        for unit in batch:
            self._answer(Outcome(unit, backed_off=True), final=False)
        return [batch[i:i + half] for i in range(0, len(batch), half)]

    def _split_or_fail(self, unit: Unit, exc: BaseException) -> list[list[Unit]]:
        """A unit that does not fit even alone is cut in two at its quietest frame near the
        middle and each half retried, down to OOM_SPLIT_FLOOR_S; only below that does it fail.

        The halves are recognised as separate inputs, so a word cut at the seam may come out
        differently than it would whole; a quiet frame makes that rare."""
        seconds = unit.frames / self.frames_per_second
        cut = quiet_split_frame(unit.feats, max(1, int(OOM_SPLIT_FLOOR_S * self.frames_per_second)))
        if cut is None:
            self._answer(Outcome(unit, error=(
                f"out of GPU memory even at batch size 1, and a piece of {seconds:.1f} s cannot be "
                f"cut below {OOM_SPLIT_FLOOR_S:g} s ({exc}); a lower input.segment_s cuts long "
                "recordings into smaller pieces")))
            return []
        log.warning("out of memory on a %.1f s piece of %s alone; recognising it in two halves cut "
                    "at a quiet point", seconds, unit.name)
        halves = [Unit(unit.owner, unit.file, unit.key + (0,), unit.feats[:cut], unit.start_s, unit.name),
                  Unit(unit.owner, unit.file, unit.key + (1,), unit.feats[cut:],
                       unit.start_s + cut / self.frames_per_second, unit.name)]
        with self._cond:
            unit.owner.in_flight += 1  # one unit became two
        self._answer(Outcome(unit, halves=halves, backed_off=True), final=False)
        return [[half] for half in halves]

    def _answer(self, outcome: Outcome, final: bool = True) -> None:
        """Hand an outcome to its ticket; `final` ones also end the unit's time in flight."""
        owner = outcome.unit.owner
        if not owner.cancelled:
            try:
                owner.deliver(outcome)
            except Exception:  # noqa: BLE001 - a requester's bug must not stop the model thread
                log.exception("delivering a result to request %s failed", owner.name)
        if final:
            with self._cond:
                owner.in_flight -= 1
                self._cond.notify_all()


def _hotword_key(hotword_ids) -> tuple:
    if not hotword_ids:
        return ()
    return tuple(tuple(int(t) for t in word) for word in hotword_ids)
