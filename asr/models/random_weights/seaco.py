"""Generate FunASR-format SeACo-Paraformer model directories with random weights.

Real weights come from ModelScope, which development and CI machines cannot reach. A generated
directory has the exact ModelScope layout (config.yaml, model.pt, tokens.json, am.mvn,
configuration.json) and is built by FunASR's own SeacoParaformer class, so every code path,
shape and cost is the real one; only the text it produces is meaningless.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
import yaml

from asr.models.random_weights.base import (
    RandomBuild,
    cmvn_text,
    configuration_json,
    instantiate,
    write_model_dir,
)

log = logging.getLogger(__name__)

SIZES = ("tiny", "large")
GENERATOR_VERSION = 3  # bump when the generated layout or weights change

REFERENCE_CONFIG = Path(__file__).with_name("seaco_large_config.yaml")

# The real vocabulary has 8404 entries with the "no bias" class at 8377; the large model keeps
# those numbers so its output layers have the real shapes.
_VOCAB_SIZE = {"tiny": 600, "large": 8404}
_NO_BIAS = {"tiny": 577, "large": 8377}

_TINY_OVERRIDES = {
    "model_conf": {"inner_dim": 64},
    "encoder_conf": {"output_size": 64, "linear_units": 128, "num_blocks": 2},
    "decoder_conf": {"linear_units": 128, "num_blocks": 2, "att_layer_num": 2},
    "seaco_decoder_conf": {"linear_units": 64, "num_blocks": 1},
    "predictor_conf": {"idim": 64},
}


def _deep_update(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def build_config(size: str) -> dict:
    """The real architecture config, shrunk for `tiny`, with training-only sections kept as-is."""
    config = yaml.safe_load(REFERENCE_CONFIG.read_text(encoding="utf-8"))
    config["model_conf"]["NO_BIAS"] = _NO_BIAS[size]
    if size == "tiny":
        _deep_update(config, copy.deepcopy(_TINY_OVERRIDES))
    return config


def build_vocabulary(size: str) -> list[str]:
    """<blank>, <s>, </s>, CJK characters in code-point order, then <unk> last, as the real list."""
    count = _VOCAB_SIZE[size]
    chars = [chr(0x4E00 + i) for i in range(count - 4)]
    return ["<blank>", "<s>", "</s>", *chars, "<unk>"]


def _cmvn_text(dim: int, generator: torch.Generator) -> str:
    """am.mvn with plausible fbank statistics."""
    means = -(10.0 + 4.0 * torch.rand(dim, generator=generator))
    scales = 0.2 + 0.2 * torch.rand(dim, generator=generator)
    return cmvn_text(means, scales)


def _configuration_json() -> dict:
    return configuration_json("auto-speech-recognition", {
        "tokenizer_conf": {"token_list": "tokens.json", "seg_dict": "seg_dict"},
        "frontend_conf": {"cmvn_file": "am.mvn"},
    }, f"random model generator v{GENERATOR_VERSION}")


def _instantiate(config: dict, vocab_size: int, seed: int) -> torch.nn.Module:
    frontend_conf = config["frontend_conf"]
    kwargs = copy.deepcopy(config)
    kwargs.update(config["model_conf"])
    model = instantiate(config["model"], seed, vocab_size=vocab_size,
                        input_size=frontend_conf["n_mels"] * frontend_conf["lfr_m"], **kwargs)
    _calibrate_hotword_head(model, config["model_conf"]["NO_BIAS"])
    return model


def _calibrate_hotword_head(model: torch.nn.Module, no_bias: int) -> None:
    """Make the SeACo head prefer "no bias", as a trained model does when no hotword is spoken.

    With plain random weights the head picks a random token at every position and the hotword
    branch overrides the decoder everywhere, which no real model does.
    """
    with torch.no_grad():
        model.hotword_output_layer.bias[no_bias] += 50.0


def generate(size: str, target: Path, seed: int = 0) -> Path:
    """Write a complete random-weight model directory at `target` (atomically)."""
    config = build_config(size)
    vocab = build_vocabulary(size)
    generator = torch.Generator().manual_seed(seed)
    model = _instantiate(config, len(vocab), seed)
    dim = config["frontend_conf"]["n_mels"] * config["frontend_conf"]["lfr_m"]
    write_model_dir(target, model.state_dict(), config, texts={
        "tokens.json": json.dumps(vocab, ensure_ascii=False),
        # The real model ships a seg_dict that maps words to tokens; FunASR uses it to split
        # hotwords into characters. Ours maps every character to itself.
        "seg_dict": "".join(f"{t} {t}\n" for t in vocab if not t.startswith("<")),
        "am.mvn": _cmvn_text(dim, generator),
    }, configuration=_configuration_json())
    params = sum(p.numel() for p in model.parameters())
    log.info("generated random:%s model (%.1f M parameters) at %s", size, params / 1e6, target)
    return target


SEACO = RandomBuild(label="model", folder="random", sizes=SIZES, version=GENERATOR_VERSION,
                    files=("model.pt", "config.yaml", "configuration.json", "tokens.json", "seg_dict",
                           "am.mvn"),
                    generate=lambda size, target: generate(size, target))
