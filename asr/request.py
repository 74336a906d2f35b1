"""One `Engine.run` at the batcher: its files in flight, and their results as they complete.

Units are proposed to the batcher a batch at a time, longest first from a pool a few batches
deep (so the short tail of a long file finds short batch mates), and the pool is refilled only
while few of this request's units are unanswered: a 500-file request never queues all its
features at once, and others' requests get their turn. Outcomes arrive on the batcher's thread
and are only recorded there; results are assembled (joined, punctuated, cut into sentences) on the
caller's thread, per file, so nothing a file's text goes through can see its batch mates.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from asr.audio.preload import Prepared
from asr.progress import PUNCTUATION, RECOGNITION, FilesProgress, ProgressTracker
from asr.recognition.batcher import Batcher, Cancelled, Outcome, Unit
from asr.recognition.recognizer import Decoded
from asr.results import Result, RunStats
from asr.system.threads import thread_count
from asr.text.transcript import Piece, Transcript

POOL_BATCHES = 4  # units wait in a pool of this many batches' worth to find batch mates of similar length
Progress = FilesProgress  # (files done, files total, file name); asr.progress has the full picture
RUN_NUMBERS = itertools.count(1)
# A file's recognised pieces -> its text and segments (the text stages), with its timestamp switch.
AssembleFile = Callable[[list[Piece], Prepared, bool], Transcript]


@dataclass
class FileProgress:
    """A file whose segments are still in flight: what its Result will be assembled from."""

    item: Prepared
    outstanding: set[tuple[int, ...]] = field(default_factory=set)  # unit keys still to come back
    decoded: dict[tuple[int, ...], Decoded | None] = field(default_factory=dict)  # None: failed
    spans: dict[tuple[int, ...], tuple[float, float]] = field(default_factory=dict)  # key -> (start, end) s
    model_s: float = 0.0  # its share of the model time of every batch it rode in
    batch: int = 0  # the largest batch any of its segments ran in
    backed_off: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    handed_out: set[tuple[int, ...]] = field(default_factory=set)  # pieces given to on_piece
    frames: int = 0  # feature frames of all its segments, and of those answered so far (progress)
    frames_answered: int = 0


class EnterOnce:
    """A context manager entered at the first `with` and left only by `close()`: exclusive use
    of the batcher starts when the first segment is ready (decoding runs meanwhile) and ends
    when the run ends."""

    def __init__(self, manager):
        self._manager = manager
        self._entered = False

    def __enter__(self):
        if not self._entered:
            self._manager.__enter__()
            self._entered = True
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def close(self) -> None:
        if self._entered:
            self._entered = False
            self._manager.__exit__(None, None, None)


class Request:
    """One run's files at the batcher (see the module docstring)."""

    def __init__(self, batcher: Batcher, assemble_file: AssembleFile, size: int, hotword_ids,
                 stats: RunStats, results: list[Result | None], tracker: ProgressTracker,
                 padding_limit: float, timestamps: bool, name: str, cancel: threading.Event | None = None,
                 on_piece: Callable[[int, Piece], None] | None = None):
        self.batcher = batcher
        self.assemble_file = assemble_file
        self.cancel = cancel
        self.on_piece = on_piece
        self._touched: set[int] = set()  # files with pieces not yet handed to on_piece
        self.size = size
        self.padding_limit = padding_limit
        self.timestamps = timestamps
        self.stats = stats
        self.results = results
        self.tracker = tracker
        self._progressed: set[int] = set()  # files with answers the tracker has not seen yet
        self.pending: list[Unit] = []
        self.partial: dict[int, FileProgress] = {}
        self._lock = threading.Lock()
        self._ready: list[int] = []  # files whose every unit is answered, to assemble
        self.ticket = batcher.ticket(hotword_ids, timestamps, size, self._deliver, name)

    def fail(self, item: Prepared) -> None:
        """A file that failed before the model (unreadable, too long...): its Result now."""
        self.results[item.index] = Result(file=item.name, duration_s=item.duration_s, decode_s=item.decode_s,
                                          features_s=item.features_s, error=item.error)
        self.tracker.finished(item.index)

    def add(self, item: Prepared) -> None:
        entry = FileProgress(item, frames=sum(int(s.shape[0]) for s in item.segments))
        starts = item.starts_s or [0.0] * len(item.segments)
        self.tracker.stage(item.index, RECOGNITION)
        with self._lock:
            self.partial[item.index] = entry
            for number, (feats, start) in enumerate(zip(item.segments, starts, strict=True)):
                self.pending.append(Unit(self.ticket, item.index, (number,), feats, start, item.name))
                entry.outstanding.add((number,))
            if not item.segments:
                self._ready.append(item.index)  # no speech at all: an empty transcript, not an error
        while len(self.pending) >= self.size * POOL_BATCHES:
            self.ticket.submit(self._take_batch())
        self._wait(lambda: self.ticket.in_flight <= self.size * POOL_BATCHES)

    def flush(self) -> None:
        while self.pending:
            self.ticket.submit(self._take_batch())
        self._wait(lambda: self.ticket.in_flight == 0)
        self._finish_ready()

    def _wait(self, done: Callable[[], bool]) -> None:
        """Wait for `done`, assembling files as they complete (so progress moves meanwhile),
        handing out finished pieces, and giving up if the caller was cancelled."""
        self._finish_ready()
        while not done():
            self.batcher.wait_for(lambda: done() or bool(self._ready) or bool(self._touched)
                                  or bool(self._progressed),
                                  timeout=0.2 if self.cancel is not None else None)
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("the request was cancelled")
            self._finish_ready()

    def _take_batch(self) -> list[Unit]:
        """The longest waiting unit plus the next longest, while padding stays within the limit."""
        self.pending.sort(key=lambda unit: -unit.frames)  # stable: ties keep input order
        longest = self.pending[0].frames
        taken = 1
        real = longest
        while taken < min(self.size, len(self.pending)):
            frames = self.pending[taken].frames
            padded = (taken + 1) * longest
            if padded - (real + frames) > self.padding_limit * padded:
                break  # every later unit is shorter still
            real += frames
            taken += 1
        batch, self.pending = self.pending[:taken], self.pending[taken:]
        return batch

    def _deliver(self, outcome: Outcome) -> None:
        """On the batcher's thread: record what came back for one unit."""
        unit = outcome.unit
        with self._lock:
            entry = self.partial[unit.file]
            entry.backed_off |= outcome.backed_off
            if outcome.halves:
                if not any("cut at quiet points" in w for w in entry.warnings):
                    entry.warnings.append("out of GPU memory even alone: part of this file was "
                                          "recognised in pieces cut at quiet points (a lower "
                                          "input.segment_s avoids this)")
                entry.outstanding.discard(unit.key)
                entry.outstanding.update(h.key for h in outcome.halves)
                return
            if outcome.decoded is None and outcome.error is None:
                return  # a note (backed off), not an answer
            entry.decoded[unit.key] = outcome.decoded
            seconds = unit.frames / self.ticket.batcher.frames_per_second
            entry.spans[unit.key] = (unit.start_s, unit.start_s + seconds)
            entry.outstanding.discard(unit.key)
            if outcome.error:
                entry.error = outcome.error
            entry.model_s += outcome.model_s
            entry.batch = max(entry.batch, outcome.batch_size)
            entry.frames_answered += unit.frames
            if self.tracker.active:
                self._progressed.add(unit.file)
            if self.on_piece is not None:
                self._touched.add(unit.file)
            if not entry.outstanding:
                self._ready.append(unit.file)

    def _finish_ready(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            touched, self._touched = self._touched, set()
            progressed, self._progressed = self._progressed, set()
            shares = {i: self.partial[i].frames_answered / self.partial[i].frames
                      for i in progressed if i in self.partial and self.partial[i].frames}
        for index, share in sorted(shares.items()):
            self.tracker.recognised(index, share)
        for index in sorted(touched):
            self._hand_out_pieces(index)
        for index in ready:
            self._finish(index)

    def _hand_out_pieces(self, index: int) -> None:
        """Give on_piece the file's pieces that are done and have nothing unfinished before them."""
        with self._lock:
            entry = self.partial.get(index)
            if entry is None:
                return
            waiting = min(entry.outstanding, default=None)
            fresh = [key for key in sorted(entry.decoded) if key not in entry.handed_out
                     and (waiting is None or key < waiting)]
            entry.handed_out.update(fresh)
            pieces = [Piece(*entry.spans[k], entry.decoded[k]) for k in fresh if entry.decoded[k] is not None]
        for piece in pieces:
            self.on_piece(index, piece)

    def close(self) -> None:
        """Copy the shared batches' figures into this run's statistics."""
        ticket = self.ticket
        self.stats.batches += ticket.batches
        self.stats.backoffs += ticket.backoffs
        for name in ("encoder_s", "predictor_s", "decoder_s", "timestamp_s", "postprocess_s"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(ticket.timings, name))

    def _finish(self, index: int) -> None:
        with self._lock:
            entry = self.partial.pop(index)
        item = entry.item
        ok = [Piece(*entry.spans[key], entry.decoded[key]) for key in sorted(entry.decoded)
              if entry.decoded[key] is not None]
        tokens = [t for p in ok for t in p.decoded.token_ids]
        weights = [max(1, len(p.decoded.token_ids)) for p in ok]
        confidence = (sum(p.decoded.confidence * w for p, w in zip(ok, weights, strict=True))
                      / sum(weights) if ok else 0.0)
        self.tracker.stage(index, PUNCTUATION)
        started = time.perf_counter()
        with thread_count(1):  # beside the model, as preparation: its small ops gain nothing from two
            transcript = self.assemble_file(ok, item, self.timestamps)
        self.stats.punctuation_s += time.perf_counter() - started
        warnings = item.warnings + entry.warnings + transcript.warnings
        if not item.segments:
            warnings.append("no speech found")
        self.results[index] = Result(
            file=item.name, text=transcript.text,
            confidence=round(confidence, 4), duration_s=item.duration_s, decode_s=item.decode_s,
            features_s=item.features_s + item.vad_s, model_s=entry.model_s, batch_size=entry.batch,
            backed_off=entry.backed_off, cache_hit=item.cache_hit, token_ids=tokens,
            error=entry.error, warnings=warnings, segments=transcript.segments,
            raw_text=transcript.raw_text, speakers=transcript.speakers,
        )
        self.tracker.finished(index)

