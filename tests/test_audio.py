"""Decoding every promised format, channel layout and rate to 16 kHz mono, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from audio_factory import FORMATS, write_audio
from helpers import speechlike

from asr.audio.decode import TARGET_RATE, AudioError, check_duration, decode_bytes, decode_samples, read_file


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_format_decodes_to_16k_mono(tmp_path, ext):
    source = speechlike(2.5, seed=3, rate=44100)
    stereo = np.stack([source, 0.5 * source], axis=1)
    path = write_audio(tmp_path / f"clip.{ext}", stereo, 44100)
    decoded = decode_bytes(read_file(path), path.name)
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.ndim == 1
    assert decoded.channels == 2
    # Lossy codecs add encoder delay/padding of a few tens of milliseconds at most.
    assert decoded.duration_s == pytest.approx(2.5, abs=0.08)
    assert 0.01 < float(np.abs(decoded.samples).max()) <= 1.0


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_in_memory_samples_are_resampled_and_downmixed(rate):
    samples = (speechlike(1.0, seed=1, rate=rate) * 32767).astype(np.int16)
    stereo = np.stack([samples, samples], axis=1)
    decoded = decode_samples(stereo, rate, "mic")
    assert decoded.samples.shape == (TARGET_RATE,)
    assert np.abs(decoded.samples).max() <= 1.0


def test_wav_at_16k_is_bit_exact(tmp_path):
    samples = speechlike(1.0, seed=2)
    path = write_audio(tmp_path / "a.wav", samples, TARGET_RATE)
    decoded = decode_bytes(read_file(path), "a.wav")
    expected = np.round(samples * 32767) / 32768  # PCM_16 quantisation, soundfile's scaling
    np.testing.assert_allclose(decoded.samples, expected, atol=1 / 32768)


def test_errors_are_specific(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        read_file(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        decode_bytes(read_file(tmp_path / "empty.wav"), "empty.wav")
    with pytest.raises(AudioError, match="not a readable audio file"):
        decode_bytes(b"this is a text file, not audio" * 10, "notes.wav")
    with pytest.raises(AudioError, match="folder"):
        read_file(tmp_path)


def test_truncated_file_is_refused_or_shortened(tmp_path):
    path = write_audio(tmp_path / "full.mp3", speechlike(3.0, seed=4), TARGET_RATE)
    data = path.read_bytes()[:200]
    with pytest.raises(AudioError):
        decoded = decode_bytes(data, "cut.mp3")
        check_duration(decoded, 0.05, 3600)


def test_duration_limits():
    short = decode_samples(np.zeros(10, dtype=np.float32), TARGET_RATE, "short")
    with pytest.raises(AudioError, match="too short"):
        check_duration(short, 0.05, 10)
    empty = decode_samples(np.zeros(0, dtype=np.float32), TARGET_RATE, "empty")
    with pytest.raises(AudioError, match="zero length"):
        check_duration(empty, 0.05, 10)
    long = decode_samples(np.zeros(TARGET_RATE * 3, dtype=np.float32), TARGET_RATE, "long")
    with pytest.raises(AudioError, match="too long"):
        check_duration(long, 0.05, 2)
