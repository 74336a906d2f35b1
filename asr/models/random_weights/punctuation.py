"""Generate FunASR-format CT-Transformer punctuation model directories with random weights.

The real punctuation model (iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch) comes from
ModelScope, which development and CI machines cannot reach. A generated directory has the
ModelScope layout that model uses (config.yaml, model.pt, tokens.json, configuration.json), is
built by FunASR's own CTTransformer class and loads through `AutoModel.build_model`, so every code
path is the real one. `large` has the real network (SAN-M encoder, 4 blocks of 256, 8 heads);
only its vocabulary is ours, so its embedding table is smaller than the real 272727 rows (a
lookup: the cost per word is the same). `tiny` shrinks the encoder.

Plain random weights punctuate nonsensically: some class wins almost everywhere. The output layer
is therefore calibrated on sample text so that most words get no mark and commas and sentence
ends come at rates like real speech, still depending on the words, so sentence cutting downstream
sees real variety.
"""

from __future__ import annotations

import copy
import json
import logging
import string
from pathlib import Path

import torch

from asr.models.random_weights.base import RandomBuild, configuration_json, instantiate, write_model_dir
from asr.models.random_weights.seaco import build_vocabulary as build_asr_vocabulary

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the generated layout or weights change

PUNC_LIST = ["<unk>", "_", "，", "。", "？", "、"]  # the real model's classes, in its order
SENTENCE_END_ID = 3

# How often each class should win on random text: about one sentence end per 13 words with
# commas in between, as in transcribed speech. "<unk>" (never a real prediction) gets none.
TARGET_RATES = {"_": 0.80, "，": 0.11, "。": 0.06, "？": 0.015, "、": 0.015}

# A few English words (lower case, as ASR output and the real vocabulary hold them), so mixed
# Chinese/English transcripts are looked up instead of all mapping to <unk>.
ENGLISH_WORDS = (
    "a an and are as at be but by can do for from go have he hello i if in is it me my no not of ok "
    "okay on or please say she so that the this to up we what when who why will with world yes you "
    "ai api app cpu gpu asr email wifi iphone android python google microsoft"
).split()

# The real config (model_conf, encoder_conf, tokenizer) of the ModelScope model; tiny shrinks it.
_REAL_CONFIG: dict = {
    "model": "CTTransformer",
    "model_conf": {
        "ignore_id": 0,
        "embed_unit": 256,
        "att_unit": 256,
        "dropout_rate": 0.1,
        "punc_list": PUNC_LIST,
        "punc_weight": [1.0] * len(PUNC_LIST),
        "sentence_end_id": SENTENCE_END_ID,
    },
    "encoder": "SANMEncoder",
    "encoder_conf": {
        "input_size": 256,
        "output_size": 256,
        "attention_heads": 8,
        "linear_units": 1024,
        "num_blocks": 4,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.0,
        "input_layer": "pe",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>"},
}

_TINY_OVERRIDES = {
    "model_conf": {"embed_unit": 64, "att_unit": 64},
    "encoder_conf": {"input_size": 64, "output_size": 64, "attention_heads": 4, "linear_units": 128,
                     "num_blocks": 2},
}


def build_config(size: str) -> dict:
    config = copy.deepcopy(_REAL_CONFIG)
    if size == "tiny":
        for section, values in _TINY_OVERRIDES.items():
            config[section].update(values)
    return config


def build_vocabulary() -> list[str]:
    """Specials, every CJK character of the ASR random models (large covers tiny), ASCII letters
    and digits, some English words, <unk> last. One list for both sizes."""
    cjk = [t for t in build_asr_vocabulary("large") if not t.startswith("<")]
    singles = list(string.ascii_lowercase + string.digits)
    words = [w for w in ENGLISH_WORDS if w not in singles]
    return ["<blank>", "<s>", "</s>", *cjk, *singles, *words, "<unk>"]


def _configuration_json() -> dict:
    return configuration_json("punctuation", {"tokenizer_conf": {"token_list": "tokens.json"}},
                              f"random punctuation generator v{GENERATOR_VERSION}")


def _instantiate(config: dict, vocab_size: int, seed: int) -> torch.nn.Module:
    kwargs = copy.deepcopy(config)
    kwargs.update(kwargs.pop("model_conf"))
    model = instantiate(config["model"], seed, vocab_size=vocab_size, **kwargs)
    _calibrate_output_layer(model, vocab_size, seed)
    return model


def _fit_biases(logits: torch.Tensor, target: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """Biases that make argmax(logits + bias) pick each class at about `target`'s rate.

    A class picked too often is pushed down, one picked too rarely pulled up, by the log of the
    ratio; a handful of classes settles within a few hundred cheap steps."""
    bias = torch.zeros(logits.shape[1])
    wanted = target.clamp_min(1e-6)
    for step in range(steps):
        picked = (logits + bias).argmax(dim=1)
        rate = torch.bincount(picked, minlength=logits.shape[1]).float() / logits.shape[0]
        rate = rate.clamp_min(0.5 / logits.shape[0])
        bias += (0.5 if step < steps // 2 else 0.1) * (wanted.log() - rate.log())
        bias -= bias.mean()
    bias[target == 0] = -1e4
    return bias


def _calibrate_output_layer(model: torch.nn.Module, vocab_size: int, seed: int) -> None:
    """Scale the output layer to unit-size logits and bias it to realistic mark rates.

    The sample is random word ids in windows of FunASR's lengths (20 new words plus a carried
    tail), so the rates hold for the windows the punctuator really runs."""
    generator = torch.Generator().manual_seed(seed + 1)
    windows, lengths = 96, 36
    text = torch.randint(3, vocab_size - 1, (windows, lengths), generator=generator)
    text_lengths = torch.full((windows,), lengths, dtype=torch.int32)
    with torch.inference_mode():
        hidden, _, _ = model.encoder(model.embed(text), text_lengths)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    target = torch.tensor([TARGET_RATES.get(mark, 0.0) for mark in model.punc_list])
    with torch.no_grad():
        decoder = model.decoder
        logits = hidden @ decoder.weight.T
        decoder.weight /= logits.std(dim=0, keepdim=True).T.clamp_min(1e-6)
        logits = hidden @ decoder.weight.T
        decoder.bias.copy_(_fit_biases(logits, target))


def generate(size: str, target: Path, seed: int = 0) -> Path:
    """Write a complete random-weight punctuation model directory at `target` (atomically)."""
    config = build_config(size)
    vocab = build_vocabulary()
    model = _instantiate(config, len(vocab), seed)
    write_model_dir(target, model.state_dict(), config,
                    texts={"tokens.json": json.dumps(vocab, ensure_ascii=False)},
                    configuration=_configuration_json())
    params = sum(p.numel() for p in model.parameters())
    log.info("generated random:%s punctuation model (%.1f M parameters) at %s", size, params / 1e6, target)
    return target


PUNCTUATION = RandomBuild(label="punctuation model", folder="random-punc", sizes=("tiny", "large"),
                          version=GENERATOR_VERSION,
                          files=("model.pt", "config.yaml", "configuration.json", "tokens.json"),
                          generate=lambda size, target: generate(size, target))
