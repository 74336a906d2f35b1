"""What every tab shares: the app's context, how errors reach the user, and small formatters.

No inference here: recognition goes through `engine.run`, exports through asr.text.export.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from asr.audio.folders import FolderError
from asr.engine import Engine
from asr.recognition.batcher import QueueFull
from asr.recognition.hotwords import HotwordError
from asr.results import Result, RunStats
from asr.settings import SCHEMA, Settings, SettingsError, coerce
from asr.text import export

log = logging.getLogger(__name__)

RECOGNITION_QUEUE = "recognition"  # concurrency id of the events that send audio to the batcher
TUNING_QUEUE = "tuning"  # the wizard: one at a time, and alone on the model
BATCH_SIZE_MAX = int(SCHEMA["batch_size"][1]["max"])  # the slider allows what config.yaml allows
DEFAULT_ZIP_FORMATS = ["txt", "srt"]
EXPORT_MAX_AGE_S = 3600  # Gradio copies each download into its own cache; ours can go soon after


@dataclass
class AppContext:
    """What the tabs of one app share."""

    engine: Engine
    export_root: Path  # one folder per request's downloads is made under it
    allowed_roots: list[Path] = field(default_factory=list)  # server folders the batch tab may read
    upload_types: list[str] = field(default_factory=list)
    batch_sliders: list[gr.Slider] = field(default_factory=list)  # refreshed from the engine on load

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    def recognition_events(self) -> dict[str, Any]:
        """Event options of everything that sends audio to the batcher: side by side, bounded."""
        return {"concurrency_limit": self.settings.server.ui_concurrency,
                "concurrency_id": RECOGNITION_QUEUE}


def user_errors(fn: Callable) -> Callable:
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
    return [[r.file, r.text, round(r.confidence, 3), round(r.duration_s, 2), round(r.processing_s, 2),
             status(r)] for r in results]


def sentence_rows(result: Result) -> list[list]:
    return [[export.clock(s.start_s), export.clock(s.end_s), s.text] for s in result.segments]


def zip_formats(value: Any) -> list[str]:
    """The zip's formats from the checkbox group (or an API caller's list or "txt,srt")."""
    if value in (None, "", []):
        return list(DEFAULT_ZIP_FORMATS)
    return export.parse_formats(value)


def run_summary(results: Sequence[Result], stats: RunStats, size: int) -> str:
    failed = sum(1 for r in results if not r.ok)
    line = (f"**{len(results)} file(s): {len(results) - failed} ok, {failed} failed** · "
            f"{stats.audio_s:.1f} s of audio in {stats.wall_s:.2f} s "
            f"({stats.speed:.1f}x real time) · batch size {size}")
    if stats.backoffs:
        line += (f" · ran out of GPU memory {stats.backoffs} time(s) and fell back to smaller "
                 "batches: choose a smaller batch size")
    return line


def hotword_label(settings: Settings) -> str:
    hw = settings.hotwords
    return (f"Hotwords 热词 (up to {hw.max_count}, each at most {hw.max_chars} characters; "
            "separate with spaces or commas)")


def batch_slider(engine: Engine, elem_id: str, info: str) -> gr.Slider:
    return gr.Slider(1, BATCH_SIZE_MAX, value=engine.default_batch_size, step=1, label="Batch size",
                     info=info, elem_id=elem_id)
