"""The system-info tab: model, versions, CPU/GPU and memory figures (asr.system.sysinfo), with the
figures' names in the page's language (values are data: names, versions, sizes)."""

from __future__ import annotations

import gradio as gr

from asr.system import sysinfo
from ui.common import AppContext, user_errors
from ui.i18n import EN, WORDS, lang_of, t, tr


def tables(info: sysinfo.SystemInfo, lang: str = EN) -> tuple[str, dict]:
    lines = [f"| {tr('system.col_figure', lang)} | {tr('system.col_value', lang)} |", "|---|---|"]
    for label, value in info.rows():
        key = f"system.row.{label}"
        lines.append(f"| {tr(key, lang) if key in WORDS[EN] else label} | {value} |")
    return "\n".join(lines), info.to_dict()


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    """Components and events of the tab; call inside its `gr.Tab` block."""
    engine = ctx.engine

    @user_errors
    def system_info(request: gr.Request = None):
        """Model, versions, GPU/CPU memory and cache figures. Releases torch's cached GPU memory
        first and reports how much it freed."""
        return tables(sysinfo.refresh(engine), lang_of(request))

    def system_info_quiet(lang: str):
        return tables(sysinfo.gather(engine), lang)

    refresh = gr.Button(t("system.refresh"), elem_id="sysinfo-refresh")
    table = gr.Markdown(elem_id="sysinfo")
    with gr.Accordion(t("system.raw"), open=False):
        raw = gr.JSON(elem_id="sysinfo-json")
    refresh.click(system_info, None, [table, raw], api_name="system_info", concurrency_limit=None)
    # Filled as the page loads, and again in another language when it changes (webui wires it).
    ctx.language_hooks.append((system_info_quiet, [], [table, raw]))
