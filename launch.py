"""Start the app: command line + config.yaml + environment -> Settings -> one Engine -> the web UI
and the OpenAI-compatible API, served together on one port.

    python launch.py                      # http://127.0.0.1:7860
    python launch.py --listen --port 8080 # reachable from other machines
    python launch.py --model random:tiny  # no download: a random-weight model for trying the UI

Exit code 2 on a configuration or model-loading problem, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

from asr.settings import SettingsError
from asr.system.console import add_engine_flags, engine_overrides, settings_for_command
from door.credentials import Credentials

log = logging.getLogger("launch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Seaco Paraformer web UI (Chinese speech recognition)")
    parser.add_argument("--listen", action="store_true",
                        help="listen on all interfaces (0.0.0.0) instead of 127.0.0.1")
    parser.add_argument("--host", help="address to listen on (default from config: server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (default 7860)")
    parser.add_argument("--api", action=argparse.BooleanOptionalAction, default=None,
                        help="serve the OpenAI-compatible API at /v1 (default on; keys: server.api_keys "
                             "or SEACO_SERVER_API_KEYS)")
    add_engine_flags(parser)
    return parser.parse_args(argv)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The flags that were given; None means "not given" and leaves config.yaml/env in charge."""
    host = "0.0.0.0" if args.listen else args.host
    return {**engine_overrides(args), "server.host": host, "server.port": args.port, "server.api": args.api}


def open_warning(host: str, port: int) -> str:
    """The one line a server reachable from the network with no credential prints at start."""
    return (f"WARNING: listening on {host}:{port} with no credential: anyone who can reach this port "
            "can transcribe, read the allowed folders and change settings. Set server.api_keys "
            "(SEACO_SERVER_API_KEYS) or server.ui_auth; see docs/security.md")


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_for_command(args.config, overrides_from_args(args))
    if settings is None:
        return 2
    try:  # a malformed login must stop the start, not serve with no login (Gradio drops it)
        credentials = Credentials.from_settings(settings.server)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here

    # deliberate lazy imports: torch, FunASR and Gradio load only once the settings are good
    from asr.engine import Engine
    from asr.models import ModelLoadError

    log.info("loading model %s on %s (first run may download or generate it)", settings.model,
             settings.device)
    try:
        engine = Engine(settings)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import api  # deliberate lazy imports: FastAPI and Gradio, after the engine started
    import webui

    app = api.build_api(engine)
    webui.mount(app, webui.build_app(engine), settings)
    host, port = settings.server.host, settings.server.port
    try:
        server = api.serve(app, host, port)
    except OSError as exc:  # port taken, address not available
        print(f"error: cannot serve on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    note = "  (listening on all interfaces)" if host == "0.0.0.0" else ""
    api_note = f", OpenAI-compatible API at http://{shown}:{port}/v1" if settings.server.api else ""
    print(f"Seaco web UI running at http://{shown}:{port}/{api_note}{note}  (Ctrl+C to stop)",
          flush=True)
    if not credentials.configured and not _loopback(host):
        print(open_warning(host, port), file=sys.stderr, flush=True)
    try:
        while server.thread.is_alive():
            server.thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        server.thread.join(10)
    return 0

if __name__ == "__main__":
    sys.exit(main())
