"""Cut long recordings into model-sized pieces at their quietest moments.

Paraformer attends over the whole input, so cost and memory grow with the square of its length;
meeting recordings of many minutes are cut into segments of at most `max_s` seconds, each cut
placed at the lowest-energy 100 ms window in the last quarter before the limit, so words are
rarely split. Inputs under the limit pass through untouched, which keeps them comparable with
FunASR's own whole-file recognition.
"""

from __future__ import annotations

import numpy as np

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
