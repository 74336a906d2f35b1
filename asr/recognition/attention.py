"""Fused attention for FunASR's SANM encoder: the same layer without a T x T score matrix.

FunASR's `MultiHeadedAttentionSANM.forward` builds the scores of every head as one
batch x heads x T x T tensor, fills the masked keys with -inf into a second, takes the softmax
into a third and zeroes the masked entries into a fourth, all alive at once, before multiplying
by the values. At SeACo-Paraformer's width (4 heads) one score-sized tensor for a batch of 4
files of 6000 frames (6 minutes each at 60 ms per frame) is 4 x 4 x 6000 x 6000 x 4 bytes =
2.1 GiB in fp32, and four of them live at once (two with the full-mask shortcut of
asr/recognition/recognizer.py), so on a GPU the batch that fits shrinks with the square of the
length. `torch.nn.functional.scaled_dot_product_attention` computes the same result in tiles
(flash / memory-efficient kernels on CUDA, the flash kernel on CPU): its working memory grows
linearly with the length and the scores only ever live in fp32 accumulators inside the kernel
(measured peaks in docs/benchmarks.md).

`use_fused_attention` swaps that computation in per layer instance, keeping everything else of
FunASR's layer as it is: the same fused q/k/v projection (`forward_qkv`), the FSMN memory branch
(`forward_fsmn`, FunASR's own method, or the masking shortcut `skip_full_attention_masks` in
asr/recognizer.py puts on the instance: the two patches coexist in either order), the same
scaling of q by d_k ** -0.5 before the product, and the output projection `linear_out`.
"""

from __future__ import annotations

import contextlib
import contextvars
import types

import torch
import torch.nn.functional as F

ATTENTION_MODES = ("auto", "fused", "funasr")
# The `attention` setting of the engine whose call runs in this thread: layers are shared by every
# engine on one model, so the choice travels with the call, not with the layer.
_mode: contextvars.ContextVar[str] = contextvars.ContextVar("seaco_attention", default="auto")


@contextlib.contextmanager
def attention_mode(mode: str):
    """Within the block, patched layers attend by `mode`: `fused` always, `funasr` never, `auto`
    as the patch was made (`only_reduced`)."""
    if mode not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, not {mode!r}")
    token = _mode.set(mode)
    try:
        yield
    finally:
        _mode.reset(token)


def use_fused_attention(encoder: torch.nn.Module, only_reduced: bool = False) -> int:
    """Make every FunASR `MultiHeadedAttentionSANM` layer in `encoder` attend through
    `scaled_dot_product_attention`; returns how many layers were patched (0 on a second call).

    `only_reduced`: fuse only where it pays and exactness is not promised, that is on CUDA or
    under autocast (bf16, fp16); an fp32 call on a CPU keeps FunASR's own path, bit for bit.
    Decided per call, so engines of different precisions can share one model (the engine's
    default).

    The patch is the instance's own `forward`, so FunASR's class and other models stay as they
    are, and `use_funasr_attention` removes it again. Layers in training mode with dropout fall
    back to FunASR's forward (its dropout acts on the attention weights, which the fused kernels
    never expose).

    Why it is safe: FunASR's masked softmax and the fused kernels agree position by position.
    FunASR's mask is (batch, 1, time) (or (batch, time1, time) with `mask_att_chunk_encoder`),
    true for real frames; it hides padded *keys* only. A padded frame's own row (a padded query)
    still attends to the file's real frames, so it is finite in both paths and equal between
    them, and it never reaches a real frame: keys hide it here and the FSMN branch multiplies it
    by the mask. The only rows FunASR zeroes are rows that see no key at all (a zero-length file,
    or a chunk mask that hides a whole row); there its softmax gives NaN which it then overwrites
    with 0. Here such rows attend to everything (finite) and are zeroed after, so no kernel is
    ever asked for a softmax over nothing (torch's CUDA memory-efficient kernel answered that
    with NaN in some versions: pytorch #110213).
    When the mask hides nothing (a file alone) no mask is passed, so torch may pick the flash
    kernel, which takes no mask on CUDA.

    fp16 (FunASR #1889, NaN from the SANM encoder under CUDA autocast): FunASR's scores are
    an fp16 matmul output that can overflow to inf before the softmax; the fused kernels keep
    them in fp32 accumulators. That removes one source of the NaN, not necessarily every one
    (the feed-forward and the residual stream still run in fp16).
    """
    # deliberate lazy import: FunASR's submodules load after import_funasr() silenced its banners
    from funasr.models.sanm.attention import MultiHeadedAttentionSANM

    patched = 0
    for module in encoder.modules():
        if type(module) is not MultiHeadedAttentionSANM or fused_attention_enabled(module):
            continue
        module.forward = types.MethodType(_fused_forward, module)
        module._fused_only_reduced = only_reduced
        patched += 1
    return patched


def use_funasr_attention(encoder: torch.nn.Module) -> int:
    """Undo `use_fused_attention` in `encoder`: FunASR's own forward again. Returns how many
    layers changed back (0 when none was fused)."""
    restored = 0
    for module in encoder.modules():
        if fused_attention_enabled(module):
            del module.forward, module._fused_only_reduced
            restored += 1
    return restored


def fused_attention_enabled(module: torch.nn.Module) -> bool:
    """Whether `module` is a SANM attention layer that `use_fused_attention` has patched."""
    forward = vars(module).get("forward")
    return getattr(forward, "__func__", None) is _fused_forward


def _fused_forward(self, x: torch.Tensor, mask: torch.Tensor | None, mask_shfit_chunk=None,
                   mask_att_chunk_encoder=None) -> torch.Tensor:
    """FunASR's `MultiHeadedAttentionSANM.forward` (same arguments, FunASR's spelling
    included) with the score / softmax / weighted-sum steps done by one fused call."""
    mode = _mode.get()
    exact_here = x.device.type != "cuda" and not torch.is_autocast_enabled(x.device.type)
    funasr = mode == "funasr" or (mode == "auto" and self._fused_only_reduced and exact_here)
    if (self.training and self.dropout.p > 0.0) or funasr:
        return type(self).forward(self, x, mask, mask_shfit_chunk, mask_att_chunk_encoder)
    q_h, k_h, v_h, v = self.forward_qkv(x)
    fsmn_memory = self.forward_fsmn(v, mask, mask_shfit_chunk)
    # FunASR scales q before the product; doing the same and telling the kernel scale=1.0 keeps
    # the scores' rounding FunASR's (the kernel's default would scale by d_k ** -0.5 again, and
    # torch's reference path splits that scale between q and k).
    q_h = q_h * self.d_k ** (-0.5)
    context = _attend(q_h, k_h, v_h, mask, mask_att_chunk_encoder)
    batch, heads, time, d_k = context.shape
    context = context.transpose(1, 2).reshape(batch, time, heads * d_k)
    return self.linear_out(context) + fsmn_memory


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
            chunk_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T) v over the keys FunASR's mask keeps; (batch, heads, time1, d_k)."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)
    if chunk_mask is not None:
        mask = mask * chunk_mask
    keep = mask.unsqueeze(1) != 0  # (batch, 1, 1 or time1, time2): FunASR's mask.eq(0), inverted
    seen = keep.any(dim=-1, keepdim=True)  # rows that see at least one key
    hides_nothing, no_empty_row = torch.stack((keep.all(), seen.all())).tolist()  # one sync
    if hides_nothing:
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)
    if no_empty_row:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1.0)
    # FunASR gives 0 where a row sees no key: attend to every key there (finite), then zero it.
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep | ~seen, scale=1.0)
    return context.masked_fill(~seen, 0.0)
