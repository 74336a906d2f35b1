"""Named hotword lists on the single and batch tabs: pick a saved list to add its words to the
hotword box, save the box under a name, delete a list.

The lists live on the server in one file beside config.yaml (`hotwords.lists_file`, read and
written by asr.recognition.hotword_lists), so a team keeps 医疗, 法律, 公司名 lists once and
everyone picks from them. The page fills the box, which stays editable, so what is sent is
always what the user sees; scripts name a list instead (`hotword_list`, the endpoints' last
input), and its words join the typed ones under the same limit.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from asr.recognition.hotword_lists import NamedLists
from asr.recognition.hotwords import HotwordError, parse_hotwords
from asr.settings import Settings
from ui.common import AppContext, user_errors
from ui.i18n import lang_of, register, t, tf, tr

log = logging.getLogger(__name__)

_SEPARATED = re.compile(r"[^\s,，、;；]+")  # words as asr.recognition.hotwords splits typed text
MAX_LISTS = 100  # lists in the file: each is a few hundred bytes, but anyone signed in may add one

register("hwlist", {
    "choose": "Hotword list",
    "choose_info": "Pick a saved list to add its words to the hotword box.",
    "manage": "Save or delete a hotword list",
    "name": "List name",
    "name_placeholder": "e.g. 医疗",
    "save": "Save the hotword box as this list",
    "delete": "Delete this list",
    "help": "Lists are kept on the server in `{file}` beside config.yaml, shared by everyone who uses it.",
    "saved": "Saved the list “{name}” ({count} words).",
    "deleted": "Deleted the list “{name}”.",
    "over_limit": "The hotword box now holds {count} words; a request may use at most {limit}: remove some.",
    "too_many": "There are already {limit} lists; delete one first.",
    "no_name": "Type a name for the list first.",
}, {
    "choose": "热词列表",
    "choose_info": "选择已保存的列表，把它的词加入热词框。",
    "manage": "保存或删除热词列表",
    "name": "列表名称",
    "name_placeholder": "例如：医疗",
    "save": "把热词框保存为此列表",
    "delete": "删除此列表",
    "help": "列表保存在服务器上 config.yaml 旁的 `{file}` 中，所有使用者共享。",
    "saved": "已保存列表“{name}”（{count} 个词）。",
    "deleted": "已删除列表“{name}”。",
    "over_limit": "热词框中现有 {count} 个词，每次请求最多使用 {limit} 个：请删去一些。",
    "too_many": "已有 {limit} 个列表，请先删除一个。",
    "no_name": "请先填写列表名称。",
})


def named_lists(settings: Settings) -> NamedLists:
    hw = settings.hotwords
    return NamedLists(settings.resolve_path(hw.lists_file), hw.max_count, hw.max_chars)


def request_hotwords(settings: Settings, typed: str | None, list_name: str | None) -> str | list[str] | None:
    """The typed words plus a named list's (the limit holds for the union); None when neither."""
    name = (list_name or "").strip()
    if not name:
        return typed or None
    hw = settings.hotwords
    words = parse_hotwords(typed or None, hw.max_count, hw.max_chars) + named_lists(settings).get(name)
    return parse_hotwords(words, hw.max_count, hw.max_chars)


def merged(box: str | None, words: list[str]) -> list[str]:
    """The box's words, then the list's that are not there yet, in order. The box is split as
    typed hotwords are; its words are checked when the run starts, not here."""
    out = list(dict.fromkeys(_SEPARATED.findall(box or "")))
    return out + [w for w in words if w not in out]


@dataclass
class ListControls:
    chooser: gr.Dropdown
    list_name: gr.Textbox  # hidden: the endpoints' `hotword_list` input (empty on the page)


def build(ctx: AppContext, box: gr.Textbox, prefix: str, expose_api: bool = False) -> ListControls:
    """The chooser and its save/delete controls for the hotword `box`; call where they should
    appear. With `expose_api`, saving, deleting and listing are endpoints (save_hotword_list,
    delete_hotword_list, hotword_lists); one tab exposes them, so their names stay unique."""
    settings = ctx.settings
    hw = settings.hotwords

    def names() -> list[str]:
        try:
            return named_lists(settings).names()
        except HotwordError as exc:  # a hand-edited file gone wrong: say so, keep the page working
            log.warning("hotword lists unreadable: %s", exc)
            return []

    chooser = gr.Dropdown(names(), value=None, label=t("hwlist.choose"), info=t("hwlist.choose_info"),
                          elem_id=f"{prefix}-hotword-list")
    with gr.Accordion(t("hwlist.manage"), open=False, elem_id=f"{prefix}-hotword-lists"):
        name = gr.Textbox(label=t("hwlist.name"), placeholder=t("hwlist.name_placeholder"), max_lines=1,
                          elem_id=f"{prefix}-list-name")
        with gr.Row():
            save = gr.Button(t("hwlist.save"), elem_id=f"{prefix}-list-save", size="sm")
            delete = gr.Button(t("hwlist.delete"), variant="stop", elem_id=f"{prefix}-list-delete", size="sm")
        gr.Markdown(tf("hwlist.help", file=Path(hw.lists_file).name), elem_classes=["help-line"])
        note = gr.Markdown(elem_id=f"{prefix}-list-note")
    lists = gr.JSON(visible=False)  # every list (name -> words): the endpoints' answer to scripts
    list_name = gr.Textbox(visible=False, elem_id=f"{prefix}-list-input")

    @user_errors
    def choose(chosen: str | None, typed: str | None, request: gr.Request = None):
        """A list picked: its words join the box (in order, none twice); the picker empties again
        so it can add another, and the name box holds the pick for saving or deleting."""
        if not chosen:
            return gr.update(), gr.update(), gr.update(value=None)
        words = merged(typed, named_lists(settings).get(chosen))
        if len(words) > hw.max_count:
            gr.Warning(tr("hwlist.over_limit", lang_of(request), count=len(words), limit=hw.max_count))
        return " ".join(words), chosen, gr.update(value=None)

    @user_errors
    def save_hotword_list(list_title: str, words: str, request: gr.Request = None):
        """Save `words` (the hotword box's text: spaces or commas between) as the named list
        `list_title`, replacing a list of that name. Returns a message and every list."""
        lang = lang_of(request)
        title = (list_title or "").strip()
        if not title:
            raise gr.Error(tr("hwlist.no_name", lang), print_exception=False)
        store = named_lists(settings)
        if title not in store.names() and len(store.names()) >= MAX_LISTS:
            raise gr.Error(tr("hwlist.too_many", lang, limit=MAX_LISTS), print_exception=False)
        saved = store.save(title, words or "")
        log.info("hotword list %r saved (%d words)", title, len(saved))
        return tr("hwlist.saved", lang, name=title, count=len(saved)), store.all()

    @user_errors
    def delete_hotword_list(list_title: str, request: gr.Request = None):
        """Delete the named list `list_title`. Returns a message and the lists left."""
        lang = lang_of(request)
        title = (list_title or "").strip()
        if not title:
            raise gr.Error(tr("hwlist.no_name", lang), print_exception=False)
        store = named_lists(settings)
        store.delete(title)
        log.info("hotword list %r deleted", title)
        return tr("hwlist.deleted", lang, name=title), store.all()

    @user_errors
    def hotword_lists():
        """Every saved list: {name: [words]}."""
        return named_lists(settings).all()

    def offer(current: Any):
        """The picker's choices, from the file as it is now (another page may have saved)."""
        return gr.update(choices=sorted(current or {}), value=None)

    def api(endpoint: str) -> dict[str, Any]:
        if expose_api:
            return {"api_name": endpoint, "concurrency_limit": 4}
        return {"api_visibility": "private", "concurrency_limit": 4}

    private: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    chooser.input(choose, [chooser, box], [box, name, chooser], **private)
    chooser.focus(hotword_lists, None, lists, show_progress="hidden", **api("hotword_lists")).then(
        offer, lists, chooser, **private)
    save.click(save_hotword_list, [name, box], [note, lists], **api("save_hotword_list")).then(
        offer, lists, chooser, **private)
    delete.click(delete_hotword_list, name, [note, lists], **api("delete_hotword_list")).then(
        offer, lists, chooser, **private)
    ctx.language_hooks.append((lambda _lang: gr.update(choices=names()), [], [chooser]))  # fresh on load
    return ListControls(chooser, list_name)
