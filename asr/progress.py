"""How far one `Engine.run` has got, in seconds of audio, and what it is doing.

A run's files pass through stages (decoding, speech detection, recognition, punctuation). Counting
finished files says nothing for one 30-minute file and little for a batch of a few long ones, so
progress is measured in audio: a file counts with its whole length once done, and while it is in
recognition with the share of its speech the model has answered, scaled to its length (the silence
between speech regions never goes to the model, so speech seconds alone would stop short of the
file's length). Lengths are the probed ones until a file is decoded, then the decoded ones.

State changes may come from any of the run's threads (the caller's, preload threads, the
batcher's); callbacks are called only on the caller's thread, at the points where the run looks
at its progress anyway, so a callback that raises (a client that went away) stops the run the way
it always has, and nothing slow ever runs on the model's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DECODING = "decoding"
SPEECH = "speech detection"  # voice activity detection and features
RECOGNITION = "recognition"
PUNCTUATION = "punctuation"  # the text stages: punctuation, sentences, speakers, numbers
DONE = "done"
STAGES = (DECODING, SPEECH, RECOGNITION, PUNCTUATION, DONE)

FilesProgress = Callable[[int, int, str], None]  # (files done, files total, file name): the older shape


@dataclass(frozen=True)
class RunProgress:
    """One look at a running run. `stage` and `file` are the latest stage any file entered."""

    stage: str
    file: str
    audio_done_s: float
    audio_total_s: float
    files_done: int
    files_total: int
    elapsed_s: float
    recognising_s: float  # seconds since the first speech went to the model (0 before)

    @property
    def fraction(self) -> float:
        if self.audio_total_s <= 0:
            return 1.0 if self.files_done >= self.files_total else 0.0
        return min(1.0, self.audio_done_s / self.audio_total_s)

    @property
    def speed(self) -> float:
        """Seconds of audio per second so far, counted from the first speech sent to the model."""
        return self.audio_done_s / self.recognising_s if self.recognising_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the speed so far; None until some audio has been recognised."""
        if self.stage == DONE:
            return 0.0
        speed = self.speed
        if speed <= 0 or self.audio_done_s <= 0:
            return None
        return max(0.0, self.audio_total_s - self.audio_done_s) / speed


ProgressCallback = Callable[[RunProgress], None]


class ProgressTracker:
    """A run's progress; see the module docstring. Thread-safe."""

    def __init__(self, names: Sequence[str], probed_s: Sequence[float], on_progress: ProgressCallback | None,
                 on_files: FilesProgress | None = None, clock: Callable[[], float] = time.perf_counter):
        self._names = list(names)
        self._length = [max(0.0, float(s)) for s in probed_s]
        self._share = [0.0] * len(self._names)  # of each file's length, 0..1
        self._done = [False] * len(self._names)
        self._on_progress = on_progress
        self._on_files = on_files
        self._clock = clock
        self._started = clock()
        self._first_recognition: float | None = None
        self._stage, self._file = DECODING, self._names[0] if self._names else ""
        self._files_done = 0
        self._finished_names: list[str] = []  # for on_files, in the order files finished
        self._lock = threading.Lock()
        self._caller = threading.get_ident()
        self._dirty = False

    @property
    def active(self) -> bool:
        return self._on_progress is not None or self._on_files is not None

    @property
    def dirty(self) -> bool:
        """Something changed that no callback has seen yet."""
        return self._dirty

    # ---- what the run tells it (any thread) --------------------------------------------------

    def stage(self, index: int, stage: str) -> None:
        with self._lock:
            self._stage, self._file, self._dirty = stage, self._names[index], True
            if stage == RECOGNITION and self._first_recognition is None:
                self._first_recognition = self._clock()
        self._emit_here()

    def length(self, index: int, seconds: float) -> None:
        """The file's decoded length replaces its probed one."""
        with self._lock:
            self._length[index] = max(0.0, float(seconds))
            self._dirty = True

    def recognised(self, index: int, share: float) -> None:
        """`share` (0..1) of the file's speech has come back from the model."""
        with self._lock:
            self._share[index] = min(1.0, max(self._share[index], share))
            self._dirty = True
        self._emit_here()

    def finished(self, index: int) -> None:
        """The file is done (its Result exists, failed or not)."""
        with self._lock:
            if self._done[index]:
                return
            self._done[index] = True
            self._share[index] = 1.0
            self._files_done += 1
            self._finished_names.append(self._names[index])
            self._file, self._dirty = self._names[index], True
            if self._files_done == len(self._names):
                self._stage = DONE
        self._emit_here()

    # ---- callbacks (the caller's thread) -------------------------------------------------------

    def snapshot(self) -> RunProgress:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> RunProgress:
        now = self._clock()
        done = sum(length * share for length, share in zip(self._length, self._share, strict=True))
        first = self._first_recognition
        return RunProgress(self._stage, self._file, done, sum(self._length), self._files_done,
                           len(self._names), now - self._started, 0.0 if first is None else now - first)

    def emit(self) -> None:
        """Call the callbacks with what changed, if anything did. Caller's thread only."""
        if not self._dirty or threading.get_ident() != self._caller:
            return
        with self._lock:
            self._dirty = False
            snapshot = self._snapshot()
            finished, self._finished_names = self._finished_names, []
            first_done = self._files_done - len(finished)
        if self._on_files is not None:
            for offset, name in enumerate(finished, 1):
                self._on_files(first_done + offset, len(self._names), name)
        if self._on_progress is not None:
            self._on_progress(snapshot)

    def _emit_here(self) -> None:
        if threading.get_ident() == self._caller:
            self.emit()
