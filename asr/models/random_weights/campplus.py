"""Generate a FunASR CAM++ speaker-model directory with random weights.

The real `iic/speech_campplus_sv_zh-cn_16k-common` comes from ModelScope, which development and
CI machines cannot reach. A generated directory has that model's ModelScope layout (config.yaml,
configuration.json whose `file_path_metas` name the weights, and the weights as
`campplus_cn_common.bin`), is built by FunASR's own CAMPPlus class and loads through
`AutoModel.build_model`, so loading, FunASR's fbank front end and the network all run for real.

`large` is the real network (6.85 M parameters, 192-d embeddings), for speed measurements;
`tiny` keeps its depth and its 192-d output but narrows its dense blocks (0.43 M), for tests.
Random embeddings say nothing about voices: the tests that need real voices use the GE2E encoder.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
import yaml

from asr.models.random_weights.base import RandomBuild, configuration_json, instantiate, swap_in

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the generated layout or weights change
WEIGHTS_NAME = "campplus_cn_common.bin"  # the real model's file name

# The real model's config.yaml (FunASR 1.x layout).
REAL_CONFIG: dict = {
    "model": "CAMPPlus",
    "model_conf": {
        "feat_dim": 80,
        "embedding_size": 192,
        "growth_rate": 32,
        "bn_size": 4,
        "init_channels": 128,
        "config_str": "batchnorm-relu",
        "memory_efficient": True,
        "output_level": "segment",
    },
}
_TINY_OVERRIDES = {"growth_rate": 8, "bn_size": 2, "init_channels": 32}


def build_config(size: str) -> dict:
    config = copy.deepcopy(REAL_CONFIG)
    if size == "tiny":
        config["model_conf"].update(_TINY_OVERRIDES)
    return config


def generate(size: str, target: Path, seed: int = 0) -> Path:
    """Write a complete random-weight CAM++ directory at `target` (atomically)."""
    import contextlib
    import io

    config = build_config(size)
    with contextlib.redirect_stdout(io.StringIO()):
        from funasr.models.campplus import model as _campplus  # noqa: F401  (registers CAMPPlus)
    model = instantiate(config["model"], seed, **config["model_conf"])
    configuration = configuration_json("speaker-verification", {"init_param": WEIGHTS_NAME},
                                       f"random CAM++ generator v{GENERATOR_VERSION}")

    def fill(staging: Path) -> None:
        torch.save(model.state_dict(), staging / WEIGHTS_NAME)
        (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (staging / "configuration.json").write_text(json.dumps(configuration, indent=2), encoding="utf-8")

    swap_in(target, fill, CAMPPLUS.complete)
    params = sum(p.numel() for p in model.parameters())
    log.info("generated random:%s CAM++ speaker model (%.2f M parameters) at %s", size, params / 1e6, target)
    return target


CAMPPLUS = RandomBuild(label="speaker model", folder="random-campplus", sizes=("tiny", "large"),
                       version=GENERATOR_VERSION, files=(WEIGHTS_NAME, "config.yaml", "configuration.json"),
                       generate=lambda size, target: generate(size, target))
