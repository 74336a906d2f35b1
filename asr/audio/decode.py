"""Decode any audio input to 16 kHz mono float32, with errors a user can act on.

soundfile (libsndfile) handles wav/flac/ogg/opus/mp3 without system libraries; PyAV, which ships
its own FFmpeg, handles m4a/aac/mp4/webm and the audio track of video files. torchaudio's loader
is avoided because in 2.11 it needs torchcodec plus system FFmpeg.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
import torchaudio.functional

TARGET_RATE = 16000
AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".webm", ".mkv", ".mov",
    ".wma", ".amr",
)


class AudioError(ValueError):
    """The input cannot be turned into audio; the message says why in plain words."""


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
    array = np.asarray(samples)
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        array = array.astype(np.float32) / float(max(abs(info.min), info.max))
    array = array.astype(np.float32, copy=False)
    if array.ndim == 2:
        # (frames, channels) from soundfile and Gradio; (channels, frames) from some callers.
        channels_first = array.shape[1] > 8 and array.shape[0] <= 8
        array = array.mean(axis=0 if channels_first else 1) if array.size else array.reshape(-1)
    elif array.ndim != 1:
        raise AudioError(f"audio array must be 1-D or 2-D, got shape {array.shape}")
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    if rate != TARGET_RATE and array.size:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        array = torchaudio.functional.resample(tensor, rate, TARGET_RATE).numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


def _decode_soundfile(data: bytes) -> tuple[np.ndarray, int, int] | None:
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return None
    return samples, int(rate), samples.shape[1]


def _decode_pyav(data: bytes) -> tuple[np.ndarray, int, int]:
    """Returns samples already at 16 kHz mono, the source rate and the source channel count."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio track")
            stream = container.streams.audio[0]
            channels = stream.codec_context.channels or 1
            source_rate = stream.codec_context.sample_rate or TARGET_RATE
            resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        detail = getattr(exc, "strerror", None) or type(exc).__name__
        raise AudioError(
            f"not a readable audio file: the contents are not a known audio format or are corrupt "
            f"({detail})"
        ) from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return samples[:, None], int(source_rate), int(channels)


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def decode_bytes(data: bytes, name: str) -> DecodedAudio:
    if not data:
        raise AudioError("the file is empty (0 bytes)")
    decoded = _decode_soundfile(data)
    if decoded is not None:
        samples, rate, channels = decoded
        mono = to_mono_16k(samples, rate)
    else:
        samples, rate, channels = _decode_pyav(data)
        mono = to_mono_16k(samples, TARGET_RATE)
    return DecodedAudio(name, mono, rate, channels, md5_of(data))


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


def decode_samples(samples: np.ndarray, rate: int, name: str) -> DecodedAudio:
    array = np.asarray(samples)
    channels = 1 if array.ndim == 1 else min(array.shape)
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
