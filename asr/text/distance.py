"""How far apart two sequences are: the precision check counts token edits with it, the bench
reads a character error rate from it."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(left: Sequence, right: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions and deletions each cost 1) between two
    strings or two lists of token ids."""
    if len(left) < len(right):
        left, right = right, left
    previous = list(range(len(right) + 1))
    for i, a in enumerate(left, 1):
        current = [i]
        for j, b in enumerate(right, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]
