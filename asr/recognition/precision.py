"""Which number format the model computes in, and whether this machine can do it.

One setting, `precision`, picks it: `fp32` (the default, bit-exact with FunASR), `bf16` (CPU
autocast onto oneDNN's AMX or AVX-512 BF16 kernels, or CUDA autocast on an Ampere or newer GPU),
`fp16` (CUDA autocast only) or `int8` (dynamic int8 linear layers, CPU only). A mode the hardware
lacks is refused at start with the reason: a silent fall back to fp32 would hand the user speeds
and memory figures for a mode they did not get.
"""

from __future__ import annotations

import contextlib

import torch

from asr.models import ModelLoadError
from asr.system.cpu import CpuFeatures, detect_cpu

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REDUCED = ("bf16", "fp16")  # the autocast modes
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionUnavailable(ModelLoadError, ValueError):
    """The machine cannot compute in the precision asked for; the message says why. A
    ModelLoadError, so every entry point stops at start with it as with a missing model."""


def check_precision(precision: str, device: torch.device, cpu: CpuFeatures | None = None) -> None:
    """Raise PrecisionUnavailable, naming what is missing, when `device` cannot run `precision`.

    On a CPU the answer comes from `cpu` (default: this machine's) alone, so a test can ask it
    about any CPU; what torch itself contributes is whether its build has oneDNN at all."""
    if precision not in PRECISIONS:
        raise PrecisionUnavailable(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cpu":
        if precision == "fp16":
            raise PrecisionUnavailable(
                "fp16 runs on CUDA only, and this model runs on the CPU; use bf16 (on a CPU with "
                "AVX-512 BF16 or AMX) or int8 for a faster CPU mode")
        if precision == "bf16":
            cpu = cpu or detect_cpu()
            if not cpu.bf16:
                raise PrecisionUnavailable(
                    f"bf16 needs AVX-512 BF16 or AMX; this CPU has neither (it has: {cpu.describe()}); "
                    "use fp32 or int8")
            if not torch.backends.mkldnn.is_available():
                raise PrecisionUnavailable("bf16 on a CPU runs on oneDNN, and this torch build has no "
                                           "oneDNN; use fp32 or int8")
        return
    if precision == "int8":
        raise PrecisionUnavailable("int8 is a CPU mode (torch's dynamic int8 kernels run on the CPU); "
                                   "on a GPU use fp16 or bf16")
    if (precision == "bf16" and device.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)):
        major, minor = torch.cuda.get_device_capability(device)
        raise PrecisionUnavailable(
            f"bf16 needs a GPU of compute capability 8.0 or newer (Ampere); "
            f"{torch.cuda.get_device_name(device)} is {major}.{minor}; use fp16")


def autocast(precision: str, device: torch.device):
    """The autocast context for `precision` on `device` (a no-op for fp32 and int8)."""
    if precision in REDUCED:
        return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def full_precision(device: torch.device):
    """Autocast off: for the steps that must stay in fp32 under a reduced precision."""
    return torch.autocast(device_type=device.type, enabled=False)


def keep_fp32_outputs(model: torch.nn.Module) -> int:
    """Make the decoder's scores leave in fp32, so FunASR's log-softmax over the vocabulary
    (`_seaco_decode_with_ASF`) runs in fp32 under autocast: in bf16 its 8-bit mantissa would
    round close scores together and could flip the best token. Forward hooks on the shared model
    object; a no-op on fp32 outputs, so an fp32 engine sharing the model is untouched. Idempotent;
    returns how many hooks were added."""
    added = 0
    for name in ("decoder", "hotword_output_layer"):
        module = getattr(model, name, None)
        if module is None or getattr(module, "_seaco_fp32_outputs", False):
            continue
        module.register_forward_hook(_outputs_to_fp32)
        module._seaco_fp32_outputs = True
        added += 1
    return added


def _outputs_to_fp32(module, args, output):
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, tuple):
        return tuple(item.float() if isinstance(item, torch.Tensor) and item.is_floating_point() else item
                     for item in output)
    return output
