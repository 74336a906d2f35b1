"""The Gradio web UI: composes the tabs (ui/) around one shared `Engine`, and serves them.

Layout only: each tab is built in its own module and every recognition goes through `engine.run`.
Each action is also an API endpoint with a stable name (transcribe_file, transcribe_batch,
transcribe_folder, system_info, tune_batch_size, ...). Recognition events run side by side (up
to `server.ui_concurrency`) and meet in the engine's batcher; the tuning wizard runs alone.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr
from starlette.middleware import Middleware
from starlette.requests import Request, cookie_parser
from starlette.routing import Mount

from asr.audio.decode import AUDIO_EXTENSIONS
from asr.audio.folders import allowed_roots
from asr.engine import Engine
from asr.settings import PROJECT_ROOT, Settings
from door import guard
from door.credentials import Credentials
from ui import batch_tab, live_tab, single_tab, system_tab, tuning_tab
from ui.batch_size_sync import follow_applied_batch_size
from ui.common import TUNING_QUEUE, AppContext, exports_root
from ui.i18n import I18N, LANGUAGES, LOAD_JS, SWITCH_JS, normalize, t

TITLE = "Seaco Paraformer 中文语音识别"
CSS = """
.gradio-container { max-width: 1180px !important; width: 100% !important; margin: 0 auto; }
#sysinfo table { width: 100%; }
#app-title h1 { margin-bottom: 0; }
#app-title p { margin-top: 4px; color: var(--body-text-color-subdued); }
#app-header { align-items: center; }
@media (min-width: 641px) { #app-header { flex-wrap: nowrap; } }
#app-header > #app-title { flex: 1 1 auto; }
#lang-switch { flex: 0 0 auto !important; width: auto !important; }
#lang-switch .wrap { flex-wrap: nowrap; }
#single-text textarea, #live-text textarea { font-size: 1.15rem; line-height: 1.7; }
.error-line { color: var(--error-text-color); }
.help-line { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
/* Table headers keep their words whole (never one letter per line); narrow tables scroll. */
#batch-table [role=columnheader], #single-sentences [role=columnheader],
#batch-table .header-content, #single-sentences .header-content { white-space: nowrap; word-break: keep-all; }
#batch-table [role=gridcell] { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#single-sentences [role=gridcell]:not([data-col="0"]) { cursor: pointer; }
#single-progress:empty, #batch-progress:empty { display: none; }
@media (max-width: 640px) {
  .gradio-container { padding-left: 8px !important; padding-right: 8px !important; }
  #app-title h1 { font-size: 1.3rem; }
  /* Five short tab names fit on a phone: smaller padding, no overflow menu needed. */
  #tabs .tab-container button { padding: 4px 6px; font-size: 14px; }
  #single-figures { flex-wrap: wrap; }
  #single-figures > * { min-width: 40% !important; }
}
"""
UPLOAD_ROUTE = "/gradio_api/upload"  # Gradio's own upload routes: bounded and counted by the door
RECORDING_ROUTE = "/gradio_api/process_recording"
FONT_STACK = ["Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", "Source Han Sans SC",
              "ui-sans-serif", "system-ui", "sans-serif"]


def build_app(engine: Engine) -> gr.Blocks:
    """All tabs wired to `engine`. Serve with `mount` (with the API) or `launch_app` (alone)."""
    settings = engine.settings
    export_root = exports_root()  # private to this process (ui/common.py)
    ctx = AppContext(engine, export_root, allowed_roots(settings.batch.allowed_dirs, base=PROJECT_ROOT),
                     list(AUDIO_EXTENSIONS))

    def current_batch_size():
        # The tuning tab may change the engine's default; new page loads pick it up.
        return (engine.default_batch_size,) * len(ctx.batch_sliders)

    with gr.Blocks(title=TITLE, fill_width=False) as demo:
        with gr.Row(elem_id="app-header", equal_height=False):
            gr.Markdown(f"# {TITLE}\nFunASR SeACo-Paraformer · `{engine.loaded.spec}` · "
                        f"`{engine.loaded.device}`", elem_id="app-title")
            language = gr.Radio([(name, code) for code, name in LANGUAGES], value=LANGUAGES[0][0],
                                show_label=False, container=False, elem_id="lang-switch", min_width=170)
        tabs = []
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab(t("tab.single"), id="single", elem_id="tab-single") as tab:
                tabs.append(tab)
                single_tab.build(ctx)
            with gr.Tab(t("tab.batch"), id="batch", elem_id="tab-batch") as tab:
                tabs.append(tab)
                batch_tab.build(ctx)
            with gr.Tab(t("tab.live"), id="live", elem_id="tab-live") as tab:
                tabs.append(tab)
                sessions = live_tab.build(ctx, demo)
            with gr.Tab(t("tab.tuning"), id="tuning", elem_id="tab-tuning") as tab:
                tabs.append(tab)
                tuning_tab.build_tuning_tab(engine, concurrency_id=TUNING_QUEUE)  # the engine runs it alone
            with gr.Tab(t("tab.system"), id="system", elem_id="tab-system") as tab:
                tabs.append(tab)
                system_tab.build(ctx, demo)
        # Gradio re-translates only the tabs on screen when the language changes: name them all again.
        ctx.language_hooks.append((lambda _lang: [gr.update(label=t(f"tab.{tab.id}")) for tab in tabs], [],
                                   tabs))
        demo.load(current_batch_size, None, ctx.batch_sliders, api_visibility="private",
                  concurrency_limit=None, show_progress="hidden")
        follow_applied_batch_size(engine, ctx.batch_sliders)  # Apply reaches pages already open
        _wire_language(demo, ctx, language)
        for script in ctx.page_scripts:
            demo.load(None, None, None, js=script, api_visibility="private", show_progress="hidden")
        # A page that goes away stops its runs: the batcher drops their waiting segments.
        demo.unload(_stop_runs(ctx))
    demo.live_sessions = sessions  # for tests and shutdown
    return demo


def _stop_runs(ctx: AppContext):
    def stop(request: gr.Request):
        ctx.runs.cancel(request)

    return stop


def _wire_language(demo: gr.Blocks, ctx: AppContext, language: gr.Radio) -> None:
    """The page's language: set as it loads (the saved choice, else Chinese) and on the switch;
    each time, the words the server writes are written again in it (ui.i18n)."""
    inputs = [c for _, hook_inputs, _ in ctx.language_hooks for c in hook_inputs]
    outputs = [c for _, _, hook_outputs in ctx.language_hooks for c in hook_outputs]

    def apply(lang, *values):
        lang = normalize(lang)
        updates: list = [lang]
        position = 0
        for fn, hook_inputs, hook_outputs in ctx.language_hooks:
            made = fn(lang, *values[position:position + len(hook_inputs)])
            position += len(hook_inputs)
            updates += list(made) if len(hook_outputs) > 1 else [made]
        return updates

    options = {"api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None}
    demo.load(apply, [language, *inputs], [language, *outputs], js=LOAD_JS, **options)
    language.input(apply, [language, *inputs], [language, *outputs], js=SWITCH_JS, **options)


def theme() -> gr.themes.Base:
    """The default look with local CJK-capable fonts: no web-font downloads, Chinese renders well."""
    mono = ["Noto Sans Mono CJK SC", "ui-monospace", "monospace"]
    return gr.themes.Default(font=FONT_STACK, font_mono=mono)


# Events only an admin may run when credentials are set: they change settings (config.yaml, the
# engine's defaults) or hold the model alone. That is the whole tuning tab (the wizard, the
# precision check, their apply/save and cancel), anything on the tuning queue, and these names.
ADMIN_MODULES = ("ui.tuning_tab", "tuning")
ADMIN_EVENTS = frozenset({"tune_batch_size", "cancel_tuning", "apply_batch_size", "save_batch_size",
                          "check_precision", "cancel_tuning_precision", "apply_precision", "save_precision"})


def ui_auth(settings: Settings) -> Callable[[str, str], bool] | None:
    """Gradio's login check from the door's credentials: a login's password, or an API key
    (None when no credential is set). A malformed `server.ui_auth` raises SettingsError."""
    credentials = Credentials.from_settings(settings.server)
    return credentials.ui_login if credentials.configured else None


def is_admin_event(fn) -> bool:
    """Whether a Gradio event (a BlockFunction) needs an admin."""
    module = getattr(fn.fn, "__module__", None) or ""
    return (fn.api_name in ADMIN_EVENTS or fn.concurrency_id == TUNING_QUEUE
            or any(module == m or module.startswith(m + ".") for m in ADMIN_MODULES))


def mount(app, demo: gr.Blocks, settings: Settings, path: str = "/"):
    """Serve the UI from `app` (the API's FastAPI app, whose door then covers the UI too), on one
    port with the API. The door's Gradio rules name Gradio's routes from the root: path is "/"."""
    if path != "/":
        raise ValueError("the web UI is served from / (the door's rules name Gradio's routes from there)")
    policy: guard.Policy = app.state.door
    _prepare(demo, settings, policy)
    demo.queue(default_concurrency_limit=1)
    mounted = gr.mount_gradio_app(app, demo, path=path, auth=ui_auth(settings), auth_message=AUTH_MESSAGE,
                                  max_file_size=f"{settings.server.max_file_size_mb}mb", show_error=True,
                                  ssr_mode=False, theme=theme(), css=CSS, mcp_server=False, i18n=I18N)
    gradio_app = next(route.app for route in app.routes if isinstance(route, Mount) and route.path == "")
    _attach(gradio_app, policy)
    return mounted


def launch_app(demo: gr.Blocks, settings: Settings, *, host: str | None = None, port: int | None = None,
               prevent_thread_lock: bool = False, quiet: bool = False):
    """The UI on Gradio's own server (no API), behind the same door: queue on, uploads capped at
    server.max_file_size_mb. Returns Gradio's launch tuple."""
    server = settings.server
    policy = guard.Policy.from_settings(server)
    _prepare(demo, settings, policy)
    demo.queue(default_concurrency_limit=1)
    launched = demo.launch(
        server_name=host or server.host,
        server_port=port or server.port,
        max_file_size=f"{server.max_file_size_mb}mb",
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        auth=ui_auth(settings),
        auth_message=AUTH_MESSAGE,
        show_error=True,
        ssr_mode=False,
        theme=theme(),
        css=CSS,
        i18n=I18N,
        mcp_server=False,
        app_kwargs={"middleware": [Middleware(guard.Door, policy=policy)]},
    )
    _attach(demo.server_app, policy)
    return launched


AUTH_MESSAGE = ("Log in with your user name and password, or with any other name and an API key as "
                "the password. 用户名和密码登录，或任意用户名加 API 密钥作为密码。")


def _prepare(demo: gr.Blocks, settings: Settings, policy: guard.Policy) -> None:
    """What the door and Gradio need before serving: upload bounds, the cache's cleanup, the
    events that need an admin."""
    server = settings.server
    file_bytes = server.max_file_size_mb * 2**20
    batch_bytes = max(file_bytes, settings.batch.max_total_mb * 2**20)
    policy.upload_limits[UPLOAD_ROUTE] = (batch_bytes, "batch.max_total_mb; per file server.max_file_size_mb")
    policy.upload_limits[RECORDING_ROUTE] = (file_bytes, "server.max_file_size_mb")
    # Gradio deletes its uploads and the downloads it serves once they are this old; without it
    # every user's files stay in its temporary folder until the server stops.
    demo.delete_cache = (max(60, min(600, server.upload_ttl_s // 4)), server.upload_ttl_s)
    admin = {index for index, fn in demo.fns.items() if is_admin_event(fn)}
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name and is_admin_event(fn)}
    # An fn_index no event has (-1: unreadable) counts as admin: unknown is refused, not allowed.
    policy.admin_event = lambda index, name: (
        (index is not None and (index in admin or index not in demo.fns)) or name in names)


def _attach(gradio_app, policy: guard.Policy) -> None:
    """Tell the door who a login cookie belongs to, and Gradio who a bearer-key caller is (its own
    login check reads only its cookie)."""
    cookies = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")

    def session_user(headers) -> str | None:
        jar = cookie_parser(headers.get("cookie", ""))  # Starlette's parser, as Gradio reads them
        for name in cookies:
            user = gradio_app.tokens.get(jar.get(name, ""))
            if user:
                return user
        return None

    policy.session_user = session_user
    if not policy.locked:
        return
    # Gradio's own `get_current_user`, found as the dependency of its page route, is what its
    # login check asks; overriding it lets a bearer credential count there as well.
    page = next(route for route in gradio_app.routes if getattr(route, "path", None) == "/"
                and hasattr(route, "dependant"))
    current_user = next(d.call for d in page.dependant.dependencies
                        if getattr(d.call, "__name__", "") == "get_current_user")

    def door_user(request: Request) -> str | None:
        caller = policy.caller(request.headers)
        return caller.name if caller else None

    gradio_app.dependency_overrides[current_user] = door_user
