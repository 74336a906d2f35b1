"""The page's own part of hotword lists and speaker names, in a real headless Chromium: what an
endpoint cannot show (a picked list filling the box, a list saved on one tab offered on the
other, a name typed into the table reaching the sentence table and the downloads).

The planted model (`random:hotword`) writes a hotword only when it reached the model, so the
text proves that the box the list filled is what was sent; GE2E labels a conversation of real
voices. Expectations come from the engine and ui.speaker_names, never from literals.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from helpers import running_ui, tiny_settings, write_conversation

from asr.engine import Engine
from asr.models.random_weights.hotword import HOTWORD_SPEC
from asr.text import export
from ui.i18n import WORDS, ZH
from ui.speaker_names import renamed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword"),
]
TIMEOUT_MS = 60_000
ZH_WORDS = WORDS[ZH]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("faces-browser")
    lists = base / "hotwords.yaml"
    lists.write_text("客服:\n  - 佳作\n", encoding="utf-8")
    _, talk, _ = write_conversation(base)
    settings = tiny_settings(model=HOTWORD_SPEC, speaker_model="ge2e", vad="silero",
                             **{"hotwords.lists_file": str(lists)})
    engine = Engine(settings)
    with running_ui(engine, base / "gradio-tmp") as url:
        yield {"engine": engine, "url": url, "lists": lists, "talk": talk, "gradio_tmp": base / "gradio-tmp"}


@pytest.fixture
def page(chromium_path, app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1400}, locale="en-US")
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(app["url"])
        page.wait_for_function("w => document.querySelector('#tab-single-button')?.innerText === w",
                               arg=ZH_WORDS["tab.single"])
        yield page
        browser.close()
        assert not errors, f"errors in the page: {errors}"


def _box(page, elem_id: str):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def _pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _served(href: str, root: Path) -> Path:
    path = Path(unquote(href.split("/gradio_api/file=", 1)[1]))
    assert path.resolve().is_relative_to(root.resolve()), path
    return path


def test_lists_fill_the_box_and_are_shared_between_tabs(page, app):
    """A picked list joins the typed words; the box saved under a name is in the file and offered
    on the batch tab too, where picking it fills that tab's box."""
    _box(page, "single-hotwords").fill("保修")
    _pick(page, "single-hotword-list", "客服")
    page.wait_for_function("() => document.querySelector('#single-hotwords textarea, #single-hotwords input')"
                           "?.value === '保修 佳作'")
    page.locator("#single-hotword-lists").get_by_text(ZH_WORDS["hwlist.manage"]).click()
    assert _box(page, "single-list-name").input_value() == "客服"  # the pick, ready to save or delete
    _box(page, "single-list-name").fill("售后")
    page.locator("#single-list-save").click()
    page.wait_for_function("w => document.querySelector('#single-list-note')?.innerText.includes(w)",
                           arg=ZH_WORDS["hwlist.saved"].format(name="售后", count=2))
    assert yaml.safe_load(app["lists"].read_text(encoding="utf-8"))["售后"] == ["保修", "佳作"]

    page.locator("#tab-batch-button").click()
    _pick(page, "batch-hotword-list", "售后")
    page.wait_for_function("() => document.querySelector('#batch-hotwords textarea, #batch-hotwords input')"
                           "?.value === '保修 佳作'")


def test_speakers_in_the_table_and_names_in_the_downloads(page, app):
    """The box a list filled reaches the model (the planted word leads the text); speakers fill
    the sentence table; a name typed for S1 reaches the table and every download."""
    engine, talk = app["engine"], app["talk"]
    expected = engine.transcribe([talk], speakers="auto", hotwords="佳作")[0]
    assert expected.speakers == ["S1", "S2", "S3"] and expected.text.startswith("佳作")
    _pick(page, "single-hotword-list", "客服")
    _pick(page, "single-speakers", ZH_WORDS["common.speakers_auto"])
    assert page.locator("#single-timestamps input").is_disabled()  # speakers need sentence times
    page.locator("#single-file input[type=file]").set_input_files([str(talk)])
    page.locator("#single-file [data-testid=download-link]").first.wait_for()
    page.locator("#single-start").click()
    page.wait_for_function("() => document.querySelector('#single-speed input')?.value !== ''")
    assert _box(page, "single-text").input_value() == expected.text
    table = page.locator("#single-sentences")
    for row, segment in enumerate(expected.segments[:3]):
        assert table.get_by_test_id(f"cell-{row}-3").inner_text().strip() == segment.speaker
        assert table.get_by_test_id(f"cell-{row}-4").inner_text().strip() == segment.text

    names = page.locator("#single-names")
    assert [names.get_by_test_id(f"cell-{r}-0").inner_text().strip() for r in range(3)] == ["S1", "S2", "S3"]
    names.get_by_test_id("cell-0-1").dblclick()
    page.keyboard.type("主持人")
    page.keyboard.press("Enter")
    page.locator("#single-rename").click()
    page.locator("#single-rename-note").get_by_text(ZH_WORDS["names.done"].format(count=1)).wait_for()
    named = renamed(expected, {"S1": "主持人"})
    page.wait_for_function("() => document.querySelector('#single-sentences [data-testid=cell-0-3]')"
                           "?.innerText.trim() === '主持人'")
    assert [table.get_by_test_id(f"cell-{r}-3").inner_text().strip() for r in range(3)] == [
        s.speaker for s in named.segments[:3]]
    links = page.locator("#single-downloads [data-testid=download-link]")
    hrefs = links.evaluate_all("ls => ls.map(l => l.href)")
    files = {Path(h).suffix: _served(h, app["gradio_tmp"]) for h in hrefs}
    assert set(files) == {".txt", ".json", ".srt", ".vtt", ".tsv"}
    min_s = engine.settings.subtitles.min_s
    for fmt in ("txt", "srt", "vtt", "tsv"):
        assert files[f".{fmt}"].read_text(encoding="utf-8") == export.render(named, fmt, min_s), fmt
