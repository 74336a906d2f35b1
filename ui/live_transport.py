"""How the live microphone's audio gets from the browser to a LiveSession without losing any.

Gradio's streaming `gr.Audio` cannot do it: its stream route (`/stream/{event_id}` in
gradio/routes.py) stores each incoming chunk in the event's one `data` slot, so a chunk that
arrives while the handler is still busy replaces the one waiting. Under CPU load a 20 s recording
reached the server as 13-18 s, with no sign of it (docs/realtime.md has the measurement).
fastrtc, Gradio's WebRTC library, requires gradio<6, and WebRTC carries audio as lossy,
unretransmitted RTP anyway.

Here the page captures raw PCM with an AudioWorklet (ui/live_recorder_js.py) and sends it to
this module's two server functions, which Gradio serves on its `/component_server` route behind
the same login check as every other UI route (no route of our own, so nothing new to guard).
Each request carries the position of its first frame in the take; one request is in flight per
take and what is captured meanwhile waits in the page for the next, so a slow server delays the
text but drops nothing. A lost answer is retried with the same position and the repeated frames
are cut here; a position past the end reports the gap as dropped and fills it with silence, so
the take's timeline stays true. A take's ticket, a random 128-bit token that `live_open` gives
only to the page that asked, is the one handle on its audio.

`LiveTakes` holds the open takes: opened by the page, bound to the Gradio session that shows its
text (the "started" event), finished by "stopped" after the page has sent its last frame. Takes
nobody touched for `IDLE_CLOSE_S` are closed, and at most `realtime.max_sessions` are open.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from asr import live
from asr.engine import Engine
from ui import i18n
from ui.live_recorder_js import RECORDER_CSS, RECORDER_HTML, recorder_js

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 8000, 192000  # sample rates a browser's AudioContext may run at
MAX_PUSH_S = 5.0  # the most audio one request may carry (the page sends at most 2 s)
MAX_GAP_S = 10.0  # a gap longer than this is counted but not filled with silence
IDLE_CLOSE_S = 120.0  # a take with no request for this long is closed (its page went away)
GAP = "gap"  # the cause of frames the page sent that never arrived (LiveSession.note_dropped)


class TransportError(ValueError):
    """A request the page could not have sent: refused, and the take is told to stop."""


@dataclass
class Take:
    """One recording: its session, where the next frame belongs, and who shows it."""

    ticket: str
    session: Any  # a live.LiveSession (or a test's subclass)
    rate: int
    next_frame: int = 0  # frames of the take placed on its timeline so far
    page: str | None = None  # the Gradio session hash showing it, once "started" arrived
    ended: bool = False  # the page sent its last frame
    finished: live.LiveSnapshot | None = None  # the final snapshot, once stopped
    duplicate_frames: int = 0  # frames sent twice (a retried request), cut
    gap_frames: int = 0  # frames never received
    last_seen: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


def decode_pcm(text: Any, rate: int) -> np.ndarray:
    """The int16 little-endian samples of one request, checked for size before decoding."""
    if not isinstance(text, str):
        raise TransportError("pcm must be a base64 string")
    if len(text) > (int(MAX_PUSH_S * rate) * 2 // 3 + 2) * 4:
        raise TransportError(f"one request may carry at most {MAX_PUSH_S:g} s of audio")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TransportError("pcm is not valid base64") from None
    if len(raw) % 2:
        raise TransportError("pcm must hold whole 16-bit samples")
    return np.frombuffer(raw, dtype="<i2")


def _whole(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise TransportError(f"{name} must be a whole number")
    value = int(value)
    if value < low or (high is not None and value > high):
        raise TransportError(f"{name} out of range: {value}")
    return value


class LiveTakes:
    """The open takes of one app, keyed by ticket; thread-safe."""

    def __init__(self, engine: Engine, session_factory: Callable[..., Any] = live.LiveSession):
        self.engine = engine
        self.session_factory = session_factory
        self._takes: dict[str, Take] = {}
        self._lock = threading.Lock()

    # ---- server functions (called by the page) -------------------------------------------------

    def open(self, request: Any) -> dict[str, Any]:
        """A new take: {"ok": True, "ticket": ...} or {"ok": False, "error": ...}."""
        try:
            if not isinstance(request, dict):
                raise TransportError("expected an object")
            rate = _whole(request.get("rate"), "rate", MIN_RATE, MAX_RATE)
            hotwords = request.get("hotwords") or ""
            if not isinstance(hotwords, str):
                raise TransportError("hotwords must be text")
        except TransportError as exc:
            return {"ok": False, "error": str(exc)}
        self._close_idle()
        limit = self.engine.settings.realtime.max_sessions
        with self._lock:
            if len(self._takes) >= limit:
                log.warning("live recording refused: %d open (realtime.max_sessions)", limit)
                return {"ok": False, "error": f"the server is already taking {limit} live recordings "
                                              "(realtime.max_sessions); try again later"}
            ticket = secrets.token_urlsafe(16)
            session = self.session_factory(self.engine, self.engine.settings.realtime,
                                           hotwords=hotwords or None)
            self._takes[ticket] = Take(ticket, session, rate)
        log.info("live take %s opened at %d Hz", ticket[:6], rate)
        return {"ok": True, "ticket": ticket}

    def push(self, request: Any) -> dict[str, Any]:
        """Place one request's audio on its take's timeline; the answer says what arrived."""
        take = self._take_of(request)
        if take is None:
            return {"ok": False, "fatal": True, "error": "this recording is no longer open on the server"}
        try:
            with take.lock:
                return self._push(take, request)
        except TransportError as exc:
            log.warning("live take %s: refused a request: %s", take.ticket[:6], exc)
            return {"ok": False, "fatal": True, "error": str(exc)}

    # ---- Gradio events (the page's session) ------------------------------------------------------

    def bind(self, ticket: Any, page: str) -> Take | None:
        """Show the take on `page`; None for an unknown ticket or one bound to another page."""
        take = self._get(ticket)
        if take is None:
            return None
        with take.lock:
            if take.page is None:
                take.page = page
            return take if take.page == page else None

    def current(self, page: str) -> Take | None:
        """The page's take still recording, if any."""
        with self._lock:
            takes = [t for t in self._takes.values() if t.page == page and t.finished is None]
        return takes[-1] if takes else None

    def stop(self, ticket: Any, page: str) -> live.LiveSnapshot | None:
        """Finalise the take (all its audio has been sent) and forget it; None if not this page's."""
        take = self.bind(ticket, page)
        if take is None:
            return None
        with take.lock:
            if take.finished is None:
                if not take.ended:
                    log.warning("live take %s stopped before its last frame arrived", take.ticket[:6])
                take.ended = True
                take.finished = take.session.stop()
        with self._lock:
            self._takes.pop(take.ticket, None)
        take.session.close()
        log.info("live take %s finished: %.1f s received, %.2f s dropped", take.ticket[:6],
                 take.finished.audio_s, take.finished.dropped_s)
        return take.finished

    def end_page(self, page: str) -> None:
        """The page went away: close its takes without finalising them."""
        with self._lock:
            gone = [t for t in self._takes.values() if t.page == page]
            for take in gone:
                del self._takes[take.ticket]
        for take in gone:
            take.session.close()

    def close_all(self) -> None:
        with self._lock:
            takes, self._takes = list(self._takes.values()), {}
        for take in takes:
            take.session.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._takes)

    # ---- internals -----------------------------------------------------------------------------

    def _get(self, ticket: Any) -> Take | None:
        if not isinstance(ticket, str):
            return None
        with self._lock:
            take = self._takes.get(ticket)
        if take is not None:
            take.last_seen = time.monotonic()
        return take

    def _take_of(self, request: Any) -> Take | None:
        return self._get(request.get("ticket")) if isinstance(request, dict) else None

    def _push(self, take: Take, request: dict[str, Any]) -> dict[str, Any]:
        rate = _whole(request.get("rate"), "rate", MIN_RATE, MAX_RATE)
        if rate != take.rate:
            raise TransportError(f"the take was opened at {take.rate} Hz, not {rate} Hz")
        start = _whole(request.get("start"), "start", 0)
        samples = decode_pcm(request.get("pcm"), rate)
        final = request.get("final") is True
        if take.ended:
            return self._ack(take)  # a retried last request: it all arrived the first time
        if start > take.next_frame:
            gap = start - take.next_frame
            take.gap_frames += gap
            fill = min(gap, int(MAX_GAP_S * rate))
            if fill:
                take.session.push(rate, np.zeros(fill, dtype=np.int16))
            take.session.note_dropped(gap / rate, GAP, "audio sent by the browser never arrived")
            take.next_frame = start
        skip = take.next_frame - start
        if skip > 0:
            take.duplicate_frames += min(skip, len(samples))
            samples = samples[skip:]
        if samples.size:
            take.session.push(rate, samples)
            take.next_frame += len(samples)
        take.ended = final
        return self._ack(take)

    @staticmethod
    def _ack(take: Take) -> dict[str, Any]:
        snap = take.session.snapshot()
        return {"ok": True, "next": take.next_frame, "received_s": round(snap.audio_s, 3),
                "dropped_s": round(snap.dropped_s, 3)}

    def _close_idle(self) -> None:
        cutoff = time.monotonic() - IDLE_CLOSE_S
        with self._lock:
            idle = [t for t in self._takes.values() if t.last_seen < cutoff]
            for take in idle:
                del self._takes[take.ticket]
        for take in idle:
            log.info("live take %s closed after %.0f s without a request", take.ticket[:6], IDLE_CLOSE_S)
            take.session.close()


WORD_PREFIX = "live.rec_"  # the recorder's words in ui/i18n.py's tables (ui/live_tab.py registers them)


def recorder_words() -> dict[str, dict[str, str]]:
    """{language: {key: text}} of the recorder's words, for its script."""
    return {lang: {key[len(WORD_PREFIX):]: text for key, text in i18n.WORDS[lang].items()
                   if key.startswith(WORD_PREFIX)} for lang in (i18n.EN, i18n.ZH)}


def recorder(takes: LiveTakes, elem_id: str = "live-recorder") -> gr.HTML:
    """The Record/Stop control: a `gr.HTML` whose script captures and sends the audio. It fires
    `started` and `stopped` events whose data carries the take's ticket (see `LiveTakes`)."""

    def live_open(request):
        return takes.open(request)

    def live_push(request):
        return takes.push(request)

    return gr.HTML(value="", html_template=RECORDER_HTML, css_template=RECORDER_CSS,
                   js_on_load=recorder_js(recorder_words(), i18n.STORAGE_KEY, i18n.DEFAULT_LANG),
                   server_functions=[live_open, live_push], elem_id=elem_id,
                   apply_default_css=False)
