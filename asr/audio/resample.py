"""Sample-rate conversion whose cost depends on the rates, never on how irreducible their ratio is.

torchaudio's `resample` builds one dense kernel of (target / g) x (source / g + filter) values,
g being the rates' greatest common divisor: for 44100 Hz that is 160 x 475, for 48001 Hz
(g = 1) 16000 x 48039, gigabytes for a file of a few kilobytes. The filter here is the same
windowed sinc (a Hann window over 6 zero crossings, cut-off at 99% of the lower Nyquist rate, as
torchaudio computes it), applied polyphase: output sample m sits at c = m x source / target in
the input and reads only the 2W + 2 inputs around c, W = ceil(6 x source / cut-off), with the
weights of its phase (c's fraction). There are at most target / g phases (16000 for any source
rate into 16 kHz), so the weights hold at most 16000 x (2W + 2) values whatever the ratio
(18 MB at 384 kHz), and each output costs 2W + 2 multiplications.

Two ways to compute the same sums: where the phases are few (the common rates), the phases'
rows are laid side by side as one matrix over a window of whole periods and multiplied with the
input cut into rows, a few small matrix products per block; where they are many (an odd rate),
each output's window is gathered and weighed by its own row. The result equals torchaudio's to
float rounding wherever torchaudio can run (tested).

`StreamResampler` converts a stream piece by piece (the live microphone, a file decoded in
blocks) with the same result as converting it in one go; `resample` converts a whole array.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from asr.system.threads import thread_count

LOWPASS_WIDTH = 6  # zero crossings of the sinc kept on each side
ROLLOFF = 0.99  # cut-off as a share of the lower rate's Nyquist frequency
BLOCK_OUTPUTS = 8192  # outputs gathered per step: bounds the gathered windows' memory (8192 x 2W+2)
DENSE_BLOCK_OUTPUTS = 1 << 16  # outputs per step of the matrix path
FEED_FRAMES = 1 << 18  # `resample` feeds a whole array to the stream this many samples at a time
_CACHED_TABLE_VALUES = 1 << 20  # filters with up to this many weights are kept for reuse (4 MB each)
# The matrix path's weights are phases x L periods of the input (mostly zeros): past this many
# values the gather path is used instead.
_DENSE_KERNEL_VALUES = 1 << 20
# Inputs per row of the matrix path: rows of a few inputs (8 kHz: one input per period) make many
# tiny products, so that many periods are grouped into one row. 128 was fastest of 1-256 here.
GROUP_WIDTH = 128


class ResampleError(ValueError):
    """A rate that cannot be converted (zero, negative or not a whole number)."""


def _check_rate(rate: int, what: str) -> int:
    if isinstance(rate, bool) or int(rate) != rate or rate <= 0:
        raise ResampleError(f"{what} must be a positive whole number of hertz, got {rate!r}")
    return int(rate)


def output_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Samples a signal of `frames` samples has at `target_rate`: ceil(frames x target / source)."""
    return -(-frames * target_rate // source_rate)


class PolyphaseFilter:
    """The weights for one source -> target conversion, one row per phase."""

    def __init__(self, source_rate: int, target_rate: int):
        self.source_rate = _check_rate(source_rate, "the source rate")
        self.target_rate = _check_rate(target_rate, "the target rate")
        self.step = math.gcd(self.source_rate, self.target_rate)
        self.phases = self.target_rate // self.step
        cutoff = min(self.source_rate, self.target_rate) * ROLLOFF
        self.half = math.ceil(LOWPASS_WIDTH * self.source_rate / cutoff)  # W, in input samples
        self.taps = 2 * self.half + 2
        self.stride = self.source_rate // self.step  # input samples per period of all phases
        self.table = _weights(self.source_rate, self.target_rate, self.step, self.half, cutoff)
        # Inputs and outputs of one step of the convolution (the gather path steps per period).
        self.group = 1
        self.period_in, self.period_out = self.stride, self.phases
        self.kernel: torch.Tensor | None = None
        group = max(1, round(GROUP_WIDTH / self.stride))
        if group * self.phases * (2 * self.half + 2 * group * self.stride) <= _DENSE_KERNEL_VALUES:
            self.group = group
            self.period_in, self.period_out = group * self.stride, group * self.phases
            self.kernel = torch.from_numpy(_dense_kernel(self.table, self.stride, self.half, group))

    @property
    def nbytes(self) -> int:
        return self.table.nbytes + (0 if self.kernel is None else self.kernel.numel() * 4)


def _weights(source: int, target: int, step: int, half: int, cutoff: float) -> np.ndarray:
    """Row k: the weights of inputs floor(c) - W .. floor(c) + W + 1 for an output whose position
    c in the input falls k x step / target past a whole sample. Built a block of rows at a time,
    so the float64 working arrays stay small beside the float32 table."""
    phases = target // step
    table = np.empty((phases, 2 * half + 2), dtype=np.float32)
    taps = np.arange(2 * half + 2, dtype=np.float64)[None, :] - half
    for first in range(0, phases, 1024):
        fraction = (np.arange(first, min(phases, first + 1024), dtype=np.float64) * step / target)[:, None]
        t = np.clip((taps - fraction) * (cutoff / source), -LOWPASS_WIDTH, LOWPASS_WIDTH)  # input - output
        window = np.cos(t * (math.pi / LOWPASS_WIDTH / 2)) ** 2
        table[first:first + len(fraction)] = np.sinc(t) * window * (cutoff / source)  # sinc: 1 at 0
    return table


def _dense_kernel(table: np.ndarray, stride: int, half: int, group: int) -> np.ndarray:
    """The weights of `group` periods at once as (L, group x stride, group x phases): [l, r, p]
    weighs input q x G x stride - W + l x G x stride + r for output q x G x phases + p. That
    output sits p x stride / phases inputs past its window's start + W, so its 2W + 2 taps start
    floor(that) inputs in."""
    phases, taps = table.shape
    rows, width = group * phases, group * stride
    spans = -(-(width + 2 * half + 1) // width)  # L: whole windows covering every row's taps
    kernel = np.zeros((rows, spans * width), dtype=np.float32)
    for p in range(rows):
        shift = p * stride // phases
        kernel[p, shift:shift + taps] = table[p * stride % phases]  # its fraction, in phases
    return np.ascontiguousarray(kernel.reshape(rows, spans, width).transpose(1, 2, 0))


@functools.lru_cache(maxsize=16)
def _cached_filter(source_rate: int, target_rate: int) -> PolyphaseFilter:
    return PolyphaseFilter(source_rate, target_rate)


def polyphase_filter(source_rate: int, target_rate: int) -> PolyphaseFilter:
    """The filter for this conversion; the common ones (few phases, small tables) are cached, so
    an odd rate sent once cannot leave megabytes behind."""
    source_rate = _check_rate(source_rate, "the source rate")
    target_rate = _check_rate(target_rate, "the target rate")
    phases = target_rate // math.gcd(source_rate, target_rate)
    taps = 2 * math.ceil(LOWPASS_WIDTH * source_rate / (min(source_rate, target_rate) * ROLLOFF)) + 2
    if phases * taps <= _CACHED_TABLE_VALUES:
        return _cached_filter(source_rate, target_rate)
    return PolyphaseFilter(source_rate, target_rate)


class StreamResampler:
    """Converts mono float32 audio arriving in pieces of any size to `target_rate`.

    The result of feeding a signal in pieces and then calling `flush` equals `resample` of the
    whole signal: output sample m is emitted as soon as every input it reads has arrived, and
    only the inputs later outputs still read are kept (a period of the rates plus 2W samples).
    The signal is taken as zero before its first sample and, at `flush`, after its last.
    """

    def __init__(self, source_rate: int, target_rate: int = 16000):
        self.filter = polyphase_filter(source_rate, target_rate)
        self.source_rate = self.filter.source_rate
        self.target_rate = self.filter.target_rate
        self.received = 0  # input samples fed so far
        self.emitted = 0  # output samples returned so far
        self._flushed = False
        # The buffer holds inputs from index self._start on (negative: the zeros before the start).
        self._start = -self.filter.half
        self._buffer = np.zeros(self.filter.half, dtype=np.float32)

    @property
    def rate(self) -> int:
        """The source rate (what the live session compares a new chunk's rate with)."""
        return self.source_rate

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """The output samples whose inputs have all arrived with `samples` (mono, any length)."""
        if self._flushed:
            raise ResampleError("this resampler was flushed; start a new one for a new stream")
        piece = np.asarray(samples, dtype=np.float32).reshape(-1)
        if piece.size:
            self._buffer = np.concatenate([self._buffer, piece])
            self.received += piece.size
        # Output m reads inputs up to floor(m x source / target) + W + 1, which must be < received.
        last_input = self.received - self.filter.half - 2
        if last_input < 0:
            return np.zeros(0, dtype=np.float32)
        ready = ((last_input + 1) * self.target_rate - 1) // self.source_rate + 1
        return self._emit(ready)

    def flush(self) -> np.ndarray:
        """The rest of the output, the signal's end padded with zeros; the resampler is then spent."""
        if self._flushed:
            return np.zeros(0, dtype=np.float32)
        total = output_length(self.received, self.source_rate, self.target_rate)
        self._buffer = np.concatenate([self._buffer, np.zeros(self.filter.taps, dtype=np.float32)])
        out = self._emit(total)
        self._flushed = True
        self._buffer = np.zeros(0, dtype=np.float32)
        return out

    def _emit(self, ready: int) -> np.ndarray:
        count = ready - self.emitted
        if count <= 0:
            return np.zeros(0, dtype=np.float32)
        f = self.filter
        # One thread: these products are small, and a second thread of OpenMP only waits for the
        # cores the model uses (measured on 2 busy cores: 10 ms a call instead of 0.06 ms).
        with thread_count(1):
            out = self._dense(ready) if f.kernel is not None else self._gathered(ready)
        self.emitted = ready
        # Keep what the next output reads, from the start of its period (the dense path
        # recomputes from there).
        keep_from = ready // f.period_out * f.period_in - f.half
        drop = keep_from - self._start
        if drop > 0:
            self._buffer = self._buffer[drop:].copy()
            self._start = keep_from
        return out

    def _gathered(self, ready: int) -> np.ndarray:
        """Each output from its own window and its phase's weights (any ratio)."""
        f = self.filter
        out = np.empty(ready - self.emitted, dtype=np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(self._buffer, f.taps)
        for at in range(0, len(out), BLOCK_OUTPUTS):
            m = np.arange(self.emitted + at, self.emitted + min(len(out), at + BLOCK_OUTPUTS),
                          dtype=np.int64)
            position, remainder = np.divmod(m * self.source_rate, self.target_rate)
            starts = position - f.half - self._start
            out[at:at + len(m)] = np.einsum("ij,ij->i", windows[starts], f.table[remainder // f.step])
        return out

    def _dense(self, ready: int) -> np.ndarray:
        """Whole periods (every phase, `group` times): the input cut into rows of one period each,
        so a period's outputs are L matrix products of contiguous rows; then cut to those asked."""
        f = self.filter
        kernel = f.kernel
        spans = kernel.shape[0]  # L
        first = self.emitted // f.period_out
        periods = -(-ready // f.period_out) - first
        pieces = []
        step = max(1, DENSE_BLOCK_OUTPUTS // f.period_out)
        for q in range(first, first + periods, step):
            n = min(step, first + periods - q)
            begin = q * f.period_in - f.half - self._start
            size = (n + spans - 1) * f.period_in
            window = self._buffer[begin:begin + size]
            if len(window) < size:  # the last period's later outputs are not ready: cut below
                window = np.concatenate([window, np.zeros(size - len(window), dtype=np.float32)])
            rows = torch.from_numpy(np.ascontiguousarray(window)).view(n + spans - 1, f.period_in)
            with torch.no_grad():
                result = rows[:n] @ kernel[0]
                for span in range(1, spans):
                    result += rows[span:span + n] @ kernel[span]
            pieces.append(result.reshape(-1).numpy())
        out = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        skip = self.emitted - first * f.period_out
        return out[skip:skip + ready - self.emitted]


def resample(samples: np.ndarray, source_rate: int, target_rate: int = 16000) -> np.ndarray:
    """A whole mono float signal at `target_rate`, ceil(len x target / source) samples long."""
    source_rate = _check_rate(source_rate, "the source rate")
    target_rate = _check_rate(target_rate, "the target rate")
    array = np.asarray(samples, dtype=np.float32).reshape(-1)
    if source_rate == target_rate:
        return array.copy()
    stream = StreamResampler(source_rate, target_rate)
    out = np.empty(output_length(len(array), source_rate, target_rate), dtype=np.float32)
    at = 0
    # In pieces: the stream copies what it is fed beside what it keeps, so a long array fed
    # whole would be held twice.
    for start in range(0, len(array), FEED_FRAMES):
        piece = stream.feed(array[start:start + FEED_FRAMES])
        out[at:at + len(piece)] = piece
        at += len(piece)
    rest = stream.flush()
    out[at:at + len(rest)] = rest
    return out
