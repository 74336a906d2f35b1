"""A run's progress in seconds of audio with its stage (asr.progress), and cancelling a run.

Real engine, random:tiny, real and synthetic audio. Files are cut into several segments
(input.segment_s at its minimum, batch size 1) so recognition moves in visible steps.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile
from helpers import speechlike, tiny_settings

from asr.engine import Engine
from asr.progress import DECODING, DONE, PUNCTUATION, RECOGNITION, SPEECH, STAGES, RunProgress
from asr.recognition.batcher import Cancelled


@pytest.fixture(scope="module")
def stepped(loaded_tiny):
    return Engine(tiny_settings(**{"input.segment_s": 5.0, "batch_size": 1}), loaded=loaded_tiny)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory, reference_wavs):
    """The three real recordings twice over, 0.8 s of silence between them: one file of many
    segments."""
    pieces = []
    for wav in reference_wavs * 2:
        samples, rate = soundfile.read(wav, dtype="float32")
        assert rate == 16000
        pieces += [samples, np.zeros(int(0.8 * rate), dtype=np.float32)]
    path = tmp_path_factory.mktemp("progress") / "long.wav"
    soundfile.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
    return path


def _collect(stepped, inputs, **options) -> tuple[list[RunProgress], object]:
    seen: list[RunProgress] = []
    run = stepped.run(inputs, on_progress=seen.append, **options)
    return seen, run


def test_one_long_file_moves_through_its_stages_in_audio_seconds(stepped, long_wav):
    seen, run = _collect(stepped, [long_wav])
    result = run.results[0]
    assert result.ok and len(result.segments) >= 4  # many segments: recognition moves in steps
    stages = [p.stage for p in seen]
    # Each stage appears, in the pipeline's order, and never goes back.
    firsts = [stages.index(s) for s in (DECODING, SPEECH, RECOGNITION, PUNCTUATION, DONE)]
    assert firsts == sorted(firsts)
    assert [STAGES.index(s) for s in stages] == sorted(STAGES.index(s) for s in stages)
    done = [p.audio_done_s for p in seen]
    assert done == sorted(done) and done[0] == 0.0
    final = seen[-1]
    assert final.stage == DONE and final.files_done == final.files_total == 1
    assert final.audio_done_s == pytest.approx(result.duration_s)
    assert final.audio_total_s == pytest.approx(result.duration_s)  # the decoded length, not the probe
    # In between, recognition reports part of the file: audio seconds, not a finished-file count.
    partial = [p for p in seen if p.stage == RECOGNITION and 0 < p.audio_done_s < result.duration_s]
    assert len(partial) >= 2
    assert all(p.files_done == 0 for p in partial)
    # No estimate before anything is recognised; one once something is.
    assert all(p.eta_s is None for p in seen if p.audio_done_s == 0)
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in partial)
    assert all(0.0 <= p.fraction <= 1.0 for p in seen) and final.fraction == 1.0


def test_a_batch_counts_audio_seconds_and_the_files_callback_still_counts_files(stepped, long_wav, clip_dir):
    inputs = [clip_dir / "clip00.wav", long_wav, clip_dir / "clip04.wav"]
    files: list[tuple[int, int, str]] = []
    seen, run = _collect(stepped, inputs, progress=lambda *call: files.append(call))
    assert [f[:2] for f in files] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(f[2] for f in files) == sorted(p.name for p in inputs)
    total = sum(r.duration_s for r in run.results)
    assert seen[-1].audio_done_s == pytest.approx(total) and seen[-1].audio_total_s == pytest.approx(total)
    # The long file goes first and is counted while it is recognised, before any file is done.
    assert any(p.files_done == 0 and p.audio_done_s > 0 for p in seen)
    assert [p.audio_done_s for p in seen] == sorted(p.audio_done_s for p in seen)


def test_a_failed_file_counts_as_done(stepped, tmp_path, clip_dir):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    seen, run = _collect(stepped, [bad, clip_dir / "clip00.wav"])
    assert not run.results[0].ok and run.results[1].ok
    assert seen[-1].stage == DONE and seen[-1].files_done == 2
    assert seen[-1].fraction == 1.0


def test_cancel_stops_the_run_and_frees_the_batcher(stepped, long_wav, reference_wavs):
    """The UI's Cancel sets the run's event; the run raises Cancelled and its waiting segments
    leave the batcher, which then serves the next run in full."""
    expected = stepped.transcribe([reference_wavs[0]])[0].token_ids
    cancel = threading.Event()
    seen: list[RunProgress] = []

    def watch(progress: RunProgress) -> None:
        seen.append(progress)
        if progress.stage == RECOGNITION and progress.audio_done_s > 0:
            cancel.set()  # as a click would, from another thread, while recognition runs

    with pytest.raises(Cancelled):
        stepped.run([long_wav] * 3, on_progress=watch, cancel=cancel)
    assert seen[-1].stage != DONE and seen[-1].audio_done_s < seen[-1].audio_total_s
    assert stepped.batcher.stats().queued_s == 0.0  # nothing of the cancelled run waits
    assert stepped.transcribe([reference_wavs[0]])[0].token_ids == expected


def test_cancel_during_preparation_stops_before_the_model(stepped, long_wav):
    cancel = threading.Event()

    def watch(progress: RunProgress) -> None:
        if progress.stage == SPEECH:
            cancel.set()

    with pytest.raises(Cancelled):
        stepped.run([long_wav], on_progress=watch, cancel=cancel)
    assert stepped.batcher.stats().queued_s == 0.0


def test_a_raising_progress_callback_stops_the_run(stepped, long_wav):
    """A client that went away: its callback raises on the caller's thread and the run ends."""
    def gone(progress: RunProgress) -> None:
        if progress.audio_done_s > 0:
            raise ConnectionAbortedError("the page was closed")

    with pytest.raises(ConnectionAbortedError):
        stepped.run([long_wav, long_wav], on_progress=gone)
    assert stepped.batcher.stats().queued_s == 0.0


def test_synthetic_files_of_other_rates_report_their_decoded_length(stepped, tmp_path):
    path = tmp_path / "48k.wav"
    soundfile.write(path, speechlike(7.0, seed=3, rate=48000), 48000)
    seen, run = _collect(stepped, [path])
    assert seen[-1].audio_total_s == pytest.approx(run.results[0].duration_s)
    assert run.results[0].duration_s == pytest.approx(7.0, abs=0.01)
