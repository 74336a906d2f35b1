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

A cue must also stay on screen long enough to be read: a 0.15 s "好。" flashes past. Netflix's Timed
Text Style Guide (General Requirements) sets a minimum of 5/6 s per subtitle event and at least a
2-frame gap between events, and lets an out-time run past the end of speech for reading time. So a
cue shorter than `min_s` first joins its nearer neighbour when the two are not parted by a pause
and still fit the limits (`cut_sentences`); one that cannot join is held on screen until `min_s`,
but never into the next cue's gap (`hold_short_cues`, when subtitles are written: the segments
keep their words' times).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from asr.results import Segment, join_text

SENTENCE_ENDS = frozenset("。？！?!；;")
SOFT_BREAKS = frozenset("，、,：:")
MIN_GAP_S = 0.08  # 2 frames at 25 fps: the least gap a held cue leaves before the next one


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
    min_s: float = 0.83  # shortest display (subtitles.min_s); 0 turns joining and holding off


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
    return _join_short(words, cues, limits)


def _span(words: Sequence[TimedWord], group: Sequence[int]) -> float:
    return words[group[-1]].end_s - words[group[0]].start_s


def _join_short(words: Sequence[TimedWord], cues: list[list[int]], limits: CueLimits) -> list[list[int]]:
    """Each cue shorter than `limits.min_s` joins its nearer neighbour, if a pause does not part
    them and the joined cue still fits; a joined cue that is still short tries again."""
    if limits.min_s <= 0:
        return cues
    cues = [list(c) for c in cues]
    index = 0
    while index < len(cues):
        if len(cues) < 2 or _span(words, cues[index]) >= limits.min_s:
            index += 1
            continue
        options = []
        for other in (index - 1, index + 1):
            if not 0 <= other < len(cues):
                continue
            first, second = sorted((index, other))
            gap = words[cues[second][0]].start_s - words[cues[first][-1]].end_s
            if gap < limits.pause_s and _fits(words, cues[first] + cues[second], limits):
                options.append((gap, first))
        if not options:
            index += 1
            continue
        _, first = min(options)
        cues[first:first + 2] = [cues[first] + cues[first + 1]]
        index = first
    return cues


def hold_short_cues(segments: Sequence[Segment], min_s: float, gap_s: float = MIN_GAP_S) -> list[Segment]:
    """Segments (in time order) whose cue is shorter than `min_s`, held until `min_s` after their
    start where the next segment leaves room (never closer to it than `gap_s`); never shortened."""
    held = []
    for index, segment in enumerate(segments):
        end = segment.end_s
        if min_s > 0 and end - segment.start_s < min_s:
            limit = segments[index + 1].start_s - gap_s if index + 1 < len(segments) else float("inf")
            end = max(end, min(segment.start_s + min_s, limit))
        held.append(segment if end == segment.end_s else dataclasses.replace(segment, end_s=end))
    return held


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
