"""The door (door/) on a real app on localhost, tried the way a stranger would: every route
knocked on without a credential, credentials of the wrong kind, settings changed by a non-admin
through each of Gradio's ways to call an event, cross-site browser requests, hostile hotword
text, file names made to collide or to run as formulas, planted links in the exports folder.

The app is the one launch.py serves (api.build_api + webui.mount, uvicorn on a free port) with
the tiny random model; clients are the official `openai` client, gradio_client and raw httpx for
what neither can send. Memory and byte bounds on a separate server process: test_door_limits.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import httpx
import openai
import pytest
import soundfile
from fastapi.routing import APIRoute
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import free_port, speechlike, tiny_settings
from openai import OpenAI
from starlette.routing import Mount, Route, WebSocketRoute

import api
import launch
import webui
from asr.engine import Engine
from asr.recognition.hotwords import HotwordError, max_raw_chars, parse_hotwords
from asr.settings import SettingsError, load_settings
from door.credentials import Credentials
from ui.common import export_dir

pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword",
                                        "ignore:path is deprecated:DeprecationWarning")
KEY = "sk-door-test"
ADMIN, ADMIN_PW = "admin", "admin-pw"
USER, USER_PW = "user", "user,pw:with-both"  # a comma and a colon: nothing may truncate it
EVIL = "http://evil.example"


@dataclass
class Served:
    engine: Engine
    demo: gr.Blocks
    app: object
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai(self, key: str) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def fn_index(self, api_name: str) -> int:
        return next(i for i, fn in self.demo.fns.items() if fn.api_name == api_name)


@pytest.fixture(scope="module")
def gradio_tmp(tmp_path_factory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("gradio-tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def make_server(loaded_tiny, gradio_tmp):
    @contextlib.contextmanager
    def serve(**overrides) -> Iterator[Served]:
        settings = tiny_settings(**overrides)
        engine = Engine(settings, loaded=loaded_tiny)
        app = api.build_api(engine)
        demo = webui.build_app(engine)
        webui.mount(app, demo, settings)
        port = free_port()
        server = api.serve(app, "127.0.0.1", port)
        try:
            yield Served(engine, demo, app, port)
        finally:
            server.should_exit = True
            server.thread.join(30)

    return serve


@pytest.fixture(scope="module")
def folder(tmp_path_factory, reference_wavs) -> Path:
    """The server folder in batch.allowed_dirs: one/ holds a real recording; collide/ holds files
    named to collide in a zip or to run as spreadsheet formulas (x.wav is not audio at all)."""
    root = tmp_path_factory.mktemp("allowed")
    audio = reference_wavs[0].read_bytes()
    (root / "one").mkdir()
    (root / "one" / "a.wav").write_bytes(audio)
    (root / "collide").mkdir()
    (root / "collide" / "x.wav").write_bytes(b"not audio at all")
    for name in COLLIDING[1:]:
        (root / "collide" / name).write_bytes(audio)
    return root


COLLIDING = ["x.wav", "x.error.wav", "a.wav", "a.mp3", "a-2.wav", "=HYPERLINK(1).wav", "@sum.wav",
             "+1.wav", "-1.wav"]


@pytest.fixture(scope="module")
def locked(make_server, folder) -> Iterator[Served]:
    """An API key, two logins (one admin), an allowed folder and one CORS origin."""
    logins = [f"{ADMIN}:{ADMIN_PW}", f"{USER}:{USER_PW}"]
    with make_server(**{"server.api_keys": [KEY], "server.ui_auth": logins, "server.admins": [ADMIN],
                        "batch.allowed_dirs": [str(folder)],
                        "server.cors_origins": ["http://tools.example"]}) as running:
        yield running


@pytest.fixture(scope="module")
def open_server(make_server, folder) -> Iterator[Served]:
    """No credential at all: only the cross-site rule stands between a web page and the server."""
    with make_server(**{"batch.allowed_dirs": [str(folder)]}) as running:
        yield running


@pytest.fixture(scope="module")
def wav(reference_wavs) -> Path:
    return reference_wavs[0]


def _transcribe(client: OpenAI, path: Path, **options):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=(path.name, audio, "audio/wav"),
                                                  model="seaco-paraformer", **options)


def _queue_join(served: Served, fn_index: int, data: list, headers: dict | None = None,
                path: str = "/gradio_api/queue/join", **extra) -> httpx.Response:
    body = {"data": data, "fn_index": fn_index, "session_hash": "door-test", "trigger_id": None, **extra}
    return httpx.post(served.url + path, json=body, headers=headers or {}, timeout=30)


# ---- every door, knocked on without a credential -----------------------------------------------

def _routes(routes, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, into Gradio's mount and its included routers."""
    for route in routes:
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is None:  # static files: knock on the mount itself
                yield "GET", prefix + route.path + "/x"
            else:
                yield from _routes(inner, prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", prefix + route.path
        elif isinstance(route, (APIRoute, Route)):
            for method in sorted(route.methods or {"GET"}):
                yield method, prefix + route.path
        elif hasattr(route, "original_router"):  # FastAPI's included router
            yield from _routes(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            raise AssertionError(f"a route of unknown kind {type(route).__name__}: add it to this walk")


def _fill(path: str) -> str:
    for param, value in (("{path:path}", "x"), ("{api_name}", "transcribe_file"), ("{event_id}", "e1"),
                         ("{session_hash}", "s1"), ("{path_or_url:path}", "/etc/passwd"),
                         ("{url_path:path}", "http://127.0.0.1/"), ("{size}", "192")):
        path = path.replace(param, value)
    return path.replace("{", "").replace("}", "")


def test_every_route_needs_a_credential_but_the_login_page_and_health(locked):
    knocked = 0
    for method, path in sorted(set(_routes(locked.app.routes))):
        url = locked.url + _fill(path)
        if method == "WEBSOCKET":
            answer = httpx.get(url, headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                             "Sec-WebSocket-Version": "13"})
            assert answer.status_code in (401, 403), (path, answer.status_code)
            knocked += 1
            continue
        answer = httpx.request(method, url, json={"data": [], "fn_index": 0}, timeout=30)
        if locked.app.state.door.is_open(method, _fill(path)):
            assert answer.status_code != 401, (method, path)
            continue
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text[:200])
        knocked += 1
    assert knocked > 60  # the walk reached Gradio's included routers, not just the API's routes
    assert httpx.get(f"{locked.url}/health").json()["model_loaded"] is True  # the container's check


def test_every_ui_event_needs_a_credential_by_index_and_by_name(locked, wav):
    for index, fn in locked.demo.fns.items():
        assert _queue_join(locked, index, []).status_code == 401, fn.api_name
        if fn.api_name:
            called = httpx.post(f"{locked.url}/gradio_api/call/{fn.api_name}", json={"data": []})
            assert called.status_code == 401, fn.api_name
    with pytest.raises(ValueError, match="credentials were not provided"):
        Client(locked.url, verbose=False)  # a stranger's gradio_client cannot even read the API info
    default = locked.engine.default_batch_size
    answer = _queue_join(locked, locked.fn_index("apply_batch_size"), [default + 3])
    assert answer.status_code == 401 and locked.engine.default_batch_size == default


def test_an_api_key_opens_both_the_api_and_the_ui(locked, wav):
    expected = locked.engine.transcribe([wav])[0].text
    assert _transcribe(locked.openai(KEY), wav).text == expected
    with pytest.raises(openai.AuthenticationError):
        _transcribe(locked.openai("sk-wrong"), wav)
    by_header = Client(locked.url, headers={"Authorization": f"Bearer {KEY}"}, verbose=False)
    text, *_ = by_header.predict(handle_file(str(wav)), "", 1, api_name="/transcribe_file")
    assert text == expected
    # The login page takes a key as the password, under any name that is not a login's.
    by_login = Client(locked.url, auth=("anyone", KEY), verbose=False)
    assert by_login.predict(handle_file(str(wav)), "", 1, api_name="/transcribe_file")[0] == expected
    with pytest.raises(ValueError, match="Could not login"):
        Client(locked.url, auth=(ADMIN, KEY), verbose=False)  # a login's name with a key: refused


def test_a_ui_login_opens_the_api_too(locked, wav):
    expected = locked.engine.transcribe([wav])[0].text
    assert _transcribe(locked.openai(f"{USER}:{USER_PW}"), wav).text == expected
    with pytest.raises(openai.AuthenticationError):
        _transcribe(locked.openai(f"{USER}:wrong"), wav)
    client = Client(locked.url, auth=(USER, USER_PW), verbose=False)
    assert client.predict(handle_file(str(wav)), "", 1, api_name="/transcribe_file")[0] == expected
    _, _, exports = client.predict(str(_allowed(locked) / "one"), "", 1, api_name="/transcribe_folder")
    table = next(p for p in exports if p.endswith(".csv"))  # the downloads came through the door too
    rows = list(csv.DictReader(io.StringIO(Path(table).read_text(encoding="utf-8-sig"))))
    assert [(r["file"], r["text"]) for r in rows] == [("a.wav", expected)]


def _allowed(served: Served) -> Path:
    return Path(served.engine.settings.batch.allowed_dirs[0])


def test_only_an_admin_changes_settings_whatever_route_or_index_is_used(locked):
    engine = locked.engine
    default = engine.default_batch_size
    apply, save = locked.fn_index("apply_batch_size"), locked.fn_index("save_batch_size")
    harmless = "system_info"
    key = {"Authorization": f"Bearer {KEY}"}
    user = {"Authorization": f"Bearer {USER}:{USER_PW}"}
    attempts = [
        ("/gradio_api/queue/join", {"fn_index": apply}),
        ("/gradio_api/queue/join", {"fn_index": save}),
        ("/gradio_api/queue/join", {"fn_index": str(apply)}),  # Gradio's model reads "12" as 12
        ("/gradio_api/queue/join", {"fn_index": float(apply)}),
        ("/gradio_api/queue/join", {"fn_index": 10_000}),  # no such event: unknown is refused
        ("/gradio_api/call/apply_batch_size", {}),
        ("/gradio_api/call/v2/apply_batch_size", {}),
        (f"/gradio_api/run/{harmless}", {"fn_index": apply}),  # the body's index wins in Gradio
        (f"/gradio_api/api/{harmless}", {"fn_index": apply}),
        (f"/gradio_api/call/{harmless}", {"fn_index": apply}),
    ]
    for headers in (key, user):
        for path, extra in attempts:
            answer = httpx.post(locked.url + path, json={"data": [default + 5], "session_hash": "x", **extra},
                                headers=headers, timeout=30)
            assert answer.status_code == 403, (path, extra, answer.status_code, answer.text[:200])
        for name in ("tune_batch_size", "check_precision", "apply_precision", "save_precision"):
            answer = httpx.post(f"{locked.url}/gradio_api/call/{name}", json={"data": []}, headers=headers)
            assert answer.status_code == 403, name
    assert engine.default_batch_size == default
    with pytest.raises(Exception, match="403"):
        user_client = Client(locked.url, auth=(USER, USER_PW), verbose=False)
        user_client.predict(default + 5, api_name="/apply_batch_size")
    admin = Client(locked.url, auth=(ADMIN, ADMIN_PW), verbose=False)
    try:
        admin.predict(default + 5, api_name="/apply_batch_size")
        assert engine.default_batch_size == default + 5
    finally:
        admin.predict(default, api_name="/apply_batch_size")
    assert engine.default_batch_size == default


def test_every_settings_event_is_an_admin_event(locked):
    """The wizard, the precision check and every apply/save are admin-only, and nothing else is:
    recognition stays open to every credential."""
    admin = {fn.api_name for fn in locked.demo.fns.values() if webui.is_admin_event(fn)}
    assert {"tune_batch_size", "apply_batch_size", "save_batch_size", "check_precision",
            "apply_precision", "save_precision"} <= admin
    assert not admin & {"transcribe_file", "transcribe_batch", "transcribe_folder", "system_info"}
    for fn in locked.demo.fns.values():  # the tuning tab is the admin's, and only it
        home = getattr(fn.fn, "__module__", None) or ""
        assert webui.is_admin_event(fn) == home.startswith(("ui.tuning_tab", "tuning")), (fn.api_name, home)


# ---- credentials at start ------------------------------------------------------------------------

@pytest.mark.parametrize("entries, fragment", [
    (["alice"], "entry 1 has no ':'"),
    (["alice:ok", "bob"], "entry 2 has no ':'"),
    ([":secret"], "user name"),
    (["alice:"], "non-empty password"),
    (["alice:a", "alice:b"], "repeats"),
])
def test_a_malformed_login_stops_the_start_instead_of_dropping_the_lock(entries, fragment):
    settings = tiny_settings(**{"server.ui_auth": ["carol:Unique-Secret-1", *entries]})
    with pytest.raises(SettingsError, match=fragment.replace("entry 1", "entry 2").replace("entry 2 has no",
                                                              "has no")) as caught:
        Credentials.from_settings(settings.server)
    assert "Unique-Secret-1" not in str(caught.value)


def test_launch_refuses_a_malformed_login_from_the_environment(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("")
    # The comma splits the environment variable: "pa" and "ss" are left, and "ss" has no ":".
    monkeypatch.setenv("SEACO_SERVER_UI_AUTH", "alice:pa,ss")
    assert launch.main(["--config", str(config), "--model", "random:tiny"]) == 2
    assert "server.ui_auth entry 2 has no ':'" in capsys.readouterr().err


def test_the_environment_keeps_a_comma_in_a_password_in_json_form(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("")
    settings = load_settings(config, environ={"SEACO_SERVER_UI_AUTH": '["alice:pa,ss", "bob:x"]',
                                              "SEACO_SERVER_API_KEYS": '["k,1"]'})
    credentials = Credentials.from_settings(settings.server)
    assert credentials.logins == {"alice": "pa,ss", "bob": "x"} and credentials.key_ok("k,1")
    with pytest.raises(SettingsError, match="hidden"):
        load_settings(config, environ={"SEACO_SERVER_UI_AUTH": '["alice:pa", 3]'})


def test_admins_must_be_logins():
    with pytest.raises(SettingsError, match="admins"):
        settings = tiny_settings(**{"server.api_keys": [KEY], "server.admins": ["root"]})
        Credentials.from_settings(settings.server)


def test_listening_without_a_credential_warns_in_one_line():
    line = launch.open_warning("0.0.0.0", 7860)
    assert "\n" not in line and "no credential" in line and "server.api_keys" in line
    # the real start prints it: test_door_limits.py runs launch.py --listen and reads its stderr


# ---- cross-site browser requests -----------------------------------------------------------------

def test_cross_site_posts_are_refused_when_no_credential_is_set(open_server, wav):
    audio = {"file": (wav.name, wav.read_bytes(), "audio/wav")}
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": f"http://127.0.0.1:{open_server.port + 1}"}):
        answer = httpx.post(f"{open_server.url}/v1/audio/transcriptions", files=audio, headers=headers)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_site", headers
        assert httpx.post(f"{open_server.url}/gradio_api/upload", files={"files": audio["file"]},
                          headers=headers).status_code == 403
        assert _queue_join(open_server, open_server.fn_index("apply_batch_size"), [7],
                           headers=headers).status_code == 403
    same = {"Origin": open_server.url, "Sec-Fetch-Site": "same-origin"}
    endpoint = f"{open_server.url}/v1/audio/transcriptions"
    assert httpx.post(endpoint, files=audio, headers=same).status_code == 200
    assert httpx.post(endpoint, files=audio).status_code == 200  # not a browser: no Origin at all
    assert httpx.get(f"{open_server.url}/health", headers={"Origin": EVIL}).status_code == 200


def test_a_listed_origin_may_post_with_a_credential(locked, wav):
    audio = {"file": (wav.name, wav.read_bytes(), "audio/wav")}
    headers = {"Origin": "http://tools.example", "Authorization": f"Bearer {KEY}"}
    answer = httpx.post(f"{locked.url}/v1/audio/transcriptions", files=audio, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "http://tools.example"
    headers["Origin"] = EVIL
    answer = httpx.post(f"{locked.url}/v1/audio/transcriptions", files=audio, headers=headers)
    assert answer.status_code == 403


# ---- hotwords --------------------------------------------------------------------------------------

def test_hotword_text_is_bounded_before_it_is_split():
    limit = max_raw_chars(10, 20)
    words = " ".join(f"w{i}" for i in range(150_000))
    with pytest.raises(HotwordError, match=f"has {len(words)} characters; the limit is {limit}"):
        parse_hotwords(words, 10, 20)
    with pytest.raises(HotwordError, match="more than 10 hotwords"):
        parse_hotwords(" ".join(f"w{i}" for i in range(11)), 10, 20)
    assert parse_hotwords("达摩院 魔搭，达摩院,魔搭 " * 30, 10, 20) == ["达摩院", "魔搭"]  # repeats are free


def test_a_huge_prompt_is_refused_and_the_server_keeps_answering(locked, wav):
    words = " ".join(f"w{i}" for i in range(150_000))
    answer = httpx.post(f"{locked.url}/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                        files={"file": (wav.name, wav.read_bytes(), "audio/wav")}, data={"prompt": words})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "prompt"
    assert httpx.get(f"{locked.url}/health").status_code == 200
    # Under the field's bound, a long prompt is no hotword list: ignored, as Whisper prompts are.
    prompt = " ".join(f"w{i}" for i in range(5_000))
    expected = locked.engine.transcribe([wav])[0].text
    assert _transcribe(locked.openai(KEY), wav, prompt=prompt).text == expected


def test_the_ui_hotword_box_is_bounded_too(locked, wav):
    client = Client(locked.url, headers={"Authorization": f"Bearer {KEY}"}, verbose=False)
    with pytest.raises(AppError, match="characters; the limit is"):
        client.predict(handle_file(str(wav)), "词 " * 100_000, 1, api_name="/transcribe_file")


# ---- exports ---------------------------------------------------------------------------------------

def test_zip_names_cannot_collide_and_the_csv_cannot_run_formulas(locked):
    """A server folder of files named to collide (x.wav fails beside a good x.error.wav; a.wav,
    a.mp3 and a-2.wav) and to run as formulas: every input gets its own entry, results.csv in the
    zip says which, and no cell starts with = + - @."""
    client = Client(locked.url, headers={"Authorization": f"Bearer {KEY}"}, verbose=False)
    _, _, exports = client.predict(str(_allowed(locked) / "collide"), "", 2, None, ["txt", "srt"],
                                   api_name="/transcribe_folder")
    archive = zipfile.ZipFile(next(p for p in exports if p.endswith(".zip")))
    listed = archive.namelist()
    ok = len(COLLIDING) - 1
    assert len(listed) == len(set(listed)) == 2 * ok + 1 + 2  # txt + srt each, one error entry, 2 tables
    rows = list(csv.DictReader(io.StringIO(archive.read("results.csv").decode("utf-8-sig"))))
    formula = {name for name in COLLIDING if name[0] in "=+-@"}
    assert sorted(r["file"] for r in rows) == sorted("'" + n if n in formula else n for n in COLLIDING)
    by_file = {r["file"][1:] if r["file"][1:] in formula else r["file"]: r for r in rows}
    assert by_file["x.wav"]["status"] == "error" and by_file["x.error.wav"]["status"] == "ok"
    for name in COLLIDING:  # every input's entries are where results.csv says, holding its own text
        entries = by_file[name]["zip_files"].split("; ")
        if name == "x.wav":
            assert entries[0].endswith("_x.wav.error.txt") and archive.read(entries[0]).startswith(b"[error]")
            continue
        text = archive.read(entries[0]).decode("utf-8")
        assert entries[0].endswith(".txt") and text == by_file[name]["text"].lstrip("'") + "\n"
    records = json.loads(archive.read("results.json"))
    assert {r["file"]: r["zip_files"] for r in records}["a.mp3"] == by_file["a.mp3"]["zip_files"].split("; ")
    standalone = next(p for p in exports if p.endswith(".csv"))
    for row in csv.reader(io.StringIO(Path(standalone).read_text(encoding="utf-8-sig"))):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row


def test_the_exports_folder_is_private_and_cleanup_follows_no_link(locked, tmp_path, wav):
    client = Client(locked.url, headers={"Authorization": f"Bearer {KEY}"}, verbose=False)
    client.predict(handle_file(str(wav)), "", 1, api_name="/transcribe_file")
    roots = list(Path(os.environ["GRADIO_TEMP_DIR"]).glob("seaco-exports-*"))
    assert roots and not (Path(os.environ["GRADIO_TEMP_DIR"]) / "seaco-webui-exports").exists()
    for root in roots:  # one per app built in this process, each private, none predictable
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(run.stat().st_mode) == 0o700 for run in root.iterdir())
    root = next(r for r in roots if any(r.rglob(f"{wav.stem}.txt")))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("someone else's file")
    os.symlink(victim, root / "planted")
    old = time.time() - 7200
    os.utime(root / "planted", (old, old), follow_symlinks=False)
    os.utime(victim, (old, old))
    fresh = export_dir(root)  # cleans folders older than an hour
    assert (victim / "keep.txt").read_text() == "someone else's file"
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


# ---- Gradio's uploads -------------------------------------------------------------------------------

def test_gradio_uploads_are_bounded_and_cleaned_from_the_same_settings(make_server, wav):
    with make_server(**{"server.max_file_size_mb": 1, "server.upload_ttl_s": 600}) as served:
        assert served.demo.delete_cache == (150, 600)
        big = speechlike(40, seed=1)  # 1.28 MB as 16-bit WAV
        buffer = io.BytesIO()
        soundfile.write(buffer, big, 16000, format="WAV", subtype="PCM_16")
        upload = f"{served.url}/gradio_api/upload"
        answer = httpx.post(upload, files={"files": ("big.wav", buffer.getvalue())})
        assert answer.status_code == 413
        ok = httpx.post(upload, files={"files": ("a.wav", wav.read_bytes())})
        [stored] = ok.json()
        assert Path(stored).exists()
        # Gradio's scheduled cleanup (what delete_cache runs) removes it once it is old enough.
        from gradio.route_utils import delete_files_created_by_app

        delete_files_created_by_app(served.demo, age=0)
        assert not Path(stored).exists()


# ---- the API's documentation -------------------------------------------------------------------------

def test_the_docs_page_needs_no_internet_and_lists_openai_s_fields(locked):
    page = httpx.get(f"{locked.url}/v1/docs").text
    sources = [part.split('"')[1] for part in page.split("src=")[1:]] + \
              [part.split('"')[1] for part in page.split("href=")[1:]]
    assert sources and all(s.startswith("/v1/") for s in sources), sources
    for source in sources:
        assert httpx.get(locked.url + source).status_code == 200, source
    schema = httpx.get(f"{locked.url}/v1/openapi.json").json()
    body = schema["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]
    fields = set(form["schema"]["properties"])
    openai_fields = {"file", "model", "chunking_strategy", "include[]", "known_speaker_names[]",
                     "known_speaker_references[]", "language", "prompt", "response_format", "stream",
                     "temperature", "timestamp_granularities[]"}
    assert openai_fields <= fields and "hotwords" in fields
    assert form["schema"]["required"] == ["file"]


@pytest.mark.browser
def test_a_browser_logs_in_with_a_key_and_reads_the_docs_with_no_internet(locked, chromium_path):
    """Every request that leaves the server is blocked: the login page, the UI behind it and the
    API's documentation (every field of the transcription form) still work."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def only_ours(route) -> None:
        if route.request.url.startswith(locked.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", only_ours)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(locked.url + "/")
            page.get_by_role("textbox").first.fill("someone")
            page.locator("input[type=password]").fill(KEY)
            page.get_by_role("button", name="Login").click()
            page.locator("#single-file").wait_for()
            outside.clear()
            page.goto(locked.url + "/v1/docs")
            page.get_by_text("/v1/audio/transcriptions", exact=True).click()
            for name in ("file", "hotwords", "chunking_strategy", "timestamp_granularities[]"):
                page.locator(".parameters-col_name, .model-box td", has_text=name).first.wait_for()
            assert outside == [], outside
        finally:
            browser.close()
