"""The three CPUs machines of this kind have come as, for tests that must hold on any of them.

Each is the `CpuFeatures` the product's one CPU seam (asr.system.cpu) would report there; branches that
depend on the CPU take one of these instead of the machine's own, so every branch runs on every
machine. `REAL` is this machine's, so its own branch is covered too.
"""

from __future__ import annotations

from asr.system.cpu import AMD, INTEL, CpuFeatures, detect_cpu

ZEN3_AVX2 = CpuFeatures(vendor=AMD, model="AMD EPYC (Zen 3)", family="25", model_number="1", avx2=True)
ZEN4_AVX512_BF16 = CpuFeatures(vendor=AMD, model="AMD EPYC (Zen 4)", family="25", model_number="17",
                               avx2=True, avx512=True, avx512_bf16=True)
XEON_AMX = CpuFeatures(vendor=INTEL, model="Intel Xeon (Sapphire Rapids)", family="6", model_number="207",
                       avx2=True, avx512=True, avx512_bf16=True, amx=True)
SIMULATED = {"avx2-only": ZEN3_AVX2, "avx512-bf16": ZEN4_AVX512_BF16, "avx512-amx": XEON_AMX}
REAL = detect_cpu()
EVERY = {**SIMULATED, "this-machine": REAL}
