"""The Tuning tab: pick audio, run the wizard, read the table, plot and answer, apply or save it.

Thin by design: every measurement and decision lives in tuning.wizard and tuning.knee; this module
only turns inputs into a `run_wizard` call and a WizardReport into components. webui.py calls
`build_tuning_tab(engine)` inside its `gr.Tab` block. An applied batch size reaches the other
tabs' sliders through ui.batch_size_sync.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
import pandas as pd

from asr.recognition.precision import PrecisionUnavailable
from asr.settings import SCHEMA, SettingsError, coerce
from tuning.config_file import ConfigWriteError, write_batch_size, write_setting
from tuning.precision_check import (
    PrecisionCheckCancelled,
    PrecisionCheckError,
    PrecisionReport,
    cancel_precision_check,
    fastest_reduced_precision,
    run_precision_check,
)
from tuning.wizard import (
    TABLE_COLUMNS,
    WizardCancelled,
    WizardError,
    WizardReport,
    cancel_wizard,
    run_wizard,
    sizes_from_text,
)

log = logging.getLogger(__name__)

INTRO = """\
Finds the fastest safe batch size on **this machine** with **your audio**, in three steps:
1. **Baseline**: a short warm-up (not counted), then copies of your file (or your own set of
   files) at batch size 1.
2. **Sweep**: the same files at each candidate size; peak memory and out-of-memory failures are
   recorded.
3. **Refine**: the knee of the sweep and its neighbours, several runs each; the fastest safe median
   wins, and the spread of the runs says how sure that is.

A recording of about 3 minutes gives the most faithful answer. The feature cache is bypassed during
tuning, so every size pays the same decoding and feature cost. Other work on this server waits
while the wizard runs; **Cancel** stops it and frees the model.
"""

PLOT_X = "batch size"
PLOT_TIME = "time per file (s)"
PLOT_MEMORY = "peak memory (MB)"
CANCELLED = "### Cancelled\n\nThe run stopped before it finished; the model is free for other requests."


def parse_sizes(text: str) -> list[int] | None:
    """Empty means the configured default (None)."""
    try:
        return sizes_from_text(text) or None
    except WizardError as exc:
        raise gr.Error(str(exc)) from None


def table_frame(report: WizardReport) -> pd.DataFrame:
    rows = [["" if v is None else v for v in row] for row in report.table()]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def plot_frames(report: WizardReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time per file and peak memory against batch size: the sweep curve and the refine medians."""
    sweep = [report.baseline, *report.sweep]
    time_rows = [[r.batch_size, r.per_file_s, "sweep"] for r in sweep if r.ok]
    time_rows += [[size, median, "refine (median)"] for size, median in sorted(report.refine_medians.items())]
    memory_rows = [[r.batch_size, r.peak_mb, "sweep" if r.ok else "sweep (OOM)"]
                   for r in sweep if r.peak_mb is not None]
    memory_rows += [[r.batch_size, r.predicted_mb, "predicted (memory model)"]
                    for r in sweep if r.predicted_mb is not None]
    # Batch sizes as ordered categories: a numeric axis would show ticks like 1.5 and 2.5.
    for rows in (time_rows, memory_rows):
        for row in rows:
            row[0] = str(row[0])
    times = pd.DataFrame(time_rows, columns=[PLOT_X, PLOT_TIME, "series"])
    memory = pd.DataFrame(memory_rows, columns=[PLOT_X, PLOT_MEMORY, "series"])
    return times, memory


def size_order(report: WizardReport) -> list[str]:
    return [str(s) for s in sorted({r.batch_size for r in report.runs()})]


def axis_range(values: Sequence[float | None]) -> list[float] | None:
    """From zero to a little above the highest value: a flat line looks flat. (Left to itself the
    plot spans the data alone, and 0.004 MB of drift filled the whole height.)"""
    known = [float(v) for v in values if v is not None]
    if not known or max(known) <= 0:
        return None
    return [0.0, max(known) * 1.15]


def recommendation_markdown(report: WizardReport) -> str:
    lines = [f"### Recommended batch size: {report.recommended}", "", report.reason, "",
             f"- **Device:** {report.device}",
             f"- **Peak memory means:** {report.memory_source}",
             f"- **Feature cache:** {report.cache_policy}",
             f"- **Workload:** {report.workload_files} file(s) per run at every size (batch 1 "
             f"included), sizes "
             f"{', '.join(map(str, report.sizes))}, {report.repeats} refine run(s) per size, "
             f"margin {report.margin_pct:g}%, memory limit {report.memory_limit_pct:g}%; "
             f"took {report.elapsed_s:.1f} s"]
    lines += [f"- **Note:** {note}" for note in report.notes]
    return "\n".join(lines)


def cancel_runs() -> str:
    """The Cancel buttons: stop whichever of the wizard and the precision check is running."""
    stopped = [what for what, cancelled in (("tuning run", cancel_wizard()),
                                            ("precision check", cancel_precision_check())) if cancelled]
    return f"Cancelling the {' and the '.join(stopped)}…" if stopped else "Nothing is running."


def _size(value) -> int:
    if value is None or value == "":
        raise gr.Error("Run the wizard first, or type a batch size.")
    try:
        return coerce("batch_size", value, "the tuning tab")
    except SettingsError as exc:
        raise gr.Error(str(exc)) from None


def build_tuning_tab(engine, concurrency_id: str | None = None) -> None:
    """Create the Tuning tab's components and wiring in the current Blocks context.

    `concurrency_id`: the queue the app's recognition events share; tuning joins it so that no
    transcription runs beside the wizard and distorts its timings.
    """
    tuning = engine.settings.tuning
    copies_max = int(SCHEMA["tuning.copies"][1]["max"])
    repeats_max = int(SCHEMA["tuning.repeats"][1]["max"])
    gr.Markdown(INTRO, elem_id="tuning-intro")
    with gr.Row():
        files = gr.File(label="Audio file(s) to tune on", file_count="multiple", type="filepath",
                        elem_id="tuning-files", scale=2)
        with gr.Column(scale=1):
            sizes = gr.Textbox(label="Batch sizes to sweep", value=", ".join(map(str, tuning.sizes)),
                               elem_id="tuning-sizes",
                               info="Extended upward while memory allows and time per file improves.")
            copies = gr.Number(label="Copies of a single file per run", value=tuning.copies, precision=0,
                               minimum=1, maximum=copies_max, elem_id="tuning-copies",
                               info=f"At most {copies_max}; also the most files one run takes.")
            repeats = gr.Number(label="Refine runs per size", value=tuning.repeats, precision=0,
                                minimum=1, maximum=repeats_max, elem_id="tuning-repeats",
                                info=f"At most {repeats_max}. More runs: a surer answer.")
            with gr.Accordion("Decision rule", open=False):
                margin = gr.Number(label="Required gain per larger size (%)", value=tuning.margin_pct,
                                   minimum=0, maximum=100, elem_id="tuning-margin")
                memory_limit = gr.Number(label="Memory limit (% of total)", value=tuning.memory_limit_pct,
                                         minimum=1, maximum=100, elem_id="tuning-memory-limit")
    with gr.Row():
        start = gr.Button("Start tuning", variant="primary", elem_id="tuning-start")
        cancel = gr.Button("Cancel", variant="stop", elem_id="tuning-cancel")
    recommendation = gr.Markdown(elem_id="tuning-recommendation")
    table = gr.Dataframe(headers=TABLE_COLUMNS, label="Every measured run", interactive=False,
                         elem_id="tuning-table")
    with gr.Row():
        time_plot = gr.LinePlot(x=PLOT_X, y=PLOT_TIME, color="series", label="Time per file",
                                show_label=True, x_title="batch size", y_title="seconds per file",
                                elem_id="tuning-plot-time")
        memory_plot = gr.LinePlot(x=PLOT_X, y=PLOT_MEMORY, color="series", label="Peak memory",
                                  show_label=True, x_title="batch size", y_title="MB",
                                  elem_id="tuning-plot-memory")
    with gr.Row():
        chosen = gr.Number(label="Batch size to apply", value=engine.default_batch_size, precision=0,
                           minimum=1, elem_id="tuning-chosen",
                           info="The recommendation; you may change it before applying.")
        apply = gr.Button("Apply (until restart)", elem_id="tuning-apply")
        save = gr.Button("Save to config.yaml", elem_id="tuning-save")
    status = gr.Markdown(f"Current default batch size: {engine.default_batch_size}",
                         elem_id="tuning-status")
    with gr.Accordion("Full report (JSON)", open=False):
        report_json = gr.JSON(elem_id="tuning-report")

    def start_tuning(paths, sizes_text, copies_value, repeats_value, margin_value, limit_value,
                     progress=gr.Progress()):
        if not paths:
            raise gr.Error("Choose or upload at least one audio file first.")
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        try:
            report = run_wizard(
                engine, paths, sizes=parse_sizes(sizes_text),
                copies=None if copies_value is None else int(copies_value),
                repeats=None if repeats_value is None else int(repeats_value),
                margin_pct=margin_value, memory_limit_pct=limit_value,
                progress=lambda fraction, message: progress(fraction, desc=message),
            )
        except WizardCancelled:
            return gr.skip(), gr.skip(), gr.skip(), CANCELLED, gr.skip(), gr.skip()
        except WizardError as exc:
            raise gr.Error(str(exc)) from None
        times, memory = plot_frames(report)
        order = size_order(report)
        return (table_frame(report),
                gr.LinePlot(value=times, sort=order, y_lim=axis_range(times[PLOT_TIME].tolist())),
                gr.LinePlot(value=memory, sort=order, y_lim=axis_range(memory[PLOT_MEMORY].tolist())),
                recommendation_markdown(report), report.recommended, report.to_dict())

    def apply_size(value) -> str:
        size = _size(value)
        engine.set_default_batch_size(size)
        return (f"Default batch size is now **{size}** for every tab until the server restarts. "
                "Save to keep it.")

    def save_size(value) -> str:
        size = _size(value)
        engine.set_default_batch_size(size)
        path = engine.settings.config_path
        if not path:
            raise gr.Error("This server was started without a config file to save to.")
        try:
            saved = write_batch_size(path, size)
        except (ConfigWriteError, OSError) as exc:
            raise gr.Error(f"Applied, but could not save: {exc}") from None
        was = f" (was {saved.previous})" if saved.previous is not None else ""
        return f"Default batch size is now **{size}**, saved to `{saved.path}`{was}; comments kept."

    start.click(start_tuning, [files, sizes, copies, repeats, margin, memory_limit],
                [table, time_plot, memory_plot, recommendation, chosen, report_json],
                api_name="tune_batch_size", concurrency_limit=1, concurrency_id=concurrency_id)
    # Not on the tuning queue (it would wait for the run it is meant to stop).
    cancel.click(cancel_runs, None, status, api_name="cancel_tuning", concurrency_limit=None)
    apply.click(apply_size, chosen, status, api_name="apply_batch_size")
    save.click(save_size, chosen, status, api_name="save_batch_size")
    build_precision_check(engine, files, concurrency_id)


PRECISION_INTRO = """\
Reduced precision (bf16 on CPUs with AVX-512 BF16 or AMX and on recent GPUs, fp16 on GPUs, int8 on
CPUs) is faster, but it rounds every product, so a close call between two tokens can flip. This
runs **your files** above in fp32 and in the reduced precision, alternating, and shows per file
how long each took and how many tokens agree. Then keep fp32 or apply the other.
"""


def precision_markdown(report: PrecisionReport) -> str:
    lines = [f"### {report.summary()}", ""]
    lines += [f"- {note}" for note in report.notes]
    lines += [f"- {check.file}: failed ({check.error})" for check in report.files if check.error]
    return "\n".join(lines)


def build_precision_check(engine, files, concurrency_id: str | None = None) -> None:
    """The precision check under the wizard: its table, and apply or save either precision."""
    candidate = fastest_reduced_precision(engine.loaded.device, engine.cpu)
    with gr.Accordion("Precision check: does a faster precision change my transcripts?", open=False):
        gr.Markdown(PRECISION_INTRO)
        with gr.Row():
            check = gr.Button(f"Check fp32 against {candidate}" if candidate else "No reduced precision here",
                              interactive=candidate is not None, elem_id="precision-check")
            cancel = gr.Button("Cancel", variant="stop", elem_id="precision-cancel")
        summary = gr.Markdown(elem_id="precision-summary")
        table = gr.Dataframe(label="Per file", interactive=False, elem_id="precision-table")
        with gr.Row():
            choice = gr.Radio(list(dict.fromkeys(["fp32", candidate or "fp32", engine.precision])),
                              value=engine.precision,
                              label="Precision to apply", elem_id="precision-choice")
            apply = gr.Button("Apply (until restart)", elem_id="precision-apply")
            save = gr.Button("Save to config.yaml", elem_id="precision-save")
        status = gr.Markdown(f"Current precision: {engine.precision}", elem_id="precision-status")

    def run_check(paths, progress=gr.Progress()):
        if not paths:
            raise gr.Error("Choose or upload at least one audio file above first.")
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        try:
            report = run_precision_check(engine, paths, candidate,
                                         progress=lambda fraction, message: progress(fraction, desc=message))
        except PrecisionCheckCancelled:
            return CANCELLED, gr.skip()
        except PrecisionCheckError as exc:
            raise gr.Error(str(exc)) from None
        return precision_markdown(report), pd.DataFrame(report.table(), columns=report.columns())

    def apply_precision(value) -> str:
        try:
            engine.set_precision(value)
        except (PrecisionUnavailable, SettingsError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"Precision is now **{engine.precision}** for every tab until the server restarts. "
                "Save to keep it.")

    def save_precision(value) -> str:
        apply_precision(value)
        path = engine.settings.config_path
        if not path:
            raise gr.Error("This server was started without a config file to save to.")
        try:
            saved = write_setting(path, "precision", value)
        except (ConfigWriteError, OSError) as exc:
            raise gr.Error(f"Applied, but could not save: {exc}") from None
        return f"Precision is now **{engine.precision}**, saved to `{saved.path}`; comments kept."

    check.click(run_check, files, [summary, table], api_name="check_precision", concurrency_limit=1,
                concurrency_id=concurrency_id)
    cancel.click(cancel_runs, None, status, api_name="cancel_tuning_precision", concurrency_limit=None)
    apply.click(apply_precision, choice, status, api_name="apply_precision")
    save.click(save_precision, choice, status, api_name="save_precision")
