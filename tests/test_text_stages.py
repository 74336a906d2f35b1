"""The text stages through the engine: speaker labels and numbers as digits on every result.

Speakers run per file on its own audio (after speech detection) and numbers per file after
punctuation, so batching and other requests can never move either: a conversation of real
voices gets the same labels alone, in batches of any size, and beside concurrent requests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import srt
import webvtt
from helpers import run_together, tiny_settings, write_conversation

from asr.engine import Engine
from asr.recognition.recognizer import Decoded, DecodedWord
from asr.text import export
from asr.text.transcript import Piece
from benchmarks.der import RATE, der, voices


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """A conversation of real voices: A, B, A again, C (helpers.write_conversation)."""
    talk, path, _ = write_conversation(tmp_path_factory.mktemp("talk"))
    return talk, path


@pytest.fixture(scope="module")
def speaker_engine(loaded_tiny):
    """GE2E's real weights; silero finds the speech, as by default."""
    return Engine(tiny_settings(speaker_model="ge2e", vad="silero"), loaded=loaded_tiny)


def labels(result) -> list:
    """Every word's speaker and every segment's, in order: what must never depend on batching."""
    return [(s.speaker, [(w.text, w.speaker, round(w.start_s, 3)) for w in s.words or []])
            for s in result.segments]


def test_a_conversation_gets_its_speakers_on_sentences_and_words(speaker_engine, conversation):
    talk, path = conversation
    [result] = speaker_engine.transcribe([path], speakers="auto")
    assert result.ok and result.speakers == ["S1", "S2", "S3"]
    assert all(s.words for s in result.segments)  # speakers switch word times on
    for segment in result.segments:  # a sentence never spans two speakers
        assert {w.speaker for w in segment.words} == {segment.speaker}
    turns = [(s.start_s, s.end_s, s.speaker) for s in result.segments]
    score = der(talk.turns, turns)
    print(f"\nDER of the engine's sentences against the true turns: {score.der:.1%}")
    assert score.der < 0.35  # sentence spans include the recordings' own pauses
    assert score.confusion_s / score.speech_s < 0.05  # who spoke is what diarization controls
    [two] = speaker_engine.transcribe([path], speakers=2)
    assert len(two.speakers) == 2
    [plain] = speaker_engine.transcribe([path])
    assert plain.speakers is None and all(s.speaker is None for s in plain.segments)
    assert "speakers" not in plain.to_dict() and "speaker" not in json.dumps(plain.to_dict())


def test_batching_and_other_requests_never_move_a_files_speakers(speaker_engine, conversation, clip_dir):
    _, path = conversation
    alone = labels(speaker_engine.transcribe([path], speakers="auto", batch_size=1)[0])
    others = sorted(clip_dir.glob("*.wav"))[:5]
    for size in (2, 4, 8):
        results = speaker_engine.transcribe([others[0], path, *others[1:]], speakers="auto", batch_size=size)
        assert labels(results[1]) == alone, size
    together = run_together([lambda: speaker_engine.transcribe([path], speakers="auto")[0]] * 2
                            + [lambda: speaker_engine.transcribe(others, batch_size=4)] * 2)
    assert labels(together[0]) == labels(together[1]) == alone


def test_known_voices_name_the_speakers(speaker_engine, conversation):
    _, path = conversation
    v = voices()
    [result] = speaker_engine.transcribe([path], speakers="auto",
                                         known_speakers={"主持人": v["B"], "嘉宾": v["C"][: 5 * RATE]})
    assert result.speakers == ["S1", "主持人", "嘉宾"]


def test_exports_carry_the_speakers(speaker_engine, conversation):
    _, path = conversation
    [result] = speaker_engine.transcribe([path], speakers="auto")
    cues = list(srt.parse(export.render(result, "srt")))
    assert [c.content.split(": ", 1)[0] for c in cues] == [s.speaker for s in result.segments]
    vtt_file = path.with_suffix(".vtt")
    vtt_file.write_text(export.render(result, "vtt"), encoding="utf-8")
    assert [c.voice for c in webvtt.read(str(vtt_file))] == [s.speaker for s in result.segments]
    rows = export.render(result, "tsv").splitlines()
    assert rows[0] == "start\tend\tspeaker\ttext"
    assert [r.split("\t")[2] for r in rows[1:]] == [s.speaker for s in result.segments]
    data = json.loads(export.render(result, "json"))
    assert data["speakers"] == result.speakers
    assert [s["speaker"] for s in data["segments"]] == [s.speaker for s in result.segments]
    lines = export.render(result, "txt").splitlines()
    assert all(line.split(": ", 1)[0] in result.speakers for line in lines)
    assert [line.split(": ", 1)[0] for line in lines][0] == "S1"


def test_a_speaker_model_that_cannot_load_costs_the_labels_not_the_transcript(loaded_tiny, conversation):
    _, path = conversation
    engine = Engine(tiny_settings(speaker_model="/no/such/campplus"), loaded=loaded_tiny)
    [result] = engine.transcribe([path], speakers="auto")
    assert result.ok and result.text and result.speakers is None
    assert any("speaker labels failed" in w for w in result.warnings)


# ---- numbers as digits (ITN) through the text stages ------------------------------------------

PHRASES = [  # the recogniser's characters in, what a reader expects out
    ("二零二四年三月五日下午三点十五分", "2024年3月5日下午3:15"),
    ("增长了百分之五", "增长了5%"),
    ("花了一千二百元", "花了1200元"),
    ("一心一意", "一心一意"),
    ("第一次见到张三", "第一次见到张三"),
]


def _pieces(text: str) -> list[Piece]:
    """The text as the recogniser hands it over: one character a word, 0.2 s each."""
    words = [DecodedWord(ch, -0.1, 1, 0.2 * i, 0.2 * i + 0.18) for i, ch in enumerate(text)]
    return [Piece(0.0, 0.2 * len(text), Decoded(list(range(len(text))), text, 0.9, words))]


@pytest.mark.parametrize(("spoken", "written"), PHRASES)
def test_numbers_as_digits_in_a_transcripts_texts_never_its_words(engine, spoken, written):
    """The engine's own text stages (sentences, ITN) on recogniser output: the file's text and
    its segments' texts are normalised, the raw text is kept, the words are the recogniser's."""
    from asr.audio.preload import Prepared

    item = Prepared(index=0, name="x.wav", segments=[np.zeros((1, 1))])
    for timestamps in (False, True):
        transcript = engine._assemble_file(_pieces(spoken), item, timestamps, itn=True)
        assert transcript.text == written and transcript.raw_text == spoken
        assert "".join(s.text for s in transcript.segments) == written
        assert "".join(s.raw_text for s in transcript.segments) == spoken
        if timestamps:
            assert "".join(w.text for s in transcript.segments for w in s.words) == spoken
    off = engine._assemble_file(_pieces(spoken), item, True, itn=False)
    assert off.text == spoken and off.raw_text is None


def test_itn_reaches_every_result_and_export(loaded_tiny, reference_wavs):
    """With itn on, each result keeps its raw text beside the normalised one (a random model's
    text holds no numbers, so they are equal here: what matters is that the stage ran)."""
    engine = Engine(tiny_settings(itn=True), loaded=loaded_tiny)
    results = engine.transcribe(reference_wavs, timestamps=True)
    for result in results:
        assert result.ok and result.raw_text is not None
        assert all(s.raw_text is not None for s in result.segments)
        assert "raw_text" in json.loads(export.render(result, "json"))
    assert engine.transcribe(reference_wavs[:1], itn=False)[0].raw_text is None
