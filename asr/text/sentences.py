"""Cut a file's timed, punctuated words into subtitle-sized sentences.

People read transcripts and subtitles in sentences, so the cut goes at sentence punctuation first.
But a sentence can run for 30 s, and one giant cue is useless on screen (FunASR #3253), while
FunASR's `timestamp_sentence` cuts at every comma and gives flickering fragments. Here a sentence
that is too long (more than `max_s` seconds or `max_chars` characters) is cut inside itself:
after its last comma that keeps the first part within the limits, else at its longest pause
between words, else at the limit itself. A pause of `pause_s` or more between words always ends
a cue, so no cue shows text over a long silence.

Each cue starts at its first word's start and ends at its last word's end (FunASR #2110 once
started a sentence at its last character's time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asr.results import join_text

SENTENCE_ENDS = frozenset("。？！?!；;")
SOFT_BREAKS = frozenset("，、,：:")


@dataclass
class TimedWord:
    text: str
    start_s: float
    end_s: float
    mark: str = ""  # punctuation written after the word ("" for none)


@dataclass(frozen=True)
class CueLimits:
    max_s: float = 8.0
    max_chars: int = 42
    pause_s: float = 1.0


def render(words: Sequence[TimedWord]) -> str:
    """Words and their marks as text: no spaces between Chinese, one between Latin words."""
    text = ""
    for word in words:
        text = join_text(text, word.text) + word.mark
    return text


def cut_sentences(words: Sequence[TimedWord], limits: CueLimits = CueLimits()) -> list[list[int]]:
    """Groups of word indices, in order, covering every word once: the cues."""
    cues: list[list[int]] = []
    current: list[int] = []
    for index, word in enumerate(words):
        current.append(index)
        last = index == len(words) - 1
        pause = not last and words[index + 1].start_s - word.end_s >= limits.pause_s
        if last or pause or word.mark in SENTENCE_ENDS:
            cues += _fit(words, current, limits)
            current = []
    return cues


def _fits(words: Sequence[TimedWord], group: Sequence[int], limits: CueLimits) -> bool:
    if not group:
        return True
    duration = words[group[-1]].end_s - words[group[0]].start_s
    return duration <= limits.max_s and len(render([words[i] for i in group])) <= limits.max_chars


def _fit(words: Sequence[TimedWord], group: list[int], limits: CueLimits) -> list[list[int]]:
    """`group` as one cue if it fits, else cut into cues that do (a lone word always 'fits')."""
    pieces = []
    while not _fits(words, group, limits) and len(group) > 1:
        longest = 1
        while longest < len(group) and _fits(words, group[:longest + 1], limits):
            longest += 1
        cut = _best_cut(words, group[:longest])
        pieces.append(group[:cut])
        group = group[cut:]
    pieces.append(group)
    return pieces


def _best_cut(words: Sequence[TimedWord], prefix: list[int]) -> int:
    """How many words of `prefix` (all of which fit) the cue takes: up to its last comma when
    that keeps at least a third of it, else up to its longest pause between words."""
    for count in range(len(prefix), 0, -1):
        if words[prefix[count - 1]].mark in SOFT_BREAKS and count * 3 >= len(prefix):
            return count
    if len(prefix) < 2:
        return len(prefix)
    gaps = [words[prefix[i + 1]].start_s - words[prefix[i]].end_s for i in range(len(prefix) - 1)]
    widest = max(range(len(gaps)), key=lambda i: (gaps[i], i))
    return widest + 1 if gaps[widest] > 0 else len(prefix)
