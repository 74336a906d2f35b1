"""The single-file and batch tabs' speakers, numbers and hotword lists, through a real web app
driven by gradio_client as a user's script would drive it.

Hotwords are proven with the planted model (`random:hotword`): its text holds a hotword's
characters only when that hotword reached the model, so a face that drops, mangles or swaps
hotwords fails here. Speakers come from a conversation of real voices (tests/audio) labelled by
GE2E's real weights; expectations come from the engine itself, never from literals.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import srt
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import run_together, running_ui, tiny_settings, write_conversation

from asr.engine import Engine
from asr.models.random_weights.hotword import HOTWORD_SPEC
from asr.text import export
from ui.speaker_names import renamed

pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword")

TYPED, LISTED, SAVED = "保修", "佳作", "信使"  # characters the plain decoder never writes
PLANTED = set(TYPED + LISTED + SAVED)


@pytest.fixture(scope="module")
def served(tmp_path_factory, reference_wavs):
    """The app on the planted model, with GE2E for speakers, a lists file holding 客服 = [佳作] and
    an allowed folder of two real recordings."""
    base = tmp_path_factory.mktemp("faces")
    lists = base / "config" / "hotwords.yaml"
    lists.parent.mkdir()
    lists.write_text("客服:\n  - 佳作\n", encoding="utf-8")
    allowed = base / "allowed"
    (allowed / "calls").mkdir(parents=True)
    for wav in reference_wavs[:2]:
        (allowed / "calls" / wav.name).write_bytes(wav.read_bytes())
    talk, talk_path, _ = write_conversation(base)
    settings = tiny_settings(model=HOTWORD_SPEC, speaker_model="ge2e", vad="silero",
                             **{"hotwords.lists_file": str(lists), "batch.allowed_dirs": [str(allowed)],
                                "batching.max_wait_ms": 200})
    engine = Engine(settings)
    with running_ui(engine, base / "gradio-tmp") as url:
        yield {"engine": engine, "url": url, "lists": lists, "folder": allowed / "calls", "talk": talk_path}


@pytest.fixture(scope="module")
def client(served):
    return Client(served["url"], verbose=False)


def by_suffix(files) -> dict[str, Path]:
    return {Path(f).suffix: Path(f) for f in files}


def assert_plain(text: str) -> None:
    assert text and not set(text) & PLANTED, text


# ---- hotwords: typed and from a named list, on every face of the two tabs ----------------------

def test_the_single_tab_delivers_typed_hotwords_and_a_named_list(client, reference_wavs):
    wav = handle_file(str(reference_wavs[0]))
    assert_plain(client.predict(wav, "", 2, api_name="/transcribe_file")[0])
    assert client.predict(wav, TYPED, 2, api_name="/transcribe_file")[0].startswith(TYPED)
    listed = client.predict(wav, "", 2, hotword_list="客服", api_name="/transcribe_file")[0]
    assert listed.startswith(LISTED)
    # Typed words and the list's go together: the plant writes the word with the highest ids, here
    # the list's (佳 U+4F73 > 作 U+4F5C), while the typed word alone would be written.
    both = client.predict(wav, "作佳", 2, hotword_list="客服", api_name="/transcribe_file")[0]
    assert both.startswith(LISTED)
    with pytest.raises(AppError, match="no hotword list named '法律'"):
        client.predict(wav, "", 2, hotword_list="法律", api_name="/transcribe_file")


def test_the_batch_tab_delivers_typed_hotwords_and_a_named_list(client, reference_wavs):
    files = [handle_file(str(w)) for w in reference_wavs[:2]]
    plain, _, _ = client.predict(files, "", 2, api_name="/transcribe_batch")
    for row in plain["data"]:
        assert_plain(row[1])
    typed, _, exports = client.predict(files, TYPED, 2, None, ["txt"], api_name="/transcribe_batch")
    assert [row[1][:2] for row in typed["data"]] == [TYPED, TYPED]
    with zipfile.ZipFile(next(f for f in exports if f.endswith(".zip"))) as archive:
        texts = [archive.read(n).decode() for n in archive.namelist() if n.endswith(".txt")]
    assert len(texts) == 2 and all(t.startswith(TYPED) for t in texts)
    listed, _, _ = client.predict(files, "", 2, hotword_list="客服", api_name="/transcribe_batch")
    assert [row[1][:2] for row in listed["data"]] == [LISTED, LISTED]


def test_the_folder_run_delivers_typed_hotwords_and_a_named_list(client, served):
    folder = str(served["folder"])
    plain, _, _ = client.predict(folder, "", 2, api_name="/transcribe_folder")
    assert len(plain["data"]) == 2
    for row in plain["data"]:
        assert_plain(row[1])
    typed, _, _ = client.predict(folder, TYPED, 2, api_name="/transcribe_folder")
    assert [row[1][:2] for row in typed["data"]] == [TYPED, TYPED]
    listed, _, _ = client.predict(folder, "", 2, hotword_list="客服", api_name="/transcribe_folder")
    assert [row[1][:2] for row in listed["data"]] == [LISTED, LISTED]


def test_concurrent_single_tab_requests_each_get_their_own_hotwords(served, reference_wavs):
    """Two pages at once (two sessions) with different hotwords: the batcher may put their pieces
    in one batch, yet each text starts with its own word and holds none of the other's."""
    wav = str(reference_wavs[0])
    clients = [Client(served["url"], verbose=False) for _ in range(2)]
    words = [TYPED, SAVED]
    texts = run_together([lambda c=c, w=w: c.predict(handle_file(wav), w, 4, api_name="/transcribe_file")[0]
                          for c, w in zip(clients, words, strict=True)])
    for text, word, other in zip(texts, words, reversed(words), strict=True):
        assert text.startswith(word) and not set(other) & set(text), (word, text)


def test_lists_are_saved_chosen_and_deleted_on_the_server(client, served, reference_wavs):
    wav = handle_file(str(reference_wavs[0]))
    message, lists = client.predict("医疗", f"{SAVED}，促使", api_name="/save_hotword_list")
    assert "医疗" in message and lists == {"客服": ["佳作"], "医疗": [SAVED, "促使"]}
    assert yaml.safe_load(served["lists"].read_text(encoding="utf-8"))["医疗"] == [SAVED, "促使"]
    assert client.predict(api_name="/hotword_lists") == lists
    # 信使 has the higher ids of the two, so the plant writes it: the list reached the model.
    assert client.predict(wav, "", 2, hotword_list="医疗", api_name="/transcribe_file")[0].startswith(SAVED)
    with pytest.raises(AppError, match="may only hold letters"):
        client.predict("坏的", "a/b", api_name="/save_hotword_list")
    with pytest.raises(AppError, match="list name"):
        client.predict("../etc", SAVED, api_name="/save_hotword_list")
    message, lists = client.predict("医疗", api_name="/delete_hotword_list")
    assert lists == {"客服": ["佳作"]}
    assert "医疗" not in yaml.safe_load(served["lists"].read_text(encoding="utf-8"))
    with pytest.raises(AppError, match="no hotword list named '医疗'"):
        client.predict(wav, "", 2, hotword_list="医疗", api_name="/transcribe_file")


# ---- speakers and their names --------------------------------------------------------------------

def test_speakers_show_in_the_rows_and_renamed_downloads_carry_the_names(served):
    engine, talk = served["engine"], served["talk"]
    expected = engine.transcribe([talk], speakers="auto")[0]
    min_s = engine.settings.subtitles.min_s
    assert expected.speakers == ["S1", "S2", "S3"]
    client = Client(served["url"], verbose=False)  # a page of its own: renaming is per session
    with pytest.raises(AppError, match="no result with speakers"):
        client.predict({"headers": ["Speaker", "Name"], "data": [["S1", "主持人"]]},
                       api_name="/rename_speakers")
    *_, downloads, rows = client.predict(handle_file(str(talk)), "", 2, speakers="auto",
                                         api_name="/transcribe_file")
    assert rows["headers"] == ["Start", "End", "Text", "Speaker"]
    assert rows["data"] == [[export.clock(s.start_s), export.clock(s.end_s), s.text, s.speaker]
                            for s in expected.segments]
    assert "S1: " in by_suffix(downloads)[".txt"].read_text(encoding="utf-8")

    names = {"headers": ["Speaker", "Name"], "data": [["S1", " 主持人 "], ["S2", "嘉宾\t甲"], ["S3", ""]]}
    downloads, rows, message = client.predict(names, api_name="/rename_speakers")
    wanted = {"S1": "主持人", "S2": "嘉宾 甲"}  # trimmed, one line; S3 left unnamed keeps its label
    assert "2" in message
    named = renamed(expected, wanted)
    assert [row[3] for row in rows["data"]] == [s.speaker for s in named.segments]
    assert {row[3] for row in rows["data"]} == {"主持人", "嘉宾 甲", "S3"}
    files = by_suffix(downloads)
    assert set(files) == {".txt", ".json", ".srt", ".vtt", ".tsv"}
    for fmt in ("txt", "srt", "vtt", "tsv"):  # each exactly as export writes the named result
        assert files[f".{fmt}"].read_text(encoding="utf-8") == export.render(named, fmt, min_s)
    cues = list(srt.parse(files[".srt"].read_text(encoding="utf-8")))
    assert cues[0].content == f"{named.segments[0].speaker}: {named.segments[0].text}"
    assert "<v 主持人>" in files[".vtt"].read_text(encoding="utf-8")
    record = json.loads(files[".json"].read_text(encoding="utf-8"))
    assert record["speakers"] == ["主持人", "嘉宾 甲", "S3"]
    assert record["segments"] == json.loads(export.render(named, "json"))["segments"]
    assert {w["speaker"] for s in record["segments"] for w in s["words"]} == {"主持人", "嘉宾 甲", "S3"}

    # Names apply to the kept result afresh each time: S1 and S3 given one name become one speaker.
    merged = {"headers": ["Speaker", "Name"], "data": [["S1", "甲"], ["S3", "甲"]]}
    downloads, rows, _ = client.predict(merged, api_name="/rename_speakers")
    record = json.loads(by_suffix(downloads)[".json"].read_text(encoding="utf-8"))
    assert record["speakers"] == ["甲", "S2"]


def test_without_speakers_the_rows_keep_three_columns(client, reference_wavs):
    *_, rows = client.predict(handle_file(str(reference_wavs[1])), "", 2, api_name="/transcribe_file")
    assert rows["headers"] == ["Start", "End", "Text"] and all(len(r) == 3 for r in rows["data"])
    with pytest.raises(AppError, match="speakers must be off, auto or a whole number"):
        client.predict(handle_file(str(reference_wavs[1])), "", 2, speakers="many",
                       api_name="/transcribe_file")


def test_speakers_and_numbers_reach_the_batch_zip(client, served):
    """The batch tab's speakers and ITN reach every file's exports."""
    files = [handle_file(str(served["talk"]))]
    _, _, exports = client.predict(files, "", 2, None, ["json", "srt"], "2", True,
                                   api_name="/transcribe_batch")
    with zipfile.ZipFile(next(f for f in exports if f.endswith(".zip"))) as archive:
        record = json.loads(archive.read("01_talk.wav.json"))
        subtitles = archive.read("01_talk.wav.srt").decode("utf-8")
    assert record["speakers"] == ["S1", "S2"] and "raw_text" in record
    assert all(c.content.startswith(("S1: ", "S2: ")) for c in srt.parse(subtitles))


# ---- numbers as digits ---------------------------------------------------------------------------

def test_the_itn_box_reaches_the_result_and_keeps_the_raw_text(client, served, reference_wavs):
    """With itn the JSON download keeps the text as recognised beside the normalised one (the
    planted model writes no numbers, so the two are equal: what matters is that the stage ran)."""
    wav = reference_wavs[0]
    on = client.predict(handle_file(str(wav)), "", 2, None, ["json"], None, True, api_name="/transcribe_file")
    record = json.loads(by_suffix(on[5])[".json"].read_text(encoding="utf-8"))
    expected = served["engine"].transcribe([wav], itn=True, timestamps=False)[0]
    assert record["raw_text"] == expected.raw_text and record["text"] == expected.text == on[0]
    assert all("raw_text" in s for s in record["segments"])
    off = client.predict(handle_file(str(wav)), "", 2, None, ["json"], None, False,
                         api_name="/transcribe_file")
    assert "raw_text" not in json.loads(by_suffix(off[5])[".json"].read_text(encoding="utf-8"))
