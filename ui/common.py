"""What every tab shares: the app's context, how errors and progress reach the user, the runs
each page may cancel, and small formatters.

No inference here: recognition goes through `engine.run`, exports through asr.text.export. Words
come from ui.i18n, in the page's language.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from asr.audio.folders import FolderError
from asr.engine import Engine
from asr.progress import DONE, RunProgress
from asr.recognition.batcher import Cancelled, QueueFull
from asr.recognition.hotwords import HotwordError
from asr.results import Result, RunStats, Transcription
from asr.settings import SCHEMA, Settings, SettingsError, coerce, normalize_speaker_count
from asr.text import export
from ui.i18n import EN, lang_of, t, tf, tr

log = logging.getLogger(__name__)

RECOGNITION_QUEUE = "recognition"  # concurrency id of the events that send audio to the batcher
TUNING_QUEUE = "tuning"  # the wizard: one at a time, and alone on the model
BATCH_SIZE_MAX = int(SCHEMA["batch_size"][1]["max"])  # the slider allows what config.yaml allows
DEFAULT_ZIP_FORMATS = ["txt", "srt"]
SUBTITLE_FORMATS = ("srt", "vtt", "tsv")  # timed cues: they need sentence times
SPEAKER_COUNTS = range(2, 9)  # the speakers menu's counts; any other may be typed
PREVIEW_CHARS = 40  # of a batch row's text; the full text shows on demand
EXPORT_MAX_AGE_S = 3600  # Gradio copies each download into its own cache; ours can go soon after


class Runs:
    """The recognition runs each page (Gradio session) has going, so the page's Cancel button, or
    the page going away, can stop them: the engine then drops their waiting segments."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[str, set[threading.Event]] = {}

    @contextlib.contextmanager
    def track(self, request: gr.Request | None) -> Iterator[threading.Event]:
        event = threading.Event()
        key = _session(request)
        with self._lock:
            self._running.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._running.get(key, set())
                events.discard(event)
                if not events:
                    self._running.pop(key, None)

    def cancel(self, request: gr.Request | None) -> int:
        """Stop every run of the page `request` came from; how many there were."""
        key = _session(request)
        with self._lock:
            events = list(self._running.get(key, ()))
        for event in events:
            event.set()
        return len(events)

    def running(self, request: gr.Request | None) -> int:
        with self._lock:
            return len(self._running.get(_session(request), ()))


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "(no session)"


@dataclass
class AppContext:
    """What the tabs of one app share."""

    engine: Engine
    export_root: Path  # one folder per request's downloads is made under it
    allowed_roots: list[Path] = field(default_factory=list)  # server folders the batch tab may read
    upload_types: list[str] = field(default_factory=list)
    batch_sliders: list[gr.Slider] = field(default_factory=list)  # refreshed from the engine on load
    runs: Runs = field(default_factory=Runs)
    # (fn(lang, *inputs) -> updates, inputs, outputs): words the server writes, run on load and
    # whenever the page's language changes.
    language_hooks: list[tuple[Callable[..., Any], list, list]] = field(default_factory=list)
    page_scripts: list[str] = field(default_factory=list)  # JS functions run once as a page loads

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    def recognition_events(self) -> dict[str, Any]:
        """Event options of everything that sends audio to the batcher: side by side, bounded."""
        return {"concurrency_limit": self.settings.server.ui_concurrency,
                "concurrency_id": RECOGNITION_QUEUE}


def user_errors(fn: Callable) -> Callable:
    """Show user mistakes as a gr.Error message; log anything unexpected and report it briefly.
    A cancelled run says so. Words in the page's language when the handler takes `request`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Cancelled:
            lang = _language(args, kwargs)
            raise gr.Error(tr("common.cancelled", lang), title=tr("common.cancelled_title", lang),
                           print_exception=False) from None
        except (FolderError, HotwordError, ValueError, QueueFull) as exc:
            log.info("refused request: %s", exc)
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - the server must keep serving
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(tr("common.unexpected", _language(args, kwargs),
                              error=f"{type(exc).__name__}: {exc}"), print_exception=False) from None

    return wrapper


def _language(args: Sequence, kwargs: dict) -> str:
    """The page's language from the handler's gr.Request, wherever Gradio passed it."""
    request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
    return lang_of(request)


def run_engine(ctx: AppContext, inputs: list[str], progress, request: gr.Request | None,
               **options: Any) -> Transcription:
    """`engine.run` for a page: its progress in seconds of audio with the stage (gr.Progress, in
    the page's language), stoppable by the page's Cancel. Cancelled propagates."""
    lang = lang_of(request)

    def report(moved: RunProgress) -> None:
        if progress is not None:
            progress(moved.fraction, desc=progress_text(moved, lang))

    with ctx.runs.track(request) as cancel:
        return ctx.engine.run(inputs, on_progress=report, cancel=cancel, **options)


def progress_text(moved: RunProgress, lang: str) -> str:
    """"recognising · 123.4 of 1800.0 s of audio · about 40 s left" (and the file, in batches)."""
    eta = moved.eta_s
    shown = eta is not None and eta >= 1 and moved.stage != DONE  # "0 s left" says nothing
    left = tr("common.eta", lang, left=duration_words(eta, lang)) if shown else ""
    text = tr("common.progress", lang, stage=tr(f"stage.{moved.stage}", lang),
              done=f"{moved.audio_done_s:.1f}", total=f"{moved.audio_total_s:.1f}", eta=left)
    if moved.files_total > 1:
        text += tr("common.progress_files", lang, file=moved.file, files_done=moved.files_done,
                   files_total=moved.files_total)
    return text


def duration_words(seconds: float, lang: str) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return tr("common.seconds", lang, n=seconds)
    return tr("common.minutes", lang, m=seconds // 60, s=seconds % 60)


def wants_timestamps(timestamps: Any, formats: Sequence[str]) -> bool | None:
    """Sentence times for this request: on whenever a subtitle format is asked for (as the CLI
    does), unless the caller said False; else what the caller said (None: the server's setting)."""
    if timestamps is None and set(formats) & set(SUBTITLE_FORMATS):
        return True
    return None if timestamps is None else bool(timestamps)


def batch_size(value: Any, engine: Engine) -> int:
    """Gradio's slider bounds the range even for API callers; this refuses the rest (2.5, "x")
    with config.yaml's own rule and words."""
    if value in (None, ""):
        return engine.default_batch_size
    try:
        return coerce("batch_size", value, "this request")
    except SettingsError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def file_path(item: Any) -> str | None:
    """Gradio hands files over as paths or objects with .name/.path, depending on the caller."""
    if item is None:
        return None
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, dict):
        return item.get("path") or item.get("name")
    return getattr(item, "path", None) or getattr(item, "name", None)


def exports_root() -> Path:
    """This process's own folder for the UI's downloads: private (0700) and unpredictable, so no
    other local user can read transcripts or plant files or links in it. It lies under Gradio's
    temporary folder (GRADIO_TEMP_DIR, else the system one), where Gradio may serve files from,
    and is removed when the process exits."""
    base = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="seaco-exports-", dir=base))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def export_dir(root: Path) -> Path:
    """A fresh folder for one request's downloads; folders older than an hour are removed. A link
    found in `root` is never followed (nor is any inside a folder: rmtree does not follow them)."""
    cutoff = time.time() - EXPORT_MAX_AGE_S
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                old = entry.stat(follow_symlinks=False).st_mtime < cutoff
                if old and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                pass
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def speed(result: Result) -> float:
    return round(result.duration_s / result.processing_s, 1) if result.processing_s > 0 else 0.0


def status(result: Result) -> str:
    """'ok', 'ok (no speech found)' or the error: warnings are worth a glance, not a column."""
    text = export.status_of(result)
    return f"{text} ({'; '.join(result.warnings)})" if result.ok and result.warnings else text


def results_table(results: Sequence[Result]) -> list[list]:
    """The batch's full table (the API's): a failed row leaves its figures blank, not 0."""
    return [[r.file, r.text, *_figures(r), status(r)] for r in results]


def _figures(result: Result) -> list[float | None]:
    if not result.ok:
        return [None, None, None]
    return [round(result.confidence, 3), round(result.duration_s, 2), round(result.processing_s, 2)]


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The first line of `text`, cut to `limit` characters with an ellipsis."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def compact_rows(results: Sequence[Result], lang: str) -> list[list]:
    """The batch table people read: a status first, one line of text, failed files at the top
    (then input order), their figures blank."""
    order = sorted(range(len(results)), key=lambda i: (results[i].ok, i))
    rows = []
    for i in order:
        r = results[i]
        if not r.ok:
            mark = tr("batch.failed", lang, error=r.error)
        elif "no speech found" in r.warnings:
            mark = tr("batch.no_speech", lang)
        else:
            mark = tr("batch.ok", lang)
        rows.append([mark, r.file, preview(r.text), *_figures(r)])
    return rows


def sentence_rows(result: Result) -> list[list]:
    return [[export.clock(s.start_s), export.clock(s.end_s), s.text] for s in result.segments]


def zip_formats(value: Any) -> list[str]:
    """The zip's formats from the checkbox group (or an API caller's list or "txt,srt")."""
    if value in (None, "", []):
        return list(DEFAULT_ZIP_FORMATS)
    return export.parse_formats(value)


def run_summary(results: Sequence[Result], stats: RunStats, size: int, lang: str = EN) -> str:
    failed = sum(1 for r in results if not r.ok)
    line = tr("batch.summary", lang, files=len(results), ok=len(results) - failed, failed=failed,
              audio=stats.audio_s, wall=stats.wall_s, speed=stats.speed, size=size)
    if stats.backoffs:
        line += tr("batch.summary_backoff", lang, count=stats.backoffs)
    return line


def hotword_label(settings: Settings):
    """The hotword box's label with this server's limits, in the page's language."""
    hw = settings.hotwords
    return tf("common.hotwords", count=hw.max_count, chars=hw.max_chars)


def batch_slider(engine: Engine, elem_id: str, info: Any = None) -> gr.Slider:
    """The batch size, with a sentence of help: most people never touch it (the Tuning tab sets
    it for the machine), so tabs put it under an Advanced accordion."""
    return gr.Slider(1, BATCH_SIZE_MAX, value=engine.default_batch_size, step=1, label=t("common.batch_size"),
                     info=info if info is not None else t("common.batch_size_info"), elem_id=elem_id)


def speakers_dropdown(settings: Settings, elem_id: str) -> gr.Dropdown:
    """Off, auto or a count (typed counts allowed), starting at the server's `speakers.count`."""
    choices = [(t("common.speakers_off"), "off"), (t("common.speakers_auto"), "auto"),
               *[(tf("common.speakers_n", n=n), str(n)) for n in SPEAKER_COUNTS]]
    return gr.Dropdown(choices, value=normalize_speaker_count(settings.speakers.count),
                       allow_custom_value=True, label=t("common.speakers"), info=t("common.speakers_info"),
                       elem_id=elem_id)


def itn_checkbox(settings: Settings, elem_id: str) -> gr.Checkbox:
    return gr.Checkbox(value=settings.itn, label=t("common.itn"), info=t("common.itn_info"), elem_id=elem_id)


def speaker_count(value: Any) -> str | None:
    """A request's speakers ("off", "auto" or a count's digits); None (not given): the server's
    setting. A bad value raises ValueError with the rule, which `user_errors` shows."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return normalize_speaker_count(value)


def wants_itn(value: Any) -> bool | None:
    """The ITN box's value for the engine; None (an API caller left it out): the server's setting."""
    return None if value is None else bool(value)


def link_timestamps(formats: Sequence[str] | None, speakers: Any = None) -> dict:
    """Subtitle formats and speakers need sentence times: ticked and fixed while either is chosen."""
    try:
        labelled = speaker_count(speakers) not in (None, "off")
    except ValueError:  # a typed count still being edited: the run will say what is wrong
        labelled = False
    needs = labelled or bool(set(formats or []) & set(SUBTITLE_FORMATS))
    return gr.update(value=True, interactive=False) if needs else gr.update(interactive=True)
