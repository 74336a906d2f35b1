"""Hotwords change what the model writes: the planted `random:hotword` model through the Engine.

The plant (asr/models/random_weights/hotword.py) is FunASR's SeacoParaformer whose plain decoder can never
write the characters used here (U+4F29 and up) and whose SeACo path writes the winning hotword's
characters at the first token positions of every piece. So each expectation below is exact: a
piece's text with hotword H is H's characters followed by the plain text from position len(H) on.
It fails if hotwords are ignored (no H), mangled (other or reordered characters, the winner cut
off), swapped between requests (the other H), or leak past their positions (later tokens differ).
"""

from __future__ import annotations

import random

import pytest
import torch
from helpers import run_together, tiny_settings

from asr.engine import Engine
from asr.models.random_weights.hotword import (
    HOTWORD_SPEC,
    PLAIN_LIMIT,
    SLOTS,
    ensure_hotword_model,
    generate,
    remembered_ids,
)

# Hotwords of characters the plain decoder cannot write (token id = code point - 0x4E00 + 3).
WORDS = ("保修", "佳作", "信使", "促使修", "修保")
FIRST_RESERVED = chr(0x4E00 + PLAIN_LIMIT - 3)


@pytest.fixture(scope="module")
def hotword_dir(tmp_path_factory):
    """Built fresh from the current builder (under a second), not taken from a cache."""
    return generate(tmp_path_factory.mktemp("models") / "hotword")


@pytest.fixture(scope="module")
def hotword_engine(hotword_dir):
    """Default CPU batching: the files of a batch run side by side."""
    return Engine(tiny_settings(model=str(hotword_dir)))


@pytest.fixture(scope="module")
def padded_engine(hotword_engine, hotword_dir):
    """Same weights, batches padded as on a GPU, with the padding limit lifted."""
    return Engine(tiny_settings(model=str(hotword_dir), cpu_lanes=1, padding_limit_pct=1000),
                  loaded=hotword_engine.loaded)


@pytest.fixture(scope="module")
def plain(hotword_engine, reference_wavs):
    """Segment texts per recording without hotwords."""
    results = hotword_engine.transcribe(reference_wavs, batch_size=1)
    assert all(r.ok for r in results)
    return {r.file: [s.text for s in r.segments] for r in results}


def expected(plain_text: str, hotword: str) -> str:
    """The hotword over the first positions, the plain decoder's tokens after them."""
    written = hotword[:SLOTS]
    return written[: len(plain_text)] + plain_text[len(written):]


def texts(results) -> dict[str, list[str]]:
    assert all(r.ok for r in results), [r.error for r in results]
    return {r.file: [s.text for s in r.segments] for r in results}


def assert_written(results, plain, hotword: str) -> None:
    got = texts(results)
    assert got.keys() == plain.keys()
    for file, segments in plain.items():
        assert got[file] == [expected(text, hotword) for text in segments], file


def test_the_plain_text_of_real_recordings_lacks_the_hotword_characters(plain):
    """Without hotwords: real pieces with text to overwrite, none of the characters used here."""
    assert len(plain) == 3
    for segments in plain.values():
        assert segments and all(len(text) >= SLOTS for text in segments)
        for text in segments:
            assert all(ch < FIRST_RESERVED for ch in text), text
            assert not set(text) & set("".join(WORDS))


def test_the_bias_encoder_remembers_each_word_s_characters_in_order(hotword_engine):
    """FunASR's own splitter and bias encoder: each entry holds its word's ids, <s> holds its own."""
    recognizer, model = hotword_engine.recognizer, hotword_engine.loaded.model
    words = ["保修", "佳作信", "修", "保修佳作信使促"]
    ids = recognizer.hotword_list(words)
    vocab = hotword_engine.loaded.tokenizer.token_list
    assert ["".join(vocab[i] for i in word) for word in ids[:-1]] == words
    padded = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for row, word in enumerate(ids):
        padded[row, : len(word)] = torch.tensor(word)
    with torch.inference_mode():
        held = model._hotword_representation(padded, torch.tensor([len(w) for w in ids], dtype=torch.int32))
    assert remembered_ids(held) == [word[:SLOTS] for word in ids]


@pytest.mark.parametrize("hotword", WORDS)
def test_a_hotword_is_written_and_nothing_else_changes(hotword_engine, reference_wavs, plain, hotword):
    results = hotword_engine.transcribe(reference_wavs, hotwords=hotword)
    assert_written(results, plain, hotword)
    for result in results:
        assert hotword in result.text


def test_the_characters_come_from_the_ids_in_order(hotword_engine, reference_wavs, plain):
    """A reordered word writes the reordered characters: the ids, not a fixed answer."""
    forward = texts(hotword_engine.transcribe(reference_wavs, hotwords="保修"))
    backward = texts(hotword_engine.transcribe(reference_wavs, hotwords="修保"))
    for file in plain:
        assert [t[:2] for t in forward[file]] == ["保修"] * len(plain[file])
        assert [t[:2] for t in backward[file]] == ["修保"] * len(plain[file])


def test_a_long_hotword_is_written_up_to_the_plant_s_slots(hotword_engine, reference_wavs, plain):
    word = "保修佳作信使促"  # seven characters; the plant writes six
    assert_written(hotword_engine.transcribe(reference_wavs, hotwords=word), plain, word)


@pytest.mark.parametrize("hotwords", ["保修 信使", "信使 保修", "保修，信使", ["信使", "保修"]])
def test_every_word_of_a_list_reaches_the_model(hotword_engine, reference_wavs, plain, hotwords):
    """With several hotwords the plant writes the one with the highest ids (信 > 保), wherever it
    stands in the list: a list cut to its first word, or words glued together, writes 保修."""
    results = hotword_engine.transcribe(reference_wavs, hotwords=hotwords)
    assert_written(results, plain, "信使")
    assert not any("保" in r.text or "修" in r.text for r in results)


def test_concurrent_requests_each_get_their_own_hotwords(hotword_engine, padded_engine,
                                                        reference_wavs, plain):
    """Requests released together share the batcher; none may get another's hotwords or none."""
    for engine in (hotword_engine, padded_engine):
        for _round in range(2):
            calls = [(lambda e=engine, hw=hw: e.transcribe(reference_wavs, batch_size=4, hotwords=hw))
                     for hw in ("保修", "佳作", None, "信使")]
            outcomes = run_together(calls)
            for hotword, results in zip(("保修", "佳作", "", "信使"), outcomes, strict=True):
                assert_written(results, plain, hotword)


def test_batching_does_not_change_what_a_hotword_writes(padded_engine, hotword_engine, reference_wavs,
                                                      clip_dir, plain):
    """Padded batches of files of different lengths, in any order, write exactly what each file
    writes alone, and the real recordings hold the hotword."""
    files = list(reference_wavs) + sorted(clip_dir.glob("*.wav"))
    alone = {p.name: hotword_engine.transcribe([p], batch_size=1, hotwords="佳作")[0] for p in files}
    shuffled = list(files)
    random.Random(3).shuffle(shuffled)
    for size in (3, 8):
        for order in (files, shuffled):
            results = padded_engine.transcribe(order, batch_size=size, hotwords="佳作")
            assert max(r.batch_size for r in results) == size
            for path, result in zip(order, results, strict=True):
                assert result.token_ids == alone[path.name].token_ids, (path.name, size)
    assert_written([alone[p.name] for p in reference_wavs], plain, "佳作")


def test_the_model_is_built_once_under_its_name(tmp_path):
    directory = ensure_hotword_model(HOTWORD_SPEC, tmp_path)
    written = (directory / "model.pt").stat().st_mtime_ns
    assert ensure_hotword_model(HOTWORD_SPEC, tmp_path) == directory
    assert (directory / "model.pt").stat().st_mtime_ns == written
    for name in ("config.yaml", "tokens.json", "am.mvn", "seg_dict", "configuration.json"):
        assert (directory / name).is_file()
    with pytest.raises(ValueError, match="random:hotword"):
        ensure_hotword_model("random:tiny", tmp_path)


def test_the_planted_model_loads_by_name_like_any_random_build(tmp_path, reference_wavs, plain):
    """`--model random:hotword` (what the faces' tests use) resolves to the same weights as the
    fixture's fresh build, and its hotword path decides the text the same way."""
    import json

    settings = tiny_settings(model=HOTWORD_SPEC, cache_dir=str(tmp_path))
    by_name = Engine(settings)
    assert by_name.loaded.directory.name.startswith("random-hotword-v")
    same = json.loads((by_name.loaded.directory / "configuration.json").read_text(encoding="utf-8"))
    assert same["generated_by"].startswith("seaco-webui planted hotword model")
    assert_written(by_name.transcribe(reference_wavs, hotwords="保修"), plain, "保修")


def test_past_fifty_hotwords_each_file_gets_its_own_filter(hotword_dir, reference_wavs):
    """FunASR's filter keeps the 50 hotwords that best match batch row 0 for every row; the
    recognizer then decodes each file of a padded batch alone, so a long list biases each file by
    its own audio and batching still changes nothing."""
    settings = tiny_settings(model=str(hotword_dir), cpu_lanes=1, padding_limit_pct=1000,
                             **{"hotwords.max_count": 80})
    padded = Engine(settings)
    words = [chr(0x4E00 + PLAIN_LIMIT - 3 + i) + chr(0x4E00 + PLAIN_LIMIT + 40 + i) for i in range(60)]
    calls: list[int] = []
    decode = padded.recognizer.model._seaco_decode_with_ASF

    def counted(encoder_out, *args, **kwargs):
        calls.append(encoder_out.shape[0])
        return decode(encoder_out, *args, **kwargs)

    padded.recognizer.model._seaco_decode_with_ASF = counted
    try:
        alone = [padded.transcribe([path], hotwords=words, batch_size=1)[0] for path in reference_wavs]
        calls.clear()
        together = padded.transcribe(reference_wavs, hotwords=words, batch_size=3)
        assert calls and set(calls) == {1}  # no call decoded two files with one filter
        assert [r.token_ids for r in together] == [r.token_ids for r in alone]
        calls.clear()
        padded.transcribe(reference_wavs, hotwords=words[:10], batch_size=3)
        assert max(calls) > 1  # a short list keeps the padded batch whole
    finally:
        del padded.recognizer.model._seaco_decode_with_ASF


def test_word_files_and_named_lists(tmp_path):
    from asr.recognition.hotword_lists import NamedLists, read_word_file
    from asr.recognition.hotwords import HotwordError

    listed = tmp_path / "words.txt"
    listed.write_text("# 公司\n保修\n\n佳作  # a comment\n保修\n", encoding="utf-8")
    assert read_word_file(listed, 10, 20) == ["保修", "佳作"]
    listed.write_text("阿里巴巴 20\n", encoding="utf-8")
    with pytest.raises(HotwordError, match="weight"):
        read_word_file(listed, 10, 20)
    lists = NamedLists(tmp_path / "hotwords.yaml", 10, 20)
    assert lists.names() == []
    assert lists.save("医疗", "心电图 血压，血糖") == ["心电图", "血压", "血糖"]
    lists.save("法律", ["合同", "仲裁"])
    assert lists.names() == ["医疗", "法律"] and lists.get("法律") == ["合同", "仲裁"]
    with pytest.raises(HotwordError, match="no hotword list named"):
        lists.get("金融")
    with pytest.raises(HotwordError, match="the limit is 20"):
        lists.save("长", ["长" * 21])
    lists.delete("医疗")
    assert NamedLists(tmp_path / "hotwords.yaml", 10, 20).names() == ["法律"]


def test_the_command_line_reads_a_word_file_and_a_named_list(tmp_path, reference_wavs):
    import json
    import subprocess
    import sys

    from asr.settings import PROJECT_ROOT

    config = tmp_path / "config.yaml"
    config.write_text(f"hotwords:\n  lists_file: {tmp_path / 'lists.yaml'}\npunctuation: off\n",
                      encoding="utf-8")
    (tmp_path / "lists.yaml").write_text("客服:\n  - 佳作\n", encoding="utf-8")
    (tmp_path / "words.txt").write_text("保修\n", encoding="utf-8")

    def text(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "asr", "transcribe", str(reference_wavs[0]), "--model",
                               HOTWORD_SPEC, "--config", str(config), "--json", *extra],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)[0]["text"]

    assert text("--hotwords-file", str(tmp_path / "words.txt")).startswith("保修")
    assert text("--hotword-list", "客服").startswith("佳作")
