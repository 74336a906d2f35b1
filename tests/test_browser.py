"""The web UI in a real headless Chromium: upload, batch, fake-microphone streaming, system info.

Debian's Chromium is driven by Playwright; its fake audio device plays a real Mandarin recording
into the realtime tab. Screenshots of every tab go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import free_port, tiny_settings

import webui
from asr.engine import Engine
from asr.settings import PROJECT_ROOT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword"),
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
TIMEOUT_MS = 30_000



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
            yield {"engine": engine, "url": url, "demo": demo}
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


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


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
    summary.get_by_text("3 file(s): 3 ok, 0 failed").wait_for()
    table = page.locator("#batch-table")
    for row, (path, result) in enumerate(zip(files, expected, strict=True)):
        cells = [table.get_by_test_id(f"cell-{row}-{col}").inner_text().strip() for col in (0, 1, 5)]
        assert cells == [path.name, result.text, "ok"]
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


def test_realtime_microphone_streams_text(page, app):
    _open_tab(page, "Realtime 实时识别")
    page.locator("#live-mic").wait_for()
    _wait_for_scripts_to_settle(page)
    page.locator("#live-mic button.record-button").click()
    # The 5.5 s recording plays in real time; partial text shows before it ends.
    page.wait_for_function("() => document.querySelector('#live-text textarea').value.length > 0",
                           timeout=20_000)
    live = _text_of(page, "live-text")
    assert live
    page.locator("#live-status").get_by_text("update(s)").wait_for()
    _shot(page, "3-realtime")
    page.locator("#live-mic button.stop-button").click()
    page.locator("#live-mic button.record-button").wait_for()
    page.wait_for_timeout(500)
    assert _text_of(page, "live-text")  # stop finalises; the text stays
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


def test_single_tab_recording_is_transcribed(page, app):
    _wait_for_scripts_to_settle(page)
    page.locator("#single-mic button.record-button").click()
    page.locator("#single-mic button.stop-button").wait_for()
    page.wait_for_timeout(1500)
    page.locator("#single-mic button.stop-button").click()
    # The recording lands in the file box, and Start recognises it.
    page.locator("#single-file [data-testid=download-link]").wait_for()
    page.locator("#single-start").click()
    page.wait_for_function("() => document.querySelector('#single-duration input').value !== ''")
    assert 0.5 < _number_of(page, "single-duration") < 5


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
    info.get_by_text("Released cached GPU memory").wait_for()
    engine = app["engine"]
    shown = info.inner_text()
    assert f"({engine.loaded.parameters:,})" in shown  # the loaded model's own count
    assert f"{engine.recognizer.threads}" in shown and engine.loaded.cpu_gemm in shown
    _shot(page, "5-system")
