"""The batch tab: many uploads, or a server folder inside `batch.allowed_dirs`; a table, a summary
and CSV / JSON / zip exports. A bad file fails alone.

The endpoints (`transcribe_batch`, `transcribe_folder`) keep the outputs scripts rely on: the full
table in input order (failed rows with blank figures), the summary and the exports; their newer
inputs (speakers, itn, hotword_list) come last and default to the server's settings. The page
shows a table people can read instead: one status and one line of text per file, failed files on
top; a click on a row shows its full text.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from asr.audio.folders import check_paths_limits, list_audio_files, resolve_folder
from asr.text import export
from ui import hotword_lists
from ui.common import (
    DEFAULT_ZIP_FORMATS,
    SUBTITLE_FORMATS,
    AppContext,
    batch_size,
    batch_slider,
    compact_rows,
    export_dir,
    file_path,
    hotword_label,
    itn_checkbox,
    link_timestamps,
    results_table,
    run_engine,
    run_summary,
    speaker_count,
    speakers_dropdown,
    user_errors,
    wants_itn,
    wants_timestamps,
    zip_formats,
)
from ui.i18n import lang_of, t, tf, tr

log = logging.getLogger(__name__)

BATCH_HEADERS = ["File", "Text", "Confidence", "Duration (s)", "Processing (s)", "Status"]  # the API's
VIEW_KEYS = ("batch.col_status", "batch.col_file", "batch.col_preview", "batch.col_confidence",
             "batch.col_duration", "batch.col_processing")


def view_headers(lang: str) -> list[str]:
    return [tr(key, lang) for key in VIEW_KEYS]


def build(ctx: AppContext) -> None:
    """Components and events of the tab; call inside its `gr.Tab` block."""
    engine, settings, roots = ctx.engine, ctx.settings, ctx.allowed_roots

    def run_many(paths: list[str], names: list[str] | None, hotwords: str, size, timestamps, formats,
                 speakers, itn, hotword_list, progress, request, confine_to: list[Path] | None = None):
        lang = lang_of(request)
        size = batch_size(size, engine)
        chosen = zip_formats(formats)
        words = hotword_lists.request_hotwords(settings, hotwords, hotword_list)
        run = run_engine(ctx, paths, progress, request, batch_size=size, hotwords=words,
                         confine_to=confine_to, timestamps=wants_timestamps(timestamps, chosen),
                         speakers=speaker_count(speakers), itn=wants_itn(itn))
        results = run.results
        if names:
            for result, name in zip(results, names, strict=True):
                result.file = name
        folder = export_dir(ctx.export_root)
        (folder / "results.csv").write_text(export.to_csv(results), encoding="utf-8")
        (folder / "results.json").write_text(export.to_json(results), encoding="utf-8")
        (folder / "transcripts.zip").write_bytes(export.to_zip(results, chosen, ctx.settings.subtitles.min_s))
        files = [str(folder / n) for n in ("results.csv", "results.json", "transcripts.zip")]
        failed = [r for r in results if not r.ok]
        if failed:
            gr.Warning(tr("batch.some_failed", lang, failed=len(failed), files=len(results)))
        table = {"headers": BATCH_HEADERS, "data": results_table(results)}
        # The page's readable rows ride along in a gr.State, which API callers never receive.
        return table, run_summary(results, run.stats, size, lang), files, compact_rows(results, lang)

    @user_errors
    def transcribe_batch(files, hotwords: str, size, timestamps=None, formats=None, speakers=None, itn=None,
                         hotword_list=None, request: gr.Request = None, progress=gr.Progress()):
        """Recognise many uploaded files. Returns the results table (file, text, confidence,
        duration, processing time, status; figures blank for a failed file, in input order), a
        summary line and the CSV / JSON / zip exports; the zip holds each file in `formats` (txt,
        json, srt, vtt, tsv; default txt and srt). Sentence times are on whenever a subtitle format
        is in the zip, unless `timestamps` is False. A bad file fails alone (its Status says why).
        `speakers`: off, auto or a count; `itn`: numbers as digits; `hotword_list`: a saved list
        whose words join `hotwords`. None: the server's settings."""
        paths = [p for p in (file_path(f) for f in (files or [])) if p]
        if not paths:
            raise gr.Error(tr("common.no_files", lang_of(request)), print_exception=False)
        check_paths_limits(paths, settings.batch.max_files, settings.batch.max_total_mb)
        return run_many(paths, None, hotwords, size, timestamps, formats, speakers, itn, hotword_list,
                        progress, request)

    @user_errors
    def transcribe_folder(folder: str, hotwords: str, size, timestamps=None, formats=None, speakers=None,
                          itn=None, hotword_list=None, request: gr.Request = None, progress=gr.Progress()):
        """Recognise every audio file under a server folder (recursively). The folder must lie
        inside one of the config's batch.allowed_dirs. Options and exports as transcribe_batch."""
        real = resolve_folder(folder, roots)
        listing = list_audio_files(real, roots, settings.batch.max_files, settings.batch.max_total_mb)
        if listing.skipped_outside:
            gr.Warning(tr("batch.links_skipped", lang_of(request), count=len(listing.skipped_outside)))
        log.info("folder %s: %d audio file(s), %.1f MB", real, len(listing.files),
                 listing.total_bytes / 2**20)
        names = [listing.relative_name(p) for p in listing.files]
        return run_many([str(p) for p in listing.files], names, hotwords, size, timestamps, formats, speakers,
                        itn, hotword_list, progress, request, confine_to=roots)

    gr.Markdown(tf("batch.limits", files=settings.batch.max_files, mb=settings.batch.max_total_mb),
                elem_id="batch-limits")
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            files = gr.File(label=t("batch.files"), file_count="multiple", file_types=ctx.upload_types,
                            elem_id="batch-files")
        with gr.Column(scale=2, min_width=300):
            folder = gr.Textbox(label=t("batch.folder"), placeholder=str(roots[0]) if roots else "",
                                elem_id="batch-folder")
            if roots:
                folder_help = tf("batch.folder_allowed", roots=", ".join(f"`{r}`" for r in roots))
            else:
                folder_help = t("batch.folder_off")
            gr.Markdown(folder_help, elem_id="batch-folder-help")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            hotwords = gr.Textbox(label=hotword_label(settings), placeholder=t("common.hotwords_placeholder"),
                                  elem_id="batch-hotwords")
        with gr.Column(scale=2, min_width=300):
            lists = hotword_lists.build(ctx, hotwords, "batch")
    with gr.Row():
        speakers = speakers_dropdown(settings, "batch-speakers")
        itn = itn_checkbox(settings, "batch-itn")
    with gr.Row():
        formats = gr.CheckboxGroup(list(export.FORMATS), value=DEFAULT_ZIP_FORMATS, label=t("batch.formats"),
                                   elem_id="batch-formats", min_width=300)
        fixed = bool(set(DEFAULT_ZIP_FORMATS) & set(SUBTITLE_FORMATS)) or speaker_count(
            settings.speakers.count) != "off"
        timestamps = gr.Checkbox(value=fixed or settings.timestamps, interactive=not fixed,
                                 label=t("common.timestamps"), info=t("common.timestamps_info"),
                                 elem_id="batch-timestamps", min_width=300)
    with gr.Accordion(t("common.advanced"), open=False, elem_id="batch-advanced"):
        size = batch_slider(engine, "batch-batch")
    with gr.Row():
        start = gr.Button(t("batch.start"), variant="primary", elem_id="batch-start", scale=2)
        folder_start = gr.Button(t("batch.folder_start"), elem_id="folder-start", interactive=bool(roots),
                                 scale=2)
        cancel = gr.Button(t("common.cancel"), variant="stop", visible=False, elem_id="batch-cancel", scale=1)
    progress_box = gr.Markdown(elem_id="batch-progress", min_height=0)
    summary = gr.Markdown(elem_id="batch-summary")
    full = gr.Dataframe(headers=BATCH_HEADERS, type="array", visible=False, elem_id="batch-full")
    table = gr.Dataframe(value={"headers": view_headers("en"), "data": []}, type="array", interactive=False,
                         wrap=False, datatype=["str", "str", "str", "number", "number", "number"],
                         column_widths=["150px", "170px", "400px", "90px", "90px", "90px"], max_height=480,
                         label=t("batch.results"), elem_id="batch-table")
    detail = gr.Textbox(label=t("batch.detail"), lines=4, interactive=False, buttons=["copy"], visible=False,
                        elem_id="batch-detail")
    exports = gr.File(label=t("batch.exports"), file_count="multiple", interactive=False,
                      elem_id="batch-exports")
    view_rows = gr.State([])  # the readable table's rows, from the endpoint to the page

    def cleared(lang: str) -> tuple:
        return ("", {"headers": BATCH_HEADERS, "data": []},
                {"headers": view_headers(lang), "data": []}, gr.update(value="", visible=False), None, "", [])

    results_out = [summary, full, table, detail, exports, progress_box, view_rows]

    def begin(request: gr.Request = None):
        busy = gr.update(value=t("common.busy"), interactive=False)
        return (busy, busy, gr.update(visible=True), *cleared(lang_of(request)))

    def finish(view, request: gr.Request = None):
        """The run ended (done, failed or cancelled): buttons back, the readable table shown."""
        lang = lang_of(request)
        return (gr.update(value=t("batch.start"), interactive=True),
                gr.update(value=t("batch.folder_start"), interactive=bool(roots)), gr.update(visible=False),
                {"headers": view_headers(lang), "data": view or []}, "")

    def show_detail(api_table, event: gr.SelectData):
        """A row clicked: its file's full text (or its error)."""
        rows = api_table.get("data", []) if isinstance(api_table, dict) else (api_table or [])
        name = (event.row_value or [None, None])[1]
        row = next((r for r in rows if r and r[0] == name), None)
        if row is None:
            return gr.update(visible=False)
        failed = isinstance(row[5], str) and row[5].startswith("error")
        return gr.update(value=f"{row[0]}\n\n{row[5] if failed else row[1]}", visible=True)

    def cancel_run(request: gr.Request = None):
        ctx.runs.cancel(request)

    private: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    options = [hotwords, size, timestamps, formats, speakers, itn, lists.list_name]
    buttons = [start, folder_start, cancel]
    api_outputs = [full, summary, exports, view_rows]
    for control in (formats, speakers):
        control.change(link_timestamps, [formats, speakers], timestamps, **private)
    for button, fn, source, name in ((start, transcribe_batch, files, "transcribe_batch"),
                                     (folder_start, transcribe_folder, folder, "transcribe_folder")):
        run = button.click(begin, None, [*buttons, *results_out], **private)
        run = run.then(fn, [source, *options], api_outputs, api_name=name, show_progress_on=[progress_box],
                       **ctx.recognition_events())
        run.then(finish, view_rows, [*buttons, table, progress_box], **private)
        run.failure(finish, view_rows, [*buttons, table, progress_box], **private)  # .then skips errors
    cancel.click(cancel_run, None, None, **private)
    table.select(show_detail, full, detail, **private)

    def new_files(request: gr.Request = None):
        return cleared(lang_of(request))

    files.change(new_files, None, results_out, **private)
    ctx.batch_sliders.append(size)

    def relabel(lang: str, shown):
        data = shown.get("data", []) if isinstance(shown, dict) else (shown or [])
        return {"headers": view_headers(lang), "data": data}

    ctx.language_hooks.append((relabel, [table], [table]))

