"""Speech regions: where a recording holds speech, and how those regions become model segments.

The model should hear speech, not silence: silence costs as much model time as speech and gives
it room to hallucinate. So each recording goes through a voice-activity detector first (the
`vad` setting), and only its speech regions reach the model:

- `silero` (default): Silero VAD, whose model ships inside its PyPI wheel (MIT), so it works
  offline. Its own loop calls the model once per 32 ms window; this runs the same modules over
  all windows at once and the LSTM over the whole sequence in one call, with the same
  probabilities to ~1e-6 (tested) for a fraction of the time, then hands them to Silero's own
  `get_speech_timestamps_from_probs`. It runs on one thread: its ops are too small to gain from
  two (figures in docs/benchmarks.md).
- `fsmn`: FunASR's fsmn-vad (asr/speech/fsmn.py), for parity with FunASR's own pipeline.
- `energy`: the whole recording, cut at its quietest moments past `input.segment_s`.
- `off`: whole recordings, never cut (memory grows with the square of the length).

`plan_segments` then merges regions separated by short pauses (under `input.vad_merge_gap_s`)
up to `input.segment_s`, so a sentence is not chopped at every breath, and splits a region longer
than that at its longest pause.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.speech.segment import RATE, split_points
from asr.system.threads import thread_count

log = logging.getLogger(__name__)

METHODS = ("silero", "fsmn", "energy", "off")
SampleRange = tuple[int, int]  # [start, end) in samples at 16 kHz

_PAUSE_FRAME = RATE // 50  # 20 ms frames when looking for a pause inside a long region
_PAUSE_MARGIN_DB = 8.0  # a frame within this much of the window's quietest frame is part of a pause


class SpeechDetector:
    """What every VAD backend offers the engine."""

    name: str = ""
    fingerprint: str = ""  # changes whenever its regions could change (part of the cache key)

    def detect(self, samples: np.ndarray) -> list[SampleRange]:
        raise NotImplementedError


class WholeFile(SpeechDetector):
    """`energy` and `off`: the whole recording is one region; energy cuts it later if too long."""

    def __init__(self, name: str):
        self.name = name
        self.fingerprint = name

    def detect(self, samples: np.ndarray) -> list[SampleRange]:
        return [(0, len(samples))] if len(samples) else []


@dataclass(frozen=True)
class SileroOptions:
    """Silero's own knobs, at values that suit recognition: a little padding keeps word onsets,
    a 0.2 s minimum silence ignores the gaps between syllables."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 200
    speech_pad_ms: int = 100


class SileroVad(SpeechDetector):
    """Silero VAD over a whole recording in a few batched calls; thread-safe (no state kept)."""

    name = "silero"
    WINDOW = 512  # samples per decision at 16 kHz (Silero's fixed size)
    CONTEXT = 64  # samples of the previous window each decision also sees
    CHUNK_WINDOWS = 4096  # ~131 s of audio per batched call: bounds memory on hour-long input

    def __init__(self, options: SileroOptions = SileroOptions()):
        threads = torch.get_num_threads()
        try:
            # deliberate lazy import: importing silero_vad sets torch to 1 thread (restored below),
            # so it happens here, under that guard, and only when Silero is chosen
            from silero_vad import get_speech_timestamps_from_probs, load_silero_vad

            with warnings.catch_warnings():  # torch 2.11 deprecates torch.jit.load, which it uses
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
                jit = load_silero_vad()
        finally:
            torch.set_num_threads(threads)  # importing silero_vad sets torch to 1 thread
        self._net = jit._model  # the 16 kHz network: stft -> encoder -> LSTM cell -> decoder
        self._from_probs = get_speech_timestamps_from_probs
        cell = self._net.decoder.rnn
        self._lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1], batch_first=True)
        self._lstm.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
        self._lstm.eval()
        self.options = options
        self.fingerprint = f"silero/{options}"

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each 512-sample window, as Silero's per-window loop gives it."""
        count = -(-len(samples) // self.WINDOW)
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.zeros(self.CONTEXT + count * self.WINDOW, dtype=np.float32)
        padded[self.CONTEXT:self.CONTEXT + len(samples)] = samples
        audio = torch.from_numpy(padded)
        state = None
        out = []
        for first in range(0, count, self.CHUNK_WINDOWS):
            last = min(count, first + self.CHUNK_WINDOWS)
            probs, state = self.run_windows(audio[first * self.WINDOW:last * self.WINDOW + self.CONTEXT],
                                            state)
            out.append(probs)
        return np.concatenate(out)

    def run_windows(self, audio: torch.Tensor, state=None) -> tuple[np.ndarray, tuple]:
        """Probabilities of the whole windows in `audio` (CONTEXT samples of the previous window
        first), and the LSTM state to carry into the next call."""
        windows = audio.unfold(0, self.WINDOW + self.CONTEXT, self.WINDOW)
        with torch.inference_mode(), thread_count(1):
            feats = self._net.encoder(self._net.stft(windows)).squeeze(-1)  # (windows, 128)
            hidden, state = self._lstm(feats[None], state)
            probs = self._net.decoder.decoder(hidden[0].unsqueeze(-1))  # (windows, 1, 1)
        return probs.reshape(len(windows), -1).mean(dim=1).numpy(), state

    def stream(self) -> SileroStream:
        return SileroStream(self)

    def detect(self, samples: np.ndarray) -> list[SampleRange]:
        o = self.options
        stamps = self._from_probs(
            self.probabilities(samples).tolist(), sampling_rate=RATE, threshold=o.threshold,
            min_speech_duration_ms=o.min_speech_ms, min_silence_duration_ms=o.min_silence_ms,
            speech_pad_ms=o.speech_pad_ms, audio_length_samples=len(samples))
        return [(int(s["start"]), int(s["end"])) for s in stamps]


class SileroStream:
    """Silero on a live stream: whole windows in, one speech decision per window out.

    The LSTM state and the last CONTEXT samples carry over between calls, so a stream fed piece
    by piece gets the probabilities of the whole recording. Decisions use Silero's hysteresis:
    speech starts above `threshold` and ends below `threshold - 0.15`."""

    def __init__(self, vad: SileroVad):
        self.vad = vad
        self.frame = vad.WINDOW
        self._context = torch.zeros(vad.CONTEXT)
        self._state = None
        self._speaking = False

    def speech(self, frames: np.ndarray) -> list[bool]:
        """(count, WINDOW) samples -> is each window speech."""
        if len(frames) == 0:
            return []
        audio = torch.cat([self._context, torch.from_numpy(np.ascontiguousarray(frames).reshape(-1))])
        probs, self._state = self.vad.run_windows(audio, self._state)
        self._context = audio[-self.vad.CONTEXT:].clone()
        high, low = self.vad.options.threshold, self.vad.options.threshold - 0.15
        flags = []
        for prob in probs.tolist():
            self._speaking = prob >= high or (self._speaking and prob >= low)
            flags.append(self._speaking)
        return flags


_shared: dict[tuple[str, str], SpeechDetector] = {}
_shared_lock = threading.Lock()


def load_detector(method: str, model_spec: str = "", cache_dir: Path | None = None,
                  device: str = "cpu") -> SpeechDetector:
    """The detector for `method`, loaded once per process and shared (like the ASR model)."""
    if method not in METHODS:
        raise ValueError(f"vad must be one of {', '.join(METHODS)}, got {method!r}")
    key = (method, model_spec if method == "fsmn" else "")
    with _shared_lock:
        if key not in _shared:
            _shared[key] = _build(method, model_spec, cache_dir, device)
        return _shared[key]


def _build(method: str, model_spec: str, cache_dir: Path | None, device: str) -> SpeechDetector:
    if method == "silero":
        detector: SpeechDetector = SileroVad()
    elif method == "fsmn":
        from asr.speech.fsmn import load_fsmn_vad  # deliberate lazy import: FunASR only when chosen

        detector = load_fsmn_vad(model_spec, device, cache_dir or Path(".cache"))
    else:
        detector = WholeFile(method)
    log.info("voice activity detection: %s%s", method, f" ({model_spec})" if method == "fsmn" else "")
    return detector


def plan_segments(samples: np.ndarray, regions: list[SampleRange], method: str, max_s: float,
                  merge_gap_s: float) -> list[SampleRange]:
    """Model segments from speech regions: merged across short pauses, split when too long."""
    if method == "off":
        return [(0, len(samples))] if len(samples) else []
    if method == "energy":
        return split_points(samples, max_s) if len(samples) else []
    limit = int(max_s * RATE)
    gap = int(merge_gap_s * RATE)
    merged: list[SampleRange] = []
    for start, end in sorted(regions):
        start, end = max(0, start), min(len(samples), end)
        if end <= start:
            continue
        if merged and start - merged[-1][1] < gap and end - merged[-1][0] <= limit:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        elif merged and start < merged[-1][1]:  # overlapping regions that are too long together
            merged[-1] = (merged[-1][0], start)
            merged.append((start, end))
        else:
            merged.append((start, end))
    return [piece for region in merged for piece in _split_long(samples, region, limit)]


def _split_long(samples: np.ndarray, region: SampleRange, limit: int) -> list[SampleRange]:
    """Cut a region longer than `limit` at its longest pause, each piece at most `limit` long.

    The cut is looked for in the second half of the allowed span, so no piece comes out tiny;
    a pause is a run of 20 ms frames within _PAUSE_MARGIN_DB of the quietest frame there, and
    the cut goes in the middle of the longest run.
    """
    start, end = region
    pieces = []
    while end - start > limit:
        low, high = start + limit // 2, start + limit
        cut = _longest_pause_middle(samples[low:high], low)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _longest_pause_middle(window: np.ndarray, offset: int) -> int:
    frames = len(window) // _PAUSE_FRAME
    if frames < 1:
        return offset + len(window)
    energy = np.square(window[:frames * _PAUSE_FRAME].reshape(frames, -1)).mean(axis=1)
    level = 10 * np.log10(energy + 1e-10)
    quiet = level <= level.min() + _PAUSE_MARGIN_DB
    best_start, best_length, run_start = 0, 0, None
    for index, is_quiet in enumerate([*quiet, False]):
        if is_quiet and run_start is None:
            run_start = index
        elif not is_quiet and run_start is not None:
            if index - run_start > best_length:
                best_start, best_length = run_start, index - run_start
            run_start = None
    middle = best_start + best_length / 2
    return offset + int(middle * _PAUSE_FRAME)
