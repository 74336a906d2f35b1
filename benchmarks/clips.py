"""The benchmark's audio: a deterministic synthetic clip set, or the user's own files.

Every variant must read the very same files, so both kinds end up as 16 kHz mono 16-bit wav in
the project's cache (.cache/bench/): synthetic clips are written once and reused; real files are
decoded once with the engine's own decoder (any format it reads) and stored as wav, because
FunASR's loaders and funasr_onnx read wav but not m4a/webm.

The synthetic clips are not noise: they are built from syllables with a voiced source (a pitch
contour shaped like Mandarin tones, harmonics up to 4 kHz filtered by vowel formants),
consonant-like noise bursts, pauses between phrases and a faint noise floor, at a speech-like
level (about -22 dBFS while speaking). The model's text on them is meaningless, but its frame
counts, token counts and costs behave as on speech.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

log = logging.getLogger(__name__)

RATE = 16000
CLIP_VERSION = 1  # bump when the synthesis changes, so old cached clips are not reused
SHORT_RANGE_S = (3.0, 60.0)
LONG_RANGE_S = (60.0, 300.0)
DEFAULT_COUNT = 12
DEFAULT_LONG_COUNT = 20

# First three formants (Hz) of a few Mandarin vowels, roughly as spoken by an adult.
_VOWELS = (
    (800, 1200, 2500),  # a
    (300, 2300, 3000),  # i
    (350, 700, 2400),  # u
    (500, 1900, 2500),  # e
    (500, 900, 2400),  # o
    (300, 1900, 2400),  # ü
)
# Relative pitch over a syllable for the four tones and the neutral tone.
_TONES = (
    lambda x: 1.15 + 0 * x,
    lambda x: 0.95 + 0.3 * x,
    lambda x: 1.0 - 0.25 * np.sin(np.pi * x) + 0.1 * x,
    lambda x: 1.3 - 0.45 * x,
    lambda x: 0.95 + 0 * x,
)


@dataclass
class Clip:
    path: Path
    duration_s: float

    @property
    def name(self) -> str:
        return self.path.name

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        data["duration_s"] = round(self.duration_s, 3)
        return data


def clip_lengths(count: int, long: bool = False, seconds: tuple[float, float] | None = None) -> list[float]:
    """`count` lengths spread geometrically over the range, in a fixed shuffled order.

    Shuffled so that a variant that batches files in the order given (FunASR does) meets mixed
    lengths, as it would with a user's folder. `seconds` overrides the range (quick runs, tests).
    """
    if count < 1:
        raise ValueError("the clip set needs at least one file")
    low, high = seconds or (LONG_RANGE_S if long else SHORT_RANGE_S)
    if not 0.5 <= low <= high:
        raise ValueError(f"clip lengths must satisfy 0.5 <= shortest <= longest, got {low}-{high} s")
    if count == 1:
        return [round((low * high) ** 0.5, 1)]
    lengths = [round(low * (high / low) ** (i / (count - 1)), 1) for i in range(count)]
    order = np.random.default_rng(1234 + count).permutation(count)
    return [lengths[i] for i in order]


def _shaped_noise(rng: np.random.Generator, n: int, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-9)


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if attack:
        env[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack))
    if release:
        env[n - release:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, release))
    return env


def _vowel(rng: np.random.Generator, n: int, speaker_f0: float) -> np.ndarray:
    x = np.linspace(0.0, 1.0, n)
    f0 = speaker_f0 * _TONES[rng.integers(len(_TONES))](x) * (1 + 0.01 * rng.normal(size=n).cumsum()
                                                             / np.sqrt(np.arange(1, n + 1)))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    formants = np.array(_VOWELS[rng.integers(len(_VOWELS))], dtype=float)
    formants *= rng.uniform(0.92, 1.08, 3)
    widths = np.array([90.0, 120.0, 180.0])
    gains = np.array([1.0, 0.6, 0.3])
    harmonics = np.arange(1, int(4000 / f0.min()) + 1)[:, None]
    freq = harmonics * f0[None, :]
    amp = sum(g / (1 + ((freq - f) / w) ** 2) for f, w, g in zip(formants, widths, gains, strict=True))
    amp = amp / np.sqrt(harmonics) * (freq < 4000)  # spectral tilt, nothing above 4 kHz
    voiced = (amp * np.sin(harmonics * phase[None, :])).sum(axis=0)
    voiced += 0.03 * rng.normal(size=n) * np.abs(voiced).max()  # breathiness
    return voiced / (np.sqrt(np.mean(voiced**2)) + 1e-9)


def synthesize(seconds: float, seed: int) -> np.ndarray:
    """Deterministic speech-like float32 audio at 16 kHz (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    out = np.zeros(n)
    speaker_f0 = rng.uniform(95, 230)
    pos = int(rng.uniform(0.1, 0.4) * RATE)
    while pos < n - int(0.2 * RATE):
        for _ in range(int(rng.integers(3, 13))):  # one phrase
            parts = []
            if rng.random() < 0.7:  # initial consonant: a fricative hiss or a short burst
                if rng.random() < 0.5:
                    length = int(rng.uniform(0.04, 0.09) * RATE)
                    parts.append(0.35 * _shaped_noise(rng, length, 2500, 7500) * _envelope(length, 80, 160))
                else:
                    length = int(rng.uniform(0.01, 0.025) * RATE)
                    parts.append(0.6 * _shaped_noise(rng, length, 300, 6000) * _envelope(length, 16, 80))
            length = int(rng.uniform(0.11, 0.28) * RATE)
            loudness = rng.uniform(0.6, 1.0)
            parts.append(_vowel(rng, length, speaker_f0) * _envelope(length, 240, 640) * loudness)
            syllable = np.concatenate(parts)
            end = min(n, pos + len(syllable))
            out[pos:end] += syllable[: end - pos]
            pos = end + int(rng.uniform(0.0, 0.05) * RATE)
            if pos >= n:
                break
        pos += int(rng.uniform(0.15, 0.7) * RATE)  # pause between phrases
    active = np.abs(out) > 1e-6
    rms = np.sqrt(np.mean(out[active] ** 2)) if active.any() else 1.0
    out *= 0.08 / rms  # about -22 dBFS while speaking
    out += 0.0015 * _shaped_noise(rng, n, 50, 7000)  # room noise floor, about -56 dBFS
    peak = np.abs(out).max()
    if peak > 0.95:
        out *= 0.95 / peak
    return out.astype(np.float32)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """Write atomically: a half-written clip must never be mistaken for a cached one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        soundfile.write(staging, samples, RATE, subtype="PCM_16")
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _readable_clip(path: Path, frames: int) -> bool:
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError):
        return False
    return info.samplerate == RATE and info.channels == 1 and info.frames == frames


def ensure_clips(cache_root: Path, count: int | None = None, long: bool = False,
                 seconds: tuple[float, float] | None = None) -> list[Clip]:
    """The synthetic set for (count, long, seconds), written once under cache_root/clips, then reused."""
    count = count or (DEFAULT_LONG_COUNT if long else DEFAULT_COUNT)
    kind = f"{seconds[0]:g}-{seconds[1]:g}s" if seconds else ("long" if long else "short")
    folder = cache_root / "clips" / f"{kind}-{count}-v{CLIP_VERSION}"
    clips = []
    for index, length in enumerate(clip_lengths(count, long, seconds)):
        path = folder / f"clip{index + 1:02d}-{length:05.1f}s.wav"
        frames = int(round(length * RATE))
        if not _readable_clip(path, frames):
            log.info("synthesising %s (%.1f s)", path.name, length)
            _write_wav(path, synthesize(length, seed=1000 * CLIP_VERSION + index))
        clips.append(Clip(path, frames / RATE))
    return clips


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; folders contribute their audio files (sorted, not recursive)."""
    from asr.audio.decode import AUDIO_EXTENSIONS

    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {raw}")
    if not found:
        raise FileNotFoundError("the given paths hold no audio files")
    return found


def prepare_real_files(paths: list[str], cache_root: Path) -> list[Clip]:
    """Decode the user's files once (engine decoder) into cached 16 kHz wav copies."""
    from asr.audio import decode as audio_io

    clips = []
    folder = cache_root / "inputs"
    for source in expand_inputs(paths):
        data = audio_io.read_file(source)
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()[:12]
        target = folder / f"{source.stem[:40]}-{digest}.wav"
        decoded = audio_io.decode_bytes(data, source.name)
        frames = len(decoded.samples)
        if not _readable_clip(target, frames):
            _write_wav(target, decoded.samples)
        clips.append(Clip(target, frames / RATE))
    return clips


def describe(clips: list[Clip]) -> dict:
    total = sum(c.duration_s for c in clips)
    return {"count": len(clips), "audio_s": round(total, 3),
            "shortest_s": round(min(c.duration_s for c in clips), 3),
            "longest_s": round(max(c.duration_s for c in clips), 3),
            "files": [c.to_dict() for c in clips]}

