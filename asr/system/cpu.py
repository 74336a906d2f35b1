"""What this CPU can do for the model's matrices: the one place that looks at the real CPU.

Machines that run this product differ in the instructions that decide how fast a matrix
multiplies in each precision: AVX2 only, AVX-512 with AVX-512 BF16, or AVX-512 with Intel's AMX
tiles. Every decision that depends on them (which precisions the engine accepts and the reason it
gives, the default linear-layer kernels, what system info shows, which precision the wizard
compares, which bench variants run) takes a `CpuFeatures` value and never asks the hardware or
torch again behind it. So each branch can be exercised on any machine by handing it another
CPU's features, and a machine's real features enter in exactly one place: `detect_cpu()`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

INTEL = "GenuineIntel"
AMD = "AuthenticAMD"


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's name, vendor and matrix instruction sets, as the kernel reports them."""

    vendor: str = ""  # the cpuinfo vendor_id: GenuineIntel, AuthenticAMD, ...
    model: str = ""  # the cpuinfo model name, for reports
    family: str = ""  # cpuinfo "cpu family" and "model": what tells Zen 3 from Zen 4 under one name
    model_number: str = ""
    avx2: bool = False
    avx512: bool = False  # AVX-512 Foundation
    avx512_bf16: bool = False
    amx: bool = False  # Intel AMX tiles with bf16 (Sapphire Rapids and newer)

    @property
    def bf16(self) -> bool:
        """Whether bf16 matrices have hardware kernels here (oneDNN uses either instruction set)."""
        return self.avx512_bf16 or self.amx

    @property
    def matrix_features(self) -> list[str]:
        """The matrix instruction sets present, by their usual names, widest last."""
        named = (("AVX2", self.avx2), ("AVX-512", self.avx512), ("AVX-512 BF16", self.avx512_bf16),
                 ("AMX", self.amx))
        return [name for name, present in named if present]

    def describe(self) -> str:
        """For people: rendered from `matrix_features`, never parsed back."""
        return ", ".join(self.matrix_features) or "none of AVX2, AVX-512, AVX-512 BF16, AMX"

    def to_dict(self) -> dict:
        return {**asdict(self), "bf16": self.bf16, "matrix_features": self.matrix_features}

    @classmethod
    def from_cpuinfo(cls, text: str) -> CpuFeatures:
        """From /proc/cpuinfo's text (its first processor block).

        Flags rather than the model name: the same "AMD EPYC" or "Intel Xeon" label covers CPUs
        with and without bf16 instructions, and a VM may hide some of them."""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                if fields:
                    break  # the end of the first processor's block
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        flags = set(fields.get("flags", "").split())
        return cls(vendor=fields.get("vendor_id", ""), model=fields.get("model name", ""),
                   family=fields.get("cpu family", ""), model_number=fields.get("model", ""),
                   avx2="avx2" in flags, avx512="avx512f" in flags, avx512_bf16="avx512_bf16" in flags,
                   amx="amx_bf16" in flags and "amx_tile" in flags)


@functools.cache
def detect_cpu() -> CpuFeatures:
    """This machine's CPU, read once per process."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return CpuFeatures.from_cpuinfo(text)


def default_linear_kernels(cpu: CpuFeatures) -> str:
    """The linear-layer library `cpu_gemm: auto` picks: "onednn" or "torch" (MKL on x86).

    MKL picks its code path by CPU vendor: on AMD CPUs it runs its AVX2 kernels even where the
    CPU has AVX-512, while oneDNN picks by instruction set, so there oneDNN is the faster
    library (docs/benchmarks.md, variant C against CM). On Intel CPUs MKL already uses AVX-512
    and AMX, and on an AVX2-only CPU both libraries run AVX2 code: torch's default stays."""
    return "onednn" if cpu.vendor == AMD and cpu.avx512 else "torch"
