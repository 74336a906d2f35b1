"""One lock in front of every route: an ASGI middleware around the whole app (API and web UI).

Deny by default. With any credential configured, every route needs one except a short list that
the login page and the container's health check need (`Policy.is_open`); a route added later is
locked without anyone remembering to lock it. Events that change settings (Gradio's event calls,
named or by index) need an admin. Whatever is configured, a browser page from another site may
not send state-changing requests (POST and the like, WebSocket handshakes): browsers send those
without a CORS preflight, so the origin is checked here.

Bodies are bounded while they arrive, not after: every request has a byte limit (small for JSON,
the upload limit for upload routes), counted chunk by chunk so that `Transfer-Encoding: chunked`
cannot hide a size, and refused with 413 the moment it passes. Upload routes also take one of
`server.max_uploads` slots while their body arrives (503 with Retry-After when none is free) and
must keep sending: a body idle for `server.upload_idle_s` is refused with 408, so slow clients
cannot hold the slots.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from python_multipart.exceptions import MultipartParseError
from starlette.requests import ClientDisconnect

from asr.settings import ServerSettings
from door.credentials import Caller, Credentials

log = logging.getLogger(__name__)

JSON_LIMIT = 4 * 2**20  # any body that is not an upload: Gradio's event calls, logins, ...
FORM_OVERHEAD = 2**20  # an upload request's headers and form fields beyond its file(s)
RETRY_AFTER_S = 5
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# What an anonymous visitor may fetch when credentials are set: the health check, the login page
# and what it loads, and the API's documentation (it transcribes nothing).
OPEN_GET = frozenset({"/health", "/", "/favicon.ico", "/theme.css", "/robots.txt", "/manifest.json",
                      "/logout", "/gradio_api/theme.css",
                      "/v1/docs", "/v1/openapi.json", "/v1/docs/oauth2-redirect"})
OPEN_GET_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon", "/v1/docs-assets/")
OPEN_POST = frozenset({"/login", "/login/"})

# Gradio's routes that run an event: the event is named by the path, by `fn_index` in the body, or
# both (Gradio then runs the body's), so both are read.
EVENT_PATHS = ("/gradio_api/queue/join", "/gradio_api/call/", "/gradio_api/run/", "/gradio_api/api/")


@dataclass
class Policy:
    """What the door enforces; webui.mount adds what only Gradio knows (sessions, events)."""

    credentials: Credentials
    cors_origins: frozenset[str] = frozenset()
    max_uploads: int = 8
    upload_idle_s: float = 60.0
    # path -> (most upload bytes, the setting that says so): these routes take an upload slot
    upload_limits: dict[str, tuple[int, str]] = field(default_factory=dict)
    body_limit: int = JSON_LIMIT
    session_user: Callable[[Mapping[str, str]], str | None] | None = None  # login cookie -> name
    admin_event: Callable[[int | None, str | None], bool] | None = None  # (fn_index, name) -> admin?
    uploads_in_flight: int = 0

    @classmethod
    def from_settings(cls, server: ServerSettings) -> Policy:
        """The door for `server.*`; SettingsError for a malformed credential."""
        return cls(Credentials.from_settings(server), frozenset(o.rstrip("/") for o in server.cors_origins),
                   server.max_uploads, server.upload_idle_s)

    @property
    def locked(self) -> bool:
        return self.credentials.configured

    def is_open(self, method: str, path: str) -> bool:
        if method in ("GET", "HEAD"):
            return path in OPEN_GET or path.startswith(OPEN_GET_PREFIXES)
        return method == "POST" and path in OPEN_POST

    def caller(self, headers: Mapping[str, str]) -> Caller | None:
        """The caller a request's credential names: a bearer header first, then a login cookie."""
        authorization = headers.get("authorization")
        if authorization:
            found = self.credentials.bearer(authorization)
            if found is not None:
                return found
        if self.session_user is not None:
            user = self.session_user(headers)
            if user:
                return self.credentials.login_caller(user)
        return None


def install(app, policy: Policy) -> None:
    """Put the door in front of `app` (a FastAPI/Starlette app that has not started yet)."""
    app.add_middleware(Door, policy=policy)
    app.state.door = policy


class _Refused(ClientDisconnect, MultipartParseError):
    """Raised inside the app's `receive` once the door has answered for it (413, 408). To the app
    the client is gone: whatever it answers now is dropped. It is also a multipart parse error,
    because that is what Gradio's upload parser cleans up after: its half-written files are
    removed instead of left in its folder (which a client disconnecting would leave)."""


class Door:
    """The ASGI middleware. See the module docstring for the rules."""

    def __init__(self, app, policy: Policy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        policy = self.policy
        headers = _headers(scope)
        path = scope.get("path", "")
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else scope.get("method", "GET")
        if (websocket or method not in SAFE_METHODS) and _cross_site(headers, policy.cors_origins):
            log.info("refused a cross-site %s %s from %s", method, path, headers.get("origin"))
            await _answer(scope, send, 403, "cross-site requests are refused (server.cors_origins lists "
                          "the origins allowed)", "cross_site")
            return
        caller: Caller | None = None
        if policy.locked and not policy.is_open(method, path):
            caller = policy.caller(headers)
            if caller is None:
                await _answer(scope, send, 401, "a credential is required: an API key as "
                              "'Authorization: Bearer KEY', or a login", "invalid_api_key")
                return
        if websocket:
            await self.app(scope, receive, send)
            return
        allowed, setting = policy.upload_limits.get(path, (None, ""))
        upload = allowed is not None
        limit = policy.body_limit if allowed is None else allowed + FORM_OVERHEAD
        refusal = _too_large(allowed if upload else limit, setting)
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            await _answer(scope, send, 413, refusal, "file_too_large")
            return
        if upload and policy.uploads_in_flight >= policy.max_uploads:
            await _answer(scope, send, 503, f"{policy.max_uploads} uploads are being received; try again "
                          "shortly (server.max_uploads)", "server_busy", {"Retry-After": str(RETRY_AFTER_S)})
            return
        gate = _Gate(scope, receive, send, limit, refusal, policy.upload_idle_s if upload else None)
        if upload:
            policy.uploads_in_flight += 1
            gate.on_end = lambda: setattr(policy, "uploads_in_flight", policy.uploads_in_flight - 1)
        try:
            if (policy.locked and method == "POST" and path.startswith(EVENT_PATHS)
                    and policy.admin_event is not None and not (caller and caller.admin)):
                body = await gate.read_all()
                if policy.admin_event(*_event(path, body)):
                    await _answer(scope, send, 403, "changing settings needs an admin login "
                                  "(server.admins)", "admin_required")
                    return
                gate.replay(body)
            await self.app(scope, gate.receive, gate.send)
        except _Refused:
            pass
        except Exception:
            if not gate.refused:
                raise
        finally:
            gate.end()


class _Gate:
    """The app's receive and send for one request: counts the body, enforces its limit and the
    idle timeout, and once the door has answered, keeps the app's own answer from going out."""

    def __init__(self, scope, receive, send, limit: int, refusal: str, idle_s: float | None):
        self.scope, self._receive, self._send = scope, receive, send
        self.limit, self.refusal, self.idle_s = limit, refusal, idle_s
        self.count = 0
        self.body_done = False
        self.refused = False
        self.on_end: Callable[[], None] | None = None
        self._replay: list[dict[str, Any]] = []

    def end(self) -> None:
        if self.on_end is not None:
            self.on_end, callback = None, self.on_end
            callback()

    async def receive(self) -> dict[str, Any]:
        if self._replay:
            return self._replay.pop(0)
        if self.refused:
            return {"type": "http.disconnect"}
        if self.body_done or self.idle_s is None:
            message = await self._receive()
        else:
            try:
                message = await asyncio.wait_for(self._receive(), self.idle_s)
            except asyncio.TimeoutError:
                await self._refuse(408, f"the upload sent nothing for {self.idle_s:.0f} s", "upload_timeout")
                raise _Refused("the door answered: the upload stopped sending") from None
        if message["type"] == "http.request" and not self.body_done:
            self.count += len(message.get("body", b""))
            if self.count > self.limit:
                await self._refuse(413, self.refusal, "file_too_large")
                raise _Refused("the door answered: the body passed its limit")
            if not message.get("more_body", False):
                self.body_done = True
                self.end()
        elif message["type"] == "http.disconnect":
            if not self.body_done and self.idle_s is not None:
                # An upload abandoned half way: raised like a refusal, so that Gradio's parser
                # removes the files it started (on a plain disconnect it leaves them behind).
                self.refused = True
                self.end()
                raise _Refused("the client left before its upload finished")
            self.body_done = True
            self.end()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if not self.refused:
            await self._send(message)

    async def read_all(self) -> bytes:
        parts = []
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                break
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(parts)

    def replay(self, body: bytes) -> None:
        self._replay = [{"type": "http.request", "body": body, "more_body": False}]

    async def _refuse(self, status: int, message: str, code: str) -> None:
        self.refused = True
        self.end()
        await _answer(self.scope, self._send, status, message, code)


def _event(path: str, body: bytes) -> tuple[int | None, str | None]:
    """(fn_index, api name) a Gradio event call names; an fn_index that cannot be read is -1, which
    no event has, so the caller's policy treats it as unknown."""
    name = None
    for prefix in ("/gradio_api/call/v2/", "/gradio_api/call/", "/gradio_api/run/", "/gradio_api/api/"):
        if path.startswith(prefix):
            name = path[len(prefix):].strip("/").split("/")[0] or None
            break
    index = None
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None  # Gradio refuses it too, before any event runs
    if isinstance(data, dict) and data.get("fn_index") is not None:
        value = data["fn_index"]
        try:
            index = int(value) if not isinstance(value, float) or value.is_integer() else -1
        except (TypeError, ValueError):
            index = -1
    return index, name


def _headers(scope) -> dict[str, str]:
    """Request headers by lower-case name; a repeated header keeps its first value."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        found.setdefault(name, raw_value.decode("latin-1"))
    return found


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _cross_site(headers: Mapping[str, str], allowed: frozenset[str]) -> bool:
    """Whether a browser sent this from a page of another origin (that is not allowed)."""
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/") in allowed:
        return False
    if origin is None:
        return headers.get("sec-fetch-site", "") == "cross-site"
    if origin == "null":
        return True  # sandboxed frames and file:// pages
    netloc = urlsplit(origin).netloc.lower()
    own = {headers.get("host", "").lower(), headers.get("x-forwarded-host", "").split(",")[0].strip().lower()}
    return netloc not in own - {""}


def _too_large(limit: int, setting: str) -> str:
    if setting:
        return f"the upload is larger than the server's limit of {limit // 2**20} MB ({setting})"
    return f"the request body is larger than the server's limit of {limit // 2**20} MB for it"


async def _answer(scope, send, status: int, message: str, code: str,
                  extra: dict[str, str] | None = None) -> None:
    """An error answer: OpenAI's shape on /v1, Gradio's {"detail": ...} elsewhere; a WebSocket
    handshake is closed instead (the browser sees 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    if scope.get("path", "").startswith("/v1/"):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        param = "file" if code == "file_too_large" else None
        payload = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        payload = {"detail": message}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
