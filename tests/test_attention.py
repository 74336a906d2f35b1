"""The fused SANM attention (asr/attention.py) against FunASR's own layer, encoder and model.

Real FunASR modules with random weights: single layers built with FunASR's constructor at the
real model's width, and a clean copy of the session's random:tiny model for whole-model checks
(the shared model itself is never patched here).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile
import torch
from funasr.models.sanm.attention import MultiHeadedAttentionSANM
from funasr.models.transformer.utils.nets_utils import make_pad_mask

from asr.recognition.attention import fused_attention_enabled, use_funasr_attention, use_fused_attention
from asr.recognition.recognizer import Recognizer, skip_full_attention_masks

ATOL = 1e-5


def sanm_layer(seed: int = 0, n_feat: int = 512, heads: int = 4) -> MultiHeadedAttentionSANM:
    """One encoder attention layer at the real model's size (512 wide, 4 heads, kernel 11)."""
    torch.manual_seed(seed)
    layer = MultiHeadedAttentionSANM(heads, n_feat, n_feat, 0.1, 11).eval()
    with torch.no_grad():  # larger biases than nn.Linear's default, so they matter
        layer.linear_q_k_v.bias.normal_(0.0, 0.5)
        layer.linear_out.bias.normal_(0.0, 0.5)
    return layer


def key_mask(lengths: list[int], frames: int | None = None) -> torch.Tensor:
    """FunASR's encoder mask: (batch, 1, time), true on real frames."""
    return ~make_pad_mask(torch.tensor(lengths), maxlen=frames or max(lengths))[:, None, :]


def fused_copy(layer: torch.nn.Module) -> torch.nn.Module:
    fused = copy.deepcopy(layer)
    assert use_fused_attention(fused) == 1
    return fused


def clean_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy without any instance-level patches: plain FunASR modules.

    (skip_full_attention_masks patches with closures over bound methods, which deepcopy shares,
    so a copy of a patched model would still call the original's methods.)"""
    model = copy.deepcopy(model)
    for module in model.modules():
        for name in ("forward", "forward_attention", "forward_fsmn"):
            vars(module).pop(name, None)
    return model


def test_patch_is_counted_idempotent_and_reversible():
    encoder = torch.nn.Sequential(sanm_layer(0, 64), torch.nn.Linear(64, 64), sanm_layer(1, 64))
    assert use_fused_attention(encoder) == 2
    assert use_fused_attention(encoder) == 0
    assert [fused_attention_enabled(m) for m in encoder] == [True, False, True]
    assert use_funasr_attention(encoder) == 2
    assert "forward" not in vars(encoder[0]) and not fused_attention_enabled(encoder[0])
    assert use_funasr_attention(encoder) == 0


@pytest.mark.parametrize("lengths", [[97, 97], [97, 60, 33, 1], [130, 129, 64]])
def test_padded_batch_matches_funasr(lengths):
    """Every position (padded rows included: they attend to the real keys in both) within 1e-5."""
    layer = sanm_layer()
    fused = fused_copy(layer)
    x = torch.randn(len(lengths), max(lengths), 512)
    mask = key_mask(lengths)
    with torch.inference_mode():
        expected, got = layer(x, mask), fused(x, mask)
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("mask_kind", ["none", "all true"])
def test_file_alone_matches_funasr(mask_kind):
    layer = sanm_layer(3)
    fused = fused_copy(layer)
    x = torch.randn(1, 150, 512)
    mask = None if mask_kind == "none" else key_mask([150])
    with torch.inference_mode():
        torch.testing.assert_close(fused(x, mask), layer(x, mask), atol=ATOL, rtol=0)


def test_padded_file_equals_that_file_alone():
    layer = fused_copy(sanm_layer(4))
    lengths = [120, 77, 5]
    x = torch.randn(3, 120, 512)
    with torch.inference_mode():
        batch = layer(x, key_mask(lengths))
        for row, length in enumerate(lengths):
            alone = layer(x[row : row + 1, :length], key_mask([length]))
            torch.testing.assert_close(batch[row : row + 1, :length], alone, atol=ATOL, rtol=0)
    assert torch.isfinite(batch).all()


def test_rows_that_see_no_key_are_funasr_zeros_never_nan():
    """A zero-length file and a chunk mask hiding whole rows: FunASR turns its NaN softmax into 0
    (the output is then linear_out's bias plus the FSMN branch); so does the fused path."""
    layer = sanm_layer(5)
    fused = fused_copy(layer)
    frames = 40
    x = torch.randn(3, frames, 512)
    mask = key_mask([40, 25, 0], frames)
    chunk = torch.ones(3, frames, frames)
    chunk[0, 10:20] = 0.0  # rows 10-19 of file 0 see nothing
    chunk[1, :, :5] = 0.0
    with torch.inference_mode():
        for extra in (None, chunk):
            expected = layer(x, mask, mask_att_chunk_encoder=extra)
            got = fused(x, mask, mask_att_chunk_encoder=extra)
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fused_first", [True, False])
def test_coexists_with_the_full_mask_shortcut(fused_first):
    layer = sanm_layer(6)
    both = copy.deepcopy(layer)
    encoder = torch.nn.Sequential(both)
    if fused_first:
        assert use_fused_attention(encoder) == 1
        assert skip_full_attention_masks(encoder) == 1
    else:
        assert skip_full_attention_masks(encoder) == 1
        assert use_fused_attention(encoder) == 1
    assert fused_attention_enabled(both)
    x = torch.randn(2, 64, 512)
    with torch.inference_mode():
        for mask in (key_mask([64, 64]), key_mask([64, 30]), None):
            torch.testing.assert_close(both(x, mask), layer(x, mask), atol=ATOL, rtol=0)


def test_cpu_runs_the_fused_kernel_without_a_softmax():
    fused = fused_copy(sanm_layer(7, 64))
    x = torch.randn(2, 50, 64)
    with torch.inference_mode():
        for mask in (key_mask([50, 20]), None):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                        acc_events=True) as prof:
                fused(x, mask)
            names = {event.name for event in prof.events()}
            assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
            assert not names & {"aten::softmax", "aten::_softmax", "aten::matmul", "aten::bmm"}


def test_training_with_dropout_falls_back_to_funasr():
    layer = sanm_layer(8, 64).train()
    fused = fused_copy(layer)
    x = torch.randn(2, 30, 64)
    mask = key_mask([30, 12])
    torch.manual_seed(1)
    expected = layer(x, mask)
    torch.manual_seed(1)
    assert torch.equal(fused(x, mask), expected)


# ----- the whole random:tiny model on the vendored recordings -------------------------------


@pytest.fixture(scope="module")
def models(loaded_tiny):
    """(today's model, fused model): clean copies of the tiny model; each Recognizer puts the
    full-mask shortcut on its copy, as the engine does."""
    plain = clean_copy(loaded_tiny.model).eval()
    fused = clean_copy(loaded_tiny.model).eval()
    layers = len(fused.encoder.encoders0) + len(fused.encoder.encoders)
    assert use_fused_attention(fused.encoder) == layers
    cpu = torch.device("cpu")
    return (Recognizer(plain, loaded_tiny.tokenizer, loaded_tiny.frontend, cpu),
            Recognizer(fused, loaded_tiny.tokenizer, loaded_tiny.frontend, cpu))


@pytest.fixture(scope="module")
def feats(engine, reference_wavs):
    return [engine.features(np.asarray(soundfile.read(p, dtype="float32")[0])) for p in reference_wavs]


def encode(model, feats):
    lengths = torch.tensor([f.shape[0] for f in feats])
    with torch.inference_mode():
        out, out_lens = model.encode(torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths)
    return out, out_lens


def test_encoder_output_matches_on_real_frames(models, feats):
    plain, fused = (r.model for r in models)
    padded_plain, lens = encode(plain, feats)
    padded_fused, fused_lens = encode(fused, feats)
    assert torch.equal(lens, fused_lens)
    assert torch.isfinite(padded_fused).all()
    for row, f in enumerate(feats):
        length = int(lens[row])
        alone_plain, _ = encode(plain, [f])
        alone_fused, _ = encode(fused, [f])
        torch.testing.assert_close(alone_fused, alone_plain, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(padded_fused[row, :length], padded_plain[row, :length],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(padded_fused[row, :length], alone_fused[0], atol=1e-4, rtol=1e-4)


def test_fp32_tokens_identical_alone_and_padded(models, feats, capsys):
    """Same token ids as today's path, each file alone and all padded together; the report
    line says whether the log-probs were bit-identical too (they need not be)."""
    plain, fused = models
    bitwise = []
    for batch in [[f] for f in feats] + [feats]:
        expected = plain.recognize(batch, None)
        got = fused.recognize(batch, None)
        assert [d.token_ids for d in got] == [d.token_ids for d in expected]
        assert all(d.token_ids for d in got)
        (lp_plain, _), (lp_fused, _) = plain.log_probs(batch, None), fused.log_probs(batch, None)
        bitwise.append(torch.equal(lp_plain, lp_fused))
        diff = (lp_plain - lp_fused).abs().max().item()
        assert diff < 1e-3
    with capsys.disabled():
        print(f"\nfused fp32 log-probs bit-identical per batch (alone x{len(feats)}, padded): {bitwise}")


def test_bf16_autocast_is_finite_and_close_to_fp32(models, feats):
    plain, fused = (r.model for r in models)
    reference, lens = encode(plain, feats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused_bf16, _ = encode(fused, feats)
        plain_bf16, _ = encode(plain, feats)
    assert torch.isfinite(fused_bf16).all()
    for row in range(len(feats)):
        real = slice(0, int(lens[row]))
        ref = reference[row, real]
        err_fused = ((fused_bf16[row, real].float() - ref).norm() / ref.norm()).item()
        err_plain = ((plain_bf16[row, real].float() - ref).norm() / ref.norm()).item()
        assert err_fused < 0.05
        assert err_fused < 2 * err_plain + 0.01  # no worse than FunASR's own path in bf16
