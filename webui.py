"""The Gradio web UI: tabs, components and event wiring around one shared `Engine`.

Layout and wiring only. Every recognition goes through `engine.run`; exports, folder rules and
system figures come from asr.export, asr.folders and asr.sysinfo. Each action is also an API
endpoint with a stable name (transcribe_file, transcribe_batch, transcribe_folder, system_info).
Recognition events run side by side (up to `server.ui_concurrency`) and meet in the engine's
batcher, which puts every request's segments into shared batches; the tuning wizard runs alone
(its own slot, and exclusive use of the model at the batcher). A user mistake becomes a
`gr.Error` with a plain message; anything unexpected is logged with its traceback and reported
in one line, so the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from asr import export, sysinfo
from asr.audio import AUDIO_EXTENSIONS
from asr.batcher import QueueFull
from asr.engine import Engine
from asr.folders import FolderError, allowed_roots, check_paths_limits, list_audio_files, resolve_folder
from asr.hotwords import HotwordError
from asr.results import Result, RunStats
from asr.settings import PROJECT_ROOT, SCHEMA, Settings, SettingsError, coerce

log = logging.getLogger(__name__)

TITLE = "Seaco Paraformer 中文语音识别"
BATCH_HEADERS = ["File", "Text", "Confidence", "Duration (s)", "Processing (s)", "Status"]
SENTENCE_HEADERS = ["Start", "End", "Text"]
DEFAULT_ZIP_FORMATS = ["txt", "srt"]
RECOGNITION_QUEUE = "recognition"  # concurrency id of the events that send audio to the batcher
TUNING_QUEUE = "tuning"  # the wizard: one at a time, and alone on the model
LATE_CHUNK_S = 1.0  # a chunk this soon after Stop belongs to the recording that just ended
BATCH_SIZE_MAX = int(SCHEMA["batch_size"][1]["max"])  # the slider allows what config.yaml allows

CSS = """
.gradio-container { max-width: 1180px !important; width: 100% !important; margin: 0 auto; }
#sysinfo table { width: 100%; }
#app-title h1 { margin-bottom: 0; }
#app-title p { margin-top: 4px; color: var(--body-text-color-subdued); }
#single-text textarea, #live-text textarea { font-size: 1.15rem; line-height: 1.7; }
.error-line { color: var(--error-text-color); }
"""
FONT_STACK = ["Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", "Source Han Sans SC",
              "ui-sans-serif", "system-ui", "sans-serif"]


# ---- small helpers -------------------------------------------------------------------------------

def _user_errors(fn: Callable) -> Callable:
    """Show user mistakes as a gr.Error message; log anything unexpected and report it briefly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (FolderError, HotwordError, ValueError, QueueFull) as exc:
            log.info("refused request: %s", exc)
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - the server must keep serving
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"unexpected server error ({type(exc).__name__}: {exc}); details are in "
                           "the server log", print_exception=False) from None

    return wrapper


def _batch_size(value: Any, engine: Engine) -> int:
    """Gradio's slider bounds the range even for API callers; this refuses the rest (2.5, "x")
    with config.yaml's own rule and words."""
    if value in (None, ""):
        return engine.default_batch_size
    try:
        return coerce("batch_size", value, "this request")
    except SettingsError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def _file_path(item: Any) -> str | None:
    """Gradio hands files over as paths or objects with .name/.path, depending on the caller."""
    if item is None:
        return None
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, dict):
        return item.get("path") or item.get("name")
    return getattr(item, "path", None) or getattr(item, "name", None)


EXPORT_MAX_AGE_S = 3600  # Gradio copies each download into its own cache; ours can go soon after


def _export_dir(root: Path) -> Path:
    """A fresh folder for one request's downloads; folders older than an hour are removed."""
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in root.glob("*"):
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    folder = root / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True)
    return folder


def _speed(result: Result) -> float:
    return round(result.duration_s / result.processing_s, 1) if result.processing_s > 0 else 0.0


def _status(result: Result) -> str:
    """'ok', 'ok (no speech found)' or the error: warnings are worth a glance, not a column."""
    status = export.status_of(result)
    return f"{status} ({'; '.join(result.warnings)})" if result.ok and result.warnings else status


def _table(results: Sequence[Result]) -> list[list]:
    return [[r.file, r.text, round(r.confidence, 3), round(r.duration_s, 2), round(r.processing_s, 2),
             _status(r)] for r in results]


def _sentences(result: Result) -> list[list]:
    return [[export.clock(s.start_s), export.clock(s.end_s), s.text] for s in result.segments]


def _formats(value: Any) -> list[str]:
    """The zip's formats from the checkbox group (or an API caller's list or "txt,srt")."""
    if value in (None, "", []):
        return list(DEFAULT_ZIP_FORMATS)
    return export.parse_formats(value)


def _summary(results: Sequence[Result], stats: RunStats, size: int) -> str:
    failed = sum(1 for r in results if not r.ok)
    line = (f"**{len(results)} file(s): {len(results) - failed} ok, {failed} failed** · "
            f"{stats.audio_s:.1f} s of audio in {stats.wall_s:.2f} s "
            f"({stats.speed:.1f}x real time) · batch size {size}")
    if stats.backoffs:
        line += (f" · ran out of GPU memory {stats.backoffs} time(s) and fell back to smaller "
                 "batches: choose a smaller batch size")
    return line


def _hotword_label(settings: Settings) -> str:
    hw = settings.hotwords
    return (f"Hotwords 热词 (up to {hw.max_count}, each at most {hw.max_chars} characters; "
            "separate with spaces or commas)")


def _slider(engine: Engine, elem_id: str, info: str) -> gr.Slider:
    default = engine.default_batch_size
    return gr.Slider(1, BATCH_SIZE_MAX, value=default, step=1, label="Batch size", info=info,
                     elem_id=elem_id)


def _realtime_module():
    try:
        from asr import realtime
    except ImportError as exc:
        log.warning("realtime tab disabled: asr.realtime cannot be imported (%s)", exc)
        return None
    return realtime


def _tuning_builder() -> Callable[..., None] | None:
    try:
        from tuning.ui import build_tuning_tab
    except ImportError as exc:
        log.info("tuning tab shows a placeholder: tuning.ui cannot be imported (%s)", exc)
        return None
    return build_tuning_tab


# ---- live microphone sessions --------------------------------------------------------------------

class LiveSessions:
    """One realtime LiveSession per browser session, closed when the session ends.

    A LiveSession owns a worker thread, which must not live in a gr.State initial value (Gradio
    deep-copies those), so sessions are kept here, keyed by Gradio's session hash. Each recording
    gets a fresh session; `use` creates it on whichever arrives first, the start event or the
    first chunk, since Gradio does not order the two.
    """

    def __init__(self, engine: Engine, realtime_module):
        self.engine = engine
        self.module = realtime_module
        self._sessions: dict[str, Any] = {}
        self._stopped: dict[str, float] = {}  # key -> when its recording was stopped
        self._lock = threading.Lock()

    def use(self, key: str, hotwords: str | None):
        """The session of the current recording, starting a new one after a stop."""
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and key not in self._stopped:
                return session
            old = session
            session = self.module.LiveSession(self.engine, self.engine.settings.realtime,
                                              hotwords=hotwords or None)
            self._sessions[key] = session
            self._stopped.pop(key, None)
        if old is not None:
            old.close()
        return session

    def for_chunk(self, key: str, hotwords: str | None):
        """The session a microphone chunk belongs to, or None for a straggler.

        Gradio can deliver a recording's last chunk after its stop event. Such a chunk must not
        open a new session (which would then hold the previous take's hotwords and audio), so
        chunks arriving within LATE_CHUNK_S of a stop are dropped; the stop already finalised
        that recording.
        """
        with self._lock:
            stopped_at = self._stopped.get(key)
            if stopped_at is not None and time.monotonic() - stopped_at < LATE_CHUNK_S:
                return None
        return self.use(key, hotwords)

    def get(self, key: str):
        with self._lock:
            return self._sessions.get(key)

    def stop(self, key: str):
        """Finalise the current recording; returns its last snapshot (None without a session)."""
        with self._lock:
            session = self._sessions.get(key)
            self._stopped[key] = time.monotonic()
        return session.stop() if session is not None else None

    def end(self, key: str) -> None:
        with self._lock:
            session = self._sessions.pop(key, None)
            self._stopped.pop(key, None)
        if session is not None:
            session.close()
            log.info("live session %s closed", key[:8])

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()


def _live_status(snapshot) -> str:
    if snapshot is None:
        return "Press **Record** and speak; text appears while you talk."
    parts = [f"{snapshot.audio_s:.1f} s of audio", f"{snapshot.updates} update(s)"]
    if snapshot.updates:
        parts.append(f"last update took {snapshot.last_latency_s:.2f} s")
    line = " · ".join(parts)
    if snapshot.error:
        line += f"\n\n<span class='error-line'>Error: {snapshot.error}</span>"
    return line


# ---- the app -------------------------------------------------------------------------------------

def build_app(engine: Engine) -> gr.Blocks:
    """All tabs wired to `engine`. Launch with `launch_app` (queue, upload cap, theme, CSS)."""
    settings = engine.settings
    # Under Gradio's upload folder when GRADIO_TEMP_DIR is set, else the system temp dir: both are
    # places Gradio serves files from without extra allowed_paths.
    export_root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "seaco-webui-exports"
    export_root.mkdir(parents=True, exist_ok=True)
    roots = allowed_roots(settings.batch.allowed_dirs, base=PROJECT_ROOT)
    upload_types = list(AUDIO_EXTENSIONS)

    # ---- handlers (closures over the engine) ----

    @_user_errors
    def transcribe_file(file, hotwords: str, batch_size, timestamps=None, progress=gr.Progress()):
        """Recognise one audio or video file. Returns text, confidence, duration (s), processing
        time (s), speed (x real time), the .txt/.json/.srt/.vtt/.tsv downloads and the sentences
        (start, end, text). `timestamps` (default: the server's setting) gives sentence times."""
        path = _file_path(file)
        if not path:
            raise gr.Error("upload or record an audio file first", print_exception=False)
        size = _batch_size(batch_size, engine)
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
        folder = _export_dir(export_root)
        stem = Path(path).stem or "audio"
        downloads = []
        for fmt in export.FORMATS:
            target = folder / f"{stem}.{fmt}"
            target.write_text(export.render(result, fmt), encoding="utf-8")
            downloads.append(str(target))
        return (result.text, round(result.confidence, 3), round(result.duration_s, 2),
                round(result.processing_s, 2), _speed(result), downloads, _sentences(result))

    def _run_many(paths: list[str], names: list[str] | None, hotwords: str, batch_size, timestamps,
                  formats, progress, confine_to: list[Path] | None = None):
        size = _batch_size(batch_size, engine)
        chosen = _formats(formats)
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
        folder = _export_dir(export_root)
        (folder / "results.csv").write_text(export.to_csv(results), encoding="utf-8")
        (folder / "results.json").write_text(export.to_json(results), encoding="utf-8")
        (folder / "transcripts.zip").write_bytes(export.to_zip(results, chosen))
        files = [str(folder / n) for n in ("results.csv", "results.json", "transcripts.zip")]
        failed = [r for r in results if not r.ok]
        if failed:
            gr.Warning(f"{len(failed)} of {len(results)} file(s) failed; see the Status column")
        return _table(results), _summary(results, run.stats, size), files

    @_user_errors
    def transcribe_batch(files, hotwords: str, batch_size, timestamps=None, formats=None,
                         progress=gr.Progress()):
        """Recognise many uploaded files. Returns the results table, a summary line and the
        CSV / JSON / zip exports; the zip holds each file in `formats` (txt, json, srt, vtt, tsv;
        default txt and srt). A bad file fails alone (its Status says why)."""
        paths = [p for p in (_file_path(f) for f in (files or [])) if p]
        if not paths:
            raise gr.Error("upload one or more audio files first", print_exception=False)
        check_paths_limits(paths, settings.batch.max_files, settings.batch.max_total_mb)
        return _run_many(paths, None, hotwords, batch_size, timestamps, formats, progress)

    @_user_errors
    def transcribe_folder(folder: str, hotwords: str, batch_size, timestamps=None, formats=None,
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
        return _run_many([str(p) for p in listing.files], names, hotwords, batch_size, timestamps,
                         formats, progress, confine_to=roots)

    def _sysinfo_outputs(info: sysinfo.SystemInfo) -> tuple[str, dict]:
        lines = ["| Figure | Value |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in info.rows()]
        return "\n".join(lines), info.to_dict()

    @_user_errors
    def system_info():
        """Model, versions, GPU/CPU memory and cache figures. Releases torch's cached GPU memory
        first and reports how much it freed."""
        return _sysinfo_outputs(sysinfo.refresh(engine))

    def system_info_quiet():
        return _sysinfo_outputs(sysinfo.gather(engine))

    def current_batch_size():
        # The tuning tab may change the engine's default; new page loads pick it up.
        size = engine.default_batch_size
        return size, size

    # ---- layout ----

    with gr.Blocks(title=TITLE, fill_width=False) as demo:
        gr.Markdown(f"# {TITLE}\nFunASR SeACo-Paraformer · model `{engine.loaded.spec}` on "
                    f"`{engine.loaded.device}`", elem_id="app-title")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Single file 单个文件", id="single", elem_id="tab-single"):
                with gr.Row():
                    with gr.Column(scale=1):
                        single_file = gr.File(label="Audio or video file (wav, mp3, flac, ogg, m4a, aac, "
                                                    "mp4, webm, ...)", file_types=upload_types,
                                              elem_id="single-file")
                        single_mic = gr.Audio(sources=["microphone"], type="filepath",
                                              label="…or record (the recording is used when it stops)",
                                              elem_id="single-mic")
                        single_hotwords = gr.Textbox(label=_hotword_label(settings), lines=1,
                                                     placeholder="例如：达摩院 魔搭",
                                                     elem_id="single-hotwords")
                        single_batch = _slider(engine, "single-batch",
                                               "segments per model call for long recordings")
                        single_timestamps = gr.Checkbox(
                            value=settings.timestamps, label="Sentence times 时间戳 (for subtitles)",
                            elem_id="single-timestamps")
                        single_start = gr.Button("Start 开始识别", variant="primary", elem_id="single-start")
                    with gr.Column(scale=2):
                        single_text = gr.Textbox(label="Text 识别结果", lines=8, interactive=False,
                                                 buttons=["copy"], elem_id="single-text")
                        with gr.Row():
                            single_conf = gr.Number(label="Confidence", precision=3, interactive=False,
                                                    elem_id="single-confidence")
                            single_dur = gr.Number(label="Audio duration (s)", precision=2,
                                                   interactive=False, elem_id="single-duration")
                            single_proc = gr.Number(label="Processing time (s)", precision=2,
                                                    interactive=False, elem_id="single-processing")
                            single_speed = gr.Number(label="Speed (x real time)", precision=1,
                                                     interactive=False, elem_id="single-speed")
                        single_sentences = gr.Dataframe(
                            headers=SENTENCE_HEADERS, type="array", interactive=False, wrap=True,
                            column_widths=["15%", "15%", "70%"], label="Sentences 句子",
                            elem_id="single-sentences")
                        single_downloads = gr.File(label="Downloads (.txt, .json, .srt, .vtt, .tsv)",
                                                   file_count="multiple", interactive=False,
                                                   elem_id="single-downloads")

            with gr.Tab("Batch 批量", id="batch", elem_id="tab-batch"):
                gr.Markdown(f"Up to **{settings.batch.max_files} files** and "
                            f"**{settings.batch.max_total_mb} MB** per batch. One bad file fails alone.")
                with gr.Row():
                    with gr.Column(scale=3):
                        batch_files = gr.File(label="Audio files", file_count="multiple",
                                              file_types=upload_types, elem_id="batch-files")
                        batch_start = gr.Button("Transcribe uploads 识别上传文件", variant="primary",
                                                elem_id="batch-start")
                    with gr.Column(scale=2):
                        if roots:
                            folder_help = "Allowed: " + ", ".join(f"`{r}`" for r in roots)
                        else:
                            folder_help = ("Folder input is off: list server folders under "
                                           "`batch.allowed_dirs` in config.yaml to enable it.")
                        batch_folder = gr.Textbox(label="…or a server folder (searched recursively)",
                                                  placeholder=str(roots[0]) if roots else "",
                                                  elem_id="batch-folder")
                        gr.Markdown(folder_help, elem_id="batch-folder-help")
                        folder_start = gr.Button("Transcribe folder 识别文件夹", elem_id="folder-start",
                                                 interactive=bool(roots))
                with gr.Row():
                    batch_hotwords = gr.Textbox(label=_hotword_label(settings), elem_id="batch-hotwords",
                                                scale=3)
                    batch_size = _slider(engine, "batch-batch", "files per model call; applies to this run")
                with gr.Row():
                    batch_timestamps = gr.Checkbox(value=settings.timestamps,
                                                   label="Sentence times 时间戳 (for subtitles)",
                                                   elem_id="batch-timestamps")
                    batch_formats = gr.CheckboxGroup(list(export.FORMATS), value=DEFAULT_ZIP_FORMATS,
                                                     label="Formats in the zip", elem_id="batch-formats")
                batch_summary = gr.Markdown(elem_id="batch-summary")
                batch_table = gr.Dataframe(headers=BATCH_HEADERS, type="array", interactive=False,
                                           wrap=True, column_widths=["16%", "44%", "9%", "9%", "10%", "12%"],
                                           label="Results", elem_id="batch-table")
                batch_exports = gr.File(label="Export (CSV, JSON, zip of the chosen formats)",
                                        file_count="multiple", interactive=False, elem_id="batch-exports")

            with gr.Tab("Realtime 实时识别", id="live", elem_id="tab-live"):
                live_parts = _build_live_tab(engine, demo)

            with gr.Tab("Batch-size tuning 批大小调优", id="tuning", elem_id="tab-tuning"):
                builder = _tuning_builder()
                if builder is not None:
                    builder(engine, concurrency_id=TUNING_QUEUE)  # the engine runs it alone
                else:
                    gr.Markdown("The batch-size tuning wizard is not installed in this build.",
                                elem_id="tuning-placeholder")

            with gr.Tab("System info 系统信息", id="system", elem_id="tab-system"):
                sys_refresh = gr.Button("Refresh (releases cached GPU memory)", elem_id="sysinfo-refresh")
                sys_table = gr.Markdown(elem_id="sysinfo")
                with gr.Accordion("Raw figures (JSON)", open=False):
                    sys_json = gr.JSON(elem_id="sysinfo-json")

        # ---- events ----

        recognition = {"concurrency_limit": settings.server.ui_concurrency,
                       "concurrency_id": RECOGNITION_QUEUE}
        single_outputs = [single_text, single_conf, single_dur, single_proc, single_speed, single_downloads,
                          single_sentences]
        single_mic.stop_recording(lambda path: path, single_mic, single_file, api_visibility="private",
                                  queue=False)
        single_start.click(lambda: (None,) * len(single_outputs), None, single_outputs,
                           api_visibility="private", queue=False).then(
            transcribe_file, [single_file, single_hotwords, single_batch, single_timestamps], single_outputs,
            api_name="transcribe_file", **recognition)

        batch_outputs = [batch_table, batch_summary, batch_exports]
        batch_options = [batch_hotwords, batch_size, batch_timestamps, batch_formats]
        batch_start.click(transcribe_batch, [batch_files, *batch_options], batch_outputs,
                          api_name="transcribe_batch", **recognition)
        folder_start.click(transcribe_folder, [batch_folder, *batch_options], batch_outputs,
                           api_name="transcribe_folder", **recognition)

        sys_refresh.click(system_info, None, [sys_table, sys_json], api_name="system_info",
                          concurrency_limit=None)
        demo.load(system_info_quiet, None, [sys_table, sys_json], api_visibility="private",
                  concurrency_limit=None, show_progress="hidden")
        demo.load(current_batch_size, None, [single_batch, batch_size], api_visibility="private",
                  concurrency_limit=None, show_progress="hidden")
        if live_parts is not None:
            live_parts.wire(demo)
    demo.live_sessions = live_parts.sessions if live_parts is not None else None  # for tests/shutdown
    return demo


class _LiveTab:
    """The realtime tab's components and events (kept apart: it is the only stateful tab)."""

    def __init__(self, engine: Engine, module):
        settings = engine.settings
        self.sessions = LiveSessions(engine, module)
        interval = min(0.5, settings.realtime.update_interval_s)
        gr.Markdown(f"Speak into the microphone: text updates about every "
                    f"{settings.realtime.update_interval_s:g} s and a segment is finalised after "
                    f"{settings.realtime.pause_s:g} s of silence.")
        with gr.Row():
            with gr.Column(scale=1):
                self.mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy",
                                    label="Microphone 麦克风", elem_id="live-mic")
                self.hotwords = gr.Textbox(label=_hotword_label(settings) + "; set before recording",
                                           elem_id="live-hotwords")
                self.clear = gr.Button("Clear 清除", elem_id="live-clear")
            with gr.Column(scale=2):
                self.text = gr.Textbox(label="Live text 实时文本", lines=10, interactive=False,
                                       buttons=["copy"], elem_id="live-text")
                self.status = gr.Markdown(_live_status(None), elem_id="live-status")
        self.timer = gr.Timer(interval, active=False)

    def wire(self, demo: gr.Blocks) -> None:
        sessions = self.sessions

        def start(hotwords: str, request: gr.Request):
            sessions.use(request.session_hash, hotwords)
            return "", _live_status(None), gr.Timer(active=True)

        def push(chunk, hotwords: str, request: gr.Request):
            # Must return at once: Gradio keeps only the newest chunk while this runs.
            if chunk is None:
                return
            try:
                rate, samples = chunk
                session = sessions.for_chunk(request.session_hash, hotwords)
                if session is not None:
                    session.push(rate, samples)
            except ValueError as exc:  # a malformed chunk: drop it, keep the stream alive
                log.warning("dropped a microphone chunk: %s", exc)

        def show(request: gr.Request):
            session = sessions.get(request.session_hash)
            if session is None:
                return gr.skip(), gr.skip()
            snap = session.snapshot()
            return snap.text, _live_status(snap)

        def stop(request: gr.Request):
            snap = sessions.stop(request.session_hash)
            if snap is None:
                return gr.skip(), gr.skip(), gr.Timer(active=False)
            return snap.text, _live_status(snap), gr.Timer(active=False)

        def clear(request: gr.Request):
            session = sessions.get(request.session_hash)
            if session is not None:
                session.clear()
            return "", _live_status(None)

        def end(request: gr.Request):
            sessions.end(request.session_hash)

        private = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
        self.mic.start_recording(start, [self.hotwords], [self.text, self.status, self.timer], **private)
        self.mic.stream(push, [self.mic, self.hotwords], None, stream_every=0.1, time_limit=None,
                        **private)
        self.mic.stop_recording(stop, None, [self.text, self.status, self.timer], **private)
        self.timer.tick(show, None, [self.text, self.status], **private)
        self.clear.click(clear, None, [self.text, self.status], **private)
        demo.unload(end)


def _build_live_tab(engine: Engine, demo: gr.Blocks) -> _LiveTab | None:
    module = _realtime_module()
    if module is None:
        gr.Markdown("Realtime recognition is not available in this build (asr.realtime is missing).",
                    elem_id="live-placeholder")
        return None
    return _LiveTab(engine, module)


def theme() -> gr.themes.Base:
    """The default look with local CJK-capable fonts: no web-font downloads, Chinese renders well."""
    mono = ["Noto Sans Mono CJK SC", "ui-monospace", "monospace"]
    return gr.themes.Default(font=FONT_STACK, font_mono=mono)


def ui_auth(settings: Settings) -> list[tuple[str, str]] | None:
    """`server.ui_auth` entries "user:password" as Gradio's login list (None: no login)."""
    pairs = [tuple(entry.split(":", 1)) for entry in settings.server.ui_auth if ":" in entry]
    return [(user, password) for user, password in pairs] or None


def mount(app, demo: gr.Blocks, settings: Settings, path: str = "/"):
    """Serve the UI from `app` (the API's FastAPI app), on one port with the API."""
    demo.queue(default_concurrency_limit=1)
    return gr.mount_gradio_app(app, demo, path=path, auth=ui_auth(settings),
                               max_file_size=f"{settings.server.max_file_size_mb}mb", show_error=True,
                               ssr_mode=False, theme=theme(), css=CSS)


def launch_app(demo: gr.Blocks, settings: Settings, *, host: str | None = None, port: int | None = None,
               prevent_thread_lock: bool = False, quiet: bool = False):
    """The UI on Gradio's own server (no API): queue on, uploads capped at
    server.max_file_size_mb. Returns Gradio's launch tuple."""
    demo.queue(default_concurrency_limit=1)
    return demo.launch(
        server_name=host or settings.server.host,
        server_port=port or settings.server.port,
        max_file_size=f"{settings.server.max_file_size_mb}mb",
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        auth=ui_auth(settings),
        show_error=True,
        ssr_mode=False,
        theme=theme(),
        css=CSS,
    )
