"""Speakers, numbers and hotwords through the OpenAI-compatible API, called with the official
client: OpenAI's diarized_json and known voices on real voices, verbose_json's speakers and raw
text, and hotwords (OpenAI's keywords[], extra_body, prompt, a named list) proven by the planted
model, whose text holds a hotword only when it reached the model."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile
from helpers import free_port, run_together, tiny_settings, write_conversation
from openai import BadRequestError, OpenAI

import api
from asr.engine import Engine
from asr.models.random_weights.hotword import HOTWORD_SPEC
from benchmarks.der import RATE

pytestmark = pytest.mark.filterwarnings("ignore:path is deprecated:DeprecationWarning")


@contextlib.contextmanager
def serving(engine: Engine) -> Iterator[OpenAI]:
    """The API alone (the UI is not needed here) on a free port, as launch.py serves it."""
    app = api.build_api(engine)
    port = free_port()
    server = api.serve(app, "127.0.0.1", port)
    try:
        yield OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    finally:
        server.should_exit = True
        server.thread.join(30)


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    _, path, v = write_conversation(tmp_path_factory.mktemp("talk"))
    return path, v


@pytest.fixture(scope="module")
def speaker_api(loaded_tiny) -> Iterator[tuple[OpenAI, Engine]]:
    engine = Engine(tiny_settings(speaker_model="ge2e", vad="silero"), loaded=loaded_tiny)
    with serving(engine) as client:
        yield client, engine


def _data_url(samples: np.ndarray) -> str:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_diarized_json_is_openais_shape_with_the_engines_speakers(speaker_api, talk):
    client, engine = speaker_api
    path, _ = talk
    with path.open("rb") as audio:
        got = client.audio.transcriptions.create(model="whisper-1", file=audio,
                                                 response_format="diarized_json")
    expected = engine.transcribe([path], speakers="auto")[0]
    assert got.text == expected.text
    letters = {"S1": "A", "S2": "B", "S3": "C"}
    assert [(s.speaker, s.text, s.type) for s in got.segments] == [
        (letters[s.speaker], s.text, "transcript.text.segment") for s in expected.segments]
    assert got.segments[0].id == "seg_000" and got.duration == pytest.approx(expected.duration_s, abs=1e-3)


def test_known_voices_name_the_speakers_and_verbose_json_carries_them(speaker_api, talk):
    client, _ = speaker_api
    path, v = talk
    with path.open("rb") as audio:
        got = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="diarized_json",
            known_speaker_names=["主持人", "嘉宾"],
            known_speaker_references=[_data_url(v["B"]), _data_url(v["C"][: 5 * RATE])])
    assert list(dict.fromkeys(s.speaker for s in got.segments)) == ["A", "主持人", "嘉宾"]
    with path.open("rb") as audio:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=audio,
                                                     response_format="verbose_json",
                                                     extra_body={"speakers": 2})
    speakers = {s.model_extra["speaker"] for s in verbose.segments}
    assert speakers == {"S1", "S2"}
    with path.open("rb") as audio, pytest.raises(BadRequestError, match="one clip per name"):
        client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="diarized_json",
                                           known_speaker_names=["甲", "乙"],
                                           known_speaker_references=[_data_url(v["B"])])
    with path.open("rb") as audio, pytest.raises(BadRequestError, match="reference clip is"):
        client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="diarized_json",
                                           known_speaker_names=["甲"],
                                           known_speaker_references=[_data_url(v["B"][: RATE // 4])])


def test_itn_from_extra_body_keeps_the_raw_text(speaker_api, talk):
    client, engine = speaker_api
    path, _ = talk
    with path.open("rb") as audio:
        on = client.audio.transcriptions.create(model="whisper-1", file=audio,
                                                response_format="verbose_json", extra_body={"itn": True})
    with path.open("rb") as audio:
        off = client.audio.transcriptions.create(model="whisper-1", file=audio,
                                                 response_format="verbose_json")
    expected = engine.transcribe([path], itn=True)[0]
    assert on.text == expected.text and on.model_extra["raw_text"] == expected.raw_text
    assert "raw_text" not in (off.model_extra or {})


@pytest.fixture(scope="module")
def hotword_api(tmp_path_factory) -> Iterator[OpenAI]:
    lists = tmp_path_factory.mktemp("lists") / "hotwords.yaml"
    lists.write_text("客服:\n  - 佳作\n", encoding="utf-8")
    engine = Engine(tiny_settings(model=HOTWORD_SPEC, **{"hotwords.lists_file": str(lists),
                                                         "batching.max_wait_ms": 200}))
    with serving(engine) as client:
        yield client


def _text(client: OpenAI, path, **options) -> str:
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio, **options).text


def test_every_hotword_field_reaches_the_model(hotword_api, reference_wavs):
    """The planted model writes a hotword's characters only when the hotword reached it."""
    path = reference_wavs[0]
    plain = _text(hotword_api, path)
    assert not {"保", "修", "佳", "作", "信", "使"} & set(plain)
    assert _text(hotword_api, path, extra_body={"hotwords": "保修"}).startswith("保修")
    assert _text(hotword_api, path, prompt="保修").startswith("保修")
    assert _text(hotword_api, path, keywords=["信使"]).startswith("信使")  # OpenAI's own field
    assert _text(hotword_api, path, extra_body={"hotword_list": "客服"}).startswith("佳作")
    with pytest.raises(BadRequestError, match="no hotword list named"):
        _text(hotword_api, path, extra_body={"hotword_list": "法律"})


def test_concurrent_requests_each_get_their_own_hotwords(hotword_api, reference_wavs):
    words = ["保修", "佳作", "信使", "促使修"]
    texts = run_together([lambda w=w: _text(hotword_api, reference_wavs[0], extra_body={"hotwords": w})
                          for w in words])
    for word, text in zip(words, texts, strict=True):
        assert text.startswith(word), (word, text)
        assert not any(other in text for other in words if other != word and word not in other)


def test_the_openapi_schema_lists_the_new_fields(hotword_api):
    import httpx

    schema = httpx.get(str(hotword_api.base_url).rstrip("/") + "/openapi.json", timeout=30).json()
    body = schema["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]
    fields = form["schema"]["properties"]
    assert {"speakers", "itn", "hotword_list", "keywords[]", "known_speaker_names[]"} <= set(fields)
    assert "diarized_json" in fields["response_format"]["enum"]
    json.dumps(schema)  # serialisable as served
