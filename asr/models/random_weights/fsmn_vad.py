"""Generate a FunASR fsmn-vad model directory with random but calibrated weights.

The real `iic/speech_fsmn_vad_zh-cn-16k-common-pytorch` comes from ModelScope, which development
and CI machines cannot reach. `random:tiny` writes the same ModelScope layout (config.yaml,
model.pt, am.mvn, configuration.json) with the real architecture (an FSMN of ~0.43 M parameters)
built by FunASR's own FsmnVADStreaming class, so loading, the frontend, the streaming cache and
the VAD state machine all run for real.

Plain random weights would call every frame speech (or none), which makes a VAD useless for
tests. `_calibrate_energy_head` rewires one path through the network so that the silence
posterior falls as the frame's mean log-mel energy rises: loud frames are speech, quiet ones are
silence, and the regions follow the audio the way a (level-sensitive) real VAD would.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from pathlib import Path

import torch

from asr.models.funasr import import_funasr
from asr.models.random_weights.base import (
    RandomBuild,
    cmvn_text,
    configuration_json,
    instantiate,
    write_model_dir,
)

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the generated layout or weights change
SIZES = ("tiny",)  # the real model is already tiny; there is nothing larger to imitate

# Mean log-mel energy (80 bins, int16-scaled input, as WavFrontendOnline computes it) above which
# the calibrated model calls a frame speech. Measured on the vendored recordings: their background
# noise sits at 6-10, speech at 12-19; white noise of -60 dBFS RMS gives about 11.4 and digital
# silence -15.9 (log of FLT_EPSILON).
SPEECH_LOG_MEL = 11.5
# How sharply the silence posterior follows the energy around that threshold (nats per nat).
_GAIN = 2.0
# The energy score is clamped to +-_CLAMP, so p(sil) stays within about [1e-5, 1 - 2e-4].
_CLAMP = 5.0

# The real model's config.yaml (FunASR 1.x layout). The VAD post-processing options, which the
# onnx runtime keeps in `vad_post_conf`, live in `model_conf` here: FunASR passes them to
# FsmnVADStreaming, which turns them into its VADXOptions.
REAL_CONFIG: dict = {
    "model": "FsmnVADStreaming",
    "model_conf": {
        "sample_rate": 16000,
        "detect_mode": 1,
        "snr_mode": 0,
        "max_end_silence_time": 800,
        "max_start_silence_time": 3000,
        "do_start_point_detection": True,
        "do_end_point_detection": True,
        "window_size_ms": 200,
        "sil_to_speech_time_thres": 150,
        "speech_to_sil_time_thres": 150,
        "speech_2_noise_ratio": 1.0,
        "do_extend": 1,
        "lookback_time_start_point": 200,
        "lookahead_time_end_point": 100,
        "max_single_segment_time": 60000,
        "snr_thres": -100.0,
        "noise_frame_num_used_for_snr": 100,
        "decibel_thres": -100.0,
        "speech_noise_thres": 0.6,
        "fe_prior_thres": 0.0001,
        "silence_pdf_num": 1,
        "sil_pdf_ids": [0],
        "speech_noise_thresh_low": -0.1,
        "speech_noise_thresh_high": 0.3,
        "output_frame_probs": False,
        "frame_in_ms": 10,
        "frame_length_ms": 25,
    },
    "encoder": "FSMN",
    "encoder_conf": {
        "input_dim": 400,
        "input_affine_dim": 140,
        "fsmn_layers": 4,
        "linear_dim": 250,
        "proj_dim": 128,
        "lorder": 20,
        "rorder": 0,
        "lstride": 1,
        "rstride": 0,
        "output_affine_dim": 140,
        "output_dim": 248,
    },
    "frontend": "WavFrontendOnline",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": 80,
        "frame_length": 25,
        "frame_shift": 10,
        "dither": 0.0,
        "lfr_m": 5,
        "lfr_n": 1,
    },
}


def build_config() -> dict:
    return json.loads(json.dumps(REAL_CONFIG))  # a deep copy the caller may change


def _cmvn_stats(n_mels: int, lfr_m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension shift and scale shaped like a real fbank am.mvn: log-mel means that fall
    with frequency (about 13 down to 9) and scales of 1/std. LFR stacks `lfr_m` frames, so the
    80 per-bin statistics repeat `lfr_m` times, as in the real file."""
    falling = torch.linspace(13.0, 9.0, n_mels)
    means = falling + 0.5 * torch.rand(n_mels, generator=generator)
    scales = 0.25 + 0.1 * torch.rand(n_mels, generator=generator)
    return (-means).repeat(lfr_m), scales.repeat(lfr_m)


def _configuration_json() -> dict:
    return configuration_json("voice-activity-detection", {"frontend_conf": {"cmvn_file": "am.mvn"}},
                              f"random fsmn-vad generator v{GENERATOR_VERSION}")


def _instantiate(config: dict, seed: int) -> torch.nn.Module:
    import_funasr()
    with contextlib.redirect_stdout(io.StringIO()):  # its module prints on import
        # deliberate lazy import: funasr is heavy; importing this module registers FsmnVADStreaming
        from funasr.models.fsmn_vad_streaming import model as _fsmn_vad  # noqa: F401
    return instantiate(config["model"], seed, encoder=config["encoder"], encoder_conf=config["encoder_conf"],
                       **config["model_conf"])


def _calibrate_energy_head(model: torch.nn.Module, shift: torch.Tensor, scale: torch.Tensor,
                           speech_noise_thres: float) -> None:
    """Make the silence posterior (pdf 0) a falling sigmoid of the frame's mean log-mel energy.

    Channel 0 of in_linear1 undoes the CMVN and averages the 400 LFR inputs (5 frames x 80 mel
    bins), minus SPEECH_LOG_MEL: a signed energy score e. ReLUs would clip a signed value, so
    in_linear2 spreads it over four non-negative channels, relu(e), relu(-e), relu(e - c) and
    relu(-e - c); every FSMN block passes those through untouched (identity projections, no
    memory taps), and out_linear1 joins them into e clamped to [-c, c]. out_linear2 turns that
    into the silence logit, and the other 247 logits are shrunk towards zero so the softmax is a
    clean two-way decision. FunASR calls a frame speech when 1 - 2 * p(sil) >= speech_noise_thres,
    so the bias puts that boundary at e = 0. The clamp keeps p(sil) strictly inside (0, 1) in
    float32: FunASR takes math.log of both p(sil) and 1 - p(sil), and digital silence (e = -27)
    would otherwise round p(sil) to exactly 1. The rest of the network keeps its random weights.
    """
    encoder = model.encoder
    carried = (0, 1, 2, 3)  # relu(e), relu(-e), relu(e - c), relu(-e - c)
    p_boundary = (1.0 - speech_noise_thres) / 2.0  # p(sil) at the speech/silence boundary
    others = encoder.output_dim - 1
    with torch.no_grad():
        in1 = encoder.in_linear1.linear
        in1.weight[0] = 1.0 / (scale * scale.numel())
        in1.bias[0] = -(shift.mean() + SPEECH_LOG_MEL)  # x = y / scale - shift, averaged

        in2 = encoder.in_linear2.linear
        for channel, sign, offset in ((0, 1.0, 0.0), (1, -1.0, 0.0), (2, 1.0, -_CLAMP), (3, -1.0, -_CLAMP)):
            in2.weight[channel].zero_()
            in2.weight[channel, 0] = sign
            in2.bias[channel] = offset
        in2.weight[len(carried):, 0] = 0.0  # keep e (up to +-30) from swamping the random channels

        for block in encoder.fsmn:
            for channel in carried:
                block.linear.linear.weight[channel].zero_()
                block.linear.linear.weight[channel, channel] = 1.0
                block.fsmn_block.conv_left.weight[channel].zero_()
                block.affine.linear.weight[channel].zero_()
                block.affine.linear.weight[channel, channel] = 1.0
                block.affine.linear.bias[channel] = 0.0
            block.linear.linear.weight[len(carried):, :len(carried)] = 0.0
            block.affine.linear.weight[len(carried):, :len(carried)] = 0.0

        out1 = encoder.out_linear1.linear
        out1.weight[0].zero_()
        out1.weight[0, :len(carried)] = torch.tensor([1.0, -1.0, -1.0, 1.0])
        out1.bias[0] = 0.0
        out1.weight[1:, :len(carried)] = 0.0

        out2 = encoder.out_linear2.linear
        out2.weight[1:] *= 0.02
        out2.bias[1:] = 0.0
        out2.weight[1:, 0] = 0.0
        out2.weight[0].zero_()
        out2.weight[0, 0] = -_GAIN
        # p(sil) = 1 / (1 + others * exp(-z0)); at e = 0 it must equal p_boundary.
        out2.bias[0] = math.log(others * p_boundary / (1.0 - p_boundary))


def generate(size: str, target: Path, seed: int = 0) -> Path:
    """Write a complete random-weight fsmn-vad directory at `target` (atomically)."""
    config = build_config()
    frontend_conf = config["frontend_conf"]
    generator = torch.Generator().manual_seed(seed)
    shift, scale = _cmvn_stats(frontend_conf["n_mels"], frontend_conf["lfr_m"], generator)
    model = _instantiate(config, seed)
    _calibrate_energy_head(model, shift, scale, config["model_conf"]["speech_noise_thres"])
    write_model_dir(target, model.state_dict(), config, texts={"am.mvn": cmvn_text(shift, scale)},
                    configuration=_configuration_json())
    params = sum(p.numel() for p in model.parameters())
    log.info("generated random fsmn-vad (%.2f M parameters) at %s", params / 1e6, target)
    return target


FSMN_VAD = RandomBuild(label="fsmn VAD model", folder="random-fsmn-vad", sizes=SIZES,
                       version=GENERATOR_VERSION,
                       files=("model.pt", "config.yaml", "am.mvn", "configuration.json"),
                       generate=lambda size, target: generate(size, target))
