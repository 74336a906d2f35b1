"""The Tuning tab in a real headless Chromium: an applied batch size reaches every open page.

Two pages are open on one server with a batch-size slider in another tab (as the Single-file and
Batch tabs have). Applying a size on one page moves the sliders of both within the refresh
interval, the second page never having opened the Tuning tab; a value a user set by hand stays
until the next apply.
"""

from __future__ import annotations

import time

import pytest
from helpers import free_port, tiny_settings

pytestmark = [pytest.mark.browser]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def app(tmp_path_factory, loaded_tiny):
    import gradio as gr

    from asr.engine import Engine
    from ui.batch_size_sync import follow_applied_batch_size
    from ui.tuning_tab import build_tuning_tab

    base = tmp_path_factory.mktemp("tuning-browser")
    engine = Engine(tiny_settings(), loaded=loaded_tiny)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(base / "gradio-tmp"))
        with gr.Blocks() as demo:
            with gr.Tabs():
                with gr.Tab("Single", id="single"):
                    slider = gr.Slider(1, 512, value=engine.default_batch_size, step=1, label="Batch size",
                                       interactive=True, elem_id="size-single")
                with gr.Tab("Tuning", id="tuning", elem_id="tab-tuning"):
                    build_tuning_tab(engine, concurrency_id="tuning")
            follow_applied_batch_size(engine, [slider])  # as webui.build_app wires it, at the top
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield {"engine": engine, "url": f"http://127.0.0.1:{port}/"}
        finally:
            demo.close()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#size-single").wait_for()
    return context, page


def _slider(page) -> str:
    return page.locator("#size-single input[type=number]").input_value()


def _apply(page, size: int) -> None:
    page.get_by_role("tab", name="Tuning").click()
    page.locator("#tuning-chosen input").fill(str(size))
    page.locator("#tuning-apply").click()
    page.locator("#tuning-status").get_by_text(f"Default batch size is now {size}").wait_for()
    page.get_by_role("tab", name="Single").click()


def _wait_for(page, expected: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _slider(page) == expected:
            return True
        page.wait_for_timeout(200)
    return _slider(page) == expected


def test_an_applied_batch_size_reaches_pages_already_open(browser, app):
    from ui.batch_size_sync import SLIDER_REFRESH_S

    engine = app["engine"]
    first_ctx, first = _open(browser, app["url"])
    second_ctx, second = _open(browser, app["url"])
    try:
        start = str(engine.default_batch_size)
        assert _slider(first) == _slider(second) == start
        _apply(first, 7)
        assert engine.default_batch_size == 7
        assert _wait_for(first, "7", 4 * SLIDER_REFRESH_S)
        assert _wait_for(second, "7", 4 * SLIDER_REFRESH_S)
        # A value set by hand on the second page is kept: the refresh moves sliders only when the
        # engine's default changes.
        box = second.locator("#size-single input[type=number]")
        box.fill("3")
        box.press("Enter")
        second.wait_for_timeout(int(3 * SLIDER_REFRESH_S * 1000))
        assert _slider(second) == "3"
        _apply(first, 9)
        assert _wait_for(second, "9", 4 * SLIDER_REFRESH_S)
    finally:
        first_ctx.close()
        second_ctx.close()
