"""Model resolution: generated random models load through FunASR's own loader; offline fails fast."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from asr.models import ModelLoadError, hub
from asr.models.funasr import import_funasr
from asr.models.loader import model_dir
from asr.models.random_weights.seaco import build_config, build_vocabulary
from asr.recognition.model import SEACO_MODEL


def test_generated_directory_has_modelscope_layout(loaded_tiny):
    directory = loaded_tiny.directory
    for name in ("config.yaml", "model.pt", "tokens.json", "am.mvn", "configuration.json", "seg_dict"):
        assert (directory / name).is_file(), name
    config = yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "SeacoParaformer"
    assert config["predictor"] == "CifPredictorV3"
    tokens = json.loads((directory / "tokens.json").read_text(encoding="utf-8"))
    assert tokens[0] == "<blank>" and tokens[-1] == "<unk>"
    meta = json.loads((directory / "configuration.json").read_text(encoding="utf-8"))
    assert meta["file_path_metas"]["init_param"] == "model.pt"


def test_generated_model_runs_through_funasr_automodel(loaded_tiny, reference_wavs):
    """FunASR's own loader and generate() accept the directory: the layout is the real one."""
    auto = import_funasr().AutoModel(model=str(loaded_tiny.directory), device="cpu", ncpu=2,
                                     disable_update=True, disable_pbar=True)
    assert type(auto.model).__name__ == "SeacoParaformer"
    output = auto.generate(input=str(reference_wavs[0]))
    assert isinstance(output[0]["text"], str) and output[0]["text"]


def test_large_config_is_the_real_architecture():
    config = build_config("large")
    assert config["encoder_conf"]["num_blocks"] == 50
    assert config["encoder_conf"]["output_size"] == 512
    assert config["decoder_conf"]["num_blocks"] == 16
    assert config["model_conf"]["NO_BIAS"] == 8377
    assert len(build_vocabulary("large")) == 8404


def test_unknown_random_size_and_bad_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="tiny, large"):
        model_dir("random:huge", SEACO_MODEL, tmp_path)
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ModelLoadError, match="lacks config.yaml, model.pt"):
        model_dir(str(tmp_path / "empty_model"), SEACO_MODEL, tmp_path)
    with pytest.raises(ModelLoadError, match="not a directory"):
        model_dir("./no/such/dir", SEACO_MODEL, tmp_path)


def test_uncached_hub_model_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    # The discard port on loopback is closed: the same answer a machine without network gets.
    monkeypatch.setattr(hub, "MODELSCOPE_HOST", ("127.0.0.1", 9))
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        model_dir("iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch", SEACO_MODEL,
                  tmp_path)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "cannot be downloaded" in message and "random:tiny" in message
    assert "local model directory" in message
