"""Cues long enough to read (subtitles.min_s): short ones join a neighbour or are held on screen.

Pure functions on timed words (asr.text.sentences), then the engine on real recordings: every cue
of a real transcript lasts at least min_s unless the next cue starts too soon to allow it.
"""

from __future__ import annotations

import pytest
from helpers import tiny_settings

from asr.engine import Engine
from asr.results import Segment
from asr.settings import SCHEMA
from asr.text import export
from asr.text.sentences import MIN_GAP_S, CueLimits, TimedWord, cut_sentences, hold_short_cues

LIMITS = CueLimits(max_s=8.0, max_chars=42, pause_s=1.0, min_s=0.83)


def _sentence(text: str, start: float, step: float = 0.07, mark: str = "。") -> list[TimedWord]:
    words = [TimedWord(ch, start + i * step, start + (i + 1) * step) for i, ch in enumerate(text)]
    words[-1].mark = mark
    return words


def test_a_short_sentence_joins_its_nearer_neighbour():
    """"好。" (0.14 s) 0.2 s before a sentence and 0.6 s after another joins the later one."""
    words = (_sentence("今天天气不错", 0.0, step=0.2) + _sentence("好", 1.8)
             + _sentence("我们出发吧", 2.14, step=0.2))
    cues = cut_sentences(words, LIMITS)
    assert cues == [list(range(6)), list(range(6, 12))]
    off = CueLimits(8.0, 42, 1.0, min_s=0.0)
    assert cut_sentences(words, off) == [list(range(6)), [6], list(range(7, 12))]


def test_a_short_cue_parted_by_pauses_is_held_instead(monkeypatch):
    """Pauses of pause_s or more on both sides: no join (no text over a long silence)."""
    words = _sentence("开始", 0.0, step=0.3) + _sentence("好", 2.0) + _sentence("结束", 4.0, step=0.3)
    assert cut_sentences(words, LIMITS) == [[0, 1], [2], [3, 4]]


def test_a_join_that_would_not_fit_is_not_made():
    long_text = "字" * 40
    words = _sentence(long_text, 0.0, step=0.1) + _sentence("好", 4.1)
    cues = cut_sentences(words, LIMITS)  # joined: 43 characters, past max_chars
    assert cues == [list(range(40)), [40]]


def test_held_cues_stop_short_of_the_next_one():
    segments = [Segment(0.0, 0.14, "好。"), Segment(0.5, 2.0, "我们出发吧。"), Segment(5.0, 5.2, "走。")]
    held = hold_short_cues(segments, 0.83)
    assert [(s.start_s, s.end_s) for s in held] == [(0.0, pytest.approx(0.5 - MIN_GAP_S)), (0.5, 2.0),
                                                    (5.0, pytest.approx(5.83))]
    assert [s.text for s in held] == [s.text for s in segments]
    assert hold_short_cues(segments, 0.0) == segments  # off
    assert segments[0].end_s == 0.14  # the input is not changed


def test_the_setting_is_declared_and_result_changing():
    _, meta = SCHEMA["subtitles.min_s"]
    assert meta["results"] is True
    assert meta["min"] == 0.0


def test_real_transcripts_have_no_flashing_cues(loaded_tiny, reference_wavs, tmp_path):
    """On real recordings with sentence times, every SRT cue lasts min_s, or ends MIN_GAP_S
    before the next (held as far as it could be)."""
    engine = Engine(tiny_settings(timestamps=True, punctuation="random:tiny"), loaded=loaded_tiny)
    bare = Engine(tiny_settings(timestamps=True, punctuation="random:tiny", **{"subtitles.min_s": 0.0}),
                  loaded=loaded_tiny, punctuator=engine.punctuator)
    checked = short_before = 0
    pairs = zip(engine.transcribe(reference_wavs), bare.transcribe(reference_wavs), strict=True)
    for result, before in pairs:
        assert result.ok and result.segments
        short_before += sum(1 for s in before.segments if s.end_s - s.start_s < 0.83)
        cues = export._cues(result, 0.83)
        assert [(s.start_s, s.end_s) for s in result.segments] == [  # segments keep their words' times
            (s.words[0].start_s, s.words[-1].end_s) for s in result.segments]
        for cue, following in zip(cues, cues[1:] + [None], strict=True):
            length = cue.end_s - cue.start_s
            if following is None:
                assert length >= 0.83 - 1e-9
            else:
                assert length >= 0.83 - 1e-9 or cue.end_s == pytest.approx(following.start_s - MIN_GAP_S)
                assert cue.end_s <= following.start_s
            checked += 1
        assert "".join(s.text for s in result.segments) == "".join(s.text for s in before.segments)
    assert checked >= 3
    assert short_before > 0, "the recordings gave no short cue to fix: the test proves nothing"


def test_the_single_tab_writes_held_cues(loaded_tiny, reference_wavs, tmp_path, monkeypatch):
    """The page's SRT download: sentence times on by default (subtitles are asked for) and every
    cue held to subtitles.min_s where the next allows; 0 writes the segments' own times."""
    import srt

    import webui

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    engine = Engine(tiny_settings(punctuation="random:tiny"), loaded=loaded_tiny)
    handler = next(d.fn for d in webui.build_app(engine).fns.values() if d.api_name == "transcribe_file")
    for wav in reference_wavs:
        outputs = handler(str(wav), "", 1)
        downloads, rows = outputs[5], outputs[6]["data"]
        result = engine.transcribe([wav], timestamps=True)[0]
        assert [r[2] for r in rows] == [s.text for s in result.segments]  # sentences, not chunks
        written = next(p for p in downloads if p.endswith(".srt"))
        with open(written, encoding="utf-8") as handle:
            cues = list(srt.parse(handle.read()))
        assert [c.content for c in cues] == [s.text for s in result.segments]
        held = export._cues(result, engine.settings.subtitles.min_s)
        assert [round(c.end.total_seconds(), 3) for c in cues] == [round(c.end_s, 3) for c in held]
    assert export.srt(result, 0.0) == export.srt(result)  # no hold unless asked
