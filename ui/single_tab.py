"""The single-file tab: one upload or recording in, its text, figures, sentences and downloads out."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from asr.text import export
from ui.common import (
    AppContext,
    batch_size,
    batch_slider,
    file_path,
    hotword_label,
    sentence_rows,
    speed,
    user_errors,
)
from ui.common import export_dir as new_export_dir

SENTENCE_HEADERS = ["Start", "End", "Text"]


def build(ctx: AppContext) -> None:
    """Components and events of the tab; call inside its `gr.Tab` block."""
    engine, settings = ctx.engine, ctx.settings

    @user_errors
    def transcribe_file(file, hotwords: str, size, timestamps=None, progress=gr.Progress()):
        """Recognise one audio or video file. Returns text, confidence, duration (s), processing
        time (s), speed (x real time), the .txt/.json/.srt/.vtt/.tsv downloads and the sentences
        (start, end, text). `timestamps` (default: the server's setting) gives sentence times."""
        path = file_path(file)
        if not path:
            raise gr.Error("upload or record an audio file first", print_exception=False)
        size = batch_size(size, engine)
        progress(None, desc="recognising")
        run = engine.run([path], batch_size=size, hotwords=hotwords or None,
                         timestamps=None if timestamps is None else bool(timestamps))
        result = run.results[0]
        if not result.ok:
            raise gr.Error(f"{Path(path).name}: {result.error}", print_exception=False)
        if result.backed_off:
            gr.Warning(f"ran out of GPU memory at batch size {size}; finished at {result.batch_size}")
        for warning in result.warnings:
            gr.Warning(warning)
        folder = new_export_dir(ctx.export_root)
        stem = Path(path).stem or "audio"
        downloads = []
        for fmt in export.FORMATS:
            target = folder / f"{stem}.{fmt}"
            target.write_text(export.render(result, fmt), encoding="utf-8")
            downloads.append(str(target))
        return (result.text, round(result.confidence, 3), round(result.duration_s, 2),
                round(result.processing_s, 2), speed(result), downloads, sentence_rows(result))

    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Audio or video file (wav, mp3, flac, ogg, m4a, aac, mp4, webm, ...)",
                             file_types=ctx.upload_types, elem_id="single-file")
            mic = gr.Audio(sources=["microphone"], type="filepath",
                           label="…or record (the recording is used when it stops)", elem_id="single-mic")
            hotwords = gr.Textbox(label=hotword_label(settings), lines=1, placeholder="例如：达摩院 魔搭",
                                  elem_id="single-hotwords")
            size = batch_slider(engine, "single-batch", "segments per model call for long recordings")
            timestamps = gr.Checkbox(value=settings.timestamps, label="Sentence times 时间戳 (for subtitles)",
                                     elem_id="single-timestamps")
            start = gr.Button("Start 开始识别", variant="primary", elem_id="single-start")
        with gr.Column(scale=2):
            text = gr.Textbox(label="Text 识别结果", lines=8, interactive=False, buttons=["copy"],
                              elem_id="single-text")
            with gr.Row():
                confidence = gr.Number(label="Confidence", precision=3, interactive=False,
                                       elem_id="single-confidence")
                duration = gr.Number(label="Audio duration (s)", precision=2, interactive=False,
                                     elem_id="single-duration")
                processing = gr.Number(label="Processing time (s)", precision=2, interactive=False,
                                       elem_id="single-processing")
                speed_x = gr.Number(label="Speed (x real time)", precision=1, interactive=False,
                                    elem_id="single-speed")
            sentences = gr.Dataframe(headers=SENTENCE_HEADERS, type="array", interactive=False, wrap=True,
                                     column_widths=["15%", "15%", "70%"], label="Sentences 句子",
                                     elem_id="single-sentences")
            downloads = gr.File(label="Downloads (.txt, .json, .srt, .vtt, .tsv)", file_count="multiple",
                                interactive=False, elem_id="single-downloads")

    outputs = [text, confidence, duration, processing, speed_x, downloads, sentences]
    mic.stop_recording(lambda path: path, mic, upload, api_visibility="private", queue=False)
    start.click(lambda: (None,) * len(outputs), None, outputs, api_visibility="private", queue=False).then(
        transcribe_file, [upload, hotwords, size, timestamps], outputs, api_name="transcribe_file",
        **ctx.recognition_events())
    ctx.batch_sliders.append(size)
