"""oneDNN matrix multiplies for the model's linear layers on a CPU.

torch sends an fp32 `nn.Linear` to MKL on x86 builds, and MKL picks its kernels by CPU vendor:
on AMD CPUs it runs its AVX2 code even where the CPU has AVX-512. oneDNN, which torch also ships,
picks by instruction set, so on AMD CPUs with AVX-512 it is the faster library; linear layers
are most of the model's CPU time. `cpu_gemm: auto` chooses by the CPU (asr.system.cpu); the bench
measures what each library is worth on a machine (`python -m benchmarks.bench`, variant C against
CM; figures and CPUs in docs/benchmarks.md).

The two libraries sum in different orders, so outputs differ in the last bits; the bench reports
whether that moved any token against FunASR's own run. oneDNN also blocks its sums differently
for a small number of rows, so in a padded batch a short file's log-probs can differ from a run
alone in the last bits, as MKL's do; the engine's batching tests compare tokens, which stay
identical.
"""

from __future__ import annotations

import logging
import types

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

CHOICES = ("onednn", "torch")
_MARK = "_onednn_linear"


def onednn_linear_works() -> bool:
    """Whether this torch build has the oneDNN linear op and it agrees with torch's own."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        layer = torch.nn.Linear(64, 32)
        x = torch.randn(8, 64)
        with torch.inference_mode():
            got = torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
            return bool(torch.allclose(got, F.linear(x, layer.weight, layer.bias), atol=1e-5))
    except (RuntimeError, AttributeError) as exc:  # op missing or not built for this CPU
        log.info("oneDNN linear unavailable: %s", exc)
        return False


def use_onednn_linears(model: torch.nn.Module) -> int:
    """Route every fp32 `nn.Linear` of `model` through oneDNN; returns how many layers.

    Only the forward changes (an instance attribute), and only for inference: with gradients on,
    under autocast (precision bf16, where torch's linear is the one autocast routes to oneDNN's
    bf16 kernels), or for another dtype, a layer runs torch's own linear. Weights stay ordinary parameters, so
    state dicts, `.to()` and int8 quantisation (which swaps `nn.Linear` modules) work as before.
    """
    patched = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and _MARK not in vars(module):
            module.forward = types.MethodType(_onednn_forward, module)
            setattr(module, _MARK, True)
            patched += 1
    return patched


def uses_onednn(model: torch.nn.Module) -> bool:
    return any(_MARK in vars(m) for m in model.modules())


def _onednn_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if (torch.is_grad_enabled() or x.dtype != torch.float32 or self.weight.dtype != torch.float32
            or x.device.type != "cpu" or x.numel() == 0 or torch.is_autocast_enabled("cpu")):
        return F.linear(x, self.weight, self.bias)
    return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
