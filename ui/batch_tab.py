"""The batch tab: many uploads, or a server folder inside `batch.allowed_dirs`; a table, a summary
and CSV / JSON / zip exports. A bad file fails alone."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from asr.audio.folders import check_paths_limits, list_audio_files, resolve_folder
from asr.text import export
from ui.common import (
    DEFAULT_ZIP_FORMATS,
    AppContext,
    batch_size,
    batch_slider,
    export_dir,
    file_path,
    hotword_label,
    results_table,
    run_summary,
    user_errors,
    zip_formats,
)

log = logging.getLogger(__name__)

BATCH_HEADERS = ["File", "Text", "Confidence", "Duration (s)", "Processing (s)", "Status"]


def build(ctx: AppContext) -> None:
    """Components and events of the tab; call inside its `gr.Tab` block."""
    engine, settings, roots = ctx.engine, ctx.settings, ctx.allowed_roots

    def run_many(paths: list[str], names: list[str] | None, hotwords: str, size, timestamps, formats,
                 progress, confine_to: list[Path] | None = None):
        size = batch_size(size, engine)
        chosen = zip_formats(formats)
        total = len(paths)
        progress((0, total), desc=f"0/{total} files", unit="files")

        def advance(done: int, all_files: int, name: str) -> None:
            progress((done, all_files), desc=f"{done}/{all_files} files · {name}", unit="files")

        run = engine.run(paths, batch_size=size, hotwords=hotwords or None, progress=advance,
                         confine_to=confine_to, timestamps=None if timestamps is None else bool(timestamps))
        results = run.results
        if names:
            for result, name in zip(results, names, strict=True):
                result.file = name
        folder = export_dir(ctx.export_root)
        (folder / "results.csv").write_text(export.to_csv(results), encoding="utf-8")
        (folder / "results.json").write_text(export.to_json(results), encoding="utf-8")
        (folder / "transcripts.zip").write_bytes(export.to_zip(results, chosen))
        files = [str(folder / n) for n in ("results.csv", "results.json", "transcripts.zip")]
        failed = [r for r in results if not r.ok]
        if failed:
            gr.Warning(f"{len(failed)} of {len(results)} file(s) failed; see the Status column")
        return results_table(results), run_summary(results, run.stats, size), files

    @user_errors
    def transcribe_batch(files, hotwords: str, size, timestamps=None, formats=None, progress=gr.Progress()):
        """Recognise many uploaded files. Returns the results table, a summary line and the
        CSV / JSON / zip exports; the zip holds each file in `formats` (txt, json, srt, vtt, tsv;
        default txt and srt). A bad file fails alone (its Status says why)."""
        paths = [p for p in (file_path(f) for f in (files or [])) if p]
        if not paths:
            raise gr.Error("upload one or more audio files first", print_exception=False)
        check_paths_limits(paths, settings.batch.max_files, settings.batch.max_total_mb)
        return run_many(paths, None, hotwords, size, timestamps, formats, progress)

    @user_errors
    def transcribe_folder(folder: str, hotwords: str, size, timestamps=None, formats=None,
                          progress=gr.Progress()):
        """Recognise every audio file under a server folder (recursively). The folder must lie
        inside one of the config's batch.allowed_dirs. Exports as transcribe_batch."""
        real = resolve_folder(folder, roots)
        listing = list_audio_files(real, roots, settings.batch.max_files, settings.batch.max_total_mb)
        if listing.skipped_outside:
            gr.Warning(f"skipped {len(listing.skipped_outside)} file link(s) that lead outside the "
                       "allowed folders")
        log.info("folder %s: %d audio file(s), %.1f MB", real, len(listing.files),
                 listing.total_bytes / 2**20)
        names = [listing.relative_name(p) for p in listing.files]
        return run_many([str(p) for p in listing.files], names, hotwords, size, timestamps, formats, progress,
                        confine_to=roots)

    gr.Markdown(f"Up to **{settings.batch.max_files} files** and **{settings.batch.max_total_mb} MB** per "
                "batch. One bad file fails alone.")
    with gr.Row():
        with gr.Column(scale=3):
            files = gr.File(label="Audio files", file_count="multiple", file_types=ctx.upload_types,
                            elem_id="batch-files")
            start = gr.Button("Transcribe uploads 识别上传文件", variant="primary", elem_id="batch-start")
        with gr.Column(scale=2):
            if roots:
                folder_help = "Allowed: " + ", ".join(f"`{r}`" for r in roots)
            else:
                folder_help = ("Folder input is off: list server folders under `batch.allowed_dirs` in "
                               "config.yaml to enable it.")
            folder = gr.Textbox(label="…or a server folder (searched recursively)",
                                placeholder=str(roots[0]) if roots else "", elem_id="batch-folder")
            gr.Markdown(folder_help, elem_id="batch-folder-help")
            folder_start = gr.Button("Transcribe folder 识别文件夹", elem_id="folder-start",
                                     interactive=bool(roots))
    with gr.Row():
        hotwords = gr.Textbox(label=hotword_label(settings), elem_id="batch-hotwords", scale=3)
        size = batch_slider(engine, "batch-batch", "files per model call; applies to this run")
    with gr.Row():
        timestamps = gr.Checkbox(value=settings.timestamps, label="Sentence times 时间戳 (for subtitles)",
                                 elem_id="batch-timestamps")
        formats = gr.CheckboxGroup(list(export.FORMATS), value=DEFAULT_ZIP_FORMATS,
                                   label="Formats in the zip", elem_id="batch-formats")
    summary = gr.Markdown(elem_id="batch-summary")
    table = gr.Dataframe(headers=BATCH_HEADERS, type="array", interactive=False, wrap=True,
                         column_widths=["16%", "44%", "9%", "9%", "10%", "12%"], label="Results",
                         elem_id="batch-table")
    exports = gr.File(label="Export (CSV, JSON, zip of the chosen formats)", file_count="multiple",
                      interactive=False, elem_id="batch-exports")

    outputs = [table, summary, exports]
    options = [hotwords, size, timestamps, formats]
    start.click(transcribe_batch, [files, *options], outputs, api_name="transcribe_batch",
                **ctx.recognition_events())
    folder_start.click(transcribe_folder, [folder, *options], outputs, api_name="transcribe_folder",
                       **ctx.recognition_events())
    ctx.batch_sliders.append(size)
