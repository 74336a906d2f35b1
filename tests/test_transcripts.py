"""Transcripts people can use: speech segments (real Silero VAD on real speech), word times that
batching cannot move, punctuation aligned word for word, subtitle-sized sentences.

Speech ground truth comes from the vendored recordings themselves: a 20 ms frame is speech when
it is within 35 dB of the recording's loudest frame, in a run of at least 100 ms. The test files
join recordings with silences of known length, so where every silence lies is known exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
import torch
from helpers import tiny_settings

from asr.engine import Engine
from asr.speech.vad import SileroVad, load_detector, plan_segments
from asr.text.punctuation import load_punctuator
from asr.text.sentences import CueLimits, TimedWord, cut_sentences, render
from asr.text.transcript import Piece, assemble

RATE = 16000
FRAME = RATE // 50


@dataclass
class Joined:
    samples: np.ndarray
    speech: np.ndarray  # bool per 20 ms frame
    silences: list[tuple[float, float]]  # the inserted silences (s)

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


def _speech_mask(samples: np.ndarray, min_run: int = 5) -> np.ndarray:
    """Loud frames in runs of at least 100 ms: syllables, not clicks or breaths."""
    frames = len(samples) // FRAME
    level = 10 * np.log10(np.square(samples[:frames * FRAME].reshape(frames, FRAME)).mean(axis=1) + 1e-12)
    loud = level > level.max() - 35
    mask = np.zeros_like(loud)
    start = None
    for index, value in enumerate([*loud, False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            if index - start >= min_run:
                mask[start:index] = True
            start = None
    return mask


def join(recordings: list[np.ndarray], gaps_s: list[float], lead_s: float = 0.5) -> Joined:
    """Recordings with a silence of each gap between them (and lead_s before and after)."""
    parts, masks, silences = [np.zeros(int(lead_s * RATE), np.float32)], [], []
    position = int(lead_s * RATE)
    masks.append(np.zeros(position // FRAME, bool))
    for index, recording in enumerate(recordings):
        usable = len(recording) // FRAME * FRAME
        parts.append(recording[:usable])
        masks.append(_speech_mask(recording[:usable]))
        position += usable
        gap = int((gaps_s[index] if index < len(gaps_s) else lead_s) * RATE) // FRAME * FRAME
        silences.append((position / RATE, (position + gap) / RATE))
        parts.append(np.zeros(gap, np.float32))
        masks.append(np.zeros(gap // FRAME, bool))
        position += gap
    return Joined(np.concatenate(parts), np.concatenate(masks), silences[:-1])


@pytest.fixture(scope="module")
def recordings(reference_wavs) -> list[np.ndarray]:
    return [soundfile.read(p, dtype="float32")[0] for p in reference_wavs]


@pytest.fixture(scope="module")
def joined(recordings) -> Joined:
    """Every recording twice, separated by silences of 0.3-3 s."""
    gaps = [0.3, 1.0, 3.0, 1.5, 0.6, 2.2]
    return join(recordings + recordings[::-1], gaps)


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return load_detector("silero")


def _check_segments(joined: Joined, segments: list[tuple[int, int]], max_s: float) -> None:
    starts = [a / RATE for a, _ in segments]
    ends = [b / RATE for _, b in segments]
    assert segments == sorted(segments) and all(b > a for a, b in segments)
    assert all(b - a <= max_s * RATE for a, b in segments)
    # Every silence of at least 1 s holds a segment border: no segment runs across it.
    for start, end in joined.silences:
        if end - start >= 1.0:
            assert not any(a < start and b > end for a, b in zip(starts, ends, strict=True)), (start, end)
    # No border lies more than 0.3 s inside speech.
    speech_times = np.flatnonzero(joined.speech) * FRAME / RATE
    quiet_times = np.flatnonzero(~joined.speech) * FRAME / RATE
    for border in starts + ends:
        if speech_times.size and np.abs(speech_times - border).min() < 0.02:
            assert np.abs(quiet_times - border).min() <= 0.3, border
    # All speech is covered.
    covered = np.zeros_like(joined.speech)
    for a, b in segments:
        covered[a // FRAME:-(-b // FRAME)] = True
    missed = joined.speech & ~covered
    assert missed.sum() == 0, f"{missed.sum()} speech frames outside every segment"


def test_silero_segments_follow_the_silences_of_real_speech(joined, silero):
    regions = silero.detect(joined.samples)
    segments = plan_segments(joined.samples, regions, "silero", max_s=60, merge_gap_s=0.5)
    _check_segments(joined, segments, 60)
    assert len(segments) >= 6  # the silences of 1 s and more alone make 5 borders


def test_batched_silero_gives_silero_s_own_probabilities(joined, silero):
    """The batched run is Silero's model with its per-window loop folded into few calls."""
    from silero_vad import load_silero_vad

    model = load_silero_vad()
    torch.set_num_threads(2)  # silero's import set it to 1
    model.reset_states()
    samples = torch.from_numpy(joined.samples[: 30 * RATE])
    loop = []
    for start in range(0, len(samples), 512):
        chunk = samples[start:start + 512]
        loop.append(model(torch.nn.functional.pad(chunk, (0, 512 - len(chunk))), RATE).item())
    batched = silero.probabilities(joined.samples[: 30 * RATE])
    assert np.abs(np.array(loop) - batched).max() < 1e-4


def test_a_long_region_is_split_at_its_longest_pause(recordings):
    """With a 10 s limit, speech regions merged across short pauses are cut where speech pauses."""
    joined = join(recordings * 3, [0.4] * 8)  # pauses shorter than the merge gap: one long region
    regions = [(0, len(joined.samples))]
    segments = plan_segments(joined.samples, regions, "silero", max_s=10, merge_gap_s=0.5)
    assert len(segments) >= 3
    _check_segments(joined, segments, 10)
    for _, end in segments[:-1]:  # every cut lies in one of the 0.4 s pauses
        assert any(a <= end / RATE <= b for a, b in joined.silences), end / RATE


def test_a_ten_minute_recording_is_covered_and_bounded(recordings, silero):
    """10.5 minutes of real speech: the planned segments obey the limits and cover all speech."""
    gaps = [random.Random(3).choice([0.3, 0.8, 1.2, 2.5]) for _ in range(200)]
    joined = join((recordings * 40)[:90], gaps)
    assert joined.seconds > 600
    regions = silero.detect(joined.samples)
    segments = plan_segments(joined.samples, regions, "silero", max_s=20, merge_gap_s=0.5)
    _check_segments(joined, segments, 20)


def test_engine_sends_only_speech_and_keeps_segment_times(loaded_tiny, joined):
    """Through the engine: segments come back in time order, inside speech, and the silence
    between recordings is never a segment of its own."""
    engine = Engine(tiny_settings(vad="silero"), loaded=loaded_tiny)
    result = engine.transcribe([(joined.samples, RATE)])[0]
    assert result.ok and result.segments
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end_s <= joined.seconds
    for start, end in joined.silences:
        if end - start >= 1.0:
            assert not any(s.start_s >= start + 0.15 and s.end_s <= end - 0.15 for s in result.segments)
    heard = sum(s.end_s - s.start_s for s in result.segments)
    assert heard < joined.seconds - sum(b - a for a, b in joined.silences if b - a >= 1.0) + 1.0


# ---- timestamps ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timed_engines(loaded_tiny):
    alone = Engine(tiny_settings(vad="silero", timestamps=True), loaded=loaded_tiny)
    padded = Engine(tiny_settings(vad="silero", timestamps=True, cpu_lanes=1, padding_limit_pct=1000),
                    loaded=loaded_tiny)
    side = Engine(tiny_settings(vad="silero", timestamps=True, cpu_lanes=2, padding_limit_pct=1000),
                  loaded=loaded_tiny)
    return alone, padded, side


def _times(result) -> list[tuple[float, float, str]]:
    return [(w.start_s, w.end_s, w.text) for s in result.segments for w in s.words]


def test_word_times_rise_and_lie_inside_the_audio(timed_engines, reference_wavs, joined):
    alone = timed_engines[0]
    for source in [*reference_wavs, (joined.samples, RATE)]:
        result = alone.transcribe([source])[0]
        times = _times(result)
        assert times, "timestamps asked for: every segment carries its words"
        assert all(0 <= start <= end <= result.duration_s + 1e-6 for start, end, _ in times)
        assert all(a[0] <= b[0] for a, b in zip(times, times[1:], strict=False))
        for segment in result.segments:
            assert segment.start_s == segment.words[0].start_s and segment.end_s == segment.words[-1].end_s


def test_word_times_never_depend_on_batch_mates(timed_engines, reference_wavs, clip_dir):
    """Alone and in padded or side-by-side batches of 1-8, in two orders: identical times."""
    alone_engine, padded, side = timed_engines
    files = sorted(clip_dir.glob("*.wav")) + list(reference_wavs)
    alone = {p.name: _times(alone_engine.transcribe([p], batch_size=1)[0]) for p in files}
    shuffled = list(files)
    random.Random(11).shuffle(shuffled)
    for engine in (padded, side):
        for size in range(2, 9):
            for order in (files, shuffled):
                results = engine.transcribe(order, batch_size=size)
                for path, result in zip(order, results, strict=True):
                    assert _times(result) == alone[path.name], (path.name, size)


def test_timestamps_off_cost_nothing(loaded_tiny, reference_wavs):
    """Without timestamps the timestamp head never runs, and the text is the same."""
    plain = Engine(tiny_settings(vad="silero"), loaded=loaded_tiny)
    run = plain.run(reference_wavs)
    assert run.stats.timestamp_s == 0.0
    assert all(s.words is None for r in run.results for s in r.segments)
    timed = plain.run(reference_wavs, timestamps=True)
    assert timed.stats.timestamp_s > 0
    assert [r.text for r in timed.results] == [r.text for r in run.results]


def test_a_failing_timestamp_head_costs_the_times_only(loaded_tiny, reference_wavs, monkeypatch):
    engine = Engine(tiny_settings(vad="silero", timestamps=True), loaded=loaded_tiny)
    expected = engine.transcribe(reference_wavs[:1], timestamps=False)[0]

    def broken(*_args):
        raise RuntimeError("simulated BLSTM failure")

    monkeypatch.setattr(engine.recognizer, "timestamp_head", broken)
    result = engine.transcribe(reference_wavs[:1])[0]
    assert result.ok and result.text == expected.text
    assert any("timestamps failed" in w for w in result.warnings)
    assert all(s.words is None for s in result.segments)


# ---- punctuation and sentences -------------------------------------------------------------------

@pytest.fixture(scope="module")
def punctuator(engine):
    return load_punctuator("random:tiny", "cpu", engine.settings.resolve_path(engine.settings.cache_dir))


def test_punctuation_lines_up_with_the_words_and_sentences_split_where_it_says(loaded_tiny, punctuator,
                                                                             joined):
    # subtitles.min_s 0: no short sentence joins a neighbour here (tests/test_subtitles.py checks that).
    settings = tiny_settings(vad="silero", timestamps=True, **{"subtitles.min_s": 0.0})
    engine = Engine(settings, loaded=loaded_tiny, punctuator=punctuator)
    result = engine.transcribe([(joined.samples, RATE)])[0]
    words = [w for s in result.segments for w in s.words]
    marks = punctuator.punctuate([w.text for w in words])
    assert len(marks) == len(words)
    assert result.text == render([TimedWord(w.text, w.start_s, w.end_s, m)
                                  for w, m in zip(words, marks, strict=True)])
    assert "".join(s.text for s in result.segments) == result.text
    limits = engine.cue_limits
    for segment in result.segments:
        assert segment.end_s - segment.start_s <= limits.max_s + 1e-6
        assert len(segment.text) <= limits.max_chars
    ends = [i for i, m in enumerate(marks) if m in ("。", "？")]
    assert ends, "the random punctuation model ends sentences"
    boundaries = set(np.cumsum([len(s.words) for s in result.segments]) - 1)
    assert set(ends) <= boundaries  # every sentence end closes a segment


def test_punctuation_failure_keeps_the_text(loaded_tiny, reference_wavs, punctuator, monkeypatch):
    engine = Engine(tiny_settings(vad="silero"), loaded=loaded_tiny, punctuator=punctuator)
    plain = Engine(tiny_settings(vad="silero"), loaded=loaded_tiny).transcribe(reference_wavs[:1])[0]

    def broken(words):
        raise RuntimeError("simulated CT-Transformer failure")

    monkeypatch.setattr(punctuator, "punctuate", broken)
    result = engine.transcribe(reference_wavs[:1])[0]
    assert result.ok and result.text == plain.text
    assert any("punctuation failed" in w for w in result.warnings)


def _words(texts: str, step: float = 0.3, marks: dict[int, str] | None = None,
           pauses: dict[int, float] | None = None) -> list[TimedWord]:
    words, clock = [], 0.0
    for index, char in enumerate(texts):
        clock += (pauses or {}).get(index, 0.0)
        words.append(TimedWord(char, clock, clock + step, (marks or {}).get(index, "")))
        clock += step
    return words


def test_a_long_unpunctuated_stretch_never_becomes_one_giant_cue():
    """FunASR #3253: 100 words with no punctuation in 30 s -> cues of at most 8 s / 42 chars."""
    words = _words("天" * 100)
    cues = cut_sentences(words, CueLimits(8.0, 42, 1.0))
    assert [i for cue in cues for i in cue] == list(range(100))
    for cue in cues:
        assert words[cue[-1]].end_s - words[cue[0]].start_s <= 8.0
        assert len(render([words[i] for i in cue])) <= 42


def test_sentence_starts_at_its_first_word_and_cuts_prefer_commas():
    """FunASR #2110 started a sentence at its last character; long sentences cut at a comma."""
    marks = {4: "，", 9: "。", 25: "，", 40: "，", 59: "。"}
    words = _words("字" * 60, step=0.25, marks=marks)
    cues = cut_sentences(words, CueLimits(8.0, 42, 1.0))
    assert cues[0] == list(range(10))  # the first sentence fits: one cue
    assert cues[1][-1] in (25, 40)  # the 50-word one is cut after a comma
    for cue in cues:
        text = render([words[i] for i in cue])
        assert text.endswith(("，", "。")) or cue[-1] == 59


def test_a_long_pause_ends_a_cue_even_mid_sentence():
    words = _words("字" * 10, pauses={5: 2.0})
    assert cut_sentences(words) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_marks_of_the_wrong_length_are_refused_not_misaligned():
    """FunASR #1410/#1795: punctuation and times of different lengths. Never paired off wrongly."""
    from asr.recognition.recognizer import Decoded, DecodedWord

    words = [DecodedWord(c, -0.1, 1, i * 0.2, i * 0.2 + 0.2) for i, c in enumerate("今天天气很好")]
    piece = Piece(1.0, 2.5, Decoded([1] * 6, "今天天气很好", 0.9, words))
    transcript = assemble([piece], punctuate=lambda w: ["，"] * (len(w) - 1), timestamps=True)
    assert transcript.text == "今天天气很好"
    assert any("punctuation failed" in w for w in transcript.warnings)
    assert transcript.segments[0].start_s == pytest.approx(1.0)


def test_fsmn_vad_through_the_engine(loaded_tiny, joined):
    """vad: fsmn (FunASR's fsmn-vad, random:tiny build calibrated to follow the audio's level)
    gives the engine segments that leave the long silences out."""
    engine = Engine(tiny_settings(vad="fsmn", vad_model="random:tiny"), loaded=loaded_tiny)
    assert engine.vad.name == "fsmn"
    result = engine.transcribe([(joined.samples, RATE)])[0]
    assert result.ok and len(result.segments) >= 5
    for start, end in joined.silences:
        if end - start >= 1.0:
            assert not any(s.start_s < start and s.end_s > end for s in result.segments), (start, end)


def test_silero_runs_on_one_thread_and_gives_the_caller_its_count_back(silero, joined):
    """Its ops are too small to share; a second thread only spins. The caller keeps its count."""
    counts = []
    hook = silero._lstm.register_forward_pre_hook(lambda *_: counts.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    try:
        silero.detect(joined.samples[: 5 * RATE])
    finally:
        hook.remove()
    assert counts == [1] and torch.get_num_threads() == 2
