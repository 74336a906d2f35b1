"""Decode any audio input to 16 kHz mono float32, within the input limits, with errors a user can act on.

soundfile (libsndfile) handles wav/flac/ogg/opus/mp3 without system libraries; PyAV, which ships
its own FFmpeg, handles m4a/aac/mp4/webm and the audio track of video files. torchaudio's loader
is avoided because in 2.11 it needs torchcodec plus system FFmpeg.

What one input may cost is bounded before and while it decodes, not after:

- the header's channel count, sample rate and length are checked first (`DecodeLimits`, from
  `input.max_channels`, `input.max_sample_rate_hz` and `input.max_duration_s`);
- the audio is decoded a block at a time, and each block is downmixed and resampled
  (asr.audio.resample, whose cost does not depend on how odd the rate is) before the next is
  read, so a few MB of compressed silence with many channels never exists decoded in full;
- decoding stops as soon as the audio passes the length limit, since a header can lie, and each
  block's channels and rate are checked again for the same reason.

FFmpeg's demuxers include some that open further files or URLs named inside the input (HLS
playlists, concat lists; a concat list naming a relative path reads that file from the working
folder: tests/test_decode_limits.py shows it). Uploads are therefore opened only with the
container formats in `CONTAINER_FORMATS`, with no protocol allowed for any nested open and an
`io_open` that refuses every one, and always from bytes or an open file object, never by name.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import soundfile

from asr.audio.resample import StreamResampler, resample

log = logging.getLogger(__name__)

TARGET_RATE = 16000
AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".webm", ".mkv", ".mov",
    ".wma", ".amr",
)
# FFmpeg demuxers an input may be read with: those of the formats above (mov covers mp4/m4a,
# matroska covers webm/mkv, asf covers wma) and a few plain audio containers. None of them opens
# another file; HLS, DASH, concat, image sequences and devices are not among them.
CONTAINER_FORMATS = ("wav", "w64", "flac", "ogg", "mp3", "aac", "mov", "mp4", "m4a", "matroska",
                     "webm", "asf", "amr", "amrnb", "amrwb", "aiff", "caf")
_CONTAINER_OPTIONS = {
    "format_whitelist": ",".join(CONTAINER_FORMATS),
    # No protocol at all for anything a demuxer opens by name (the input itself is custom I/O).
    "protocol_whitelist": "none",
    "protocol_blacklist": "file,http,https,tcp,udp,rtp,rtmp,tls,ftp,pipe,fd,data,subfile,concat,crypto",
}
BLOCK_FRAMES = 1 << 16  # source frames soundfile decodes per step
# Mono frames gathered before they are resampled: FFmpeg hands over codec frames of a thousand or
# so samples, and resampling each alone costs more in calls than in arithmetic.
RESAMPLE_FRAMES = 1 << 15
_UNKNOWN_FRAMES = 1 << 62  # libsndfile reports an unknown length as 2**63 - 1
DECLARED_SLACK_S = 1.0  # a header may count encoder padding: refuse on it only past this much


class AudioError(ValueError):
    """The input cannot be turned into audio; the message says why in plain words."""


@dataclass(frozen=True)
class DecodeLimits:
    """What one input may hold; the `input.*` settings of the same names."""

    max_duration_s: float = 3600.0
    max_channels: int = 8
    max_sample_rate_hz: int = 384000

    @classmethod
    def from_settings(cls, input_settings: Any) -> DecodeLimits:
        """From `settings.input` (an InputSettings)."""
        return cls(float(input_settings.max_duration_s), int(input_settings.max_channels),
                   int(input_settings.max_sample_rate_hz))


@dataclass
class DecodedAudio:
    name: str
    samples: np.ndarray  # float32, mono, TARGET_RATE
    source_rate: int
    channels: int
    md5: str | None  # of the file's bytes; None for in-memory samples

    @property
    def duration_s(self) -> float:
        return len(self.samples) / TARGET_RATE


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Average channels (last axis when 2-D) and resample to 16 kHz, as float32 in [-1, 1]."""
    array = _as_float(np.asarray(samples))
    if array.ndim == 2:
        # (frames, channels) from soundfile and Gradio; (channels, frames) from some callers.
        channels_first = array.shape[1] > 8 and array.shape[0] <= 8
        if not array.size:
            array = array.reshape(-1)
        else:
            array = _downmix(array.T if channels_first else array)
    elif array.ndim != 1:
        raise AudioError(f"audio array must be 1-D or 2-D, got shape {array.shape}")
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    if rate != TARGET_RATE and array.size:
        array = resample(array, int(rate), TARGET_RATE)
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_float(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "u":  # unsigned PCM (8-bit WAV): silence sits at the midpoint
        info = np.iinfo(array.dtype)
        middle = (int(info.max) + 1) // 2
        return ((array.astype(np.float32) - middle) / middle).astype(np.float32)
    if array.dtype.kind == "i":
        info = np.iinfo(array.dtype)
        return array.astype(np.float32) / float(max(abs(info.min), info.max))
    return array.astype(np.float32, copy=False)


# ---- the limits --------------------------------------------------------------------------------


def _too_long(seconds: float, limits: DecodeLimits, declared: bool = False) -> AudioError:
    how = f"its header declares {seconds:.0f} s" if declared else f"decoding stopped after {seconds:.1f} s"
    return AudioError(f"the audio is too long ({how}; the limit input.max_duration_s is "
                      f"{limits.max_duration_s:g} s)")


def check_format(rate: int, channels: int, limits: DecodeLimits) -> None:
    """Refuse a sample rate or channel count past `limits` (also for a stream's chunks)."""
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    if rate > limits.max_sample_rate_hz:
        raise AudioError(f"the sample rate {rate} Hz is above the limit input.max_sample_rate_hz "
                         f"({limits.max_sample_rate_hz} Hz)")
    if channels < 1:
        raise AudioError("the audio has no channels")
    if channels > limits.max_channels:
        raise AudioError(f"the audio has {channels} channels; the limit input.max_channels is "
                         f"{limits.max_channels}")


def _check_declared(seconds: float | None, limits: DecodeLimits) -> None:
    if seconds is not None and math.isfinite(seconds) and seconds > limits.max_duration_s + DECLARED_SLACK_S:
        raise _too_long(seconds, limits, declared=True)


class _MonoSink:
    """Takes decoded blocks (frames, channels) at their rate; keeps them as 16 kHz mono. Raises
    as soon as a block breaks a limit, so nothing past the limit is ever held."""

    def __init__(self, limits: DecodeLimits, expected_s: float | None):
        self.limits = limits
        self.resampler: StreamResampler | None = None
        self.rate = 0
        self.channels = 0
        self._pending: list[np.ndarray] = []  # mono at self.rate, not yet resampled
        self._pending_frames = 0
        guess = expected_s if expected_s and math.isfinite(expected_s) else 60.0
        capacity = int(min(guess, limits.max_duration_s) * TARGET_RATE) + TARGET_RATE
        self._out = np.empty(capacity, dtype=np.float32)
        self._size = 0
        self._limit = int(limits.max_duration_s * TARGET_RATE)

    def add(self, block: np.ndarray, rate: int) -> None:
        frames, channels = block.shape
        check_format(rate, channels, self.limits)
        self.channels = max(self.channels, channels)
        if not frames:
            return
        mono = block[:, 0] if channels == 1 else _downmix(block)
        if rate != self.rate:  # the first block, or a stream that changes rate midway
            self._drain()
            self.rate = rate
            self.resampler = None if rate == TARGET_RATE else StreamResampler(rate, TARGET_RATE)
        self._pending.append(mono)
        self._pending_frames += frames
        if self._pending_frames >= RESAMPLE_FRAMES:
            self._feed()

    def finish(self) -> np.ndarray:
        self._drain()
        out = self._out[:self._size]
        return out.copy() if self._size < 0.9 * len(self._out) else out

    def _feed(self) -> None:
        if not self._pending:
            return
        mono = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_frames = [], 0
        self._append(mono if self.resampler is None else self.resampler.feed(mono))

    def _drain(self) -> None:
        self._feed()
        if self.resampler is not None:
            self._append(self.resampler.flush())
            self.resampler = None

    def _append(self, samples: np.ndarray) -> None:
        end = self._size + len(samples)
        if end > self._limit:
            raise _too_long(end / TARGET_RATE, self.limits)
        if end > len(self._out):
            grown = np.empty(min(max(end, 2 * len(self._out)), self._limit + TARGET_RATE), dtype=np.float32)
            grown[:self._size] = self._out[:self._size]
            self._out = grown
        self._out[self._size:end] = samples
        self._size = end


def _downmix(block: np.ndarray) -> np.ndarray:
    """The channels' average, a column at a time (numpy's mean over a row of two is several
    times slower on a long block)."""
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    mono *= np.float32(1.0 / block.shape[1])
    return mono


# ---- soundfile -----------------------------------------------------------------------------------


def _decode_soundfile(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, int, int] | None:
    """(16 kHz mono, source rate, channels), or None when libsndfile cannot read the bytes."""
    try:
        handle = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    with handle:
        rate, channels = int(handle.samplerate), int(handle.channels)
        check_format(rate, channels, limits)
        declared = handle.frames / rate if 0 < handle.frames < _UNKNOWN_FRAMES else None
        _check_declared(declared, limits)
        sink = _MonoSink(limits, declared)
        try:
            while True:
                block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                sink.add(block, rate)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            log.debug("libsndfile failed midway (%s); trying FFmpeg", exc)
            return None
        return sink.finish(), rate, channels


# ---- PyAV (FFmpeg) -------------------------------------------------------------------------------


def _refuse_nested_open(url: str, flags: int, options: dict) -> BinaryIO:
    raise PermissionError(f"an input may not open other files or URLs ({url!r})")


def open_container(source: BinaryIO):
    """An FFmpeg demuxer over `source` (bytes in a file object), restricted to CONTAINER_FORMATS
    and unable to open anything else. Raises FFmpeg's errors (see _pyav_error)."""
    container = av.open(source, mode="r", container_options=dict(_CONTAINER_OPTIONS),
                        io_open=_refuse_nested_open)
    names = set(container.format.name.split(","))
    if not names & set(CONTAINER_FORMATS):  # never expected: FFmpeg enforces the whitelist
        container.close()
        raise AudioError(f"the container format {container.format.name} is not accepted")
    return container


def _pyav_error(exc: BaseException) -> AudioError:
    detail = getattr(exc, "strerror", None) or type(exc).__name__
    return AudioError("not a readable audio file: the contents are not a known audio format or are "
                      f"corrupt ({detail})")


def _frames(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 (frames, channels), whatever its sample format."""
    array = frame.to_ndarray()
    channels = len(frame.layout.channels) or 1
    if frame.format.is_planar:
        block = array.T
    else:
        block = array.reshape(-1, channels)
    return np.ascontiguousarray(_as_float(block), dtype=np.float32)


def _decode_pyav(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, int, int]:
    try:
        with open_container(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio track")
            stream = container.streams.audio[0]
            context = stream.codec_context
            source_rate = int(context.sample_rate or 0)
            channels = int(context.channels or 0)
            if source_rate or channels:
                check_format(source_rate or TARGET_RATE, channels or 1, limits)
            declared = _declared_seconds(container, stream)
            _check_declared(declared, limits)
            sink = _MonoSink(limits, declared)
            for frame in container.decode(stream):
                sink.add(_frames(frame), int(frame.sample_rate or source_rate))
            samples = sink.finish()
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise _pyav_error(exc) from None
    return samples, source_rate or sink.rate, channels or sink.channels


def _declared_seconds(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


# ---- public API ----------------------------------------------------------------------------------


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def decode_bytes(data: bytes, name: str, limits: DecodeLimits | None = None) -> DecodedAudio:
    """A file's bytes as 16 kHz mono; AudioError when unreadable or past `limits` (default:
    DecodeLimits(), the settings' defaults)."""
    limits = limits or DecodeLimits()
    if not data:
        raise AudioError("the file is empty (0 bytes)")
    decoded = _decode_soundfile(data, limits)
    samples, rate, channels = decoded if decoded is not None else _decode_pyav(data, limits)
    return DecodedAudio(name, samples, rate, channels, md5_of(data))


def read_file(path: str | Path) -> bytes:
    file = Path(path)
    if not file.exists():
        raise AudioError(f"file not found: {file}")
    if file.is_dir():
        raise AudioError(f"{file} is a folder, not an audio file")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read {file}: {exc.strerror or exc}") from None


def probe_seconds(path: str | Path) -> float | None:
    """A file's length from its header, without decoding it, or None when unknown or unreadable.

    For sorting and estimates only (decoding gives the truth); opened as decode_bytes opens
    bytes, so probing an HLS playlist or concat list named like audio reads nothing it names."""
    try:
        info = soundfile.info(str(path))
        if 0 < info.frames < _UNKNOWN_FRAMES and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - not a libsndfile format: ask FFmpeg
        pass
    try:
        with open(path, "rb") as handle, open_container(handle) as container:
            if not container.streams.audio:
                return None
            return _declared_seconds(container, container.streams.audio[0])
    except Exception:  # noqa: BLE001 - corrupt or not accepted: decoding reports it properly later
        return None


def decode_samples(samples: np.ndarray, rate: int, name: str,
                   limits: DecodeLimits | None = None) -> DecodedAudio:
    """In-memory samples (a microphone's) as 16 kHz mono; refused before resampling when they
    break `limits` (default: DecodeLimits())."""
    limits = limits or DecodeLimits()
    array = np.asarray(samples)
    channels = 1 if array.ndim == 1 else min(array.shape)
    if array.size:
        check_format(int(rate), channels, limits)
        frames = array.shape[0] if array.ndim == 1 else max(array.shape)
        if frames / rate > limits.max_duration_s:
            raise AudioError(f"the audio is too long ({frames / rate:.0f} s; the limit "
                             f"input.max_duration_s is {limits.max_duration_s:.0f} s)")
    return DecodedAudio(name, to_mono_16k(array, rate), rate, channels, None)


def check_duration_s(duration_s: float, min_s: float, max_s: float) -> None:
    if duration_s <= 0:
        raise AudioError("the audio has no samples (zero length)")
    if duration_s < min_s:
        raise AudioError(f"the audio is too short ({duration_s:.3f} s; minimum {min_s} s)")
    if duration_s > max_s:
        raise AudioError(
            f"the audio is too long ({duration_s:.0f} s; the limit input.max_duration_s "
            f"is {max_s:.0f} s)"
        )


def check_duration(audio: DecodedAudio, min_s: float, max_s: float) -> None:
    """Reject inputs the model cannot usefully handle, before they cost any model time."""
    check_duration_s(audio.duration_s, min_s, max_s)
    if not np.isfinite(audio.samples).all():
        raise AudioError("the audio holds NaN or infinite samples")

