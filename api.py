"""The OpenAI-compatible transcription API, and the one app that serves it with the web UI.

Programs already speak OpenAI's `POST /v1/audio/transcriptions`; this answers it with the same
engine, the same batches (every client's audio shares them with the UI's) and the same
guarantees. Field names, response shapes and error shapes follow OpenAI's, so the official
`openai` client works unchanged; hotwords travel in a `hotwords` form field (the client's
`extra_body`), with `prompt` as a fallback. HTTP only: recognition, formats and punctuation all
happen in the engine (`asr/`).

    python launch.py          # UI at /, API at /v1, health at /health, one port
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import importlib.resources
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from asr.audio.decode import DecodeLimits, decode_bytes
from asr.engine import Engine
from asr.recognition.batcher import Cancelled, QueueFull
from asr.recognition.hotword_lists import NamedLists
from asr.recognition.hotwords import HotwordError, parse_hotwords
from asr.results import Result
from asr.settings import normalize_speaker_count
from asr.text import export
from asr.text.transcript import Piece
from door import guard
from door.form import MAX_FIELD_BYTES, Form, FormError, read_form

log = logging.getLogger(__name__)

MODEL_ID = "seaco-paraformer"
MODEL_ALIASES = ("whisper-1",)  # clients written for OpenAI often hard-code it
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
MAX_KNOWN_SPEAKERS = 4  # OpenAI's limit for known_speaker_names[]
KNOWN_CLIP_S = (1.0, 10.0)  # a reference clip's length (OpenAI asks for 2-10 s)
GRANULARITIES = ("segment", "word")
CHINESE = ("zh", "zh-cn", "zh-hans", "cmn", "chinese", "mandarin")
RETRY_AFTER_S = 5
API_THREADS = 64  # requests waiting on the model at once; more wait for a thread, not refused
TRANSCRIPTIONS = "/v1/audio/transcriptions"
DOCS_ASSETS = "/v1/docs-assets"  # Swagger UI's files, served from the fastapi-offline wheel


class ApiError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class TranscriptionRequest:
    """The form fields of one request, checked; the audio is already on disk."""

    path: Path
    response_format: str
    granularities: list[str]
    hotwords: str | list[str] | None
    stream: bool
    itn: bool | None = None  # None: the server's setting
    speakers: str | None = None  # off, auto or a count; None: the server's setting
    known_speakers: dict[str, np.ndarray] | None = None  # name -> 16 kHz samples of a reference clip

    def options(self) -> dict[str, Any]:
        """The engine's RunOptions fields this request sets."""
        return {"hotwords": self.hotwords, "itn": self.itn, "speakers": self.speakers,
                "known_speakers": self.known_speakers}


def _text_field(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


# The form as OpenAI's reference defines it, declared here for the OpenAPI schema only: the body is
# read by door.form as it arrives, never by FastAPI (which would spool it whole first).
TRANSCRIPTION_FORM: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "The audio or video file: wav, mp3, flac, ogg, m4a, aac, mp4, webm, ... "
                                "Past server.max_file_size_mb the answer is 413, as soon as it is passed."},
        "model": _text_field(f"'{MODEL_ID}' or 'whisper-1' (both mean this server's model). Required by "
                             "OpenAI; optional here.", default=MODEL_ID),
        "language": _text_field("zh (or zh-cn, cmn, chinese, mandarin); anything else is refused: the "
                                "model recognises Mandarin only.", default="zh"),
        "prompt": _text_field("Read as hotwords when it is a hotword list ('达摩院 魔搭'); a prompt "
                              "sentence is ignored.", maxLength=MAX_FIELD_BYTES),
        "hotwords": _text_field("Hotwords, space or comma separated (not in OpenAI's reference: the "
                                "client's extra_body). Wins over prompt.", maxLength=MAX_FIELD_BYTES),
        "keywords[]": {"type": "array", "items": {"type": "string"},
                       "description": "OpenAI's words or phrases to guide transcription: hotwords here "
                                      "(SeACo's bias path), added to `hotwords`."},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json",
                            "description": "diarized_json: segments labelled by speaker (speakers on, "
                                           "found automatically unless `speakers` gives a count)."},
        "speakers": _text_field("Speaker labels (not in OpenAI's reference: extra_body): off, auto or "
                                "a known count. verbose_json and diarized_json then carry them."),
        "itn": {"type": "boolean", "description": "Numbers, dates and amounts written as digits (not in "
                                                 "OpenAI's reference: extra_body); default: the server's "
                                                 "`itn` setting."},
        "hotword_list": _text_field("A named hotword list saved on the server (not in OpenAI's "
                                    "reference: extra_body), added to `hotwords`."),
        "temperature": {"type": "number", "default": 0,
                        "description": "Accepted and ignored: decoding here is not sampled."},
        "timestamp_granularities[]": {
            "type": "array", "items": {"type": "string", "enum": list(GRANULARITIES)},
            "description": "With response_format verbose_json: segment and/or word."},
        "stream": {"type": "boolean", "default": False,
                   "description": "Server-sent events (transcript.text.delta, transcript.text.done); "
                                  "response_format json or text."},
        "include[]": {"type": "array", "items": {"type": "string", "enum": ["logprobs"]},
                      "description": "Accepted and ignored: no log probabilities are returned."},
        "chunking_strategy": {"description": "Accepted and ignored: audio is always cut at speech "
                                             "pauses (the vad setting).",
                              "anyOf": [{"type": "string", "enum": ["auto"]}, {"type": "object"}]},
        "known_speaker_names[]": {"type": "array", "items": {"type": "string"},
                                  "maxItems": MAX_KNOWN_SPEAKERS,
                                  "description": "Names for reference voices: a found speaker whose "
                                                 "voice matches a reference takes its name."},
        "known_speaker_references[]": {"type": "array", "items": {"type": "string"},
                                       "maxItems": MAX_KNOWN_SPEAKERS,
                                       "description": "The reference clips, as data URLs "
                                                      "(data:audio/wav;base64,...), 1-10 s each, in "
                                                      "the order of the names."},
    }}}}}}


def build_api(engine: Engine) -> FastAPI:
    """The FastAPI app with /health and /v1 (when server.api is on), behind the door (door):
    a malformed credential setting raises SettingsError here, before anything is served."""
    settings = engine.settings
    policy = guard.Policy.from_settings(settings.server)  # first: a bad credential stops here
    app = FastAPI(title="Seaco WebUI API", docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json",
                  swagger_ui_oauth2_redirect_url="/v1/docs/oauth2-redirect")
    # engine.run blocks until its audio is recognised; each request waits on its own thread,
    # not asyncio's small default pool (cores + 4), or the seventh client would queue outside
    # the batcher and never share a batch.
    runner = ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="api-run")
    max_bytes = settings.server.max_file_size_mb * 2**20
    accepted_models = {MODEL_ID, *MODEL_ALIASES, engine.loaded.spec}
    policy.upload_limits[TRANSCRIPTIONS] = (max_bytes, "server.max_file_size_mb")
    guard.install(app, policy)
    if settings.server.cors_origins:  # off unless listed: browsers elsewhere may not call us
        # Added after the door, so it sits outside it and answers preflights (which carry no key).
        app.add_middleware(CORSMiddleware, allow_origins=settings.server.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    _serve_docs(app)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return ApiError(400, f"invalid request: {exc.errors()}").response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # One request's failure never takes the server down, and the client gets OpenAI's shape.
        log.error("unexpected error serving %s: %s: %s", request.url.path, type(exc).__name__, exc,
                  exc_info=exc)
        return ApiError(500, "internal server error; details are in the server log",
                        kind="server_error").response()

    def access(request: Request) -> None:
        """Checked on every /v1 route (a dependency, not an HTTP middleware: Starlette's
        BaseHTTPMiddleware would hide a client's disconnect from the endpoint). Credentials are
        the door's (door.guard), checked before any route runs."""
        if not settings.server.api:
            raise ApiError(404, "the API is switched off on this server (server.api)", code="api_disabled")

    # Declares the bearer scheme for the docs' Authorize button; the door does the checking.
    bearer = HTTPBearer(auto_error=False, description="An API key (server.api_keys) or user:password")
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(access), Depends(bearer)])

    @app.get("/health")
    def health() -> dict[str, Any]:
        stats = engine.batcher.stats()
        return {"status": "ok", "model_loaded": engine.loaded is not None, "model": engine.loaded.spec,
                "device": str(engine.loaded.device), "queued_audio_s": round(stats.queued_s, 2),
                "requests_waiting": stats.requests_waiting}

    @v1.get("/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card()]}

    @v1.get("/models/{model_id}")
    def model(model_id: str) -> dict[str, Any]:
        if model_id not in accepted_models:
            raise ApiError(404, f"model '{model_id}' does not exist here", param="model",
                           code="model_not_found")
        return _model_card()

    @v1.post("/audio/transcriptions", openapi_extra=TRANSCRIPTION_FORM,
             summary="Transcribe audio (OpenAI's createTranscription)")
    async def transcriptions(request: Request) -> Response:
        try:
            engine.batcher.check_room()  # a full queue refuses before a byte of the body is read
        except QueueFull as exc:
            raise _busy(exc) from None
        form = await _read(request, max_bytes)
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            # Off the event loop: the prompt is parsed as hotwords there (bounded, but not free).
            fields = await loop.run_in_executor(runner, _check_fields, form, accepted_models, engine)
            timestamps = fields.response_format in ("srt", "vtt", "verbose_json")
            if fields.stream:
                handed_over = True  # the stream's worker removes the file when it is done with it
                return await _stream(engine, runner, request, fields, timestamps, form.discard)
            result, duration = await _run(engine, runner, request, fields, timestamps)
        finally:
            if not handed_over:
                await loop.run_in_executor(None, form.discard)
        return _respond(result, fields, duration, engine.settings.subtitles.min_s)

    app.include_router(v1)
    app.router.on_shutdown.append(lambda: runner.shutdown(wait=False, cancel_futures=True))
    return app


def _serve_docs(app: FastAPI) -> None:
    """/v1/docs with Swagger UI's files served from here, so the page works with no internet."""
    assets = importlib.resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/v1/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - docs",
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                                   oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}")

    @app.get("/v1/docs/oauth2-redirect", include_in_schema=False)
    def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _model_card() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "seaco-webui"}


def _busy(exc: QueueFull) -> ApiError:
    return ApiError(503, str(exc), kind="server_error", code="server_busy",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


async def _read(request: Request, max_bytes: int) -> Form:
    """The form, its file streamed to disk; 413 the moment the file passes `max_bytes`."""
    try:
        form = await read_form(request.stream(), request.headers.get("content-type", ""), max_bytes)
    except FormError as exc:
        raise ApiError(exc.status, exc.message, param=exc.param, code=exc.code) from None
    except ClientDisconnect:  # the client left, or the door already answered (413, 408)
        raise ApiError(499, "the client closed the request", code="client_closed") from None
    if form.file is None:
        form.discard()
        raise ApiError(400, "the 'file' field with the audio is required", param="file")
    if form.file.size == 0:
        form.discard()
        raise ApiError(400, "the uploaded file is empty", param="file", code="invalid_file")
    return form


def _check_fields(form: Form, accepted_models: set[str], engine: Engine) -> TranscriptionRequest:
    model = form.get("model") or MODEL_ID
    if model not in accepted_models:
        raise ApiError(400, f"model '{model}' is not served here; use '{MODEL_ID}'", param="model",
                       code="model_not_found")
    language = (form.get("language") or "zh").strip().lower()
    if language not in CHINESE:
        raise ApiError(400, f"language '{language[:40]}' is not supported: this model recognises Mandarin "
                            "Chinese only (use 'zh' or leave it out)", param="language",
                       code="unsupported_language")
    response_format = form.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
                       param="response_format")
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    if any(g not in GRANULARITIES for g in granularities):
        raise ApiError(400, "timestamp_granularities may hold 'segment' and 'word'",
                       param="timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise ApiError(400, "timestamp_granularities needs response_format 'verbose_json'",
                       param="timestamp_granularities")
    stream = (form.get("stream") or "false").lower() in ("true", "1")
    if stream and response_format not in ("json", "text"):
        raise ApiError(400, "stream needs response_format 'json' or 'text'", param="stream")
    temperature = form.get("temperature")
    if temperature not in (None, ""):
        try:
            float(temperature)  # accepted and ignored: decoding here is not sampled
        except ValueError:
            raise ApiError(400, "temperature must be a number", param="temperature") from None
    hotwords: str | list[str] | None = (form.get("hotwords") or "").strip() or None
    keywords = [k for k in form.getlist("keywords[]") + form.getlist("keywords") if k.strip()]
    if keywords:  # OpenAI's own field for words that guide the transcription: hotwords here
        limits = engine.settings.hotwords
        try:
            hotwords = parse_hotwords(hotwords, limits.max_count, limits.max_chars) + keywords
        except HotwordError as exc:
            raise ApiError(400, str(exc), param="hotwords", code="invalid_hotwords") from None
    if hotwords is None:
        hotwords = _prompt_as_hotwords(form.get("prompt") or "", engine)
    hotwords = _with_named_list(hotwords, form.get("hotword_list"), engine)
    itn = _boolean(form.get("itn"), "itn")
    speakers = form.get("speakers")
    if speakers not in (None, ""):
        try:
            speakers = normalize_speaker_count(speakers)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="speakers") from None
    else:
        speakers = None
    known = _known_speakers(form, engine)
    if response_format == "diarized_json" or known:
        if speakers == "off":
            raise ApiError(400, "diarized_json and known speakers need speakers on (auto or a count)",
                           param="speakers")
        speakers = speakers or "auto"
    if stream and speakers not in (None, "off"):
        raise ApiError(400, "speaker labels need the whole file: stream is not available with them",
                       param="stream")
    return TranscriptionRequest(form.file.path, response_format, granularities, hotwords, stream, itn,
                                speakers, known)


def _boolean(value: str | None, param: str) -> bool | None:
    if value in (None, ""):
        return None
    text = value.strip().lower()
    if text in ("true", "1", "on", "yes"):
        return True
    if text in ("false", "0", "off", "no"):
        return False
    raise ApiError(400, f"{param} must be true or false", param=param)


def _with_named_list(hotwords: str | None, name: str | None, engine: Engine) -> str | list[str] | None:
    """Typed hotwords plus a named list's words (the limit holds for the union)."""
    if not name:
        return hotwords
    limits = engine.settings.hotwords
    lists = NamedLists(engine.settings.resolve_path(limits.lists_file), limits.max_count, limits.max_chars)
    try:
        return parse_hotwords(hotwords, limits.max_count, limits.max_chars) + lists.get(name.strip())
    except HotwordError as exc:
        raise ApiError(400, str(exc), param="hotword_list", code="invalid_hotwords") from None


def _known_speakers(form: Form, engine: Engine) -> dict[str, np.ndarray] | None:
    """OpenAI's known_speaker_names[] with known_speaker_references[] (data URLs), decoded with
    the same bounds as any upload; None when none are given."""
    names = form.getlist("known_speaker_names[]") + form.getlist("known_speaker_names")
    references = form.getlist("known_speaker_references[]") + form.getlist("known_speaker_references")
    if not names and not references:
        return None
    if len(names) != len(references):
        raise ApiError(400, f"{len(names)} known_speaker_names but {len(references)} "
                            "known_speaker_references: give one clip per name", param="known_speaker_names")
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise ApiError(400, f"at most {MAX_KNOWN_SPEAKERS} known speakers", param="known_speaker_names")
    limits = DecodeLimits.from_settings(engine.settings.input)
    known: dict[str, np.ndarray] = {}
    for number, (name, reference) in enumerate(zip(names, references, strict=True)):
        name = name.strip()
        if not name or len(name) > 64 or name in known:
            raise ApiError(400, "each known speaker needs a distinct name of at most 64 characters",
                           param="known_speaker_names")
        head, comma, payload = reference.partition(",")
        if not comma or not head.startswith("data:") or not head.endswith(";base64"):
            raise ApiError(400, f"known_speaker_references[{number}] must be a data URL "
                                "(data:audio/...;base64,...)", param="known_speaker_references")
        try:
            data = base64.b64decode(payload, validate=True)
            decoded = decode_bytes(data, f"reference-{number}", limits)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, f"known_speaker_references[{number}]: {exc}",
                           param="known_speaker_references") from None
        low, high = KNOWN_CLIP_S
        if not low <= decoded.duration_s <= high:
            raise ApiError(400, f"known_speaker_references[{number}] is {decoded.duration_s:.1f} s; a "
                                f"reference clip is {low:g}-{high:g} s", param="known_speaker_references")
        known[name] = decoded.samples
    return known


def _prompt_as_hotwords(prompt: str, engine: Engine) -> str | None:
    """`prompt` stands in for hotwords when it reads as hotwords ("达摩院 魔搭"); a Whisper-style
    prompt sentence ("以下是普通话的句子。") is no hotword list and is ignored, not refused, so
    programs written for OpenAI keep working."""
    prompt = prompt.strip()
    if not prompt:
        return None
    limits = engine.settings.hotwords
    try:
        parse_hotwords(prompt, limits.max_count, limits.max_chars)
    except HotwordError as exc:
        log.info("prompt not used as hotwords (%s)", str(exc)[:200])
        return None
    return prompt


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    while not cancel.is_set():
        if await request.is_disconnected():
            log.info("API client disconnected; cancelling its request")
            cancel.set()
            return
        await asyncio.sleep(0.25)


async def _run(engine: Engine, runner: ThreadPoolExecutor, request: Request, fields: TranscriptionRequest,
               timestamps: bool) -> tuple[Result, float]:
    cancel = threading.Event()
    watcher = asyncio.create_task(_watch_disconnect(request, cancel))
    call = functools.partial(engine.run, [fields.path], timestamps=timestamps, cancel=cancel,
                             **fields.options())
    try:
        run = await asyncio.get_running_loop().run_in_executor(runner, call)
    except (HotwordError, ValueError) as exc:
        raise ApiError(400, str(exc), param="hotwords", code="invalid_hotwords") from None
    except QueueFull as exc:
        raise _busy(exc) from None
    except Cancelled:
        raise ApiError(499, "the client closed the request", code="client_closed") from None
    finally:
        cancel.set()
        watcher.cancel()
    result = run.results[0]
    if not result.ok:
        raise ApiError(400, f"the audio could not be recognised: {result.error}", param="file",
                       code="invalid_audio")
    return result, result.duration_s


def _respond(result: Result, fields: TranscriptionRequest, duration: float, min_s: float = 0.0) -> Response:
    fmt = fields.response_format
    if fmt == "text":
        return PlainTextResponse(result.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(export.srt(result, min_s))
    if fmt == "vtt":
        return PlainTextResponse(export.vtt(result, min_s), media_type="text/vtt")
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if fmt == "json":
        return JSONResponse({"text": result.text, "usage": usage})
    if fmt == "diarized_json":
        if result.speakers is None:  # the labels failed (the model would not load): say so
            reason = next((w for w in result.warnings if "speaker" in w), "no speaker labels")
            raise ApiError(500, reason, kind="server_error", code="speakers_failed")
        return JSONResponse(diarized(result, fields.known_speakers or {}))
    return JSONResponse(verbose(result, fields.granularities))


def diarized(result: Result, known: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's diarized_json (TranscriptionDiarized): segments labelled by speaker. Found
    speakers read A, B, ... in order of first appearance, as OpenAI labels them; a speaker
    matched to a known voice keeps that name."""
    letters: dict[str, str] = {}
    for label in result.speakers or []:
        if label not in known:
            letters[label] = _letters(len(letters))
    segments = [{"type": "transcript.text.segment", "id": f"seg_{number:03d}", "start": round(s.start_s, 3),
                 "end": round(s.end_s, 3), "text": s.text,
                 "speaker": letters.get(s.speaker, s.speaker) if s.speaker else "A"}
                for number, s in enumerate(result.segments)]
    return {"task": "transcribe", "duration": round(result.duration_s, 3), "text": result.text,
            "segments": segments, "usage": {"type": "duration", "seconds": round(result.duration_s, 3)}}


def _letters(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: spreadsheet-style speaker letters."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def verbose(result: Result, granularities: list[str]) -> dict[str, Any]:
    """OpenAI's verbose_json: Whisper-only fields get neutral values; words only when asked."""
    body: dict[str, Any] = {"task": "transcribe", "language": "chinese",
                            "duration": round(result.duration_s, 3), "text": result.text}
    if not granularities or "segment" in granularities:
        body["segments"] = [
            {"id": number, "seek": 0, "start": round(s.start_s, 3), "end": round(s.end_s, 3),
             "text": s.text, "tokens": [], "temperature": 0.0,
             "avg_logprob": round(_log(s.confidence), 4), "compression_ratio": 1.0,
             "no_speech_prob": 0.0, **({"speaker": s.speaker} if s.speaker else {})}
            for number, s in enumerate(result.segments)]
    if "word" in granularities:
        body["words"] = [{"word": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3)}
                         for s in result.segments for w in (s.words or [])]
    if result.raw_text is not None:  # numbers were written as digits (itn): the text before that
        body["raw_text"] = result.raw_text
    body["usage"] = {"type": "duration", "seconds": round(result.duration_s, 3)}
    return body


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -100.0


async def _stream(engine: Engine, runner: ThreadPoolExecutor, request: Request, fields: TranscriptionRequest,
                  timestamps: bool, done_with_file: Callable[[], None]) -> Response:
    """Server-sent events: `transcript.text.delta` per finished piece, in time order, then
    `transcript.text.done` with the whole (punctuated) text. Errors found before the first piece
    (bad audio, busy server) are answered as plain errors with their status. The worker calls
    `done_with_file` once the engine is finished with the upload."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, item)

    def on_piece(_: int, piece: Piece) -> None:
        put(("delta", engine.piece_text(piece)))

    def work() -> None:
        try:
            run = engine.run([fields.path], timestamps=timestamps, cancel=cancel, on_piece=on_piece,
                             **fields.options())
            put(("done", run.results[0]))
        except Exception as exc:  # noqa: BLE001 - handed to the response below
            put(("error", exc))
        finally:
            done_with_file()

    runner.submit(work)
    watcher = asyncio.create_task(_watch_disconnect(request, cancel))
    first = await events.get()
    if first[0] == "error" or (first[0] == "done" and not first[1].ok):
        cancel.set()
        watcher.cancel()
        _raise_for(first)

    async def body() -> AsyncIterator[bytes]:
        item = first
        try:
            while True:
                kind, value = item
                if kind == "delta" and value:
                    yield _sse({"type": "transcript.text.delta", "delta": value})
                elif kind == "done":
                    done = {"type": "transcript.text.done", "text": value.text,
                            "usage": {"type": "duration", "seconds": round(value.duration_s, 3)}}
                    yield _sse(done)
                    return
                elif kind == "error":
                    yield _sse({"error": {"message": str(value), "type": "server_error",
                                          "param": None, "code": None}}, event="error")
                    return
                item = await events.get()
        finally:
            cancel.set()
            watcher.cancel()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _raise_for(item: tuple[str, Any]) -> None:
    kind, value = item
    if kind == "done":
        raise ApiError(400, f"the audio could not be recognised: {value.error}", param="file",
                       code="invalid_audio")
    if isinstance(value, QueueFull):
        raise _busy(value)
    if isinstance(value, (HotwordError, ValueError)):
        raise ApiError(400, str(value), param="hotwords", code="invalid_hotwords")
    raise value


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def serve(app: FastAPI, host: str, port: int):
    """A uvicorn server for `app` on its own thread; returns it once it accepts connections."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"cannot serve on {host}:{port} (see the log above)")
        if time.monotonic() > deadline:
            raise OSError(f"the server on {host}:{port} did not start within 60 s")
        time.sleep(0.05)
    server.thread = thread
    return server
