"""Live recognition of a microphone stream, with memory and latency bounded however long it runs.

Audio arrives in pieces from the browser (ui/live_transport.py) on request threads that must not
wait for the model, so `LiveSession.push` only appends the piece and returns; a worker thread per
session does the rest once per `update_interval_s`: it resamples the new audio to 16 kHz
(asr.audio.resample, streamed: the same samples as resampling the whole take), cuts the stream
into utterances at pauses (`pause_s` of non-speech by the engine's own VAD: Silero, streamed
window by window; an energy rule against an adaptive noise floor for the other settings) or at
`max_segment_s`, recognises each finished utterance once (punctuated by the engine's punctuation
model, like any transcript), and re-recognises only the utterance still being spoken for the
live partial text. Finished utterances keep only their text, so the audio held never exceeds
one utterance plus a bounded backlog: the failure users report with other UIs, where memory and
latency grow with the whole recording, cannot happen.

The backlog bound (`realtime.max_backlog_s`) is the one place audio can still be lost here: when
recognition falls that far behind the microphone, the oldest waiting audio is dropped. Every
dropped second is counted (`LiveSnapshot.dropped_s`, with the reason), as is audio the transport
reports lost before it arrived (`note_dropped`), so the page can say exactly how much is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from asr.audio.decode import TARGET_RATE, AudioError, to_mono_16k
from asr.audio.resample import StreamResampler
from asr.recognition.hotwords import HotwordError, parse_hotwords
from asr.results import Result, Segment, join_text
from asr.settings import RealtimeSettings
from asr.system.threads import thread_count

if TYPE_CHECKING:
    from asr.engine import Engine

log = logging.getLogger(__name__)

FRAME = TARGET_RATE // 20  # 50 ms analysis frames for the energy pause detector
FRAME_S = FRAME / TARGET_RATE  # the longest frame of any detector (Silero's are 32 ms)
PREROLL_S = 0.3  # quiet kept before speech starts, so its onset is not clipped
MIN_SPEECH_S = 0.15  # speech this long makes an utterance (a short syllable; longer than a click)
IDLE_EXIT_S = 30.0  # a worker with nothing pushed for this long ends; the next push starts another
BACKLOG = "backlog"  # the cause of audio dropped because recognition fell max_backlog_s behind


@dataclass
class LiveSnapshot:
    """What the UI shows: the text so far and how the session is doing."""

    final_text: str  # text of finalised segments, joined
    partial_text: str  # text of the segment still being spoken
    segments: list[str]  # finalised segment texts, in order
    audio_s: float  # seconds of audio received so far
    updates: int  # how many recognitions have run
    last_latency_s: float  # how long the last recognition took
    error: str | None  # last error, if any (e.g. a hotword error), else None
    # (start_s, end_s) of each finalised segment on the session's 16 kHz timeline (audio dropped
    # by a full backlog is not on it); lets a caller show timestamps or re-check a segment.
    spans: list[tuple[float, float]] = field(default_factory=list)
    dropped_s: float = 0.0  # seconds of this take that were lost (backlog or transport), 0 if none
    dropped_reason: str = ""  # why, in words, when dropped_s > 0
    dropped_causes: list[str] = field(default_factory=list)  # the same as codes (BACKLOG, or the transport's)
    max_backlog_s: float = 0.0  # the session's backlog limit, which BACKLOG refers to

    @property
    def text(self) -> str:
        return join_text(self.final_text, self.partial_text)


class EnergyFrames:
    """Speech/silence per 50 ms frame by energy, for the `energy` and `off` VAD settings."""

    frame = FRAME

    def __init__(self) -> None:
        self._detector = _SpeechDetector()

    def speech(self, frames: np.ndarray) -> list[bool]:
        return [self._detector.is_speech(level) for level in frame_levels(frames).tolist()]


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """Level in dB of each row of (count, frame) samples."""
    return 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-10)


def frame_detector(engine: Engine):
    """The engine's own VAD for endpointing where it can stream (Silero), else energy."""
    vad = getattr(engine, "vad", None)
    return vad.stream() if hasattr(vad, "stream") else EnergyFrames()


class _SpeechDetector:
    """Energy-based speech/silence decision against an adaptive noise floor.

    The floor is the quietest 50 ms frame of the last 10 s, so a fan or a noisy room raises the
    threshold with it; speech must be `MARGIN_DB` above that floor and above `MIN_DB` (very quiet
    input, like a browser's noise-suppressed silence, is never speech).
    """

    MARGIN_DB = 12.0
    MIN_DB = -50.0

    def __init__(self, window_frames: int = 200):
        self._history: deque[float] = deque(maxlen=window_frames)

    def is_speech(self, level_db: float) -> bool:
        self._history.append(level_db)
        return level_db > max(min(self._history) + self.MARGIN_DB, self.MIN_DB)


@dataclass
class Utterance:
    """A finished piece of the stream, ready to be recognised once."""

    samples: np.ndarray  # 16 kHz mono float32
    start: int  # sample offset on the session's 16 kHz timeline
    reason: str  # "pause", "length" or "stop"

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class Segmenter:
    """Cuts a 16 kHz stream into utterances at pauses or at a length limit, holding one at most.

    Speech or silence is decided per frame by `detector` (the engine's Silero VAD, streaming, by
    default; energy for the energy/off settings). The current utterance lives in one
    preallocated buffer of `max_segment_s`; while nothing has been said only a short pre-roll is
    kept, so long silences cost nothing either.
    """

    def __init__(self, pause_s: float, max_segment_s: float, detector=None):
        self._detector = detector or EnergyFrames()
        self.frame = self._detector.frame
        frame_s = self.frame / TARGET_RATE
        self.pause_frames = max(1, round(pause_s / frame_s))
        self.max_frames = max(4, int(max_segment_s / frame_s))
        self.preroll_frames = round(PREROLL_S / frame_s)
        self.min_speech_frames = max(1, round(MIN_SPEECH_S / frame_s))
        self._audio = np.zeros((self.max_frames + 1) * self.frame, dtype=np.float32)
        self._levels: list[float] = []  # per frame of the current utterance
        self._speech: list[bool] = []
        self._tail = np.zeros(0, dtype=np.float32)  # samples short of a whole frame
        self.start = 0  # timeline offset of the current utterance's first sample
        self.speech_frames = 0
        self.silent_run = 0
        self.speech_serial = 0  # counts speech frames ever seen: has anything new been said?

    @property
    def has_speech(self) -> bool:
        return self.speech_frames >= self.min_speech_frames

    def current(self) -> Utterance:
        """A copy of the unfinished utterance, for a partial recognition."""
        return Utterance(self._audio[:len(self._levels) * self.frame].copy(), self.start, "partial")

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        data = np.concatenate([self._tail, samples]) if self._tail.size else samples
        count = len(data) // self.frame
        self._tail = data[count * self.frame:].copy()
        if count == 0:
            return []
        frames = data[:count * self.frame].reshape(count, self.frame)
        levels = frame_levels(frames)
        speech = self._detector.speech(frames)
        finished = []
        for frame, level, is_speech in zip(frames, levels.tolist(), speech, strict=True):
            utterance = self._add(frame, level, is_speech)
            if utterance is not None:
                finished.append(utterance)
        return finished

    def flush(self) -> Utterance | None:
        """End of stream: the unfinished utterance (with any part-frame) if speech was heard."""
        used = len(self._levels) * self.frame
        tail = self._tail
        utterance = None
        if self.has_speech:
            samples = np.concatenate([self._audio[:used], tail])
            utterance = Utterance(samples, self.start, "stop")
        self.start += used + len(tail)
        self._tail = np.zeros(0, dtype=np.float32)
        self._forget(len(self._levels))
        self.speech_frames = self.silent_run = 0
        return utterance

    def _add(self, frame: np.ndarray, level: float, speech: bool) -> Utterance | None:
        index = len(self._levels)
        self._audio[index * self.frame:(index + 1) * self.frame] = frame
        self._levels.append(level)
        self._speech.append(speech)
        if speech:
            self.speech_frames += 1
            self.silent_run = 0
            self.speech_serial += 1
        else:
            self.silent_run += 1
        frames = index + 1
        if not self.has_speech:
            if self.speech_frames and (self.silent_run >= self.pause_frames or frames >= self.max_frames):
                # A click or a cough followed by quiet is not an utterance: forget it.
                self.speech_frames = 0
                self._speech = [False] * frames
            if self.speech_frames == 0:
                self._forget(max(0, frames - self.preroll_frames))
            return None
        if self.silent_run >= self.pause_frames:
            return self._cut(frames, "pause")
        if frames >= self.max_frames:
            # Cut at the quietest frame of the last quarter so a word is rarely split.
            search = frames - frames // 4
            quietest = search + int(np.argmin(self._levels[search:]))
            return self._cut(quietest + 1, "length")
        return None

    def _cut(self, frames: int, reason: str) -> Utterance:
        utterance = Utterance(self._audio[:frames * self.frame].copy(), self.start, reason)
        self._forget(frames)
        self.speech_frames = sum(self._speech)
        self.silent_run = 0
        for flag in reversed(self._speech):
            if flag:
                break
            self.silent_run += 1
        return utterance

    def _forget(self, frames: int) -> None:
        """Drop the first `frames` frames of the current utterance."""
        if frames <= 0:
            return
        kept = len(self._levels) - frames
        size = self.frame
        self._audio[:kept * size] = self._audio[frames * size:(frames + kept) * size]
        del self._levels[:frames]
        del self._speech[:frames]
        self.start += frames * size


@dataclass
class _Worker:
    thread: threading.Thread
    halt: threading.Event


class LiveSession:
    """One microphone stream: `push` chunks in, read `snapshot` out; thread-safe.

    With `worker=True` (what the UI uses) a thread started by the first push runs `process` once
    per `update_interval_s`. With `worker=False` nothing runs on its own and the caller drives
    `process` itself, as tests do to push 30 minutes of audio faster than real time.
    """

    # Opt-in (off by default): keep the first `keep_audio_s` seconds of the 16 kHz stream the
    # session analysed, readable with `received_audio`; tests compare the text shown with the
    # engine's recognition of exactly that audio. Set on a subclass or the instance's class.
    keep_audio_s: float = 0.0

    def __init__(self, engine: Engine, settings: RealtimeSettings, hotwords: str | None = None,
                 *, worker: bool = True):
        self.engine = engine
        self.settings = settings
        self._use_worker = worker
        self._hotword_note: str | None = None
        self._hotwords: list[str] | None = None
        if hotwords and hotwords.strip():
            limits = engine.settings.hotwords
            try:
                self._hotwords = parse_hotwords(hotwords, limits.max_count, limits.max_chars) or None
            except HotwordError as exc:
                # Recognise without them rather than show nothing; the note stays visible.
                self._hotword_note = f"hotwords ignored: {exc}"
        self._lock = threading.Lock()  # guards everything below; never held during recognition
        self._work_lock = threading.Lock()  # one update at a time (worker, process, stop)
        self._worker: _Worker | None = None
        self._pending: deque[tuple[int, np.ndarray, float]] = deque()  # (rate, chunk, seconds)
        self._pending_s = 0.0
        self._last_push = time.monotonic()
        self._generation = 0  # bumped by clear(); an update that started before it is discarded
        self._reset_text()
        # Owned by whoever holds _work_lock:
        self._stream_generation = -1
        self._resampler: StreamResampler | None = None
        self._segmenter = Segmenter(settings.pause_s, settings.max_segment_s, frame_detector(engine))
        self._partial_serial = -1
        self._kept: list[np.ndarray] = []  # see keep_audio_s; guarded by _lock

    # ---- what the UI calls ------------------------------------------------------------------

    def push(self, sample_rate: int, chunk: np.ndarray) -> None:
        """Queue one chunk (int or float, mono or (frames, channels)); never waits for the model."""
        if chunk is None:
            return
        array = np.array(chunk, copy=True)  # the caller may reuse its buffer
        if array.size == 0:
            return
        if array.ndim not in (1, 2):
            raise AudioError(f"audio chunk must be 1-D or 2-D, got shape {array.shape}")
        rate = int(sample_rate)
        if rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}")
        seconds = max(array.shape) / rate
        with self._lock:
            self._pending.append((rate, array, seconds))
            self._pending_s += seconds
            self._audio_s += seconds
            self._last_push = time.monotonic()
            while self._pending_s > self.max_backlog_s and len(self._pending) > 1:
                _, _, dropped = self._pending.popleft()
                self._pending_s -= dropped
                self._drop(dropped, BACKLOG, f"recognition fell more than {self.max_backlog_s:g} s behind "
                                             "the microphone (realtime.max_backlog_s)")
            if self._use_worker and self._worker is None:
                self._start_worker()

    @property
    def max_backlog_s(self) -> float:
        """Audio waiting for recognition beyond this is dropped, oldest first (and counted)."""
        return self.settings.max_backlog_s

    def note_dropped(self, seconds: float, cause: str, reason: str) -> None:
        """Count audio lost before it reached `push`: the transport says how much, why (`reason`,
        in words) and a code for it (`cause`, which a page can put in its own language)."""
        if seconds > 0:
            with self._lock:
                self._drop(seconds, cause, reason)

    def snapshot(self) -> LiveSnapshot:
        with self._lock:
            return LiveSnapshot(
                final_text=self._final_text, partial_text=self._partial_text,
                segments=list(self._segments), audio_s=self._audio_s, updates=self._updates,
                last_latency_s=self._last_latency_s, error=self._error or self._hotword_note,
                spans=list(self._spans), dropped_s=self._dropped_s,
                dropped_reason="; ".join(self._drop_reasons.values()),
                dropped_causes=list(self._drop_reasons), max_backlog_s=self.max_backlog_s,
            )

    def process(self) -> LiveSnapshot:
        """Run one update now on the caller's thread: what the worker does each interval."""
        self._update(final=False)
        return self.snapshot()

    def stop(self) -> LiveSnapshot:
        """End of speech: recognise what is left, finalise it, stop the worker.

        Blocks for at most the worker's current update plus the recognition of the audio still
        queued (itself capped by `max_backlog_s`). A later push starts a new worker.
        """
        self._halt_worker()
        self._update(final=True)
        snap = self.snapshot()
        log.info("live session stopped: %.1f s of audio, %d segment(s), %d recognition(s)",
                 snap.audio_s, len(snap.segments), snap.updates)
        return snap

    def clear(self) -> None:
        """Drop all audio and text; the session stays usable (and its worker keeps running)."""
        with self._lock:
            self._pending.clear()
            self._pending_s = 0.0
            self._generation += 1
            self._reset_text()

    def close(self) -> None:
        """Stop the worker without finalising anything (the page went away)."""
        self._halt_worker()

    def received_audio(self) -> np.ndarray:
        """The kept start of the 16 kHz timeline `spans` refer to (empty unless keep_audio_s)."""
        with self._lock:
            return np.concatenate(self._kept) if self._kept else np.zeros(0, dtype=np.float32)

    # ---- internals ----------------------------------------------------------------------------

    def _reset_text(self) -> None:
        self._segments: list[str] = []
        self._spans: list[tuple[float, float]] = []
        self._final_text = ""
        self._partial_text = ""
        self._audio_s = 0.0
        self._dropped_s = 0.0
        self._drop_reasons: dict[str, str] = {}  # cause -> reason, in the order first seen
        self._updates = 0
        self._last_latency_s = 0.0
        self._error: str | None = None

    def _drop(self, seconds: float, cause: str, reason: str) -> None:
        """Book lost audio (caller holds _lock)."""
        self._dropped_s += seconds
        self._drop_reasons.setdefault(cause, reason)
        log.warning("live session lost %.2f s of audio (%.2f s in all): %s", seconds, self._dropped_s, reason)

    def _start_worker(self) -> None:
        halt = threading.Event()
        thread = threading.Thread(target=self._work, args=(halt,), daemon=True,
                                  name=f"live-session-{id(self):x}")
        self._worker = _Worker(thread, halt)
        thread.start()

    def _halt_worker(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.halt.set()
            if worker.thread is not threading.current_thread():
                worker.thread.join()

    def _work(self, halt: threading.Event) -> None:
        interval = self.settings.update_interval_s
        due = time.monotonic() + interval
        while not halt.wait(max(0.0, due - time.monotonic())):
            due = time.monotonic() + interval  # at most one update per interval
            with self._lock:
                if not self._pending and time.monotonic() - self._last_push > IDLE_EXIT_S:
                    if self._worker is not None and self._worker.halt is halt:
                        self._worker = None
                    log.debug("live session worker idle for %.0f s: exiting", IDLE_EXIT_S)
                    return
            try:
                self._update(final=False)
            except Exception as exc:  # noqa: BLE001 - the worker must survive to show the error
                log.exception("live recognition update failed")
                with self._lock:
                    self._error = f"live recognition failed: {type(exc).__name__}: {exc}"

    def _update(self, final: bool) -> None:
        with self._work_lock:
            with self._lock:
                chunks = list(self._pending)
                self._pending.clear()
                self._pending_s = 0.0
                generation = self._generation
            if generation != self._stream_generation:
                self._resampler = None
                self._segmenter = Segmenter(self.settings.pause_s, self.settings.max_segment_s,
                                            frame_detector(self.engine))
                self._partial_serial = -1
                self._stream_generation = generation
                self._kept_room = int(self.keep_audio_s * TARGET_RATE)  # a new timeline
                with self._lock:
                    self._kept = []
            utterances = (self._segmenter.feed(self._keep(self._to_16k(chunks, final)))
                          if chunks or final else [])
            if final:
                tail = self._segmenter.flush()
                if tail is not None:
                    utterances.append(tail)
            for utterance in utterances:
                text, latency, error = self._recognize(utterance.samples)
                if not self._finalise(generation, utterance, text, latency, error):
                    return
                self._partial_serial = -1  # the partial text went with it; recognise the rest anew
            if final or not self._segmenter.has_speech:
                return
            if self._segmenter.speech_serial == self._partial_serial:
                return  # nothing new said since the last partial: its text still stands
            self._partial_serial = self._segmenter.speech_serial
            text, latency, error = self._recognize(self._segmenter.current().samples)
            with self._lock:
                if generation == self._generation:
                    self._count(latency, error)
                    self._partial_text = text

    def _to_16k(self, chunks: list[tuple[int, np.ndarray, float]], final: bool) -> np.ndarray:
        pieces: list[np.ndarray] = []
        runs: list[tuple[int, list[np.ndarray]]] = []  # consecutive chunks at one rate, joined
        for rate, chunk, _ in chunks:
            mono = to_mono_16k(chunk, TARGET_RATE)  # rate=TARGET_RATE: scale and downmix only
            if runs and runs[-1][0] == rate:
                runs[-1][1].append(mono)
            else:
                runs.append((rate, [mono]))
        for rate, monos in runs:
            mono = np.concatenate(monos) if len(monos) > 1 else monos[0]
            if rate == TARGET_RATE:
                if self._resampler is not None:
                    pieces.append(self._resampler.flush())
                    self._resampler = None
                pieces.append(mono)
                continue
            if self._resampler is None or self._resampler.rate != rate:
                if self._resampler is not None:
                    pieces.append(self._resampled(self._resampler.flush))
                self._resampler = StreamResampler(rate, TARGET_RATE)
            pieces.append(self._resampled(self._resampler.feed, mono))
        if final and self._resampler is not None:
            pieces.append(self._resampled(self._resampler.flush))
            self._resampler = None
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    @staticmethod
    def _resampled(step, *args) -> np.ndarray:
        with thread_count(1):  # beside the model: see asr/system/threads.py
            return step(*args)

    def _keep(self, samples: np.ndarray) -> np.ndarray:
        if self._kept_room > 0 and samples.size:
            with self._lock:
                self._kept.append(samples[:self._kept_room].copy())
                self._kept_room -= len(self._kept[-1])
        return samples

    def _recognize(self, samples: np.ndarray) -> tuple[str, float, str | None]:
        """(text, seconds taken, error); audio too short to recognise is silently empty."""
        if len(samples) < self.engine.settings.input.min_duration_s * TARGET_RATE:
            return "", 0.0, None
        started = time.perf_counter()
        try:
            result = self.engine.transcribe([(samples, TARGET_RATE)], batch_size=1,
                                            hotwords=self._hotwords, quiet=True)[0]
        except Exception as exc:  # noqa: BLE001 - shown to the user; the stream goes on
            log.exception("live recognition failed")
            return "", time.perf_counter() - started, f"live recognition failed: {exc}"
        latency = time.perf_counter() - started
        if not result.ok:
            return "", latency, f"live recognition failed: {result.error}"
        return result.text, latency, None

    def _count(self, latency: float, error: str | None) -> None:
        """Book one recognition (caller holds _lock)."""
        self._updates += 1
        self._last_latency_s = latency
        if error:
            self._error = error

    def _finalise(self, generation: int, utterance: Utterance, text: str, latency: float,
                  error: str | None) -> bool:
        with self._lock:
            if generation != self._generation:
                return False  # cleared while this was being recognised
            self._count(latency, error)
            self._partial_text = ""
            if text:
                self._segments.append(text)
                self._spans.append((utterance.start / TARGET_RATE, utterance.end / TARGET_RATE))
                self._final_text = join_text(self._final_text, text)
            number = len(self._segments)
        log.info("live segment %d finalised at %s: %.2f-%.2f s, %d characters, recognised in %.3f s",
                 number, utterance.reason, utterance.start / TARGET_RATE,
                 utterance.end / TARGET_RATE, len(text), latency)
        return True


class LiveTranscript:
    """Every take recorded on one page, in order: Record again adds a take instead of replacing the
    text, and the downloads hold all of them.

    Times of later takes continue where the earlier takes' audio ended, as if the takes had been
    recorded as one file; each take's text is its own paragraph.
    """

    def __init__(self) -> None:
        self.takes: list[LiveSnapshot] = []

    def add(self, take: LiveSnapshot) -> None:
        if take.text or take.segments:
            self.takes.append(take)

    def clear(self) -> None:
        self.takes.clear()

    def text(self, current: LiveSnapshot | None = None) -> str:
        """The finished takes' text, one paragraph each, then the take being recorded."""
        parts = [take.text for take in self.takes]
        if current is not None and current.text:
            parts.append(current.text)
        return "\n".join(part for part in parts if part)

    def result(self) -> Result:
        """The finished takes as one result, for the same txt/srt writers as any transcript."""
        segments: list[Segment] = []
        offset = 0.0
        for take in self.takes:
            for text, (start, end) in zip(take.segments, take.spans, strict=True):
                segments.append(Segment(offset + start, offset + end, text))
            offset += take.audio_s
        return Result(file="live", text=self.text(), duration_s=offset, segments=segments)
