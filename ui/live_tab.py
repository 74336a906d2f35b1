"""The realtime tab: the microphone, text while the user speaks, every take kept and downloadable.

The audio travels by ui/live_transport.py, which loses nothing (Gradio's own streaming microphone
keeps only the newest chunk while its handler is busy). Recognition runs on each take's own
thread (asr.live) and a timer shows its latest text. Record again adds a take below the earlier
ones; Clear empties the page's transcript; the downloads hold all takes as txt and srt.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import gradio as gr

from asr import live
from asr.text import export
from ui.common import AppContext, export_dir, hotword_label
from ui.i18n import EN, lang_of, register, t, tf, tr
from ui.live_transport import GAP, LiveTakes, recorder

log = logging.getLogger(__name__)

DOWNLOAD_STEM = "live"

# The tab's words (ui/i18n.py); "rec_*" are the recorder's, which its script shows in the page's
# language (ui/live_transport.py hands it both tables).
register("live", {
    "intro": ("Speak into the microphone: text updates about every {interval} s and a segment is "
              "finalised after {pause} s of silence. Recording again adds to the text below."),
    "hotwords_info": "Set before pressing Record.",
    "clear": "Clear",
    "text": "Live text",
    "downloads": "Downloads (.txt, .srt)",
    "idle": "Press **Record** and speak; text appears while you talk.",
    "received": "{seconds} s of audio received",
    "updates": "{count} update(s), the last took {latency} s",
    "finished": "finished",
    "nothing_dropped": "nothing dropped",
    "dropped": "⚠ {seconds} s of audio dropped: {reason}",
    "cause_backlog": "recognition fell more than {limit} s behind the microphone (realtime.max_backlog_s)",
    "cause_gap": "audio the browser sent never arrived",
    "error": "Error: {error}",
    "rec_record": "Record",
    "rec_stop": "Stop",
    "rec_ready": "Press Record and speak.",
    "rec_opening": "Opening the microphone…",
    "rec_sent": "sent {seconds} s",
    "rec_waiting": "waiting to send {seconds} s",
    "rec_dropped": "{seconds} s dropped",
    "rec_retrying": "connection problem, retrying",
    "rec_sending_rest": "Sending the rest…",
    "rec_finishing": "Finishing the transcript…",
    "rec_done": "done",
    "rec_error": "Error: {error}",
    "rec_no_answer": "the server did not answer",
}, {
    "intro": ("对着麦克风说话：文字大约每 {interval} 秒更新一次，停顿 {pause} 秒后这一段定稿。"
              "再次录音会接在下面的文字后。"),
    "hotwords_info": "请在按“录音”前填写。",
    "clear": "清除",
    "text": "实时文本",
    "downloads": "下载（.txt、.srt）",
    "idle": "按 **录音** 后说话，文字随说随出。",
    "received": "{seconds} 秒音频已接收",
    "updates": "已更新 {count} 次，最近一次用时 {latency} 秒",
    "finished": "已完成",
    "nothing_dropped": "无丢失",
    "dropped": "⚠ 丢弃了 {seconds} 秒音频：{reason}",
    "cause_backlog": "识别落后麦克风超过 {limit} 秒（realtime.max_backlog_s）",
    "cause_gap": "浏览器发出的音频没有到达",
    "error": "错误：{error}",
    "rec_record": "录音",
    "rec_stop": "停止",
    "rec_ready": "按“录音”后开始说话。",
    "rec_opening": "正在打开麦克风…",
    "rec_sent": "已发送 {seconds} 秒",
    "rec_waiting": "待发送 {seconds} 秒",
    "rec_dropped": "已丢弃 {seconds} 秒",
    "rec_retrying": "连接异常，正在重试",
    "rec_sending_rest": "正在发送剩余音频…",
    "rec_finishing": "正在完成转写…",
    "rec_done": "完成",
    "rec_error": "错误：{error}",
    "rec_no_answer": "服务器没有响应",
})


class LivePages:
    """What the tab keeps per browser page: its finished takes (keyed by Gradio's session hash)."""

    def __init__(self) -> None:
        self._pages: dict[str, live.LiveTranscript] = {}
        self._lock = threading.Lock()

    def transcript(self, page: str) -> live.LiveTranscript:
        with self._lock:
            return self._pages.setdefault(page, live.LiveTranscript())

    def end(self, page: str) -> None:
        with self._lock:
            self._pages.pop(page, None)


def _causes(snapshot: live.LiveSnapshot, lang: str) -> str:
    """Why audio was dropped, in the page's language (the session's own words for a cause the
    tables do not know)."""
    known = {live.BACKLOG: "live.cause_backlog", GAP: "live.cause_gap"}
    if not snapshot.dropped_causes or any(cause not in known for cause in snapshot.dropped_causes):
        return snapshot.dropped_reason
    return "; ".join(tr(known[cause], lang, limit=f"{snapshot.max_backlog_s:g}")
                     for cause in snapshot.dropped_causes)


def live_status(snapshot: live.LiveSnapshot | None, finished: bool = False, lang: str = EN) -> str:
    """One line on the take: audio received, updates, and how much was dropped (if any, why).
    The dropped seconds sit in an element of their own (#live-dropped-seconds) in every language."""
    if snapshot is None:
        return tr("live.idle", lang)
    parts = [tr("live.received", lang, seconds=f"{snapshot.audio_s:.1f}")]
    if snapshot.updates:
        parts.append(tr("live.updates", lang, count=snapshot.updates,
                        latency=f"{snapshot.last_latency_s:.2f}"))
    if finished:
        parts.append(tr("live.finished", lang))
    line = " · ".join(parts)
    if snapshot.dropped_s > 0:
        seconds = f"<span id='live-dropped-seconds'>{snapshot.dropped_s:.1f}</span>"
        dropped = tr("live.dropped", lang, seconds=seconds, reason=_causes(snapshot, lang))
        line += f"\n\n<span class='error-line' id='live-dropped'>{dropped}</span>"
    else:
        line += f" · <span id='live-nothing-dropped'>{tr('live.nothing_dropped', lang)}</span>"
    if snapshot.error:
        line += f"\n\n<span class='error-line'>{tr('live.error', lang, error=snapshot.error)}</span>"
    return line


def write_downloads(transcript: live.LiveTranscript, root) -> list[str]:
    """live.txt (every take, a paragraph each) and live.srt (a cue per finalised segment)."""
    if not transcript.takes:
        return []
    result = transcript.result()
    folder = export_dir(root)
    paths = []
    for fmt in ("txt", "srt"):
        target = folder / f"{DOWNLOAD_STEM}.{fmt}"
        target.write_text(export.render(result, fmt), encoding="utf-8")
        paths.append(str(target))
    return paths


def build(ctx: AppContext, demo: gr.Blocks) -> LiveTakes:
    """Components and events of the tab; call inside its `gr.Tab` block. Returns the open takes
    (closed when the app shuts down)."""
    settings = ctx.settings
    takes = LiveTakes(ctx.engine)
    pages = LivePages()
    interval = min(0.5, settings.realtime.update_interval_s)
    gr.Markdown(tf("live.intro", interval=f"{settings.realtime.update_interval_s:g}",
                   pause=f"{settings.realtime.pause_s:g}"))
    with gr.Row():
        with gr.Column(scale=1):
            # The recorder's script reads this box (by its elem_id) when Record is pressed.
            gr.Textbox(label=hotword_label(settings), info=t("live.hotwords_info"),
                       placeholder=t("common.hotwords_placeholder"), elem_id="live-hotwords")
            control = recorder(takes)
            clear_button = gr.Button(t("live.clear"), elem_id="live-clear")
        with gr.Column(scale=2):
            text = gr.Textbox(label=t("live.text"), lines=10, interactive=False, buttons=["copy"],
                              elem_id="live-text")
            status = gr.Markdown(t("live.idle"), elem_id="live-status")
            downloads = gr.File(label=t("live.downloads"), file_count="multiple", interactive=False,
                                elem_id="live-downloads")
    timer = gr.Timer(interval, active=False)

    def ticket_of(event: gr.EventData) -> Any:
        data = getattr(event, "_data", None)
        return data.get("ticket") if isinstance(data, dict) else None

    def started(event: gr.EventData, request: gr.Request):
        take = takes.bind(ticket_of(event), request.session_hash)
        if take is None or take.finished is not None:
            return gr.skip(), gr.skip()
        return live_status(take.session.snapshot(), lang=lang_of(request)), gr.Timer(active=True)

    def show(request: gr.Request):
        page = request.session_hash
        take = takes.current(page)
        if take is None:
            return gr.skip(), gr.skip()
        snap = take.session.snapshot()
        return pages.transcript(page).text(snap), live_status(snap, lang=lang_of(request))

    def stopped(event: gr.EventData, request: gr.Request):
        page = request.session_hash
        snap = takes.stop(ticket_of(event), page)
        if snap is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
        transcript = pages.transcript(page)
        transcript.add(snap)
        # Record may already have been pressed again: keep showing that take if so.
        following = takes.current(page)
        current = following.session.snapshot() if following is not None else None
        return (transcript.text(current), live_status(snap, finished=True, lang=lang_of(request)),
                write_downloads(transcript, ctx.export_root), gr.Timer(active=following is not None))

    def clear(request: gr.Request):
        page = request.session_hash
        pages.transcript(page).clear()
        take = takes.current(page)
        if take is not None:
            take.session.clear()
        return "", live_status(None, lang=lang_of(request)), None

    def end(request: gr.Request):
        takes.end_page(request.session_hash)
        pages.end(request.session_hash)

    private = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
    control.started(started, None, [status, timer], **private)
    control.stopped(stopped, None, [text, status, downloads, timer], **private)
    timer.tick(show, None, [text, status], **private)
    clear_button.click(clear, None, [text, status, downloads], **private)
    demo.unload(end)
    return takes
