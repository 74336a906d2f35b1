"""`python -m benchmarks.live_transport`: how much of a live recording reaches the server, under CPU load.

A real headless Chromium plays a recording through its fake microphone into two servers in this
process, each on its own port, sharing one engine:

  gradio  the transport the realtime tab used before: `gr.Audio(streaming=True)`, whose handler
          only appends each 0.1 s chunk to a LiveSession (asr.live), exactly as the old tab did
  page    the tab as it is now (webui.build_app): PCM captured by an AudioWorklet and sent in
          numbered pieces to the recorder's server functions (ui/live_transport.py)

Each run records `--seconds` of the repository's test recordings (tests/audio, joined and cut),
stops a second after the file has played, waits for the take to finish, and reads the server's
LiveSession: the seconds it received and the 16 kHz audio it analysed. With `--burners N`, N
busy-looping processes (bounded by a deadline, killed after the run) load the CPU from before
Record until after Stop; each transport runs with no load and with that load, `--rounds` times,
alternating the order.

Reported per run: seconds the browser sent (gradio: every chunk the page uploaded, each a wav
file of 0.1 s; page: the frames the recorder counted as acknowledged), seconds the server received,
received/sent, and `covered`: the share of the file's sounding 0.1 s pieces found in the audio
the server analysed (normalised correlation >= 0.6 at their best lag), which is what a
transcript can be made of. Progress goes to stderr, the table to stdout; `--json OUT` keeps it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile

from asr.settings import PROJECT_ROOT

log = logging.getLogger("benchmarks.live_transport")

TRANSPORTS = ("gradio", "page")
RATE = 16000
PIECE = RATE // 10  # 0.1 s, the old transport's chunk
MIN_CORRELATION = 0.6  # Chromium's processing reshapes the old path's audio; other recordings score < 0.4
CHROMIUM = "/usr/bin/chromium"

_BURN = """
import sys, time
deadline = time.monotonic() + float(sys.argv[1])
x = 0
while time.monotonic() < deadline:
    for _ in range(100000):
        x += 1
"""


@contextlib.contextmanager
def burn_cpu(processes: int, limit_s: float = 120.0) -> Iterator[list[subprocess.Popen]]:
    """`processes` busy-looping Python processes for the block; each also stops by itself after
    `limit_s`, so nothing outlives a crashed caller for long."""
    procs = [subprocess.Popen([sys.executable, "-c", _BURN, str(limit_s)]) for _ in range(processes)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_recording(seconds: float, folder: Path) -> Path:
    """The repository's test recordings joined (0.4 s apart, repeated as needed), cut to `seconds`,
    as 16-bit PCM (Chromium's fake microphone plays silence for anything else)."""
    sources = sorted((PROJECT_ROOT / "tests" / "audio").glob("*.wav"))
    if not sources:
        raise SystemExit("no recordings in tests/audio")
    pieces, total = [], 0
    gap = np.zeros(int(0.4 * RATE), dtype=np.float32)
    while total < seconds * RATE:
        for path in sources:
            audio, rate = soundfile.read(path, dtype="float32")
            if rate != RATE or audio.ndim != 1:
                raise SystemExit(f"{path}: expected 16 kHz mono")
            pieces += [audio, gap]
            total += len(audio) + len(gap)
    signal = np.concatenate(pieces)[:int(seconds * RATE)]
    path = folder / f"recording-{seconds:g}s.wav"
    soundfile.write(path, signal, RATE, subtype="PCM_16")
    return path


def best_match(piece: np.ndarray, signal: np.ndarray) -> tuple[float, int]:
    """(normalised correlation, lag) of `piece` at its best place wholly inside `signal`."""
    n, m = len(piece), len(signal)
    if m < n:
        return 0.0, 0
    size = 1 << (n + m).bit_length()
    cc = np.fft.irfft(np.conj(np.fft.rfft(piece, size)) * np.fft.rfft(signal, size), size)[:m - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(signal.astype(np.float64) ** 2)])
    window = energy[n:] - energy[:-n]
    norm = np.sqrt(np.maximum(window, 1e-12) * float(piece @ piece))
    score = np.where(window > 1e-9, cc / norm, -1.0)
    best = int(np.argmax(score))
    return float(score[best]), best


def coverage(source: np.ndarray, received: np.ndarray, min_db: float = -35.0) -> tuple[float, int]:
    """(share, pieces): of the source's 0.1 s pieces that carry sound, the share found in `received`."""
    found = sounding = 0
    for start in range(0, len(source) - PIECE + 1, PIECE):
        piece = source[start:start + PIECE].astype(np.float64)
        if 10 * np.log10(np.mean(piece * piece) + 1e-12) < min_db:
            continue
        sounding += 1
        found += best_match(piece, received.astype(np.float64))[0] >= MIN_CORRELATION
    return (found / sounding if sounding else 0.0), sounding


@dataclass
class Run:
    transport: str
    burners: int
    sent_s: float
    received_s: float
    covered: float
    dropped_s: float  # what the server itself reported as dropped (the page transport says; gradio cannot)

    @property
    def ratio(self) -> float:
        return self.received_s / self.sent_s if self.sent_s else 0.0


def recording_sessions(factory):
    """A LiveSession class that keeps the audio it analyses and lists its instances."""
    made = []

    class Recorded(factory):
        keep_audio_s = 600.0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.finished = threading.Event()
            self.final = None
            made.append(self)

        def stop(self):
            self.final = super().stop()
            self.finished.set()
            return self.final

    return Recorded, made


def old_app(engine, session_class):
    """The realtime tab's previous transport, reduced to it: the stream handler only appends."""
    sessions: dict[str, object] = {}

    def start(request: gr.Request):
        sessions[request.session_hash] = session_class(engine, engine.settings.realtime)

    def push(chunk, request: gr.Request):
        session = sessions.get(request.session_hash)
        if chunk is not None and session is not None:
            session.push(*chunk)

    def stop(request: gr.Request):
        session = sessions.get(request.session_hash)
        if session is not None:
            session.stop()

    with gr.Blocks() as demo:
        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", elem_id="old-mic")
        private = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
        mic.start_recording(start, None, None, **private)
        mic.stream(push, [mic], None, stream_every=0.1, time_limit=None, **private)
        mic.stop_recording(stop, None, None, **private)
    return demo


def settle_scripts(page, quiet_ms: int = 500, limit_ms: int = 15_000) -> None:
    """Gradio's recorder scripts load lazily; Record before they arrive streams nothing. Waits
    until no script request has been in flight for `quiet_ms`."""
    in_flight: set = set()
    page.on("request", lambda r: in_flight.add(r) if r.resource_type == "script" else None)
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    quiet = waited = 0
    while quiet < quiet_ms and waited < limit_ms:
        page.wait_for_timeout(100)
        waited += 100
        quiet = 0 if in_flight else quiet + 100


def record_once(browser, url: str, transport: str, seconds: float, burners: int, made: list,
                source: np.ndarray) -> Run:
    context = browser.new_context(permissions=["microphone"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    uploads = []  # the old transport uploads every chunk as a wav file, then names it in a stream request
    page.on("request", lambda r: uploads.append(r.url) if (
        r.method == "POST" and r.url.endswith("/gradio_api/upload")) else None)
    started = time.time()
    try:
        page.goto(url)
        if transport == "page":
            page.locator("#tab-live-button").click()
            control = page.locator("#live-recorder .seaco-live")
            record, stop = control.locator("[data-live=record]"), control.locator("[data-live=stop]")
        else:
            control = page.locator("#old-mic")
            record, stop = control.locator("button.record-button"), control.locator("button.stop-button")
        record.wait_for()
        settle_scripts(page)
        before = len(made)
        with burn_cpu(burners):
            page.wait_for_timeout(1000)  # the load is on before Record
            record.click()
            page.wait_for_timeout(int((seconds + 1.0) * 1000))
            stop.click()
            if transport == "page":
                page.wait_for_function("e => e.dataset.state === 'idle'", arg=control.element_handle(),
                                       timeout=120_000)
            deadline = time.monotonic() + 120
            while len(made) == before or not made[-1].finished.is_set():
                if time.monotonic() > deadline:
                    raise RuntimeError("the take never finished")
                page.wait_for_timeout(100)
            page.wait_for_timeout(1500)  # the old transport may still deliver chunks after Stop
        session = made[-1]
        snap = session.snapshot()
        if transport == "page":
            sent = int(control.get_attribute("data-sent-frames")) / int(control.get_attribute("data-rate"))
        else:
            sent = len(uploads) * chunk_seconds(Path(os.environ["GRADIO_TEMP_DIR"]), started)
        share, _ = coverage(source, session.received_audio())
        return Run(transport, burners, round(sent, 2), round(snap.audio_s, 2), round(share, 3),
                   round(snap.dropped_s, 2))
    finally:
        context.close()


def chunk_seconds(upload_root: Path, since: float) -> float:
    """The length of the old transport's chunks, from the wav files it uploaded since `since`."""
    lengths = [soundfile.info(path).duration for path in upload_root.rglob("audio.wav")
               if path.stat().st_mtime >= since]
    if not lengths:
        raise RuntimeError("the old transport uploaded no chunk")
    return float(np.median(lengths))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the recording played")
    parser.add_argument("--burners", type=int, default=2 * (os.cpu_count() or 1),
                        help="busy processes for the loaded runs (default: twice the cores)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per transport and load")
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="gradio,page")
    parser.add_argument("--model", default="random:tiny", help="the engine's model (default random:tiny)")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--json", type=Path, help="save the runs and the machine here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not transports or set(transports) - set(TRANSPORTS):
        print(f"--transports: choose from {', '.join(TRANSPORTS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    load = os.getloadavg()  # other work on the machine counts as load too: say how much there was
    folder = Path(tempfile.mkdtemp(prefix="live-transport-"))
    try:
        _measure(args, transports, folder, load)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _measure(args: argparse.Namespace, transports: list[str], folder: Path, load: tuple) -> None:
    from playwright.sync_api import sync_playwright

    import webui
    from asr import live
    from asr.engine import Engine
    from asr.settings import load_settings
    from asr.system.cpu import detect_cpu

    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")  # the chunks counted are this run's
    wav = make_recording(args.seconds, folder)
    source = soundfile.read(wav, dtype="float32")[0]
    settings = load_settings(PROJECT_ROOT / "config.yaml", overrides={
        "model": args.model, "device": "cpu", "punctuation": "off", "vad": "energy"})
    engine = Engine(settings)
    session_class, made = recording_sessions(live.LiveSession)
    servers, urls = [], {}
    if "gradio" in transports:
        demo = old_app(engine, session_class)
        demo.queue(default_concurrency_limit=1)
        _, urls["gradio"], _ = demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
        servers.append(demo)
    if "page" in transports:
        demo = webui.build_app(engine)
        demo.live_sessions.session_factory = session_class
        _, urls["page"], _ = webui.launch_app(demo, settings, port=free_port(), prevent_thread_lock=True,
                                              quiet=True)
        servers.append(demo)
    runs: list[Run] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}%noloop"])
            try:
                for number in range(args.rounds):
                    order = transports if number % 2 == 0 else transports[::-1]
                    for burners in (0, args.burners):
                        for transport in order:
                            run = record_once(browser, urls[transport], transport, args.seconds, burners,
                                              made, source)
                            log.info("%s", run)
                            runs.append(run)
            finally:
                browser.close()
    finally:
        for demo in servers:
            demo.close()
    cpu = detect_cpu()
    print(f"# {args.seconds:g} s recording, {args.rounds} round(s); CPU: {cpu.model}, {cpu.describe()} "
          f"({os.cpu_count()} cores); model {args.model}; load average before: {load[0]:.2f}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d}")
    print("transport  burners  sent_s  received_s  received/sent  covered  dropped_s(reported)")
    for run in runs:
        print(f"{run.transport:9}  {run.burners:7d}  {run.sent_s:6.2f}  {run.received_s:10.2f}  "
              f"{run.ratio:13.3f}  {run.covered:7.3f}  {run.dropped_s:9.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "runs": [asdict(r) | {"ratio": r.ratio} for r in runs], "seconds": args.seconds,
            "cpu": cpu.to_dict(), "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_before": load,
            "model": args.model, "date": datetime.now(timezone.utc).isoformat()}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
