"""The realtime tab: a streaming microphone, text while the user speaks, one session per browser.

Gradio's stream route keeps only the newest chunk while a handler runs, so the chunk handler only
appends to the session (asr.live) and returns; recognition runs on the session's own thread and a
timer shows its latest text.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import gradio as gr

from asr import live
from asr.engine import Engine
from ui.common import AppContext, hotword_label

log = logging.getLogger(__name__)

LATE_CHUNK_S = 1.0  # a chunk this soon after Stop belongs to the recording that just ended


class LiveSessions:
    """One LiveSession per browser session, closed when the session ends.

    A LiveSession owns a worker thread, which must not live in a gr.State initial value (Gradio
    deep-copies those), so sessions are kept here, keyed by Gradio's session hash. Each recording
    gets a fresh session; `use` creates it on whichever arrives first, the start event or the
    first chunk, since Gradio does not order the two.
    """

    def __init__(self, engine: Engine, session_factory=live.LiveSession):
        self.engine = engine
        self.session_factory = session_factory
        self._sessions: dict[str, Any] = {}
        self._stopped: dict[str, float] = {}  # key -> when its recording was stopped
        self._lock = threading.Lock()

    def use(self, key: str, hotwords: str | None):
        """The session of the current recording, starting a new one after a stop."""
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and key not in self._stopped:
                return session
            old = session
            session = self.session_factory(self.engine, self.engine.settings.realtime,
                                           hotwords=hotwords or None)
            self._sessions[key] = session
            self._stopped.pop(key, None)
        if old is not None:
            old.close()
        return session

    def for_chunk(self, key: str, hotwords: str | None):
        """The session a microphone chunk belongs to, or None for a straggler.

        Gradio can deliver a recording's last chunk after its stop event. Such a chunk must not
        open a new session (which would then hold the previous take's hotwords and audio), so
        chunks arriving within LATE_CHUNK_S of a stop are dropped; the stop already finalised
        that recording.
        """
        with self._lock:
            stopped_at = self._stopped.get(key)
            if stopped_at is not None and time.monotonic() - stopped_at < LATE_CHUNK_S:
                return None
        return self.use(key, hotwords)

    def get(self, key: str):
        with self._lock:
            return self._sessions.get(key)

    def stop(self, key: str):
        """Finalise the current recording; returns its last snapshot (None without a session)."""
        with self._lock:
            session = self._sessions.get(key)
            self._stopped[key] = time.monotonic()
        return session.stop() if session is not None else None

    def end(self, key: str) -> None:
        with self._lock:
            session = self._sessions.pop(key, None)
            self._stopped.pop(key, None)
        if session is not None:
            session.close()
            log.info("live session %s closed", key[:8])

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()


def live_status(snapshot) -> str:
    if snapshot is None:
        return "Press **Record** and speak; text appears while you talk."
    parts = [f"{snapshot.audio_s:.1f} s of audio", f"{snapshot.updates} update(s)"]
    if snapshot.updates:
        parts.append(f"last update took {snapshot.last_latency_s:.2f} s")
    line = " · ".join(parts)
    if snapshot.error:
        line += f"\n\n<span class='error-line'>Error: {snapshot.error}</span>"
    return line


def build(ctx: AppContext, demo: gr.Blocks) -> LiveSessions:
    """Components and events of the tab; call inside its `gr.Tab` block. Returns the sessions
    (closed when the app shuts down)."""
    settings = ctx.settings
    sessions = LiveSessions(ctx.engine)
    interval = min(0.5, settings.realtime.update_interval_s)
    gr.Markdown(f"Speak into the microphone: text updates about every "
                f"{settings.realtime.update_interval_s:g} s and a segment is finalised after "
                f"{settings.realtime.pause_s:g} s of silence.")
    with gr.Row():
        with gr.Column(scale=1):
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone 麦克风",
                           elem_id="live-mic")
            hotwords = gr.Textbox(label=hotword_label(settings) + "; set before recording",
                                  elem_id="live-hotwords")
            clear_button = gr.Button("Clear 清除", elem_id="live-clear")
        with gr.Column(scale=2):
            text = gr.Textbox(label="Live text 实时文本", lines=10, interactive=False, buttons=["copy"],
                              elem_id="live-text")
            status = gr.Markdown(live_status(None), elem_id="live-status")
    timer = gr.Timer(interval, active=False)

    def start(words: str, request: gr.Request):
        sessions.use(request.session_hash, words)
        return "", live_status(None), gr.Timer(active=True)

    def push(chunk, words: str, request: gr.Request):
        # Must return at once: Gradio keeps only the newest chunk while this runs.
        if chunk is None:
            return
        try:
            rate, samples = chunk
            session = sessions.for_chunk(request.session_hash, words)
            if session is not None:
                session.push(rate, samples)
        except ValueError as exc:  # a malformed chunk: drop it, keep the stream alive
            log.warning("dropped a microphone chunk: %s", exc)

    def show(request: gr.Request):
        session = sessions.get(request.session_hash)
        if session is None:
            return gr.skip(), gr.skip()
        snap = session.snapshot()
        return snap.text, live_status(snap)

    def stop(request: gr.Request):
        snap = sessions.stop(request.session_hash)
        if snap is None:
            return gr.skip(), gr.skip(), gr.Timer(active=False)
        return snap.text, live_status(snap), gr.Timer(active=False)

    def clear(request: gr.Request):
        session = sessions.get(request.session_hash)
        if session is not None:
            session.clear()
        return "", live_status(None)

    def end(request: gr.Request):
        sessions.end(request.session_hash)

    private = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
    mic.start_recording(start, [hotwords], [text, status, timer], **private)
    mic.stream(push, [mic, hotwords], None, stream_every=0.1, time_limit=None, **private)
    mic.stop_recording(stop, None, [text, status, timer], **private)
    timer.tick(show, None, [text, status], **private)
    clear_button.click(clear, None, [text, status], **private)
    demo.unload(end)
    return sessions
