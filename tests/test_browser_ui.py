"""The single-file and batch tabs in a real headless Chromium (issue 23): a player for the upload,
sentences that seek it, clips of ticked sentences, progress in seconds of audio with its stage,
a busy Start and a working Cancel, nothing stale, blank figures before a run, failed batch rows on
top with blank figures, a phone-sized layout, and Chinese by default with a switch.

Each test fails if its fault comes back; expected texts and figures come from the engine itself.
The browser's own language is English on purpose: the page must still start in Chinese.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile
from helpers import free_port, speechlike, tiny_settings

import webui
from asr.engine import Engine
from asr.text import export
from ui.i18n import WORDS, ZH

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword"),
]
TIMEOUT_MS = 60_000
TAB_KEYS = ("single", "batch", "live", "tuning", "system")  # the tabs, in order
ZH_WORDS = WORDS[ZH]


@pytest.fixture(scope="module")
def app(tmp_path_factory, loaded_tiny):
    """Short segments and batch size 1: a long file reaches the model in many small steps."""
    base = tmp_path_factory.mktemp("browser-ui")
    settings = tiny_settings(**{"input.segment_s": 5.0, "batch_size": 1})
    engine = Engine(settings, loaded=loaded_tiny)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(base / "gradio-tmp"))
        mp.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")  # closed pages are noticed (unload) quickly
        demo = webui.build_app(engine)
        _, url, _ = webui.launch_app(demo, settings, port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            yield {"engine": engine, "url": url, "gradio_tmp": base / "gradio-tmp"}
        finally:
            demo.close()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, reference_wavs) -> Path:
    """The three real recordings, 1.2 s of silence between them: several sentences."""
    pieces = []
    for wav in reference_wavs:
        samples, rate = soundfile.read(wav, dtype="float32")
        pieces += [samples, np.zeros(int(1.2 * rate), dtype=np.float32)]
    path = tmp_path_factory.mktemp("ui-audio") / "three.wav"
    soundfile.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    """Ten minutes: 120 segments of 5 s for the model, one at a time."""
    path = tmp_path_factory.mktemp("ui-long") / "long.wav"
    soundfile.write(path, speechlike(600.0, seed=5), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser, app, width: int = 1280, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app["url"])
    page.locator("#single-file").wait_for()
    # The page is in its language once the tab names are: the load sets them, one update per tab,
    # and a loaded machine shows the first one renamed before the others.
    page.wait_for_function(
        "names => JSON.stringify([...document.querySelectorAll('[role=tab]')].map(t => t.innerText)) "
        "=== JSON.stringify(names)",
        arg=[ZH_WORDS[f"tab.{k}"] for k in TAB_KEYS])
    return context, page, errors


@pytest.fixture
def page(browser, app):
    context, page, errors = _open(browser, app)
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def _upload(page, elem_id: str, files: list[Path]) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files([str(f) for f in files])
    page.locator(f"#{elem_id} [data-testid=download-link]").nth(len(files) - 1).wait_for()


def _value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first.input_value()


def _served(href: str, root: Path) -> Path:
    assert "/gradio_api/file=" in href, href
    path = Path(unquote(href.split("/gradio_api/file=", 1)[1]))
    assert path.is_file() and path.resolve().is_relative_to(root.resolve()), path
    return path


def _wait_done(page) -> None:
    page.wait_for_function("() => document.querySelector('#single-speed input')?.value !== ''")
    page.wait_for_function("() => !document.querySelector('#single-start')?.disabled")


def test_chinese_by_default_figures_blank_and_a_language_switch(browser, app):
    """An English browser still gets Chinese; before any run the figures are empty, not 0; the
    switch turns labels, tab names, table headers and the server's words into English, and stays."""
    context, page, errors = _open(browser, app)
    tabs = [t.inner_text() for t in page.get_by_role("tab").all()]
    assert tabs == [ZH_WORDS[f"tab.{k}"] for k in TAB_KEYS]
    assert page.locator("#single-start").inner_text() == ZH_WORDS["common.start"]
    for name in ("confidence", "duration", "processing", "speed"):
        assert _value(page, f"single-{name}") == "", name
    assert ZH_WORDS["single.col_start"] in page.locator("#single-sentences").inner_text()
    # An error from the server, in the page's language.
    page.locator("#single-start").click()
    page.locator(".toast-body").get_by_text(ZH_WORDS["common.no_file"]).wait_for()

    page.locator("#lang-switch").get_by_text("English").click()
    page.wait_for_function("() => document.querySelector('#tab-batch-button')?.innerText === 'Batch'")
    assert page.locator("#single-start").inner_text() == "Start"
    page.locator("#tab-system-button").click()
    page.locator("#sysinfo").get_by_text("CPU matrix instructions").wait_for()  # written by the server
    page.reload()
    page.wait_for_function("() => document.querySelector('#tab-single-button')?.innerText === 'Single file'")
    page.locator("#lang-switch").get_by_text("中文").click()
    page.wait_for_function("w => document.querySelector('#tab-batch-button')?.innerText === w",
                           arg=ZH_WORDS["tab.batch"])
    page.locator("#tab-system-button").click()
    page.locator("#sysinfo").get_by_text(ZH_WORDS["system.row.CPU matrix instructions"]).wait_for()
    context.close()
    assert not errors, errors


def test_player_seek_clip_and_nothing_stale(page, app, recordings, reference_wavs):
    engine = app["engine"]
    expected = engine.transcribe([recordings], timestamps=True)[0]
    assert len(expected.segments) >= 3
    _upload(page, "single-file", [recordings])
    player = page.locator("#single-player audio")
    player.wait_for(state="attached")
    assert page.locator("#single-player").is_visible()
    assert player.evaluate("a => a.src").split("/")[-1] == recordings.name  # the upload, playable

    page.locator("#single-start").click()
    _wait_done(page)
    assert _value(page, "single-text") == expected.text
    table = page.locator("#single-sentences")
    assert table.get_by_test_id("cell-2-4").inner_text() == expected.segments[2].text
    assert ZH_WORDS["single.sentences"].split("：")[0] in table.inner_text()  # labelled sentences

    # Clicking a sentence plays the audio from its start.
    table.get_by_test_id("cell-2-4").click()
    page.wait_for_function("() => !document.querySelector('#single-player audio')?.paused")
    at = player.evaluate("a => a.currentTime")
    start = expected.segments[2].start_s
    assert start - 0.01 <= at < start + 2.0, (at, start)

    # Ticked sentences become a clip: exactly their sound (padded a little), from the original.
    for row in (0, 2):
        table.get_by_test_id(f"cell-{row}-0").locator("input[type=checkbox]").check()
    page.locator("#single-clip").click()
    link = page.locator("#single-clips [data-testid=download-link]").first
    clip = _served(link.get_attribute("href"), app["gradio_tmp"])
    cut, rate = soundfile.read(clip, dtype="int16")
    source, _ = soundfile.read(recordings, dtype="int16")
    spans = [expected.segments[0], expected.segments[2]]
    bounds = [(max(0, round((s.start_s - 0.05) * rate)), round((s.end_s + 0.05) * rate)) for s in spans]
    assert np.array_equal(cut, np.concatenate([source[a:b] for a, b in bounds]))
    assert page.locator("#single-clip-note").inner_text().startswith("2")

    # A new file (here after the upload box's own clear button): nothing of the previous file is
    # left, and the player plays the new one.
    page.locator("#single-file").get_by_role("button", name=re.compile("Clear|清除")).click()
    page.wait_for_function("() => document.querySelector('#single-text textarea')?.value === ''")
    _upload(page, "single-file", [reference_wavs[1]])
    for name in ("confidence", "duration", "processing", "speed"):
        assert _value(page, f"single-{name}") == ""
    assert page.locator("#single-downloads [data-testid=download-link]").count() == 0
    assert page.locator("#single-clips [data-testid=download-link]").count() == 0
    assert table.get_by_test_id("cell-0-4").count() == 0
    page.wait_for_function("n => document.querySelector('#single-player audio')?.src.endsWith(n)",
                           arg=reference_wavs[1].name)


def test_progress_busy_start_and_cancel_that_frees_the_batcher(page, app, long_wav, reference_wavs):
    """While a long file runs: progress in seconds of audio with its stage, Start busy and not
    clickable, Cancel shown. Cancel ends the run, its segments leave the batcher, Start is back."""
    engine = app["engine"]
    _upload(page, "single-file", [long_wav])
    page.locator("#single-start").click()
    pattern = re.escape(ZH_WORDS["stage.recognition"]) + r" · 已处理 ([0-9.]+) / ([0-9.]+) 秒音频"
    page.wait_for_function(
        "p => { const m = new RegExp(p).exec(document.querySelector('#single-progress')?.innerText);"
        " return m && parseFloat(m[1]) > 0; }", arg=pattern)
    with engine.quiet():  # hold the model between two batches, so the run stays where it is
        shown = page.locator("#single-progress").inner_text()
        done, total = map(float, re.search(pattern, shown).groups())
        assert 0 < done < total == pytest.approx(600.0, abs=0.1)
        start = page.locator("#single-start")
        assert start.is_disabled() and start.inner_text() == ZH_WORDS["common.busy"]
        start.click(force=True)  # a second press does nothing while the run goes on
        assert engine.batcher.stats().requests_waiting == 1  # still one run, not two
        page.locator("#single-cancel").click()
        page.locator(".toast-body").get_by_text(ZH_WORDS["common.cancelled"]).wait_for()
        page.wait_for_function("() => !document.querySelector('#single-start')?.disabled")
        assert start.inner_text() == ZH_WORDS["common.start"]
        assert not page.locator("#single-cancel").is_visible()
        stats = engine.batcher.stats()
        assert stats.queued_s == 0.0 and stats.requests_waiting == 0  # nothing of it waits
    assert _value(page, "single-text") == ""
    # The batcher is free: the next file goes through at once.
    expected = engine.transcribe([reference_wavs[0]])[0]
    page.locator("#single-file").get_by_role("button", name=re.compile("Clear|清除")).click()
    _upload(page, "single-file", [reference_wavs[0]])
    page.locator("#single-start").click()
    _wait_done(page)
    assert _value(page, "single-text") == expected.text


def test_batch_table_on_a_phone(browser, app, clip_dir, tmp_path):
    """At 390 px: every tab reachable, headers on one line; failed files on top with blank
    figures and their reason; one line of text per file, the full text on a click."""
    context, page, errors = _open(browser, app, width=390, height=844)
    tablist = page.get_by_role("tab")
    assert tablist.count() == 5 and all(t.is_visible() for t in tablist.all())
    assert not page.locator("#tabs .overflow-menu").is_visible()
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file" * 20)
    good = [clip_dir / "clip03.wav", clip_dir / "clip01.wav"]
    expected = app["engine"].transcribe(good)
    page.locator("#tab-batch-button").click()
    _upload(page, "batch-files", [good[0], bad, good[1]])
    page.locator("#batch-start").click()
    page.locator("#batch-summary").get_by_text("3 个文件：2 个成功，1 个失败").wait_for()
    table = page.locator("#batch-table")
    table.get_by_test_id("cell-2-0").wait_for()
    first = [table.get_by_test_id(f"cell-0-{c}").inner_text().strip() for c in range(6)]
    assert first[0].startswith("✗") and "not a readable audio file" in first[0]
    assert first[1] == "broken.wav" and first[2:] == ["", "", "", ""]
    for row, result in zip((1, 2), expected, strict=True):
        cells = [table.get_by_test_id(f"cell-{row}-{c}").inner_text().strip() for c in range(6)]
        assert cells[0].startswith("✓") and cells[1] == result.file
        assert cells[2] == (result.text if len(result.text) <= 40 else result.text[:39] + "…")
        assert float(cells[3]) == pytest.approx(result.confidence, abs=1e-3)
    headers = table.locator("[role=columnheader]")
    line = page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize) * 2")
    for i in range(headers.count()):
        box = headers.nth(i).bounding_box()
        assert box["height"] < line * 1.6 and box["width"] > 30, (i, box)  # one line, not a letter each
    table.get_by_test_id("cell-1-2").click()
    detail = page.locator("#batch-detail textarea")
    detail.wait_for()
    assert detail.input_value() == f"{expected[0].file}\n\n{expected[0].text}"
    assert export.status_of(expected[0]) == "ok"
    context.close()
    assert not errors, errors


def test_a_closed_page_cancels_its_run(browser, app, long_wav):
    """Closing the page stops its run (Gradio's unload), so no one waits behind an abandoned file.
    The model is held meanwhile, so only the cancel can end the run."""
    engine = app["engine"]
    context, page, _ = _open(browser, app)
    _upload(page, "single-file", [long_wav])
    page.locator("#single-start").click()
    moving = "() => /[1-9][0-9.]* \\//.test(document.querySelector('#single-progress')?.innerText)"
    page.wait_for_function(moving)
    with engine.quiet():
        assert engine.batcher.stats().requests_waiting == 1
        context.close()
        freed = threading.Event()
        for _ in range(300):  # up to 30 s for Gradio to notice the page is gone
            if engine.batcher.stats().requests_waiting == 0:
                freed.set()
                break
            freed.wait(0.1)
        assert freed.is_set(), "the closed page's run still holds the batcher"
        assert engine.batcher.stats().queued_s == 0.0
