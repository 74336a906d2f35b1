"""Punctuation: FunASR's CT-Transformer (random weights, real classes) gives one mark per word.

The random:tiny punctuation model is generated into the project's .cache on first use (seconds).
"""

from __future__ import annotations

import copy
import json
import random
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from helpers import tiny_settings

from asr.models import ModelLoadError
from asr.models.funasr import import_funasr
from asr.models.random_weights.punctuation import PUNC_LIST, build_config, build_vocabulary
from asr.models.random_weights.seaco import SEACO
from asr.models.random_weights.seaco import build_vocabulary as asr_vocabulary
from asr.text.punctuation import Punctuator, load_punctuator

ALLOWED = {"", "，", "。", "？", "、"}
SENTENCE_ENDS = {"。", "？"}
CHARS = [t for t in asr_vocabulary("tiny") if not t.startswith("<")]
ENGLISH = ["hello", "World", "GPU", "okay", "zzzunknown"]


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    settings = tiny_settings()
    return settings.resolve_path(settings.cache_dir)


@pytest.fixture(scope="module")
def punctuator(cache_dir) -> Punctuator:
    loaded = load_punctuator("random:tiny", "cpu", cache_dir)
    assert loaded is not None
    return loaded


def chinese(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(CHARS) for _ in range(count)]


def mixed(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(ENGLISH) if rng.random() < 0.1 else rng.choice(CHARS) for _ in range(count)]


def funasr_classes(punctuator: Punctuator, text: str, model: torch.nn.Module | None = None) -> list[int]:
    """FunASR's own `CTTransformer.inference` on `text`: its `punc_array`."""
    model = model or punctuator.model
    with torch.inference_mode():
        results, _ = model.inference([text], key=["k"], tokenizer=punctuator.tokenizer, device="cpu")
    return results[0]["punc_array"].tolist()


def test_off_gives_none(cache_dir):
    assert load_punctuator("off", "cpu", cache_dir) is None


def test_random_tiny_loads_as_ctransformer(punctuator):
    assert type(punctuator.model).__name__ == "CTTransformer"
    assert punctuator.directory.name == "random-punc-tiny-v1"
    assert punctuator.marks == ["", "", "，", "。", "？", "、"]
    assert punctuator.parameters > 0


def test_generated_directory_has_modelscope_layout(punctuator):
    directory = punctuator.directory
    for name in ("config.yaml", "model.pt", "tokens.json", "configuration.json"):
        assert (directory / name).is_file(), name
    config = yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "CTTransformer" and config["encoder"] == "SANMEncoder"
    assert config["model_conf"]["punc_list"] == PUNC_LIST
    tokens = json.loads((directory / "tokens.json").read_text(encoding="utf-8"))
    assert set(CHARS) <= set(tokens) and "hello" in tokens and tokens[-1] == "<unk>"
    assert {t for t in asr_vocabulary("large") if not t.startswith("<")} <= set(tokens)
    meta = json.loads((directory / "configuration.json").read_text(encoding="utf-8"))
    assert meta["file_path_metas"]["tokenizer_conf"]["token_list"] == "tokens.json"


def test_large_config_is_the_real_architecture():
    config = build_config("large")
    assert config["encoder_conf"]["output_size"] == config["model_conf"]["att_unit"] == 256
    assert config["encoder_conf"]["num_blocks"] == 4 and config["encoder_conf"]["attention_heads"] == 8
    assert len(build_vocabulary()) == len(set(build_vocabulary()))


def test_funasr_automodel_runs_the_generated_directory(punctuator):
    auto = import_funasr().AutoModel(model=str(punctuator.directory), device="cpu", ncpu=2,
                                     disable_update=True, disable_pbar=True)
    output = auto.generate(input="".join(chinese(30, seed=5)))
    assert output[0]["text"][-1] in SENTENCE_ENDS


def test_missing_directory_files_fail_clearly(tmp_path, cache_dir):
    with pytest.raises(ModelLoadError, match="lacks config.yaml, model.pt"):
        load_punctuator(str(tmp_path), "cpu", cache_dir)


def test_broken_directory_fails_clearly(tmp_path, cache_dir):
    (tmp_path / "config.yaml").write_text("model: NoSuchModel\n", encoding="utf-8")
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="could not load the punctuation model"):
        load_punctuator(str(tmp_path), "cpu", cache_dir)


def test_non_ct_directory_is_refused(cache_dir):
    asr_dir = SEACO.ensure("random:tiny", cache_dir / "models")
    with pytest.raises(ModelLoadError, match="holds a SeacoParaformer, but the punctuation model must be"):
        load_punctuator(str(asr_dir), "cpu", cache_dir)


def test_unknown_random_size_fails_clearly(cache_dir):
    with pytest.raises(ModelLoadError, match="size must be one of tiny, large"):
        load_punctuator("random:huge", "cpu", cache_dir)


@pytest.mark.parametrize("count", [0, 1, 19, 20, 21, 57, 250, 600])
def test_one_mark_per_word(punctuator, count):
    words = mixed(count, seed=count)
    marks = punctuator.punctuate(words)
    assert len(marks) == len(words)
    assert set(marks) <= ALLOWED
    if count:
        assert marks[-1] in SENTENCE_ENDS


def test_english_words_are_looked_up_in_lower_case(punctuator):
    ids = punctuator.token_ids(["World", "GPU", "hello", "zzzunknown", "一"])
    token2id = punctuator.tokenizer.token2id
    assert ids == [token2id["world"], token2id["gpu"], token2id["hello"], punctuator.tokenizer.unk_id,
                   token2id["一"]]


@pytest.mark.parametrize("count", [15, 45, 300])
def test_matches_funasr_inference_on_chinese_text(punctuator, count):
    """Chinese text: FunASR's split_words gives one token per character, so its punc_array lines
    up with our words and must be identical: same network, same windowing."""
    words = chinese(count, seed=100 + count)
    assert punctuator.punctuation_classes(words) == funasr_classes(punctuator, "".join(words))


def test_matches_funasr_inference_on_mixed_text(punctuator):
    """Lower-case English words separated by spaces also split one token per word in FunASR."""
    words = [w.lower() for w in mixed(120, seed=7)]
    text = ""
    for word in words:
        text += f" {word}" if word.isascii() else word
    assert punctuator.punctuation_classes(words) == funasr_classes(punctuator, text.strip())


@pytest.mark.parametrize("silenced", [("。", "？"), ("。", "？", "，", "、")])
def test_long_carry_matches_funasr(punctuator, silenced):
    """No sentence ends: windows carry on past 200 words and are cut at a comma (made a 。), or,
    with no commas either, the whole text runs as one window. Both as FunASR does."""
    model = copy.deepcopy(punctuator.model)
    with torch.no_grad():
        for mark in silenced:
            model.decoder.bias[PUNC_LIST.index(mark)] = -1e4
    quiet = Punctuator(spec="test", directory=punctuator.directory, model=model,
                       tokenizer=punctuator.tokenizer, device=punctuator.device)
    words = chinese(260, seed=3)  # the 11th window holds 220 words: past the limit
    classes = quiet.punctuation_classes(words)
    assert classes == funasr_classes(punctuator, "".join(words), model=model)
    marks = quiet.punctuate(words)
    inner_ends = [i for i, m in enumerate(marks[:-1]) if m == "。"]
    if "，" in silenced:
        assert inner_ends == [] and set(marks[:-1]) == {""}
    else:
        assert inner_ends  # forced cuts at commas


def test_random_model_gives_a_varied_mix(punctuator):
    marks = punctuator.punctuate(chinese(200, seed=11))
    counts = Counter(marks)
    assert counts["，"] >= 1 and counts["。"] + counts["？"] - 1 >= 1
    assert counts[""] > len(marks) / 2
    sentences = counts["。"] + counts["？"]
    assert 200 / 25 <= sentences <= 200 / 6


def test_deterministic_and_thread_safe(punctuator):
    words = mixed(120, seed=21)
    expected = punctuator.punctuate(words)
    assert punctuator.punctuate(list(words)) == expected
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(punctuator.punctuate(words))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4
