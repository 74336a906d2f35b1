"""Which number format the model computes in, and whether this machine can do it.

One setting, `precision`, picks it: `fp32` (the default, bit-exact with FunASR), `bf16` (CPU
autocast onto oneDNN's AMX or AVX-512 BF16 kernels, or CUDA autocast on an Ampere or newer GPU),
`fp16` (CUDA autocast only) or `int8` (dynamic int8 linear layers, CPU only). A mode the hardware
lacks is refused at start with the reason: a silent fall back to fp32 would hand the user speeds
and memory figures for a mode they did not get.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .model import ModelLoadError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REDUCED = ("bf16", "fp16")  # the autocast modes
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionUnavailable(ModelLoadError, ValueError):
    """The machine cannot compute in the precision asked for; the message says why. A
    ModelLoadError, so every entry point stops at start with it as with a missing model."""


@dataclass(frozen=True)
class CpuMatrixFeatures:
    """The CPU's instruction sets that decide how fast matrices multiply in each precision."""

    avx512: bool
    avx512_bf16: bool
    amx: bool  # Intel AMX tiles with bf16 (Sapphire Rapids and newer)

    @property
    def bf16(self) -> bool:
        return self.avx512_bf16 or self.amx

    def describe(self) -> str:
        names = [name for name, present in (("AVX-512", self.avx512), ("AVX-512 BF16", self.avx512_bf16),
                                             ("AMX", self.amx)) if present]
        return ", ".join(names) if names else "none of AVX-512, AVX-512 BF16, AMX"


def cpu_matrix_features(cpuinfo: str | None = None) -> CpuMatrixFeatures:
    """From the kernel's CPU flags (/proc/cpuinfo), or from `cpuinfo` text given instead.

    Flags rather than the model name: the same "AMD EPYC" or "Intel Xeon" label covers CPUs with
    and without bf16 instructions, and a VM may hide some of them.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return CpuMatrixFeatures(avx512="avx512f" in flags, avx512_bf16="avx512_bf16" in flags,
                             amx="amx_bf16" in flags and "amx_tile" in flags)


def check_precision(precision: str, device: torch.device,
                    cpu: CpuMatrixFeatures | None = None) -> None:
    """Raise PrecisionUnavailable, naming what is missing, when `device` cannot run `precision`."""
    if precision not in PRECISIONS:
        raise PrecisionUnavailable(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cpu":
        if precision == "fp16":
            raise PrecisionUnavailable(
                "fp16 runs on CUDA only, and this model runs on the CPU; use bf16 (on a CPU with "
                "AVX-512 BF16 or AMX) or int8 for a faster CPU mode")
        if precision == "bf16":
            cpu = cpu or cpu_matrix_features()
            if not cpu.bf16:
                raise PrecisionUnavailable(
                    f"bf16 needs AVX-512 BF16 or AMX; this CPU has neither (it has: {cpu.describe()}); "
                    "use fp32 or int8")
            if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                raise PrecisionUnavailable("bf16 needs torch's oneDNN bf16 kernels, which this torch build "
                                           "lacks; use fp32 or int8")
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
