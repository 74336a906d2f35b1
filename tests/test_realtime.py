"""Live microphone sessions on the real engine (random:tiny), real recordings and speech-like bursts.

Audio is pushed as the browser delivers it through Gradio 6.31: 0.1 s chunks of 48 kHz int16.
Expected text always comes from the engine itself on the same audio, never from a literal.
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional
from helpers import speechlike, tiny_settings

from asr.audio.decode import to_mono_16k
from asr.engine import Engine
from asr.live import FRAME_S, LiveSession, StreamResampler, join_text
from asr.settings import PROJECT_ROOT, RealtimeSettings
from asr.system.gpu import process_rss_mb

MIC_RATE = 48000
MIC_CHUNK = 4800  # what Gradio's streaming gr.Audio hands the handler every 0.1 s


class RecordingEngine:
    """The real engine, with a record of every recognition: which thread, how long, what audio.

    With `gate` set, each recognition waits for it first, so a test can hold one open.
    """

    def __init__(self, engine, gate: threading.Event | None = None):
        self._engine = engine
        self.gate = gate
        self.entered = threading.Event()
        self.calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def transcribe(self, inputs, **kwargs):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(60), "test never opened the gate"
        started = time.perf_counter()
        results = self._engine.transcribe(inputs, **kwargs)
        self.calls.append({"thread": threading.current_thread(), "audio_s": len(inputs[0][0]) / 16000,
                           "seconds": time.perf_counter() - started})
        return results


def mic_chunks(samples_16k: np.ndarray) -> list[np.ndarray]:
    """16 kHz float audio as the browser would stream it: 48 kHz int16 chunks of 0.1 s."""
    up = torchaudio.functional.resample(torch.from_numpy(samples_16k), 16000, MIC_RATE).numpy()
    pcm = np.clip(np.round(up * 32767), -32768, 32767).astype(np.int16)
    return [pcm[i:i + MIC_CHUNK] for i in range(0, len(pcm), MIC_CHUNK)]


def quiet(seconds: float, seed: int = 0) -> np.ndarray:
    """Room noise about 70 dB below full scale."""
    return np.random.default_rng(seed).normal(0, 3e-4, int(seconds * 16000)).astype(np.float32)


def expected_text(engine, stream_16k: np.ndarray, spans, hotwords=None) -> str:
    """What the engine says on each finalised segment's own audio, joined."""
    text = ""
    for start_s, end_s in spans:
        piece = stream_16k[round(start_s * 16000):round(end_s * 16000)]
        result = engine.transcribe([(piece, 16000)], batch_size=1, hotwords=hotwords)[0]
        assert result.ok, result.error
        text = join_text(text, result.text)
    return text


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_stream_resampler_matches_resampling_the_whole_signal():
    rng = np.random.default_rng(3)
    for rate in (48000, 44100, 8000):
        signal = rng.normal(0, 0.2, rate).astype(np.float32)
        resampler, pieces, at = StreamResampler(rate), [], 0
        while at < len(signal):
            size = int(rng.integers(1, rate // 5))
            pieces.append(resampler.feed(signal[at:at + size]))
            at += size
        pieces.append(resampler.flush())
        streamed = np.concatenate(pieces)
        whole = to_mono_16k(signal, rate)
        assert streamed.shape == whole.shape
        assert np.abs(streamed - whole).max() < 1e-4, rate


def test_push_only_queues_and_the_worker_recognises_while_the_user_speaks(engine):
    """push never runs the model: it returns while a recognition is held open on the worker."""
    gate = threading.Event()
    recorder = RecordingEngine(engine, gate)
    session = LiveSession(recorder, RealtimeSettings(update_interval_s=0.2, pause_s=0.6))
    chunks = mic_chunks(speechlike(6.0, seed=11))
    try:
        for chunk in chunks[:20]:
            session.push(MIC_RATE, chunk)
        assert recorder.entered.wait(30), "the worker never started a recognition"

        # A recognition is now blocked inside the engine. Push the rest from another thread:
        # if push waited for the model, that thread could not finish until the gate opens.
        pusher = threading.Thread(target=lambda: [session.push(MIC_RATE, c) for c in chunks[20:]])
        pusher.start()
        pusher.join(timeout=20)
        assert not pusher.is_alive(), "push waited for a recognition in progress"
        during = session.snapshot()  # snapshot must not wait for the model either
        assert during.audio_s == pytest.approx(len(chunks) * 0.1)
        assert during.updates == 0

        gate.set()
        assert wait_for(lambda: session.snapshot().partial_text != ""), "no text while speaking"
        live = session.snapshot()
        assert live.updates > 0 and live.last_latency_s > 0
        assert live.segments == []  # no pause yet: nothing finalised
        workers = {call["thread"] for call in recorder.calls}
        assert threading.current_thread() not in workers and pusher not in workers
        assert all(t.name.startswith("live-session-") for t in workers)
    finally:
        gate.set()
        session.close()


def test_pauses_finalise_segments_and_stop_finalises_the_tail(engine):
    first, second = speechlike(3.0, seed=1), speechlike(2.5, seed=2)
    stream = np.concatenate([quiet(0.5), first, quiet(1.5, seed=1), second, quiet(0.3, seed=2)])
    session = LiveSession(engine, RealtimeSettings(update_interval_s=1.0, pause_s=0.6), worker=False)
    seen_partial_before_pause = False
    finalised_before_stop = 0
    for at in range(0, len(stream), 1600):  # 0.1 s chunks of 16 kHz float, one update per second
        session.push(16000, stream[at:at + 1600])
        if (at // 1600 + 1) % 10 == 0:
            snap = session.process()
            seen_partial_before_pause |= not snap.segments and snap.partial_text != ""
            finalised_before_stop = len(snap.segments)
    assert seen_partial_before_pause
    assert finalised_before_stop == 1  # the pause closed the first burst; the second is still open

    final = session.stop()
    assert len(final.segments) == 2 and final.partial_text == ""
    (a0, a1), (b0, b1) = final.spans
    assert a0 <= 0.5 <= 3.5 <= a1 <= b0 <= 5.0 <= 7.5 <= b1  # each burst whole in its own segment
    assert final.final_text == expected_text(engine, stream, final.spans)
    assert final.text == final.final_text and final.error is None


def test_real_recordings_streamed_as_48khz_int16_chunks(engine, reference_wavs):
    pieces = []
    for path in reference_wavs:
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == 16000
        pieces += [samples, quiet(1.0)]
    recording = np.concatenate(pieces)
    chunks = mic_chunks(recording)
    session = LiveSession(engine, RealtimeSettings(update_interval_s=0.2, pause_s=0.6))
    try:
        for chunk in chunks:
            session.push(MIC_RATE, chunk)
        final = session.stop()
    finally:
        session.close()
    assert final.audio_s == pytest.approx(sum(len(c) for c in chunks) / MIC_RATE)
    assert len(final.segments) >= len(reference_wavs)  # at least one per recording
    assert final.error is None
    # The session resampled the stream chunk by chunk; the engine gets the same 16 kHz audio.
    as_heard = to_mono_16k(np.concatenate(chunks), MIC_RATE)
    assert final.final_text == expected_text(engine, as_heard, final.spans)


def test_silence_and_a_click_give_no_text_and_no_error(engine):
    session = LiveSession(engine, RealtimeSettings(), worker=False)
    noise = quiet(3.0)
    noise[10_300:11_100] += 0.5  # a 50 ms click straddling two analysis frames
    for chunk in mic_chunks(np.concatenate([np.zeros(32000, np.float32), noise])):
        session.push(MIC_RATE, chunk)
    session.process()
    final = session.stop()
    assert (final.text, final.segments, final.updates, final.error) == ("", [], 0, None)
    assert final.audio_s == pytest.approx(5.0)


def test_clear_empties_everything_and_the_session_keeps_working(engine):
    settings = RealtimeSettings(update_interval_s=1.0, pause_s=0.6)
    session = LiveSession(engine, settings, worker=False)
    for chunk in mic_chunks(np.concatenate([speechlike(2.0, seed=4), quiet(1.0)])):
        session.push(MIC_RATE, chunk)
    assert session.process().segments
    session.push(MIC_RATE, mic_chunks(speechlike(1.0, seed=5))[0])
    session.clear()
    cleared = session.snapshot()
    assert (cleared.text, cleared.segments, cleared.spans, cleared.audio_s, cleared.updates) == \
        ("", [], [], 0.0, 0)
    assert session.stop().text == ""  # the chunk pushed before clear is gone too

    again = np.concatenate([speechlike(2.0, seed=6), quiet(1.0), speechlike(1.5, seed=7)])
    chunks = mic_chunks(again)
    for chunk in chunks:
        session.push(MIC_RATE, chunk)
    final = session.stop()
    assert len(final.segments) == 2 and final.spans[0][0] < 0.3  # a fresh timeline
    assert final.final_text == expected_text(engine, to_mono_16k(np.concatenate(chunks), MIC_RATE),
                                             final.spans)


def test_clear_during_a_recognition_discards_its_result(engine):
    gate = threading.Event()
    recorder = RecordingEngine(engine, gate)
    session = LiveSession(recorder, RealtimeSettings(update_interval_s=0.2))
    try:
        for chunk in mic_chunks(speechlike(2.0, seed=8)):
            session.push(MIC_RATE, chunk)
        assert recorder.entered.wait(30)
        session.clear()
        gate.set()
        session.process()  # waits for the worker's update in flight to finish
        after = session.snapshot()
        assert recorder.calls, "the held recognition did run"
        assert (after.text, after.updates, after.audio_s) == ("", 0, 0.0)
    finally:
        gate.set()
        session.close()


def _workers_of(session: LiveSession) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"live-session-{id(session):x}"]


def test_close_ends_the_worker_and_a_later_push_starts_another(engine):
    session = LiveSession(engine, RealtimeSettings(update_interval_s=0.2))
    assert _workers_of(session) == []  # no thread until audio arrives
    session.push(MIC_RATE, np.zeros(MIC_CHUNK, np.int16))
    assert len(_workers_of(session)) == 1
    session.close()
    assert _workers_of(session) == []
    for chunk in mic_chunks(speechlike(2.0, seed=9)):
        session.push(MIC_RATE, chunk)
    assert len(_workers_of(session)) == 1
    assert wait_for(lambda: session.snapshot().partial_text != "")
    session.close()
    assert _workers_of(session) == []


def test_stereo_chunks_are_downmixed(engine):
    chunks = mic_chunks(np.concatenate([speechlike(2.5, seed=12), quiet(0.5)]))
    mono = LiveSession(engine, RealtimeSettings(), worker=False)
    stereo = LiveSession(engine, RealtimeSettings(), worker=False)
    for chunk in chunks:
        mono.push(MIC_RATE, chunk)
        stereo.push(MIC_RATE, np.stack([chunk, chunk], axis=1))  # (frames, channels), as Gradio sends
    expected = mono.stop()
    assert expected.final_text and stereo.stop().final_text == expected.final_text


def test_hotwords_reach_the_engine_and_bad_ones_are_reported_not_fatal(engine):
    audio = np.concatenate([speechlike(2.0, seed=10), quiet(0.2)])
    words = engine.transcribe([(audio, 16000)], batch_size=1)[0].text[:2]  # in the model's vocab
    good = LiveSession(engine, RealtimeSettings(), hotwords=words, worker=False)
    bad = LiveSession(engine, RealtimeSettings(), hotwords="../etc/passwd", worker=False)
    for session in (good, bad):
        session.push(16000, audio)
    final = good.stop()
    assert final.error is None
    assert final.final_text == expected_text(engine, audio, final.spans, hotwords=words)
    reported = bad.stop()
    assert reported.error and "hotword" in reported.error
    assert reported.final_text == expected_text(engine, audio, reported.spans)
    bad.clear()
    assert bad.snapshot().error == reported.error  # still ignored, so still said


def _minute_of_talk() -> np.ndarray:
    """One minute as 48 kHz int16: speech-like bursts, pauses, one burst longer than a segment."""
    parts = [quiet(1.0, seed=90)]
    for number, (speech, pause) in enumerate([(2.0, 1.0), (5.0, 1.0)]):
        parts += [speechlike(speech, seed=100 + number), quiet(pause, seed=number)]
    used = sum(len(p) for p in parts)
    parts.append(quiet(60.0 - used / 16000, seed=99))
    minute = np.concatenate(mic_chunks(np.concatenate(parts)))
    assert len(minute) == 60 * MIC_RATE
    return minute


def test_thirty_minutes_of_audio_keep_memory_and_update_time_flat(engine):
    """The long-recording failure: memory and latency must not grow with the stream.

    Pushes 30 minutes through push/process/snapshot (what the UI and the worker call), driving
    the updates synchronously so it runs far faster than real time, and compares minutes 0-5
    with minutes 25-30.
    """
    settings = RealtimeSettings(update_interval_s=5.0, pause_s=0.6, max_segment_s=4.0)
    recorder = RecordingEngine(engine)
    session = LiveSession(recorder, settings, worker=False)
    pattern = _minute_of_talk()
    per_update = int(settings.update_interval_s * 10)
    updates = []  # (stream minute, process() seconds, RSS MB)
    for number in range(30 * 60 * 10):
        at = (number * MIC_CHUNK) % len(pattern)
        session.push(MIC_RATE, pattern[at:at + MIC_CHUNK])
        if (number + 1) % per_update == 0:
            started = time.perf_counter()
            session.process()
            took = time.perf_counter() - started
            session.snapshot()
            updates.append(((number + 1) / 600, took, process_rss_mb()))
    final = session.stop()

    assert final.audio_s == pytest.approx(1800.0)
    assert final.error is None
    assert len(final.segments) == 30 * 3  # 2 bursts a minute, the long one cut in two
    # Structural bound: no recognition ever saw more than one segment's worth of audio.
    longest = max(call["audio_s"] for call in recorder.calls)
    assert longest <= settings.max_segment_s + FRAME_S
    early = [u for u in updates if u[0] <= 5]
    late = [u for u in updates if u[0] > 25]
    assert len(early) == len(late) == 60
    # Memory: holding the stream would add ~96 MB (16 kHz float32) over 25 minutes.
    grown = max(u[2] for u in late) - max(u[2] for u in early)
    assert grown < 32, f"RSS grew {grown:.1f} MB between minute 5 and minute 30"
    # Time per update (each minute repeats, so both windows hold the same mix of quiet updates
    # and recognitions): re-recognising the whole stream would be hundreds of times slower by the
    # end. The bounds are loose on purpose (a factor of 10 plus 0.2 s): this must catch growth
    # with the stream's length, never a busy shared CI machine; the structural check on the audio
    # each recognition sees (below) is the exact one.
    early_s = statistics.median(u[1] for u in early)
    late_s = statistics.median(u[1] for u in late)
    assert late_s < 10 * early_s + 0.2, f"update time {early_s:.3f} s -> {late_s:.3f} s"
    sixth = len(recorder.calls) // 6
    early_calls, late_calls = recorder.calls[:sixth], recorder.calls[-sixth:]
    assert statistics.mean(c["audio_s"] for c in late_calls) == pytest.approx(
        statistics.mean(c["audio_s"] for c in early_calls), rel=0.2)
    early_call_s = statistics.median(c["seconds"] for c in early_calls)
    late_call_s = statistics.median(c["seconds"] for c in late_calls)
    assert late_call_s < 10 * early_call_s + 0.2, f"recognition {early_call_s:.3f} -> {late_call_s:.3f} s"


def test_silero_endpointing_cuts_at_the_pauses_of_real_speech(loaded_tiny, reference_wavs):
    """With vad: silero the live stream is cut where Silero hears the speaker stop: three real
    recordings with 1.2 s pauses between them, pushed in 0.1 s chunks at 48 kHz, give finalised
    segments inside the recordings' spans, punctuated when the engine punctuates."""
    from asr.live import Segmenter, frame_detector
    from asr.speech.vad import SileroStream
    from asr.text.punctuation import load_punctuator

    engine = Engine(tiny_settings(vad="silero"), loaded=loaded_tiny,
                    punctuator=load_punctuator("random:tiny", "cpu", PROJECT_ROOT / ".cache"))
    assert isinstance(frame_detector(engine), SileroStream)
    pause = np.zeros(int(1.2 * 16000), np.float32)
    parts, spans, position = [pause], [], len(pause)
    for wav in reference_wavs:
        audio = soundfile.read(wav, dtype="float32")[0]
        parts += [audio, pause]
        spans.append((position / 16000, (position + len(audio)) / 16000))
        position += len(audio) + len(pause)
    stream = np.concatenate(parts)
    session = LiveSession(engine, RealtimeSettings(pause_s=0.6, max_segment_s=20), worker=False)
    rate = 48000
    loud = torchaudio.functional.resample(torch.from_numpy(stream), 16000, rate).numpy()
    chunk = rate // 10
    for start in range(0, len(loud), chunk):
        session.push(rate, (loud[start:start + chunk] * 32767).astype(np.int16))
        if start % (chunk * 10) == 0:
            session.process()
    final = session.stop()
    # Each segment lies inside one recording (none runs across a 1.2 s pause), and every
    # recording is heard (one of them has a 1.4 s pause of its own, which may cut it in two).
    owners = []
    for start, end in final.spans:
        owner = [i for i, (a, b) in enumerate(spans) if a - 0.35 <= start and end <= b + 0.65]
        assert len(owner) == 1, (start, end, spans)
        owners.append(owner[0])
    assert owners == sorted(owners) and set(owners) == set(range(len(spans)))
    assert all(text.endswith(("。", "？")) for text in final.segments)  # punctuated per segment
    assert Segmenter(0.6, 20, frame_detector(engine)).frame == 512  # Silero's 32 ms windows
