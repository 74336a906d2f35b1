"""The Gradio web UI: composes the tabs (ui/) around one shared `Engine`, and serves them.

Layout only: each tab is built in its own module and every recognition goes through `engine.run`.
Each action is also an API endpoint with a stable name (transcribe_file, transcribe_batch,
transcribe_folder, system_info, tune_batch_size, ...). Recognition events run side by side (up
to `server.ui_concurrency`) and meet in the engine's batcher; the tuning wizard runs alone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr

from asr.audio.decode import AUDIO_EXTENSIONS
from asr.audio.folders import allowed_roots
from asr.engine import Engine
from asr.settings import PROJECT_ROOT, Settings
from ui import batch_tab, live_tab, single_tab, system_tab, tuning_tab
from ui.common import TUNING_QUEUE, AppContext

TITLE = "Seaco Paraformer 中文语音识别"
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


def build_app(engine: Engine) -> gr.Blocks:
    """All tabs wired to `engine`. Serve with `mount` (with the API) or `launch_app` (alone)."""
    settings = engine.settings
    # Under Gradio's upload folder when GRADIO_TEMP_DIR is set, else the system temp dir: both are
    # places Gradio serves files from without extra allowed_paths.
    export_root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "seaco-webui-exports"
    export_root.mkdir(parents=True, exist_ok=True)
    ctx = AppContext(engine, export_root, allowed_roots(settings.batch.allowed_dirs, base=PROJECT_ROOT),
                     list(AUDIO_EXTENSIONS))

    def current_batch_size():
        # The tuning tab may change the engine's default; new page loads pick it up.
        return (engine.default_batch_size,) * len(ctx.batch_sliders)

    with gr.Blocks(title=TITLE, fill_width=False) as demo:
        gr.Markdown(f"# {TITLE}\nFunASR SeACo-Paraformer · model `{engine.loaded.spec}` on "
                    f"`{engine.loaded.device}`", elem_id="app-title")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Single file 单个文件", id="single", elem_id="tab-single"):
                single_tab.build(ctx)
            with gr.Tab("Batch 批量", id="batch", elem_id="tab-batch"):
                batch_tab.build(ctx)
            with gr.Tab("Realtime 实时识别", id="live", elem_id="tab-live"):
                sessions = live_tab.build(ctx, demo)
            with gr.Tab("Batch-size tuning 批大小调优", id="tuning", elem_id="tab-tuning"):
                tuning_tab.build_tuning_tab(engine, concurrency_id=TUNING_QUEUE)  # the engine runs it alone
            with gr.Tab("System info 系统信息", id="system", elem_id="tab-system"):
                system_tab.build(ctx, demo)
        demo.load(current_batch_size, None, ctx.batch_sliders, api_visibility="private",
                  concurrency_limit=None, show_progress="hidden")
    demo.live_sessions = sessions  # for tests and shutdown
    return demo


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
