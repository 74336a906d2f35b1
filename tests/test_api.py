"""The OpenAI-compatible API as its users call it: the official `openai` client (and raw httpx
where the client cannot say what a test needs) against a real uvicorn server on localhost that
also serves the web UI, with the real engine, random:tiny weights and real Mandarin recordings.

Expected texts, segments and times always come from the same engine run directly (the random
model's words mean nothing), never from literals.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile
import srt
import webvtt
from helpers import free_port, run_together, speechlike, tiny_settings
from openai import OpenAI

import api
import webui
from asr.engine import Engine
from asr.recognition.hotwords import parse_hotwords
from asr.results import Result
from asr.text.punctuation import load_punctuator

# Silero's loader uses importlib.resources.path, which Python deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:path is deprecated:DeprecationWarning")
KEY = "sk-test"
RATE = 16000
GAP_S = 1.5  # silence between joined recordings: the VAD cuts there, so a file has several pieces
ERROR_FIELDS = {"message", "type", "param", "code"}
PUNCTUATION = re.compile(r"[，。、？！,.?!]")


# ---- servers -------------------------------------------------------------------------------------

@dataclass
class Served:
    """A running app (API + UI on one port) and the engine behind it."""

    engine: Engine
    port: int
    key: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, **options) -> OpenAI:
        """The official client; no retries, so a 503 is seen, not retried after Retry-After."""
        return OpenAI(base_url=f"{self.url}/v1", api_key=key or self.key or "unused", max_retries=0,
                      timeout=60, **options)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


@pytest.fixture(scope="module")
def punctuator():
    """One random:tiny punctuation model, shared by every engine here (loading it is not free)."""
    settings = tiny_settings()
    return load_punctuator("random:tiny", "cpu", settings.resolve_path(settings.cache_dir))


@pytest.fixture(scope="module")
def gradio_tmp(tmp_path_factory) -> Iterator[Path]:
    """Gradio's uploads and the UI's downloads go to a folder of this module's own."""
    folder = tmp_path_factory.mktemp("gradio-tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def make_server(loaded_tiny, punctuator, gradio_tmp):
    """serve(**settings) -> a context manager running the app as launch.py does: build_api, the
    UI mounted on the same FastAPI app, uvicorn on its own thread; stopped on leaving."""

    @contextlib.contextmanager
    def serve(**overrides) -> Iterator[Served]:
        settings = tiny_settings(vad="silero", punctuation="random:tiny", **overrides)
        engine = Engine(settings, loaded=loaded_tiny, punctuator=punctuator)
        app = api.build_api(engine)
        webui.mount(app, webui.build_app(engine), settings)
        port = free_port()
        server = api.serve(app, "127.0.0.1", port)
        try:
            keys = settings.server.api_keys
            yield Served(engine, port, keys[0] if keys else None)
        finally:
            server.should_exit = True
            server.thread.join(30)

    return serve


@pytest.fixture(scope="module")
def served(make_server) -> Iterator[Served]:
    """The module's main server: API keys on, default batching. Its tests send more clients at
    once than the door's default upload slots (server.max_uploads, tested in test_door_limits),
    and whether their bodies overlap depends on the machine's load: room for all of them."""
    with make_server(**{"server.api_keys": [KEY], "server.max_uploads": 64}) as running:
        yield running


@pytest.fixture(scope="module")
def client(served) -> OpenAI:
    return served.client()


@pytest.fixture(scope="module")
def batching_server(make_server) -> Iterator[Served]:
    """No keys; batches wait up to 200 ms for mates and may pad freely, so concurrent requests
    reliably meet in batches."""
    with make_server(padding_limit_pct=1000, **{"batching.max_wait_ms": 200}) as running:
        yield running


@pytest.fixture(scope="module")
def tight_server(make_server) -> Iterator[Served]:
    """Tiny limits: 1 s of queued audio, 1 MB uploads."""
    with make_server(**{"server.api_keys": [KEY], "batching.max_queued_s": 1,
                        "server.max_file_size_mb": 1}) as running:
        yield running


# ---- audio ---------------------------------------------------------------------------------------

def _read(path: Path) -> np.ndarray:
    samples, rate = soundfile.read(str(path), dtype="float32")
    assert rate == RATE
    return samples


def _join(parts: list[np.ndarray], gap_s: float = GAP_S) -> np.ndarray:
    gap = np.zeros(int(gap_s * RATE), dtype=np.float32)
    out: list[np.ndarray] = []
    for part in parts:
        out += [part, gap]
    return np.concatenate(out[:-1])


@pytest.fixture(scope="module")
def wav(reference_wavs) -> Path:
    return reference_wavs[0]


@pytest.fixture(scope="module")
def joined(tmp_path_factory, reference_wavs) -> Path:
    """Every reference recording, 1.5 s of silence between them: a multi-segment file."""
    path = tmp_path_factory.mktemp("joined") / "joined.wav"
    soundfile.write(path, _join([_read(p) for p in reference_wavs]), RATE)
    return path


@pytest.fixture(scope="module")
def mixes(tmp_path_factory, reference_wavs) -> list[Path]:
    """Eight distinct files of real speech (the recordings alone, in pairs and in threes)."""
    folder = tmp_path_factory.mktemp("mixes")
    a, b, c = (_read(p) for p in reference_wavs)
    orders = [[a], [b], [c], [a, b], [b, c], [c, a], [a, b, c], [c, b, a]]
    paths = []
    for number, parts in enumerate(orders):
        path = folder / f"mix{number}.wav"
        soundfile.write(path, _join(parts, gap_s=0.8), RATE)
        paths.append(path)
    return paths


def _expect(engine: Engine, path: Path, **options) -> Result:
    """The engine's own result for `path` alone: what the API must answer."""
    [result] = engine.transcribe([path], **options)
    assert result.ok, result.error
    return result


def _transcribe(client: OpenAI, path: Path, **options):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=(path.name, audio, "audio/wav"),
                                                  model=options.pop("model", "seaco-paraformer"),
                                                  **options)


def _post(served: Served, path: Path | None = None, *, content: bytes | None = None,
          headers: dict[str, str] | None = None, timeout: httpx.Timeout | float = 60,
          **fields) -> httpx.Response:
    """A raw multipart POST, for what the client cannot send (no key, odd fields, short timeouts)."""
    data = content if content is not None else path.read_bytes()
    name = path.name if path is not None else "audio.wav"
    return httpx.post(f"{served.url}/v1/audio/transcriptions", files={"file": (name, data, "audio/wav")},
                      data={k: v for k, v in fields.items() if v is not None},
                      headers=served.headers() if headers is None else headers, timeout=timeout)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.01)


def _assert_error_shape(response: httpx.Response, status: int, code: str | None = None,
                        param: str | None = None) -> dict:
    """OpenAI's error body, exactly: {"error": {"message", "type", "param", "code"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_FIELDS, body
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def _still_serves(served: Served, path: Path) -> None:
    """After any refusal, the same server answers a good request correctly."""
    expected = _expect(served.engine, path)
    assert _transcribe(served.client(), path).text == expected.text


@contextlib.contextmanager
def _model_held(engine: Engine) -> Iterator[None]:
    """Hold the model as the tuning wizard does: others' segments wait in the queue meanwhile."""
    holder = engine.batcher.ticket(None, False, 1, lambda outcome: None, name="test-holder")
    with engine.batcher.exclusive(holder):
        yield


def _segment_times(segments) -> list[tuple[float, float, str]]:
    return [(round(s.start_s, 3), round(s.end_s, 3), s.text) for s in segments]


# ---- response formats ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["seaco-paraformer", "whisper-1", "random:tiny"])
def test_json_gives_the_engine_text_and_the_audio_seconds(served, client, wav, model):
    """Programs written for OpenAI send whisper-1; the loaded model's own name works too."""
    expected = _expect(served.engine, wav)
    result = _transcribe(client, wav, model=model)
    assert result.text == expected.text and result.text
    assert result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(soundfile.info(str(wav)).duration, abs=1e-3)


@pytest.mark.parametrize("language", ["zh", "zh-CN", "Chinese", ""])
def test_optional_openai_fields_are_accepted(served, client, wav, language):
    """What OpenAI clients commonly send: a Chinese language code in any spelling, a
    temperature (decoding here is not sampled, so it changes nothing) and an empty prompt."""
    expected = _expect(served.engine, wav)
    result = _transcribe(client, wav, language=language, temperature=0.2, prompt="")
    assert result.text == expected.text


def test_text_format_is_the_plain_text(served, client, joined):
    """Plain text with one trailing newline, as OpenAI sends it."""
    expected = _expect(served.engine, joined)
    assert _transcribe(client, joined, response_format="text") == expected.text + "\n"


def test_srt_cues_are_the_engine_segments(served, client, joined):
    expected = _expect(served.engine, joined, timestamps=True)
    assert len(expected.segments) > 1
    cues = list(srt.parse(_transcribe(client, joined, response_format="srt")))
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    got = [(round(c.start.total_seconds(), 3), round(c.end.total_seconds(), 3), c.content) for c in cues]
    assert got == _segment_times(expected.segments)


def test_vtt_cues_are_the_engine_segments(served, client, joined):
    expected = _expect(served.engine, joined, timestamps=True)
    captions = webvtt.from_string(_transcribe(client, joined, response_format="vtt")).captions
    got = [(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text)
           for c in captions]
    assert got == _segment_times(expected.segments)


@pytest.mark.parametrize("granularities", [None, ["segment"], ["word"], ["segment", "word"]])
def test_verbose_json(served, client, joined, granularities):
    """Segments (with Whisper's extra fields at neutral values) unless only words are asked for;
    words only when asked; every time the engine's own."""
    expected = _expect(served.engine, joined, timestamps=True)
    options = {"timestamp_granularities": granularities} if granularities else {}
    result = _transcribe(client, joined, response_format="verbose_json", **options)
    raw = result.model_dump(exclude_unset=True)
    assert result.text == expected.text
    assert result.language == "chinese"
    assert result.duration == pytest.approx(round(expected.duration_s, 3), abs=1e-9)
    assert raw["task"] == "transcribe"
    assert raw["usage"] == {"type": "duration", "seconds": round(expected.duration_s, 3)}
    wants_words = "word" in (granularities or [])
    wants_segments = not granularities or "segment" in granularities
    assert ("words" in raw) == wants_words
    assert ("segments" in raw) == wants_segments
    if wants_segments:
        assert [s.id for s in result.segments] == list(range(len(expected.segments)))
        got = [(s.start, s.end, s.text) for s in result.segments]
        assert got == _segment_times(expected.segments)
        for segment, mine in zip(result.segments, expected.segments, strict=True):
            assert (segment.seek, segment.tokens, segment.temperature) == (0, [], 0.0)
            assert (segment.compression_ratio, segment.no_speech_prob) == (1.0, 0.0)
            assert segment.avg_logprob == pytest.approx(math.log(mine.confidence), abs=1e-4)
    if wants_words:
        words = [w for s in expected.segments for w in s.words]
        assert words, "the engine gave no word times: the comparison would prove nothing"
        assert [(w.start, w.end, w.word) for w in result.words] == _segment_times(words)


# ---- streaming -----------------------------------------------------------------------------------

def _engine_pieces(engine: Engine, path: Path) -> list[tuple[float, str]]:
    """(start, text) of each piece the engine hands out for `path`, in the order it hands them."""
    pieces: list[tuple[float, str]] = []
    engine.run([path], timestamps=False, on_piece=lambda _, piece: pieces.append(
        (piece.start_s, engine.piece_text(piece))))
    return pieces


@pytest.mark.parametrize("response_format", ["json", "text"])
def test_stream_sends_deltas_in_time_order_then_the_whole_text(served, client, joined, response_format):
    expected = _expect(served.engine, joined)
    pieces = _engine_pieces(served.engine, joined)
    assert len(pieces) > 1 and [s for s, _ in pieces] == sorted(s for s, _ in pieces)
    with _transcribe(client, joined, stream=True, response_format=response_format) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds == ["transcript.text.delta"] * (len(kinds) - 1) + ["transcript.text.done"], kinds
    deltas = [e.delta for e in events[:-1]]
    assert len(deltas) > 1
    assert deltas == [text for _, text in pieces if text]  # each piece once, in time order
    done = events[-1]
    assert done.text == expected.text == _transcribe(client, joined).text
    # Pieces are punctuated on their own: only the marks at their edges may differ.
    assert PUNCTUATION.sub("", "".join(deltas)) == PUNCTUATION.sub("", done.text)
    assert done.usage.seconds == pytest.approx(round(expected.duration_s, 3))


def test_stream_of_silence_is_only_the_done_event(client, tmp_path):
    """No speech: no delta at all (not an empty one), and a done event with the empty text."""
    quiet = tmp_path / "quiet.wav"
    soundfile.write(quiet, np.zeros(2 * RATE, dtype=np.float32), RATE)
    with _transcribe(client, quiet, stream=True) as stream:
        events = list(stream)
    assert [(e.type, e.text) for e in events] == [("transcript.text.done", "")]


# ---- hotwords ------------------------------------------------------------------------------------

def _vocabulary_words(engine: Engine, count: int) -> list[str]:
    """Hotwords made of the random model's own vocabulary (characters it can output)."""
    tokens = [t for t in engine.loaded.tokenizer.token_list if len(t) == 1 and t.isalpha()]
    return ["".join(tokens[i * 3 + 20:i * 3 + 23]) for i in range(count)]


@pytest.fixture
def hotword_spy(served, monkeypatch) -> list:
    """Every hotword list that reaches the main engine's recogniser (the real one still runs).

    The random model's SeACo head is calibrated to prefer "no bias" by a wide margin, so no
    hotword changes its text (asr/models/random_weights/seaco.py): this shows they reach the model at all."""
    seen: list = []
    recognizer = served.engine.recognizer
    real = recognizer.recognize

    def recognize(feats, hotwords, *args, **kwargs):
        seen.append(hotwords)
        return real(feats, hotwords, *args, **kwargs)

    monkeypatch.setattr(recognizer, "recognize", recognize)
    return seen


@pytest.mark.parametrize("via", ["hotwords", "prompt", "both"])
def test_hotwords_reach_the_model(served, client, joined, hotword_spy, via):
    """Hotwords travel in a `hotwords` form field (the client's extra_body), else in `prompt`;
    the API's result is the engine's own with the same hotwords."""
    words = _vocabulary_words(served.engine, 2)
    text = " ".join(words)
    options = {"hotwords": {"extra_body": {"hotwords": text}}, "prompt": {"prompt": text},
               "both": {"extra_body": {"hotwords": text}, "prompt": "其他 提示"}}[via]
    expected = _expect(served.engine, joined, hotwords=text, timestamps=True)
    plain = _expect(served.engine, joined, timestamps=True)
    hotword_spy.clear()
    result = _transcribe(client, joined, response_format="verbose_json", **options)
    assert result.text == expected.text
    assert [(s.start, s.end, s.text) for s in result.segments] == _segment_times(expected.segments)
    print(f"\nhotwords {text!r} {'change' if expected.text != plain.text else 'keep'} the text")
    ids = served.engine.recognizer.hotword_list(parse_hotwords(text, 10, 20))
    assert hotword_spy and all(hw == ids for hw in hotword_spy), hotword_spy
    hotword_spy.clear()
    _transcribe(client, joined)
    assert hotword_spy and all(hw is None for hw in hotword_spy)


def test_too_many_or_bad_hotwords_are_400(served, client, wav):
    limit = served.engine.settings.hotwords.max_count
    for text in (" ".join(_vocabulary_words(served.engine, limit + 1)), "../../etc/passwd"):
        with pytest.raises(openai.BadRequestError) as caught:
            _transcribe(client, wav, extra_body={"hotwords": text})
        _assert_error_shape(caught.value.response, 400, code="invalid_hotwords", param="hotwords")
        assert caught.value.body["code"] == "invalid_hotwords"
    too_many = " ".join(_vocabulary_words(served.engine, limit + 1))
    for stream in ("false", "true"):  # a stream is refused before it starts, with a plain error
        error = _assert_error_shape(_post(served, wav, hotwords=too_many, stream=stream), 400,
                                    code="invalid_hotwords")
        assert f"the limit is {limit}" in error["message"]
    _still_serves(served, wav)


def test_a_whisper_style_prompt_sentence_is_ignored_not_refused(served, client, wav):
    """Programs written for OpenAI send prompt sentences; they are no hotword list: ignored."""
    plain = _expect(served.engine, wav)
    result = _transcribe(client, wav, prompt="以下是普通话的句子。这是一段会议录音。")
    assert result.text == plain.text


def test_more_clients_than_cores_all_reach_the_batcher(served, mixes, wav):
    """Each waiting request holds a thread of the API's own pool, not asyncio's small default
    one, so ten clients at once all wait at the batcher (and can share its batches)."""
    engine = served.engine
    answers: dict[int, str] = {}
    paths = [mixes[i % len(mixes)] for i in range(10)]
    with _model_held(engine):
        threads = [threading.Thread(target=lambda i=i, p=p: answers.update(
            {i: _transcribe(served.client(), p).text})) for i, p in enumerate(paths)]
        for thread in threads:
            thread.start()
        _wait_until(lambda: engine.batcher.stats().requests_waiting >= 10, "ten requests wait at once")
    for thread in threads:
        thread.join(120)
    assert [answers.get(i) for i in range(10)] == [_expect(engine, p).text for p in paths]


# ---- errors --------------------------------------------------------------------------------------

BAD_FIELDS = {
    "unknown response_format": ({"response_format": "docx"}, "response_format", None),
    "granularities without verbose_json": ({"timestamp_granularities[]": "word"},
                                           "timestamp_granularities", None),
    "unknown granularity": ({"response_format": "verbose_json", "timestamp_granularities[]": "line"},
                            "timestamp_granularities", None),
    "english": ({"language": "en"}, "language", "unsupported_language"),
    "unknown model": ({"model": "gpt-4o-transcribe"}, "model", "model_not_found"),
    "stream with srt": ({"stream": "true", "response_format": "srt"}, "stream", None),
    "temperature not a number": ({"temperature": "hot"}, "temperature", None),
}


@pytest.mark.parametrize("case", BAD_FIELDS)
def test_bad_fields_are_400_in_openai_shape(served, wav, case):
    fields, param, code = BAD_FIELDS[case]
    _assert_error_shape(_post(served, wav, **fields), 400, code=code, param=param)
    _still_serves(served, wav)


def test_bad_fields_through_the_client(served, client, wav):
    """The client's own exception classes carry the same error body."""
    calls = [lambda: _transcribe(client, wav, language="en"),
             lambda: _transcribe(client, wav, model="gpt-4o-transcribe"),
             lambda: _transcribe(client, wav, response_format="json", timestamp_granularities=["word"]),
             lambda: _transcribe(client, wav, response_format="srt", stream=True)]
    for call in calls:
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        assert caught.value.status_code == 400 and set(caught.value.body) == ERROR_FIELDS
    _still_serves(served, wav)


@pytest.mark.parametrize("content", [b"RIFF this is not really audio" * 50, b"\x00\x01garbage" * 300],
                         ids=["fake-riff", "garbage"])
def test_corrupt_audio_is_400(served, client, wav, content):
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(file=("corrupt.wav", content, "audio/wav"),
                                           model="seaco-paraformer")
    error = _assert_error_shape(caught.value.response, 400, code="invalid_audio", param="file")
    assert "not a readable audio file" in error["message"]
    streamed = _post(served, content=content, stream="true")
    _assert_error_shape(streamed, 400, code="invalid_audio", param="file")
    _still_serves(served, wav)


def test_empty_or_missing_file_is_400(served, wav):
    _assert_error_shape(_post(served, content=b""), 400, param="file")
    response = httpx.post(f"{served.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                          headers=served.headers())
    _assert_error_shape(response, 400, param="file")
    _still_serves(served, wav)


def test_missing_or_wrong_key_is_401(served, wav):
    with pytest.raises(openai.AuthenticationError) as caught:
        _transcribe(served.client(key="sk-wrong"), wav)
    _assert_error_shape(caught.value.response, 401, code="invalid_api_key")
    for headers in ({}, {"Authorization": "sk-test"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": "Bearer"}):
        _assert_error_shape(_post(served, wav, headers=headers), 401, code="invalid_api_key")
    _assert_error_shape(httpx.get(f"{served.url}/v1/models"), 401, code="invalid_api_key")
    assert httpx.get(f"{served.url}/health").status_code == 200  # health needs no key
    _still_serves(served, wav)


def test_without_configured_keys_no_key_is_needed(batching_server, wav):
    response = _post(batching_server, wav, headers={})
    assert response.status_code == 200
    assert response.json()["text"] == _expect(batching_server.engine, wav, batch_size=1).text


def test_models_and_health(served, client):
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["seaco-paraformer"]
    assert client.models.retrieve("whisper-1").id == "seaco-paraformer"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o-transcribe")
    _assert_error_shape(caught.value.response, 404, code="model_not_found")
    health = httpx.get(f"{served.url}/health").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["model"] == "random:tiny" == served.engine.loaded.spec


def _multipart_chunks(path: Path) -> tuple[Iterator[bytes], str]:
    """A multipart body sent in chunks, without Content-Length (Transfer-Encoding: chunked)."""
    boundary = "seaco-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n")
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    return chunks, f"multipart/form-data; boundary={boundary}"


def test_file_over_max_file_size_is_413(tight_server, tmp_path, wav):
    """Over server.max_file_size_mb (1 MB): a little over (found once read), far over (refused on
    its Content-Length) and sent chunked with no length at all."""
    big, huge = tmp_path / "big.wav", tmp_path / "huge.wav"
    soundfile.write(big, speechlike(40, seed=3), RATE, subtype="PCM_16")  # 1.28 MB
    soundfile.write(huge, speechlike(100, seed=4), RATE, subtype="PCM_16")  # 3.2 MB
    assert 2**20 < big.stat().st_size < 2 * 2**20 < huge.stat().st_size
    with pytest.raises(openai.APIStatusError) as caught:
        _transcribe(tight_server.client(), big)
    assert caught.value.status_code == 413
    _assert_error_shape(caught.value.response, 413, code="file_too_large", param="file")
    _assert_error_shape(_post(tight_server, huge), 413, code="file_too_large", param="file")
    chunks, content_type = _multipart_chunks(huge)
    chunked = httpx.post(f"{tight_server.url}/v1/audio/transcriptions", content=chunks,
                         headers={**tight_server.headers(), "Content-Type": content_type}, timeout=60)
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    _assert_error_shape(chunked, 413, code="file_too_large", param="file")
    _still_serves(tight_server, wav)


def test_full_queue_is_503_with_retry_after(tight_server, mixes, wav):
    """While the model is held, queued audio passes batching.max_queued_s (1 s): new requests,
    streamed or not, are refused with 503 and Retry-After; the queued one still completes."""
    engine = tight_server.engine
    expected = _expect(engine, mixes[3])
    client = tight_server.client()
    answers: list = []
    with _model_held(engine):
        waiting = threading.Thread(target=lambda: answers.append(_transcribe(client, mixes[3])))
        waiting.start()
        _wait_until(lambda: engine.batcher.stats().queued_s > 1, "audio is queued past the bound")
        with pytest.raises(openai.InternalServerError) as caught:
            _transcribe(client, wav)
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == str(api.RETRY_AFTER_S)
        error = _assert_error_shape(caught.value.response, 503, code="server_busy")
        assert "batching.max_queued_s" in error["message"]
        streamed = _post(tight_server, wav, stream="true")
        _assert_error_shape(streamed, 503, code="server_busy")
        assert streamed.headers["retry-after"] == str(api.RETRY_AFTER_S)
    waiting.join(60)
    assert [a.text for a in answers] == [expected.text]
    _still_serves(tight_server, wav)


def test_api_switched_off_is_404_and_the_ui_stays(make_server, wav):
    """server.api off: /v1 answers 404 in OpenAI's shape; the UI and /health are still served."""
    with make_server(**{"server.api": False}) as off:
        for response in (_post(off, wav), httpx.get(f"{off.url}/v1/models")):
            _assert_error_shape(response, 404, code="api_disabled")
        with pytest.raises(openai.NotFoundError):
            _transcribe(off.client(), wav)
        page = httpx.get(f"{off.url}/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert httpx.get(f"{off.url}/health").json()["model_loaded"] is True


# ---- concurrency ---------------------------------------------------------------------------------

def test_eight_concurrent_clients_each_get_their_own_transcript(batching_server, mixes):
    """Eight clients at once share batches, and each still gets exactly its file's transcript
    and segment times, as the file gives alone."""
    engine = batching_server.engine
    alone = [_expect(engine, p, timestamps=True, batch_size=1) for p in mixes]
    before = engine.batcher.stats()
    results = run_together([lambda p=p: _transcribe(batching_server.client(), p,
                                                     response_format="verbose_json") for p in mixes])
    for path, result, mine in zip(mixes, results, alone, strict=True):
        assert result.text == mine.text, path.name
        assert [(s.start, s.end, s.text) for s in result.segments] == _segment_times(mine.segments)
    stats = engine.batcher.stats()
    print(f"\nbatches: {stats.batches - before.batches}, shared: "
          f"{stats.shared_batches - before.shared_batches}, largest: {stats.largest_batch}")
    assert stats.shared_batches > before.shared_batches  # the requests really met in batches
    assert stats.mixed_hotword_batches == 0


def test_requests_with_different_hotwords_never_share_a_batch(batching_server, mixes):
    """Hotwords bias a whole batch's decoder, so a batch never mixes hotword sets; clients with
    the same set still meet, and everyone gets the text their file gives alone."""
    engine = batching_server.engine
    first, second = _vocabulary_words(engine, 2)
    words = [first, second, None, first, second, None, first, None]
    alone = [_expect(engine, p, hotwords=w, batch_size=1) for p, w in zip(mixes, words, strict=True)]
    before = engine.batcher.stats()
    results = run_together([
        lambda p=p, w=w: _transcribe(batching_server.client(), p,
                                     extra_body={"hotwords": w} if w else None)
        for p, w in zip(mixes, words, strict=True)])
    assert [r.text for r in results] == [r.text for r in alone]
    stats = engine.batcher.stats()
    assert stats.mixed_hotword_batches == 0
    assert stats.shared_batches > before.shared_batches  # requests with the same hotwords did meet


def test_a_short_request_is_served_beside_a_long_run(served, client, tmp_path, reference_wavs, wav):
    """Fairness: a short API request sent while a long run (60 files of 12 s, as the UI's batch
    tab sends them) is under way comes back long before that run ends."""
    a, b, c = (_read(p) for p in reference_wavs)
    long_files = []
    for number in range(60):
        first, second = [(a, b), (b, c), (c, a)][number % 3]
        samples = np.concatenate([first, np.zeros(RATE // 4, np.float32), second])[:12 * RATE]
        path = tmp_path / f"long{number:02d}.wav"
        soundfile.write(path, np.pad(samples, (0, 12 * RATE - len(samples))) * (0.5 + number / 200), RATE)
        long_files.append(path)
    expected = _expect(served.engine, wav)
    started = threading.Event()
    timings: dict[str, float] = {}
    outcome: list = []

    def long_run() -> None:
        t0 = time.perf_counter()
        outcome.append(served.engine.run(long_files, progress=lambda done, total, name: started.set()))
        timings["long"] = time.perf_counter() - t0

    thread = threading.Thread(target=long_run)
    thread.start()
    assert started.wait(60)
    t0 = time.perf_counter()
    result = _transcribe(client, wav)
    timings["short"] = time.perf_counter() - t0
    still_running = thread.is_alive()
    thread.join()
    print(f"\nfairness: short API request {timings['short']:.2f} s beside a long run of "
          f"{timings['long']:.2f} s ({len(long_files)} x 12 s)")
    assert result.text == expected.text
    assert all(r.ok for r in outcome[0].results)
    assert still_running, timings
    assert timings["short"] < 0.5 * timings["long"], timings


# ---- disconnects ---------------------------------------------------------------------------------

class _Leaver(threading.Thread):
    """A client that gives up after 2 s without an answer and closes its connection."""

    def __init__(self, served: Served, path: Path):
        super().__init__()
        self.served, self.path = served, path
        self.outcome: object = None

    def run(self) -> None:
        try:
            self.outcome = _post(self.served, self.path, timeout=httpx.Timeout(30, read=2.0))
        except httpx.ReadTimeout as exc:
            self.outcome = exc

    def finish(self) -> None:
        self.join(60)
        assert isinstance(self.outcome, httpx.ReadTimeout), self.outcome


def test_a_client_that_gives_up_harms_no_one_else(served, mixes, wav):
    """A client disconnects while its request waits for the (held) model; the clients around it
    get their own correct transcripts and the server keeps serving."""
    engine = served.engine
    others = mixes[:3]
    expected = [_expect(engine, p).text for p in others]
    answers: dict[int, str] = {}
    with _model_held(engine):
        threads = [threading.Thread(target=lambda i=i, p=p: answers.update(
            {i: _transcribe(served.client(), p).text})) for i, p in enumerate(others)]
        for thread in threads:
            thread.start()
        leaver = _Leaver(served, mixes[6])
        leaver.start()
        _wait_until(lambda: engine.batcher.stats().requests_waiting >= len(others) + 1,
                    "every client's audio waits for the model")
        leaver.finish()
    for thread in threads:
        thread.join(60)
    assert [answers.get(i) for i in range(len(others))] == expected
    _wait_until(lambda: engine.batcher.stats().requests_waiting == 0, "the queue drains")
    _still_serves(served, wav)


def test_an_abandoned_request_leaves_the_queue(served, mixes, wav, caplog):
    """The server notices the client went away ("API client disconnected") and its waiting
    segments leave the queue, while the model is still held."""
    caplog.set_level(logging.INFO, logger="api")
    caplog.set_level(logging.INFO, logger="asr.recognition.batcher")
    engine = served.engine
    with _model_held(engine):
        leaver = _Leaver(served, mixes[6])
        leaver.start()
        _wait_until(lambda: engine.batcher.stats().queued_s > 0, "its audio waits for the model")
        leaver.finish()
        _wait_until(lambda: engine.batcher.stats().queued_s == 0, "its waiting segments are dropped", 3)
    assert "API client disconnected" in caplog.text
    _still_serves(served, wav)


def test_closing_a_stream_early_drops_its_segments_and_harms_no_one(served, reference_wavs, mixes,
                                                                     tmp_path, wav, caplog):
    """A streaming client reads its first delta of a long file and hangs up: its remaining
    segments are dropped, the other clients at the same time get their own transcripts."""
    caplog.set_level(logging.INFO, logger="asr.recognition.batcher")
    engine = served.engine
    long_file = tmp_path / "long-stream.wav"
    soundfile.write(long_file, _join([_read(p) for p in reference_wavs] * 6), RATE)
    others = mixes[3:6]
    expected = [_expect(engine, p).text for p in others]
    answers: dict[int, str] = {}

    def other(index: int, path: Path) -> None:
        answers[index] = _transcribe(served.client(), path).text

    threads = [threading.Thread(target=other, args=(i, p)) for i, p in enumerate(others)]
    stream = _transcribe(served.client(), long_file, stream=True)
    for thread in threads:
        thread.start()
    first = next(iter(stream))
    assert first.type == "transcript.text.delta"
    with _model_held(engine):  # nothing more of it runs: what waits now must be dropped
        stream.close()
        _wait_until(lambda: "waiting segment(s) dropped" in caplog.text, "the stream's segments are dropped")
    print("\n" + next(line for line in caplog.text.splitlines() if "dropped" in line))
    for thread in threads:
        thread.join(60)
    assert [answers.get(i) for i in range(len(others))] == expected
    _wait_until(lambda: engine.batcher.stats().requests_waiting == 0, "the queue drains")
    _still_serves(served, wav)


# ---- the web UI beside the API -------------------------------------------------------------------

@pytest.mark.browser
def test_the_ui_works_while_api_traffic_runs(served, chromium_path, reference_wavs):
    """The UI at / on the API's port: upload a file on the single-file tab, press Start, see the
    engine's text, while two API clients keep sending requests in the background."""
    from playwright.sync_api import sync_playwright

    engine = served.engine
    ui_file, api_files = reference_wavs[1], [reference_wavs[0], reference_wavs[2]]
    expected_ui = _expect(engine, ui_file).text
    expected_api = {p.name: _expect(engine, p).text for p in api_files}
    stop = threading.Event()
    answered = threading.Semaphore(0)
    wrong: list[str] = []
    counts = {p.name: 0 for p in api_files}

    def traffic(path: Path) -> None:
        client = served.client()
        while not stop.is_set():
            text = _transcribe(client, path).text
            counts[path.name] += 1
            if text != expected_api[path.name]:
                wrong.append(f"{path.name}: {text!r}")
            answered.release()

    threads = [threading.Thread(target=traffic, args=(p,), daemon=True) for p in api_files]
    for thread in threads:
        thread.start()
    try:
        assert answered.acquire(timeout=60), "no API answer arrived"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(30_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(served.url + "/")
                # The server has an API key, so the UI is locked too: any name, the key as password.
                page.get_by_role("textbox").first.fill("api-user")
                page.locator("input[type=password]").fill(served.key)
                page.get_by_role("button", name="Login").click()
                page.locator("#single-file input[type=file]").set_input_files(str(ui_file))
                page.locator("#single-file [data-testid=download-link]").wait_for()
                before = dict(counts)
                page.locator("#single-start").click()
                page.wait_for_function("t => document.querySelector('#single-text textarea').value === t",
                                       arg=expected_ui)
                during = {name: counts[name] - before[name] for name in counts}
                assert not errors, errors
            finally:
                browser.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    print(f"\nAPI answers meanwhile: {counts}; during the UI's request: {during}")
    assert not wrong, wrong
    assert all(count > 0 for count in counts.values())
