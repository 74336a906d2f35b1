"""The web UI in a real headless Chromium: upload, batch, fake-microphone streaming, system info.

Debian's Chromium is driven by Playwright; its fake audio device plays a real Mandarin recording
into the realtime tab. Screenshots of every tab go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import functools
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from helpers import free_port, tiny_settings

import webui
from asr import live as realtime
from asr.audio.decode import TARGET_RATE, decode_bytes, read_file
from asr.engine import Engine
from asr.results import join_text
from asr.settings import PROJECT_ROOT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword"),
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
TIMEOUT_MS = 30_000
# Chromium's capture processing (gain control, noise suppression) reshapes the fake microphone's
# signal. Measured here: a single-tab recording correlates 0.83 with the file played (0.06-0.07
# with the other test recordings); a live session's chunks 0.85-0.88 (0.30-0.39 with the others,
# each chunk taking its best lag). 0.6 leaves margin both ways.
MIN_CORRELATION = 0.6


@pytest.fixture(scope="module")
def app(tmp_path_factory, loaded_tiny, clip_dir):
    base = tmp_path_factory.mktemp("browser")
    allowed = base / "allowed"
    allowed.mkdir()
    shutil.copy(clip_dir / "clip00.wav", allowed / "a.wav")
    settings = tiny_settings(**{"batch.allowed_dirs": [str(allowed)]})
    engine = Engine(settings, loaded=loaded_tiny)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(base / "gradio-tmp"))
        mp.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")  # closed pages are noticed (unload) quickly
        demo = webui.build_app(engine)
        _, url, _ = webui.launch_app(demo, settings, port=free_port(), prevent_thread_lock=True,
                                     quiet=True)
        try:
            yield {"engine": engine, "url": url, "demo": demo, "gradio_tmp": base / "gradio-tmp"}
        finally:
            demo.close()


@pytest.fixture(scope="module")
def mic_wav(reference_wavs) -> Path:
    """The fake microphone's recording: must be 16-bit PCM, else Chromium plays silence."""
    import soundfile

    wav = reference_wavs[0]
    assert soundfile.info(str(wav)).subtype == "PCM_16"
    return wav


@pytest.fixture(scope="module")
def browser(chromium_path, mic_wav):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
        ])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, app):
    context = browser.new_context(permissions=["microphone"], viewport={"width": 1280, "height": 900},
                                  locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app["url"])
    page.locator("#single-file").wait_for()
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webui-{name}.png"), full_page=True)


def _upload(page, elem_id: str, files: list[Path]) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files([str(f) for f in files])
    rows = page.locator(f"#{elem_id} [data-testid=download-link]")
    rows.nth(len(files) - 1).wait_for()


def _text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def _number_of(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input").input_value())


# Tab names follow the page's language; their buttons' ids do not. Older bilingual names map on.
TAB_IDS = {"Single file 单个文件": "single", "Batch 批量": "batch", "Realtime 实时识别": "live",
           "Batch-size tuning 批大小调优": "tuning", "System info 系统信息": "system"}


def _open_tab(page, name: str) -> None:
    """`name`: a tab's id (single, batch, live, tuning, system) or its old bilingual name."""
    page.locator(f"#tab-{TAB_IDS.get(name, name)}-button").click()


def _samples_16k(path: Path) -> np.ndarray:
    return decode_bytes(read_file(path), path.name).samples


def _best_correlation(recorded: np.ndarray, source: np.ndarray, min_overlap: int) -> tuple[float, int]:
    """(correlation, lag): the best normalised cross-correlation of `recorded` against `source`
    over every lag at which they overlap by at least `min_overlap` samples, normalised over that
    overlap; recorded[i] lines up with source[i + lag]."""
    x, y = recorded.astype(np.float64), source.astype(np.float64)
    n, m = len(x), len(y)
    size = 1 << (n + m).bit_length()
    cc = np.fft.irfft(np.conj(np.fft.rfft(x, size)) * np.fft.rfft(y, size), size)
    lags = np.arange(-(n - 1), m)
    products = np.concatenate([cc[size - (n - 1):], cc[:m]])
    ex, ey = (np.concatenate([[0.0], np.cumsum(v * v)]) for v in (x, y))
    lo, hi = np.maximum(0, -lags), np.minimum(n, m - lags)  # the overlap, as indices into x
    energy = (ex[hi] - ex[lo]) * (ey[hi + lags] - ey[lo + lags])
    usable = (hi - lo >= min_overlap) & (energy > 0)
    if not usable.any():
        return 0.0, 0
    ncc = np.where(usable, products / np.sqrt(np.where(usable, energy, 1.0)), -np.inf)
    best = int(np.argmax(ncc))
    return float(ncc[best]), int(lags[best])


def _align_chunks(received: np.ndarray, source: np.ndarray, chunk: int = TARGET_RATE // 10,
                  min_db: float = -35.0) -> tuple[float, list[int]]:
    """(correlation, positions) of a live session's 16 kHz audio against the file played.

    Gradio's streaming microphone drops, repeats and swaps 0.1 s chunks when its server is busy
    (a chunk that arrives while the handler runs replaces the one waiting; chunk uploads race),
    so the received stream is not one stretch of the file. Each 0.1 s chunk on the session's
    timeline that carries sound is aligned on its own: `positions` are where in `source` they
    start, in the order received, and `correlation` is that of all of them against the source
    pieces they align with, taken together.
    """
    dot = energy_r = energy_s = 0.0
    positions = []
    for start in range(0, len(received) - chunk + 1, chunk):
        piece = received[start:start + chunk].astype(np.float64)
        if 10 * np.log10(np.mean(piece * piece) + 1e-12) < min_db:
            continue  # quiet or silent: nothing to recognise it by
        _, lag = _best_correlation(piece, source, min_overlap=chunk)
        match = source[lag:lag + chunk].astype(np.float64)
        dot += piece @ match
        energy_r += piece @ piece
        energy_s += match @ match
        positions.append(lag)
    correlation = dot / np.sqrt(energy_r * energy_s) if positions else 0.0
    return float(correlation), positions


def test_single_file_upload_shows_text_and_timing(page, app, reference_wavs):
    wav = reference_wavs[0]
    expected = app["engine"].transcribe([wav])[0]
    _upload(page, "single-file", [wav])
    page.locator("#single-start").click()
    page.wait_for_function("t => document.querySelector('#single-text textarea').value === t",
                           arg=expected.text)
    assert _text_of(page, "single-text") == expected.text
    page.wait_for_function("() => document.querySelector('#single-speed input').value !== ''")
    assert _number_of(page, "single-duration") == pytest.approx(expected.duration_s, abs=0.01)
    assert _number_of(page, "single-processing") > 0
    assert _number_of(page, "single-speed") > 0
    links = page.locator("#single-downloads [data-testid=download-link]")
    links.nth(1).wait_for()
    listed = page.locator("#single-downloads").inner_text().replace("\n", "")  # name, suffix on 2 lines
    assert f"{wav.stem}.txt" in listed and f"{wav.stem}.json" in listed
    _shot(page, "1-single")


def test_batch_of_three_fills_the_table(page, app, clip_dir):
    files = [clip_dir / "clip01.wav", clip_dir / "clip02.wav", clip_dir / "clip06.wav"]
    expected = app["engine"].transcribe(files)
    _open_tab(page, "Batch 批量")
    _upload(page, "batch-files", files)
    page.locator("#batch-start").click()
    summary = page.locator("#batch-summary")
    summary.get_by_text("3 个文件：3 个成功，0 个失败").wait_for()  # the page speaks Chinese
    table = page.locator("#batch-table")
    for row, (path, result) in enumerate(zip(files, expected, strict=True)):
        cells = [table.get_by_test_id(f"cell-{row}-{col}").inner_text().strip() for col in (0, 1, 2)]
        shown = result.text if len(result.text) <= 40 else result.text[:39] + "…"  # one line each
        assert cells == ["✓ 完成", path.name, shown]
    page.locator("#batch-exports [data-testid=download-link]").nth(2).wait_for()
    _shot(page, "2-batch")


def _wait_for_scripts_to_settle(page, quiet_ms: int = 500, limit_ms: int = 15_000) -> None:
    """The streaming recorder's scripts load lazily on the tab switch; Record before they arrive
    streams nothing. Wait until no script request has been in flight for `quiet_ms`."""
    in_flight: set = set()
    page.on("request", lambda r: in_flight.add(r) if r.resource_type == "script" else None)
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    quiet = waited = 0
    while quiet < quiet_ms and waited < limit_ms:
        page.wait_for_timeout(100)
        waited += 100
        quiet = 0 if in_flight else quiet + 100


def _recording_live_sessions(monkeypatch, app) -> list:
    """Make the app's live sessions keep the 16 kHz audio they analyse; returns them as they are made.

    ui.live_tab.LiveSessions builds sessions with the factory it was given; this gives it the
    real LiveSession class with its opt-in audio record on, plus an event set when `stop` has
    finalised the recording (the test's cue that the final text exists).
    """
    made: list = []

    class Recorded(realtime.LiveSession):
        keep_audio_s = 60.0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.stopped = threading.Event()
            self.final: realtime.LiveSnapshot | None = None
            made.append(self)

        def stop(self):
            self.final = super().stop()
            self.stopped.set()
            return self.final

    monkeypatch.setattr(app["demo"].live_sessions, "session_factory", Recorded)
    return made


def test_realtime_microphone_streams_text(page, app, mic_wav, monkeypatch):
    """The live text after Stop is the engine's text for the utterances the session cut from the
    audio it received, and that audio is the recording the fake microphone played."""
    made = _recording_live_sessions(monkeypatch, app)
    source = _samples_16k(mic_wav)
    _open_tab(page, "Realtime 实时识别")
    page.locator("#live-mic").wait_for()
    _wait_for_scripts_to_settle(page)
    page.locator("#live-mic button.record-button").click()
    # Partial text shows while the recording plays (in real time) ...
    page.wait_for_function("() => document.querySelector('#live-text textarea').value.length > 0",
                           timeout=20_000)
    page.locator("#live-status").get_by_text("update(s)").wait_for()
    # ... and it is stopped once all of it, and a pause after it, has arrived.
    page.wait_for_function("s => parseFloat(document.querySelector('#live-status').innerText) >= s",
                           arg=len(source) / TARGET_RATE + 1.0, timeout=20_000)
    _shot(page, "3-realtime")
    page.locator("#live-mic button.stop-button").click()
    page.locator("#live-mic button.record-button").wait_for()
    assert len(made) == 1
    session = made[0]
    assert session.stopped.wait(TIMEOUT_MS / 1000), "Stop did not finalise the live session"
    final, received = session.final, session.received_audio()

    # What the session received is the played file, 0.1 s chunk by 0.1 s chunk, about in order.
    assert len(received) / TARGET_RATE == pytest.approx(final.audio_s, abs=0.01)
    correlation, positions = _align_chunks(received, source)
    order = np.corrcoef(np.argsort(np.argsort(positions)), np.arange(len(positions)))[0, 1]
    assert len(positions) >= 10, positions  # at least 1 s of the recording's sound
    assert correlation > MIN_CORRELATION, (correlation, positions)
    assert order > 0.9, positions
    assert max(positions) - min(positions) > len(source) / 2, positions  # not just one stretch

    # Stop finalised every utterance; each one's text is the engine's for exactly its audio.
    assert final.spans and final.partial_text == ""
    bounds = [(round(a * TARGET_RATE), round(b * TARGET_RATE)) for a, b in final.spans]
    edges = [edge for span in bounds for edge in span]
    assert edges == sorted(edges) and all(a < b for a, b in bounds) and edges[-1] <= len(received)
    engine = app["engine"]
    texts = [engine.transcribe([(received[a:b], TARGET_RATE)], batch_size=1)[0].text for a, b in bounds]
    assert final.segments == texts
    expected = functools.reduce(join_text, texts, "")
    assert final.text == expected
    page.wait_for_function("t => document.querySelector('#live-text textarea').value === t",
                           arg=expected)

    page.locator("#live-clear").click()
    page.wait_for_function("() => document.querySelector('#live-text textarea').value === ''")
    # Leaving the page ends the browser session, and its LiveSession (a worker thread) with it.
    sessions = app["demo"].live_sessions
    assert len(sessions) == 1
    page.close()
    for _ in range(50):
        if len(sessions) == 0:
            break
        time.sleep(0.1)
    assert len(sessions) == 0


def _served_file(link, root: Path) -> Path:
    """The server file behind a file component's download link (Gradio serves /gradio_api/file=PATH)."""
    href = link.get_attribute("href")
    assert "/gradio_api/file=" in href, href
    path = Path(unquote(href.split("/gradio_api/file=", 1)[1]))
    assert path.is_file() and path.resolve().is_relative_to(root.resolve()), path
    return path


def test_single_tab_recording_is_transcribed(page, app, mic_wav):
    """The recording lands in the file box as the audio the fake microphone played, and Start
    shows the engine's text and duration for that very file."""
    _wait_for_scripts_to_settle(page)
    page.locator("#single-mic button.record-button").click()
    page.locator("#single-mic button.stop-button").wait_for()
    started = time.monotonic()
    page.wait_for_timeout(2500)  # how long the user speaks: the recording's length, not a sync
    page.locator("#single-mic button.stop-button").click()
    held = time.monotonic() - started
    recording = _served_file(page.locator("#single-file [data-testid=download-link]"),
                             app["gradio_tmp"])
    samples = _samples_16k(recording)
    assert abs(len(samples) / TARGET_RATE - held) < 0.75, (len(samples) / TARGET_RATE, held)
    # All of it (but for a few ms at the ends) is a stretch of the played file.
    correlation, lag = _best_correlation(samples, _samples_16k(mic_wav),
                                         min_overlap=len(samples) - TARGET_RATE // 4)
    assert correlation > MIN_CORRELATION, (correlation, lag)

    expected = app["engine"].transcribe([recording])[0]
    assert expected.ok and expected.text  # else the comparison below would prove little
    page.locator("#single-start").click()
    page.wait_for_function("() => document.querySelector('#single-speed input').value !== ''")
    assert _text_of(page, "single-text") == expected.text
    assert _number_of(page, "single-duration") == pytest.approx(expected.duration_s, abs=0.01)
    assert expected.duration_s == pytest.approx(len(samples) / TARGET_RATE, abs=0.01)


def test_system_info_and_tuning_tabs(page, app):
    _open_tab(page, "Batch-size tuning 批大小调优")
    page.locator("#tuning-start").wait_for()
    tuning = app["engine"].settings.tuning  # the tab starts from the engine's own settings
    assert page.locator("#tuning-sizes textarea").input_value() == ", ".join(map(str, tuning.sizes))
    assert page.locator("#tuning-repeats input").input_value() == str(tuning.repeats)
    _shot(page, "4-tuning")
    _open_tab(page, "System info 系统信息")
    info = page.locator("#sysinfo")
    info.get_by_text("random:tiny").wait_for()
    page.locator("#sysinfo-refresh").click()
    info.get_by_text("已释放的 GPU 缓存").wait_for()  # "Released cached GPU memory", in the page's language
    engine = app["engine"]
    shown = info.inner_text()
    assert f"({engine.loaded.parameters:,})" in shown  # the loaded model's own count
    assert f"{engine.recognizer.threads}" in shown and engine.loaded.cpu_gemm in shown
    _shot(page, "5-system")
