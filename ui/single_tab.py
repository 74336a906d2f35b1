"""The single-file tab: one upload or recording in; a player, its text, figures, sentences,
downloads and clips of chosen sentences out.

The `transcribe_file` endpoint keeps the outputs scripts rely on (text, confidence, duration,
processing time, speed, downloads, sentence rows); its newer inputs (speakers, itn, hotword_list)
come last and default to the server's settings, so older scripts call it as before. What only a
page needs (the player, the figures as text with help, the sentence table with its tick boxes,
the busy Start button, Cancel) is set around it by private steps. Clicking a sentence seeks the
player there and plays (in the page, see `SEEK_JS`); ticked sentences are cut into a clip by
asr.text.clips. With speakers on, the page's last result stays on the server (a gr.State, per
session) so `rename_speakers` can write its downloads again with names (ui.speaker_names).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from asr.audio.decode import AUDIO_EXTENSIONS
from asr.results import Result
from asr.text import clips, export
from ui import hotword_lists, speaker_names
from ui.common import (
    EXPORT_MAX_AGE_S,
    SUBTITLE_FORMATS,
    AppContext,
    batch_size,
    batch_slider,
    file_path,
    hotword_label,
    itn_checkbox,
    link_timestamps,
    run_engine,
    sentence_rows,
    speaker_count,
    speakers_dropdown,
    speed,
    user_errors,
    wants_itn,
    wants_timestamps,
)
from ui.common import export_dir as new_export_dir
from ui.i18n import lang_of, t, tr

log = logging.getLogger(__name__)

SENTENCE_HEADERS = ["Start", "End", "Text"]  # the API's sentence rows (English, as all API words)
SPEAKER_HEADER = "Speaker"  # a fourth column of the API's rows when the result has speakers
VIDEO_SUFFIXES = frozenset(clips.VIDEO_CONTAINERS)
VIEW_KEYS = ("single.col_pick", "single.col_start", "single.col_end", "single.col_speaker", "single.col_text")

# Clicking a row of the sentence table (not its tick box) seeks the player to the row's start and
# plays. Installed once per page; the table's rows are virtual, so the row is found at click time.
SEEK_JS = """
() => {
  if (window.seacoSeekInstalled) return;
  window.seacoSeekInstalled = true;
  const seconds = (clock) => {
    const m = /^(\\d+):(\\d+):(\\d+(?:\\.\\d+)?)$/.exec((clock || "").trim());
    return m ? (+m[1]) * 3600 + (+m[2]) * 60 + parseFloat(m[3]) : null;
  };
  document.addEventListener("click", (event) => {
    const cell = event.target.closest && event.target.closest("#single-sentences [role=gridcell]");
    if (!cell || cell.getAttribute("data-col") === "0") return;
    const row = cell.parentElement;
    const start = row && row.querySelector('[data-col="1"]');
    const at = seconds(start && start.innerText);
    const player = document.querySelector("#single-video video:not(.hidden)")
      || document.querySelector("#single-player audio");
    if (at === null || !player) return;
    player.currentTime = at;
    player.play().catch(() => {});
  }, true);
}
"""


def sentence_view(rows: list[list], lang: str) -> dict:
    """The page's sentence table from the API's rows (start, end, text[, speaker]): a tick box,
    the times, the speaker (blank without speakers) and the text."""
    data = [[False, row[0], row[1], row[3] if len(row) > 3 else "", row[2]] for row in rows]
    return {"headers": [tr(key, lang) for key in VIEW_KEYS], "data": data}


def api_rows(result: Result) -> dict:
    """The sentences for scripts: start, end, text, and a last Speaker column when the result has
    speakers (so scripts that read the first three columns keep working)."""
    if result.speakers is None:
        return {"headers": SENTENCE_HEADERS, "data": sentence_rows(result)}
    rows = [[*row, s.speaker or ""] for row, s in zip(sentence_rows(result), result.segments, strict=True)]
    return {"headers": [*SENTENCE_HEADERS, SPEAKER_HEADER], "data": rows}


@dataclass
class Kept:
    """A page's last result, for renaming its speakers: what its downloads were made from."""

    result: Result
    stem: str
    formats: list[str]


def parse_clock(text: str) -> float:
    hours, minutes, seconds = str(text).strip().split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def build(ctx: AppContext) -> None:
    """Components and events of the tab; call inside its `gr.Tab` block."""
    engine, settings = ctx.engine, ctx.settings

    def write_downloads(result: Result, stem: str, chosen: list[str]) -> list[str]:
        folder = new_export_dir(ctx.export_root)
        downloads = []
        for fmt in chosen:
            target = folder / f"{stem}.{fmt}"
            target.write_text(export.render(result, fmt, settings.subtitles.min_s), encoding="utf-8")
            downloads.append(str(target))
        return downloads

    @user_errors
    def transcribe_file(file, hotwords: str, size, timestamps=None, formats=None, speakers=None, itn=None,
                        hotword_list=None, request: gr.Request = None, progress=gr.Progress()):
        """Recognise one audio or video file. Returns text, confidence, duration (s), processing
        time (s), speed (x real time), the downloads (`formats`: any of txt, json, srt, vtt, tsv;
        default all) and the sentences (start, end, text, and speaker when speakers are on).
        Sentence times (`timestamps`) are on whenever a subtitle format is produced, unless False
        is passed; else the server's setting. `speakers`: off, auto or a count; `itn`: numbers as
        digits; `hotword_list`: a saved list whose words join `hotwords`. None: the server's
        settings."""
        lang = lang_of(request)
        path = file_path(file)
        if not path:
            raise gr.Error(tr("common.no_file", lang), print_exception=False)
        size = batch_size(size, engine)
        chosen = list(export.FORMATS) if formats in (None, "", []) else export.parse_formats(formats)
        words = hotword_lists.request_hotwords(settings, hotwords, hotword_list)
        run = run_engine(ctx, [path], progress, request, batch_size=size, hotwords=words,
                         timestamps=wants_timestamps(timestamps, chosen), speakers=speaker_count(speakers),
                         itn=wants_itn(itn))
        result = run.results[0]
        if not result.ok:
            raise gr.Error(f"{Path(path).name}: {result.error}", print_exception=False)
        if result.backed_off:
            gr.Warning(tr("common.oom_backoff", lang, size=size, used=result.batch_size))
        for warning in result.warnings:
            gr.Warning(warning)
        stem = Path(path).stem or "audio"
        downloads = write_downloads(result, stem, chosen)
        kept = Kept(result, stem, chosen) if result.speakers else None
        return (result.text, round(result.confidence, 3), round(result.duration_s, 2),
                round(result.processing_s, 2), speed(result), downloads, api_rows(result), kept)

    @user_errors
    def rename_speakers(names, kept: Kept | None, request: gr.Request = None):
        """Name the speakers of this session's last transcribe_file result: `names` is a table of
        (label, name) rows ({"headers": [...], "data": [["S1", "主持人"], ...]}). Returns the
        downloads written again with the names, the sentences with them, and a message."""
        lang = lang_of(request)
        if kept is None:
            raise gr.Error(tr("names.nothing", lang), print_exception=False)
        names = speaker_names.names_from(names, kept.result.speakers or [])
        result = speaker_names.renamed(kept.result, names)
        message = tr("names.done", lang, count=len(names)) if names else tr("names.none_named", lang)
        return write_downloads(result, kept.stem, kept.formats), api_rows(result), message

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(label=t("single.upload"), file_types=ctx.upload_types, elem_id="single-file")
            mic = gr.Audio(sources=["microphone"], type="filepath", label=t("single.mic"),
                           elem_id="single-mic")
            hotwords = gr.Textbox(label=hotword_label(settings), lines=1,
                                  placeholder=t("common.hotwords_placeholder"), elem_id="single-hotwords")
            lists = hotword_lists.build(ctx, hotwords, "single", expose_api=True)
            with gr.Row():
                speakers = speakers_dropdown(settings, "single-speakers")
                itn = itn_checkbox(settings, "single-itn")
            formats = gr.CheckboxGroup(list(export.FORMATS), value=list(export.FORMATS),
                                       label=t("common.formats"), elem_id="single-formats")
            subtitles = bool(set(export.FORMATS) & set(SUBTITLE_FORMATS))
            fixed = subtitles or speaker_count(settings.speakers.count) != "off"
            timestamps = gr.Checkbox(value=fixed or settings.timestamps, interactive=not fixed,
                                     label=t("common.timestamps"), info=t("common.timestamps_info"),
                                     elem_id="single-timestamps")
            with gr.Accordion(t("common.advanced"), open=False, elem_id="single-advanced"):
                size = batch_slider(engine, "single-batch")
            with gr.Row():
                start = gr.Button(t("common.start"), variant="primary", elem_id="single-start", scale=2)
                cancel = gr.Button(t("common.cancel"), variant="stop", visible=False, elem_id="single-cancel",
                                   scale=1)
        with gr.Column(scale=2, min_width=300):
            progress_box = gr.Markdown(elem_id="single-progress", min_height=0)
            player = gr.Audio(type="filepath", interactive=False, visible=False, label=t("single.player"),
                              waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                              elem_id="single-player")
            video = gr.Video(interactive=False, visible=False, label=t("single.video"), height=360,
                             elem_id="single-video")
            text = gr.Textbox(label=t("single.text"), lines=8, interactive=False, buttons=["copy"],
                              elem_id="single-text")
            with gr.Row(elem_id="single-figures"):
                box = {"interactive": False, "lines": 1, "max_lines": 1, "min_width": 120}
                shown = {name: gr.Textbox(label=t(f"single.{name}"), elem_id=f"single-{name}", **box)
                         for name in ("confidence", "duration", "processing", "speed")}
            gr.Markdown(t("single.figures_help"), elem_id="single-figures-help", elem_classes=["help-line"])
            # The endpoint's own outputs: numbers and rows for scripts, never shown.
            numbers = [gr.Number(visible=False, elem_id=f"single-{name}-value")
                       for name in ("confidence", "duration", "processing", "speed")]
            rows = gr.Dataframe(headers=SENTENCE_HEADERS, type="array", visible=False, elem_id="single-rows")
            sentences = gr.Dataframe(value=sentence_view([], "en"), type="array", interactive=True,
                                     datatype=["bool", "str", "str", "str", "str"],
                                     static_columns=[1, 2, 3, 4], wrap=True,
                                     column_widths=["7%", "15%", "15%", "13%", "50%"], max_height=420,
                                     label=t("single.sentences"), elem_id="single-sentences")
            with gr.Column(visible=False, variant="panel", elem_id="single-names-box") as names_box:
                names = gr.Dataframe(value=speaker_names.table(None, "en"), type="array", interactive=True,
                                     datatype=["str", "str"], static_columns=[0], label=t("names.title"),
                                     elem_id="single-names")
                gr.Markdown(t("names.help"), elem_classes=["help-line"])
                rename = gr.Button(t("names.apply"), size="sm", elem_id="single-rename")
                rename_note = gr.Markdown(elem_id="single-rename-note")
            downloads = gr.File(label=t("single.downloads"), file_count="multiple", interactive=False,
                                elem_id="single-downloads")
            with gr.Row():
                clip_button = gr.Button(t("single.clip"), elem_id="single-clip", size="sm")
            clip_note = gr.Markdown(elem_id="single-clip-note")
            clip_files = gr.File(label=t("single.clips"), file_count="multiple", interactive=False,
                                 visible=False, elem_id="single-clips")

    kept = gr.State(None, time_to_live=EXPORT_MAX_AGE_S)  # the last result, while its names may change
    figures = list(shown.values())
    results = [text, *figures, *numbers, downloads, rows, sentences, clip_note, clip_files, progress_box,
               kept, names_box, names, rename_note]

    def cleared(lang: str) -> tuple:
        """Every result of the previous file gone (figures blank, not 0)."""
        return ("", *[""] * len(figures), *[None] * len(numbers), None,
                {"headers": SENTENCE_HEADERS, "data": []},
                gr.update(value=sentence_view([], lang), label=t("single.sentences")), "",
                gr.update(value=None, visible=False), "", None, gr.update(visible=False),
                speaker_names.table(None, lang), "")

    def new_input(file, request: gr.Request = None):
        """A new upload or recording: its player, and nothing left of the previous file."""
        path = file_path(file)
        is_video = bool(path) and Path(path).suffix.lower() in VIDEO_SUFFIXES and clips.has_video(path)
        playable = bool(path) and Path(path).suffix.lower() in AUDIO_EXTENSIONS
        audio_update = gr.update(value=path if playable and not is_video else None,
                                 visible=bool(playable and not is_video))
        video_update = gr.update(value=path if is_video else None, visible=is_video)
        return (audio_update, video_update, *cleared(lang_of(request)))

    def begin(request: gr.Request = None):
        """Start pressed: the page shows it is busy (no second run can be queued) and offers Cancel."""
        return (gr.update(value=t("common.busy"), interactive=False), gr.update(visible=True),
                *cleared(lang_of(request)))

    def finish(confidence, duration, processing, speed_x, api_table, timed, last: Kept | None,
               request: gr.Request = None):
        """The run ended (done, failed or cancelled): Start again, the figures and sentences shown,
        and the speakers to name when there are any."""
        lang = lang_of(request)
        values = [confidence, duration, processing, speed_x]
        shown_values = ["" if v is None else f"{v:g}" for v in values]
        label = t("single.sentences") if timed else t("single.chunks")
        result = last.result if last is not None else None
        return (gr.update(value=t("common.start"), interactive=True), gr.update(visible=False), *shown_values,
                gr.update(value=view_of(api_table, lang), label=label), "",
                gr.update(visible=bool(result and result.speakers)), speaker_names.table(result, lang))

    def view_of(api_table, lang: str) -> dict:
        data = (api_table or {}).get("data", []) if isinstance(api_table, dict) else (api_table or [])
        return sentence_view([list(r) for r in data], lang)

    def renamed_view(api_table, request: gr.Request = None):
        return view_of(api_table, lang_of(request))

    def cancel_run(request: gr.Request = None):
        ctx.runs.cancel(request)

    def export_clip(file, table, request: gr.Request = None):
        """The ticked sentences cut out of the file: their sound (WAV), and for a video its picture."""
        lang = lang_of(request)
        path = file_path(file)
        data = table.get("data", []) if isinstance(table, dict) else (table or [])
        picked = [(parse_clock(r[1]), parse_clock(r[2])) for r in data if r and r[0] in (True, "true", 1)]
        if not path or not picked:
            return tr("single.clip_none", lang), gr.update(value=None, visible=False)
        spans = clips.merge_spans(picked)
        folder = new_export_dir(ctx.export_root)
        stem = Path(path).stem or "audio"
        made, note = [], ""
        try:
            sound = clips.cut_audio(path, spans, folder / f"{stem}-clip.wav")
            made.append(str(sound.path))
            note = tr("single.clip_audio", lang, count=len(picked), seconds=sound.duration_s)
            if Path(path).suffix.lower() in VIDEO_SUFFIXES and clips.has_video(path):
                picture = clips.cut_video(path, spans, folder / f"{stem}-clip{Path(path).suffix.lower()}")
                made.append(str(picture.path))
                ranges = ", ".join(f"{export.clock(s.start_s)}–{export.clock(s.end_s)}"
                                   for s in picture.spans)
                note += tr("single.clip_video", lang, ranges=ranges)
        except clips.ClipError as exc:
            log.info("clip refused: %s", exc)
            note = tr("single.clip_failed", lang, reason=str(exc))
        return note, gr.update(value=made or None, visible=bool(made))

    private: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    players = [player, video]
    upload.change(new_input, upload, [*players, *results], **private)
    mic.stop_recording(lambda path: path, mic, upload, **private)
    for control in (formats, speakers):
        control.change(link_timestamps, [formats, speakers], timestamps, **private)
    run = start.click(begin, None, [start, cancel, *results], **private)
    options = [hotwords, size, timestamps, formats, speakers, itn, lists.list_name]
    run = run.then(transcribe_file, [upload, *options], [text, *numbers, downloads, rows, kept],
                   api_name="transcribe_file", show_progress_on=[progress_box], **ctx.recognition_events())
    # Gradio 6.31 runs a `.then` step only after success: `.failure` resets the page after an error
    # or a cancel (both steps are the same, so either order is fine).
    ended = ([*numbers, rows, timestamps, kept],
             [start, cancel, *figures, sentences, progress_box, names_box, names])
    run.then(finish, *ended, **private)
    run.failure(finish, *ended, **private)
    cancel.click(cancel_run, None, None, **private)
    rename.click(rename_speakers, [names, kept], [downloads, rows, rename_note], api_name="rename_speakers",
                 concurrency_limit=4, show_progress="minimal").then(renamed_view, rows, sentences, **private)
    clip_button.click(export_clip, [upload, sentences], [clip_note, clip_files], api_visibility="private",
                      concurrency_limit=2)
    ctx.batch_sliders.append(size)
    ctx.page_scripts.append(SEEK_JS)

    def relabel(lang: str, table, named):
        data = table.get("data", []) if isinstance(table, dict) else (table or [])
        named_rows = named.get("data", []) if isinstance(named, dict) else (named or [])
        return (gr.update(value={"headers": [tr(key, lang) for key in VIEW_KEYS], "data": data}),
                gr.update(value={"headers": [tr(key, lang) for key in speaker_names.VIEW_KEYS],
                                 "data": named_rows}))

    ctx.language_hooks.append((relabel, [sentences, names], [sentences, names]))
