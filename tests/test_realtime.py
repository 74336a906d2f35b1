"""Live microphone sessions and their transport on the real engine (random:tiny), real recordings
and speech-like bursts.

Audio is pushed as 0.1 s chunks of 48 kHz int16 (what a browser's microphone gives), and through
ui.live_transport as the page sends it: base64 PCM numbered by its first frame. Expected text
always comes from the engine itself on the same audio, never from a literal.
"""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional
from helpers import free_port, speechlike, tiny_settings

import api
import webui
from asr.audio.resample import resample
from asr.engine import Engine
from asr.live import BACKLOG, FRAME_S, LiveSession, LiveTranscript, join_text
from asr.settings import PROJECT_ROOT, RealtimeSettings
from asr.system.gpu import process_rss_mb
from asr.text import export
from ui import live_transport
from ui.live_tab import live_status, write_downloads
from ui.live_transport import LiveTakes

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


def heard(chunks: list[np.ndarray]) -> np.ndarray:
    """48 kHz int16 chunks as a live session analyses them: scaled, resampled as one signal."""
    return resample(np.concatenate(chunks).astype(np.float32) / 32768, MIC_RATE, 16000)


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


class KeptSession(LiveSession):
    keep_audio_s = 120.0  # keep the 16 kHz audio the session analysed, for comparison


@pytest.mark.parametrize("rate", [48000, 44100, 22050])
def test_the_session_analyses_the_whole_take_resampled_in_one_go(engine, rate):
    """Chunks of any size at the browser's rate give the session exactly the 16 kHz audio that
    resampling the whole take at once gives (asr.audio.resample), with no seam at chunk edges."""
    rng = np.random.default_rng(rate)
    take = np.concatenate([speechlike(2.0, seed=21, rate=rate), np.zeros(rate // 2, np.float32)])
    pcm = np.clip(np.round(take * 32767), -32768, 32767).astype(np.int16)
    session = KeptSession(engine, RealtimeSettings(update_interval_s=0.5), worker=False)
    at = 0
    while at < len(pcm):
        size = int(rng.integers(1, rate // 3))
        session.push(rate, pcm[at:at + size])
        at += size
        if rng.random() < 0.2:
            session.process()
    session.stop()
    whole = resample(pcm.astype(np.float32) / 32768, rate, 16000)
    analysed = session.received_audio()
    assert analysed.shape == whole.shape
    assert np.abs(analysed - whole).max() < 1e-5


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
    assert final.error is None and final.dropped_s == 0
    # The session resampled the stream chunk by chunk; the engine gets the same 16 kHz audio.
    as_heard = heard(chunks)
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
    assert final.final_text == expected_text(engine, heard(chunks), final.spans)


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


# ---- the transport: numbered PCM from the page (ui/live_transport.py) ------------------------------

def _b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


def _send(takes: LiveTakes, ticket: str, start: int, pcm: np.ndarray, *, final: bool = False,
          rate: int = MIC_RATE) -> dict:
    return takes.push({"ticket": ticket, "start": start, "rate": rate, "final": final, "pcm": _b64(pcm)})


def _open(takes: LiveTakes, hotwords: str = "", rate: int = MIC_RATE) -> str:
    opened = takes.open({"rate": rate, "hotwords": hotwords})
    assert opened["ok"], opened
    return opened["ticket"]


def _take_pcm(seconds: float = 3.0, seed: int = 31) -> np.ndarray:
    return np.concatenate(mic_chunks(np.concatenate([speechlike(seconds - 1.0, seed=seed), quiet(1.0)])))


def test_pieces_resent_after_a_lost_answer_are_placed_once(engine):
    """The page resends a piece whose answer it never got, from the same frame: the repeated frames
    are cut, so the take's timeline is the recording exactly, and nothing counts as dropped."""
    takes = LiveTakes(engine, KeptSession)
    pcm = _take_pcm()
    ticket = _open(takes)
    pieces = [(0, 12_000), (12_000, 30_000), (12_000, 30_000), (30_000, 70_000), (50_000, 90_000),
              (90_000, len(pcm))]
    try:
        for number, (a, b) in enumerate(pieces):
            ack = _send(takes, ticket, a, pcm[a:b], final=number == len(pieces) - 1)
            assert ack["ok"] and ack["next"] == b and ack["dropped_s"] == 0.0
        take = takes.bind(ticket, "page-1")
        session = take.session
        final = takes.stop(ticket, "page-1")
    finally:
        takes.close_all()
    assert take.duplicate_frames == 18_000 + 20_000
    assert final.audio_s == pytest.approx(len(pcm) / MIC_RATE)
    assert final.dropped_s == 0.0 and "nothing dropped" in live_status(final, finished=True)
    assert np.array_equal(session.received_audio(), heard([pcm]))
    assert final.final_text == expected_text(engine, heard([pcm]), final.spans)
    assert len(takes) == 0


def test_a_gap_is_kept_as_silence_and_shown_as_dropped(engine):
    """Frames that never arrive keep their place on the timeline (as silence, so later times stay
    true) and are counted as dropped, with the reason, in the answer, the snapshot and the status."""
    takes = LiveTakes(engine, KeptSession)
    pcm = _take_pcm()
    ticket = _open(takes)
    try:
        assert _send(takes, ticket, 0, pcm[:24_000])["ok"]
        ack = _send(takes, ticket, 33_600, pcm[33_600:], final=True)  # 9600 frames (0.2 s) lost
        assert ack["ok"] and ack["dropped_s"] == pytest.approx(0.2)
        takes.bind(ticket, "page-1")
        session = takes.current("page-1").session
        final = takes.stop(ticket, "page-1")
    finally:
        takes.close_all()
    expected = pcm.copy()
    expected[24_000:33_600] = 0
    assert np.array_equal(session.received_audio(), heard([expected]))
    assert final.dropped_s == pytest.approx(0.2) and "never arrived" in final.dropped_reason
    assert final.dropped_causes == [live_transport.GAP]
    status = live_status(final, finished=True)
    assert "0.2</span> s of audio dropped" in status and "never arrived" in status
    assert "浏览器发出的音频没有到达" in live_status(final, finished=True, lang="zh-CN")


def test_requests_the_page_cannot_send_are_refused_and_stop_the_take(engine):
    takes = LiveTakes(engine)
    ticket = _open(takes)
    good = np.zeros(4800, np.int16)
    try:
        for bad in (
            {"ticket": ticket, "start": 0, "rate": 44100, "pcm": _b64(good)},  # not the take's rate
            {"ticket": ticket, "start": -1, "rate": MIC_RATE, "pcm": _b64(good)},
            {"ticket": ticket, "start": 0.5, "rate": MIC_RATE, "pcm": _b64(good)},
            {"ticket": ticket, "start": 0, "rate": MIC_RATE, "pcm": "not base64!"},
            {"ticket": ticket, "start": 0, "rate": MIC_RATE, "pcm": base64.b64encode(b"abc").decode()},
            {"ticket": ticket, "start": 0, "rate": MIC_RATE, "pcm": _b64(np.zeros(6 * MIC_RATE, np.int16))},
        ):
            answer = takes.push(bad)
            assert answer["ok"] is False and answer["fatal"] is True, bad
        for stranger in ({"ticket": "guessed", "start": 0, "rate": MIC_RATE, "pcm": _b64(good)}, "x", None):
            answer = takes.push(stranger)
            assert answer["ok"] is False and "no longer open" in answer["error"]
        assert takes.open({"rate": 100})["ok"] is False
        assert takes.open({"rate": MIC_RATE, "hotwords": 5})["ok"] is False
        assert takes.bind(ticket, "page-1") is not None
        assert takes.bind(ticket, "page-2") is None  # another page cannot show or stop it
        assert takes.stop(ticket, "page-2") is None and len(takes) == 1
    finally:
        takes.close_all()


def test_a_stopped_take_takes_no_more_audio_and_the_next_take_starts_empty(engine):
    """A piece arriving after Stop (a late retry) cannot reach the next recording's session."""
    takes = LiveTakes(engine)
    try:
        first = _open(takes, "甲乙")
        assert _send(takes, first, 0, np.zeros(4800, np.int16), final=True)["ok"]
        takes.bind(first, "page-1")
        takes.stop(first, "page-1")
        second = _open(takes, "丙丁")
        takes.bind(second, "page-1")
        late = _send(takes, first, 4800, np.ones(4800, np.int16))
        assert late["ok"] is False and late["fatal"] is True
        assert takes.current("page-1").session.snapshot().audio_s == 0.0
        assert second != first
    finally:
        takes.close_all()


def test_open_takes_are_bounded_and_idle_ones_are_closed(engine, monkeypatch):
    limited = Engine(tiny_settings(**{"realtime.max_sessions": 2}), loaded=engine.loaded)
    takes = LiveTakes(limited)
    try:
        first, _ = _open(takes), _open(takes)
        refused = takes.open({"rate": MIC_RATE})
        assert refused["ok"] is False and "realtime.max_sessions" in refused["error"]
        takes.end_page("nobody")  # no page holds them: still open
        assert len(takes) == 2
        takes.bind(first, "page-1")
        takes.end_page("page-1")  # the page went away: its take is closed
        assert len(takes) == 1 and _send(takes, first, 0, np.zeros(10, np.int16))["ok"] is False
        monkeypatch.setattr(live_transport, "IDLE_CLOSE_S", 0.0)
        assert _open(takes)  # the idle take is closed first, so this one fits
        assert len(takes) == 1
    finally:
        takes.close_all()


def test_a_backlog_past_its_limit_is_dropped_counted_and_shown(engine):
    """Recognition that falls max_backlog_s behind drops the oldest audio; exactly that much is
    reported, with the setting that decided it."""
    session = LiveSession(engine, RealtimeSettings(max_backlog_s=1.0), worker=False)
    for chunk in mic_chunks(speechlike(3.0, seed=41)):  # 3 s pushed, nothing processed
        session.push(MIC_RATE, chunk)
    snap = session.snapshot()
    assert snap.audio_s == pytest.approx(3.0)
    assert snap.dropped_s == pytest.approx(2.0)
    assert "realtime.max_backlog_s" in snap.dropped_reason and snap.dropped_causes == [BACKLOG]
    assert "2.0</span> s of audio dropped" in live_status(snap)
    assert "识别落后麦克风超过 1 秒" in live_status(snap, lang="zh-CN")
    session.clear()
    assert session.snapshot().dropped_s == 0.0


def test_takes_add_up_and_download_as_txt_and_srt(engine, tmp_path):
    """A second take is added below the first, never replacing it; txt holds every take, srt a cue
    per segment with later takes' times continuing after the earlier takes' audio."""
    transcript = LiveTranscript()
    takes = []
    for seed in (51, 52):
        session = LiveSession(engine, RealtimeSettings(pause_s=0.6), worker=False)
        for chunk in mic_chunks(np.concatenate([speechlike(1.5, seed=seed), quiet(1.0),
                                                speechlike(1.0, seed=seed + 10), quiet(0.5)])):
            session.push(MIC_RATE, chunk)
        take = session.stop()
        assert take.text and len(take.segments) == 2
        transcript.add(take)
        takes.append(take)
    assert transcript.text() == f"{takes[0].text}\n{takes[1].text}"
    paths = write_downloads(transcript, tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["live.txt", "live.srt"]
    assert open(paths[0], encoding="utf-8").read() == transcript.text() + "\n"
    cues = open(paths[1], encoding="utf-8").read().strip().split("\n\n")
    spans = takes[0].spans + [(a + takes[0].audio_s, b + takes[0].audio_s) for a, b in takes[1].spans]
    assert len(cues) == 4
    for cue, text, (start, end) in zip(cues, takes[0].segments + takes[1].segments, spans, strict=True):
        assert cue.split("\n")[1:] == [f"{export.clock(start, ',')} --> {export.clock(end, ',')}", text]
    transcript.clear()
    assert transcript.text() == "" and write_downloads(transcript, tmp_path) == []


def test_the_transport_is_behind_the_servers_login(loaded_tiny):
    """The recorder's server functions ride Gradio's component route, which the app's door locks
    like every other: with credentials set, an anonymous page cannot open a take; a caller with
    a credential can, and gets a ticket."""
    settings = tiny_settings(**{"server.api_keys": ["key-1"]})
    engine = Engine(settings, loaded=loaded_tiny)
    demo = webui.build_app(engine)
    app = api.build_api(engine)
    webui.mount(app, demo, settings)
    port = free_port()
    server = api.serve(app, "127.0.0.1", port)
    recorder = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "live-recorder")

    def open_take(headers: dict) -> tuple[int, dict | None]:
        body = {"data": {"rate": MIC_RATE, "hotwords": ""}, "component_id": recorder._id,
                "fn_name": "live_open", "session_hash": "page-1"}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/component_server/",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    try:
        assert open_take({})[0] == 401
        assert open_take({"Authorization": "Bearer wrong"})[0] == 401
        status, answer = open_take({"Authorization": "Bearer key-1"})
        assert status == 200 and answer["ok"] and len(answer["ticket"]) >= 20
        assert len(demo.live_sessions) == 1
    finally:
        demo.live_sessions.close_all()
        server.should_exit = True
        server.thread.join(10)


def test_the_live_tabs_hotwords_reach_the_model(reference_wavs):
    """The live face, through the transport the page calls (open with the hotword box, push the
    microphone's PCM, stop): the planted model writes the hotword at the start of every piece it
    recognises only when the hotword reached it (asr/models/random_weights/hotword.py)."""
    from asr.models.random_weights.hotword import HOTWORD_SPEC

    planted = Engine(tiny_settings(model=HOTWORD_SPEC))
    speech = np.concatenate([soundfile.read(reference_wavs[0], dtype="float32")[0], quiet(1.5)])
    pcm = np.concatenate(mic_chunks(speech))

    def take(hotwords: str) -> str:
        takes = LiveTakes(planted, KeptSession)
        try:
            ticket = _open(takes, hotwords)
            step = MIC_RATE // 2
            for start in range(0, len(pcm), step):
                end = min(start + step, len(pcm))
                assert _send(takes, ticket, start, pcm[start:end], final=end == len(pcm))["ok"]
            takes.bind(ticket, "page-1")
            return takes.stop(ticket, "page-1").final_text
        finally:
            takes.close_all()

    plain, biased = take(""), take("保修")
    assert plain and "保" not in plain and "修" not in plain
    assert biased.startswith("保修")
