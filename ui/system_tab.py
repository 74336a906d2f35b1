"""The system-info tab: model, versions, CPU/GPU and memory figures (asr.system.sysinfo)."""

from __future__ import annotations

import gradio as gr

from asr.system import sysinfo
from ui.common import AppContext, user_errors


def tables(info: sysinfo.SystemInfo) -> tuple[str, dict]:
    lines = ["| Figure | Value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in info.rows()]
    return "\n".join(lines), info.to_dict()


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    """Components and events of the tab; call inside its `gr.Tab` block."""
    engine = ctx.engine

    @user_errors
    def system_info():
        """Model, versions, GPU/CPU memory and cache figures. Releases torch's cached GPU memory
        first and reports how much it freed."""
        return tables(sysinfo.refresh(engine))

    def system_info_quiet():
        return tables(sysinfo.gather(engine))

    refresh = gr.Button("Refresh (releases cached GPU memory)", elem_id="sysinfo-refresh")
    table = gr.Markdown(elem_id="sysinfo")
    with gr.Accordion("Raw figures (JSON)", open=False):
        raw = gr.JSON(elem_id="sysinfo-json")
    refresh.click(system_info, None, [table, raw], api_name="system_info", concurrency_limit=None)
    demo.load(system_info_quiet, None, [table, raw], api_visibility="private", concurrency_limit=None,
              show_progress="hidden")
