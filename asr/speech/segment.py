"""Cut long recordings into model-sized pieces at their quietest moments.

Paraformer attends over the whole input, so cost and memory grow with the square of its length;
meeting recordings of many minutes are cut into segments of at most `max_s` seconds, each cut
placed at the lowest-energy 100 ms window in the last quarter before the limit, so words are
rarely split. Inputs under the limit pass through untouched, which keeps them comparable with
FunASR's own whole-file recognition.
"""

from __future__ import annotations

import numpy as np
import torch

RATE = 16000
_WINDOW = RATE // 10  # 100 ms energy windows


def split_points(samples: np.ndarray, max_s: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering `samples`, each at most max_s long."""
    limit = int(max_s * RATE)
    total = len(samples)
    if total <= limit:
        return [(0, total)]
    ranges: list[tuple[int, int]] = []
    start = 0
    while total - start > limit:
        search_from = start + (3 * limit) // 4
        search_to = start + limit
        window = samples[search_from:search_to]
        usable = len(window) // _WINDOW * _WINDOW
        if usable >= _WINDOW:
            energy = np.square(window[:usable].reshape(-1, _WINDOW)).mean(axis=1)
            cut = search_from + int(np.argmin(energy)) * _WINDOW + _WINDOW // 2
        else:
            cut = search_to
        ranges.append((start, cut))
        start = cut
    ranges.append((start, total))
    return ranges


_SMOOTH_FRAMES = 5  # about 0.3 s of model frames (60 ms each)


def quiet_split_frame(feats: torch.Tensor, floor: int) -> int | None:
    """Where to halve a piece of model features: the quietest frame in its middle half, keeping
    both halves at least `floor` frames long; None when the piece is too short to halve.

    Loudness comes from the features themselves (the audio is gone by the time a piece runs out
    of memory): after CMVN each dimension is an increasing function of a log-mel energy, so a
    frame's mean over dimensions rises and falls with its loudness. Smoothed over ~0.3 s, its
    minimum is a pause rather than a single quiet frame inside a word.
    """
    frames = feats.shape[0]
    low, high = max(floor, frames // 4), min(frames - floor, frames - frames // 4)
    if frames < 2 * floor or low > high:
        return None
    loudness = feats.float().mean(dim=1)
    kernel = torch.ones(1, 1, _SMOOTH_FRAMES) / _SMOOTH_FRAMES
    smooth = torch.nn.functional.conv1d(loudness[None, None], kernel, padding=_SMOOTH_FRAMES // 2)[0, 0]
    return low + int(torch.argmin(smooth[low:high + 1]))
