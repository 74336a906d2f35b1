"""The polyphase resampler: every rate from 8 to 384 kHz, coprime ones included, keeps a tone's
frequency and level and the signal's length, in memory that does not grow with how irreducible
the ratio is; streamed in pieces it equals the whole conversion, and it equals torchaudio's
where torchaudio can run at all."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio.functional
from peak_memory import peak_growth_mb

from asr.audio.resample import ResampleError, StreamResampler, output_length, polyphase_filter, resample

TARGET = 16000
# Rates sharing no factor with 16000 (or hardly any): torchaudio's kernel is 16000 x rate there.
COPRIME = [8001, 11025, 12347, 16001, 22051, 44101, 48001, 96001, 192001, 383999]
STANDARD = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000,
            176400, 192000, 352800, 384000]
EVERY_KHZ = list(range(8000, 384001, 1000))


def tone(rate: int, seconds: float, hz: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency, refined between FFT bins (Hann window, parabolic peak)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-20)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(samples)


@pytest.mark.parametrize("rates", [EVERY_KHZ, STANDARD + COPRIME], ids=["every-khz", "standard+coprime"])
def test_every_rate_keeps_length_frequency_and_level(rates):
    for rate in rates:
        signal = tone(rate, 0.3, 1000.0)
        out = resample(signal, rate, TARGET)
        assert len(out) == math.ceil(len(signal) * TARGET / rate), rate
        middle = out[len(out) // 6: -len(out) // 6]  # away from the zero-padded edges
        assert abs(dominant_hz(middle, TARGET) - 1000.0) < 1.0, rate
        rms = float(np.sqrt(np.mean(middle ** 2)))
        assert rms == pytest.approx(0.5 / math.sqrt(2), rel=0.02), rate


def test_content_above_the_new_nyquist_is_removed():
    """Downsampling must filter: a 6 kHz tone survives at 16 kHz, an 11 kHz one must not fold
    back to 5 kHz."""
    for rate in (44100, 48001, 383999):
        kept = resample(tone(rate, 0.3, 6000.0), rate, TARGET)[800:-800]
        folded = resample(tone(rate, 0.3, 11000.0), rate, TARGET)[800:-800]
        assert np.sqrt(np.mean(kept ** 2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.03), rate
        assert np.sqrt(np.mean(folded ** 2)) < 0.01, rate


def test_memory_does_not_grow_with_an_irreducible_ratio():
    """Half a second at the worst rates: the process's peak (VmHWM) rises by tens of MB at
    most (torchaudio: gigabytes at 48001 Hz), and the filter's tables stay small."""
    for rate in (48001, 96001, 383999, 44101, 16001):
        signal = tone(rate, 0.5, 440.0)
        grown, out = peak_growth_mb(lambda rate=rate, signal=signal: resample(signal, rate, TARGET))
        assert len(out) == output_length(len(signal), rate, TARGET)
        assert grown < 100, (rate, grown)
        assert polyphase_filter(rate, TARGET).nbytes < 32 * 2**20, rate


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 48001, 22051, 383999, 96000])
def test_streamed_in_pieces_equals_converted_whole(rate):
    rng = np.random.default_rng(rate)
    signal = rng.normal(0, 0.2, int(rate * 0.7)).astype(np.float32)
    stream, pieces, at = StreamResampler(rate, TARGET), [], 0
    while at < len(signal):
        size = int(rng.integers(1, rate // 7))
        pieces.append(stream.feed(signal[at:at + size]))
        at += size
    pieces.append(stream.flush())
    streamed = np.concatenate(pieces)
    whole = resample(signal, rate, TARGET)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-5
    assert stream.rate == rate and stream.emitted == len(whole)
    assert stream.flush().size == 0  # spent
    with pytest.raises(ResampleError):
        stream.feed(signal[:10])


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000, 192000])
def test_equals_torchaudio_where_its_kernel_is_small(rate):
    signal = np.random.default_rng(1).normal(0, 0.2, rate).astype(np.float32)
    ours = resample(signal, rate, TARGET)
    theirs = torchaudio.functional.resample(torch.from_numpy(signal), rate, TARGET).numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4


def test_upsampling_and_other_targets():
    """Not only into 16 kHz: up to 48 kHz and down to 8 kHz keep the tone too."""
    for source, target in ((16000, 48000), (16000, 44100), (44100, 8000), (16001, 48000)):
        out = resample(tone(source, 0.3, 1000.0), source, target)
        assert len(out) == output_length(int(source * 0.3), source, target)
        assert abs(dominant_hz(out[len(out) // 6:-len(out) // 6], target) - 1000.0) < 1.0


def test_bad_rates_and_empty_input():
    for bad in (0, -8000, 44100.5, True):
        with pytest.raises(ResampleError):
            StreamResampler(bad, TARGET)
    assert resample(np.zeros(0, dtype=np.float32), 44100, TARGET).size == 0
    assert resample(np.ones(3, dtype=np.float32), 16000, TARGET).tolist() == [1.0, 1.0, 1.0]
    stream = StreamResampler(48000)
    assert stream.feed(np.zeros(5, dtype=np.float32)).size == 0  # not enough for one output yet
    assert stream.flush().size == 2  # ceil(5 / 3)
