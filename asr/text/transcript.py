"""One file's recognised pieces -> its text and segments: join, punctuate, cut into sentences,
label speakers, write numbers as digits.

Runs once per file, after every piece of it has come back from the model, so nothing here can
depend on batch mates. Punctuation sees the whole file's words at once, because a sentence can
span a VAD cut; it gets exactly the recogniser's words and gives one mark per word, so marks and
times cannot disagree in length (FunASR #1410, #1795). Speakers come as one label per timed word
(asr.text.speakers), so a sentence is cut exactly where the speaker changes and the labels can
never disagree in length with the words either (FunASR #2393). Number normalisation (ITN)
rewrites the file's and its segments' texts last, keeping the raw text beside them, and never
touches words. If punctuation or ITN fails, the file keeps its text and a warning: an extra must
never cost a transcript.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from asr.recognition.recognizer import Decoded, DecodedWord
from asr.results import Segment, Word, join_text
from asr.text.numbers import normalize_text, normalize_texts
from asr.text.sentences import CueLimits, TimedWord, cut_sentences, render
from asr.text.speakers import Diarization, assign_words, group_speaker, split_at_speaker_changes

log = logging.getLogger(__name__)


@dataclass
class Piece:
    """A recognised stretch of a file: a speech segment, or part of one after an OOM split."""

    start_s: float
    end_s: float
    decoded: Decoded


@dataclass
class Transcript:
    text: str
    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)
    raw_text: str | None = None  # before ITN, when it ran
    speakers: list[str] | None = None  # in order of first appearance, when labelled


def assemble(pieces: Sequence[Piece], punctuate=None, timestamps: bool = False,
             limits: CueLimits = CueLimits(), speakers: Diarization | None = None) -> Transcript:
    """`punctuate(words) -> marks` (one per word) or None for no punctuation; `speakers`: the
    file's diarization, giving every sentence and word its speaker."""
    pieces = [p for p in pieces if p.decoded.words or p.decoded.text]
    warnings = sorted({p.decoded.timing_note for p in pieces if p.decoded.timing_note})
    words = [(piece, word) for piece in pieces for word in piece.decoded.words]
    marks: list[str] | None = None
    if punctuate is not None and words:
        try:
            marks = list(punctuate([word.text for _, word in words]))
            if len(marks) != len(words):
                raise ValueError(f"{len(marks)} marks for {len(words)} words")
        except Exception as exc:  # noqa: BLE001 - the transcript stands without its punctuation
            log.warning("punctuation failed (%s: %s); keeping the text unpunctuated",
                        type(exc).__name__, exc)
            warnings.append(f"punctuation failed ({type(exc).__name__}: {exc}); the text is "
                            "unpunctuated")
            marks = None
    if marks is None:
        text = functools.reduce(join_text, (p.decoded.text for p in pieces), "")
    else:
        text = render([TimedWord(word.text, 0.0, 0.0, mark)
                       for (_, word), mark in zip(words, marks, strict=True)])
    timed = [_timed(piece, word, marks[i] if marks else "") for i, (piece, word) in enumerate(words)]
    have_times = all(word.start_s is not None for _, word in words)
    if timestamps and timed and have_times:
        groups = _groups_by_cue(timed, words, marks is not None, limits)
        labels = None
        if speakers is not None:
            labels = assign_words([(w.start_s, w.end_s) for w in timed], speakers)
            groups = split_at_speaker_changes(groups, labels)
        segments = [_segment(timed, [words[i][1] for i in group], group, with_words=True, speakers=labels)
                    for group in groups]
    else:
        segments = _segments_by_piece(pieces, timed, words, marks is not None)
        if speakers is not None:  # no word times: each piece gets the speaker holding most of it
            for segment in segments:
                segment.speaker = speakers.speaker_at(segment.start_s, segment.end_s)
    found = None
    if speakers is not None:
        found = list(dict.fromkeys(s.speaker for s in segments if s.speaker is not None))
    return Transcript(text, segments, warnings, speakers=found)


def normalize_numbers(transcript: Transcript) -> Transcript:
    """Write numbers, dates and amounts as digits in the file's text and each segment's text
    (ITN), keeping the raw texts beside them; words keep the recogniser's own tokens."""
    whole = normalize_text(transcript.text)
    parts = normalize_texts([segment.text for segment in transcript.segments])
    for segment, part in zip(transcript.segments, parts, strict=True):
        segment.raw_text, segment.text = part.raw, part.text
    warnings = transcript.warnings + sorted({r.warning for r in (whole, *parts) if r.warning})
    return dataclasses.replace(transcript, text=whole.text, raw_text=transcript.text, warnings=warnings)


def _timed(piece: Piece, word: DecodedWord, mark: str) -> TimedWord:
    start = piece.start_s + (word.start_s or 0.0)
    end = piece.start_s + (word.end_s if word.end_s is not None else piece.end_s - piece.start_s)
    return TimedWord(word.text, start, min(end, piece.end_s), mark)


def _groups_by_cue(timed: list[TimedWord], words, punctuated: bool, limits: CueLimits) -> list[list[int]]:
    """Sentences when punctuated; else each piece's words cut only to subtitle size."""
    if punctuated:
        return cut_sentences(timed, limits)
    groups: list[list[int]] = []
    start = 0
    for index in range(1, len(words) + 1):
        if index == len(words) or words[index][0] is not words[start][0]:
            span = list(range(start, index))
            groups += [[span[i] for i in g] for g in cut_sentences([timed[i] for i in span], limits)]
            start = index
    return groups


def _segment(timed: list[TimedWord], decoded_words: list[DecodedWord], group: list[int],
             with_words: bool, speakers: Sequence[str | None] | None = None) -> Segment:
    chosen = [timed[i] for i in group]
    logprob = sum(w.logprob for w in decoded_words)
    tokens = sum(w.tokens for w in decoded_words)
    labels = [speakers[i] for i in group] if speakers is not None else [None] * len(group)
    return Segment(
        start_s=chosen[0].start_s, end_s=chosen[-1].end_s, text=render(chosen),
        confidence=round(min(1.0, math.exp(logprob / tokens)), 4) if tokens else 0.0,
        words=[Word(w.start_s, w.end_s, w.text, label) for w, label in zip(chosen, labels, strict=True)]
        if with_words else None,
        speaker=group_speaker(group, speakers) if speakers is not None else None,
    )


def _segments_by_piece(pieces: Sequence[Piece], timed: list[TimedWord], words,
                       punctuated: bool) -> list[Segment]:
    """Without timestamps the model's pieces are the segments, with their punctuated words."""
    segments = []
    for piece in pieces:
        group = [i for i, (owner, _) in enumerate(words) if owner is piece]
        text = render([timed[i] for i in group]) if punctuated else piece.decoded.text
        if not text:
            continue
        segments.append(Segment(piece.start_s, piece.end_s, text, piece.decoded.confidence))
    return segments
