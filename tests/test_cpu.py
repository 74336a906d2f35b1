"""Every branch that depends on the CPU's matrix features, under each CPU this product meets.

The three simulated CPUs (AVX2 only, AVX-512 + AVX-512 BF16, AVX-512 + AMX) run on every machine,
plus the machine's own, through the one seam the product has for them (asr.system.cpu)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cpu_kinds import EVERY, REAL, SIMULATED, XEON_AMX, ZEN3_AVX2, ZEN4_AVX512_BF16
from helpers import tiny_settings

from asr.engine import Engine
from asr.recognition.precision import PrecisionUnavailable, check_precision
from asr.settings import PROJECT_ROOT
from asr.system import sysinfo
from asr.system.cpu import CpuFeatures, default_linear_kernels, detect_cpu
from tuning.precision_check import fastest_reduced_precision

CPU = torch.device("cpu")
EXPECTED = {  # kind -> (bf16 accepted, precision the wizard compares, cpu_gemm auto picks)
    "avx2-only": (False, "int8", "torch"),
    "avx512-bf16": (True, "bf16", "onednn"),
    "avx512-amx": (True, "bf16", "torch"),
}


def test_cpuinfo_text_is_read_into_features():
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
            "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n\n"
            "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: avx512f amx_bf16 amx_tile\n")
    cpu = CpuFeatures.from_cpuinfo(text)
    assert cpu == CpuFeatures(vendor="AuthenticAMD", model="AMD EPYC 7B13", family="25", model_number="1",
                              avx2=True)  # the first processor's block only
    assert cpu.matrix_features == ["AVX2"] and not cpu.bf16
    amx = CpuFeatures.from_cpuinfo("flags\t: avx2 avx512f amx_bf16 amx_tile\n")
    assert amx.bf16 and amx.matrix_features == ["AVX2", "AVX-512", "AMX"]
    assert not CpuFeatures.from_cpuinfo("flags\t: avx512f amx_bf16\n").amx  # bf16 tiles need amx_tile
    assert CpuFeatures().describe() == "none of AVX2, AVX-512, AVX-512 BF16, AMX"


def test_this_machine_is_read_from_proc_cpuinfo_once():
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    assert detect_cpu() == CpuFeatures.from_cpuinfo(text) == REAL
    assert detect_cpu() is detect_cpu()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":")[1].split())
    assert REAL.avx512_bf16 == ("avx512_bf16" in flags) and REAL.avx2 == ("avx2" in flags)


@pytest.mark.parametrize("kind", SIMULATED)
def test_precision_checks_and_their_reasons_follow_the_cpu(kind):
    cpu = SIMULATED[kind]
    bf16_ok, _, _ = EXPECTED[kind]
    if bf16_ok:
        check_precision("bf16", CPU, cpu)
    else:
        with pytest.raises(PrecisionUnavailable) as refused:
            check_precision("bf16", CPU, cpu)
        message = str(refused.value)
        # It names what this CPU lacks and what it has; it never blames the torch build.
        assert "bf16 needs AVX-512 BF16 or AMX; this CPU has neither (it has: AVX2)" in message
        assert "torch build" not in message
    check_precision("int8", CPU, cpu)
    check_precision("fp32", CPU, cpu)
    with pytest.raises(PrecisionUnavailable, match="fp16 runs on CUDA only"):
        check_precision("fp16", CPU, cpu)


@pytest.mark.parametrize("kind", EVERY)
def test_the_wizard_compares_the_fastest_precision_the_cpu_has(kind):
    cpu = EVERY[kind]
    expected = EXPECTED[kind][1] if kind in EXPECTED else ("bf16" if cpu.bf16 else "int8")
    assert fastest_reduced_precision(CPU, cpu) == expected


@pytest.mark.parametrize("kind", EVERY)
def test_the_default_linear_kernels_follow_the_cpu(kind):
    cpu = EVERY[kind]
    expected = EXPECTED[kind][2] if kind in EXPECTED else (
        "onednn" if cpu.vendor == "AuthenticAMD" and cpu.avx512 else "torch")
    assert default_linear_kernels(cpu) == expected


@pytest.mark.parametrize("kind", SIMULATED)
def test_an_engine_loads_the_linear_kernels_auto_picks_for_its_cpu(kind):
    engine = Engine(tiny_settings(), cpu=SIMULATED[kind])
    assert engine.settings.cpu_gemm == "auto"
    assert engine.loaded.cpu_gemm == EXPECTED[kind][2]
    assert engine.linear_kernels == EXPECTED[kind][2]


@pytest.mark.parametrize("kind", SIMULATED)
def test_an_engine_makes_every_decision_for_its_cpu(kind, loaded_tiny):
    """Refusal at start, the precision switch and system info all answer for the engine's CPU."""
    cpu = SIMULATED[kind]
    bf16_ok, candidate, _ = EXPECTED[kind]
    if bf16_ok:
        engine = Engine(tiny_settings(precision="bf16"), loaded=loaded_tiny, cpu=cpu)
        assert engine.precision == "bf16" and engine.with_precision("fp32").cpu is cpu
    else:
        with pytest.raises(PrecisionUnavailable, match="this CPU has neither"):
            Engine(tiny_settings(precision="bf16"), loaded=loaded_tiny, cpu=cpu)
        engine = Engine(tiny_settings(), loaded=loaded_tiny, cpu=cpu)
        with pytest.raises(PrecisionUnavailable, match="this CPU has neither"):
            engine.set_precision("bf16")
        assert engine.precision == "fp32"
    assert fastest_reduced_precision(engine.loaded.device, engine.cpu) == candidate
    info = sysinfo.gather(engine)
    figures = info.to_dict()["cpu"]
    assert figures["matrix_features"] == cpu.matrix_features and figures["bf16"] == bf16_ok
    assert {k: figures[k] for k in ("avx2", "avx512", "avx512_bf16", "amx")} == {
        "avx2": cpu.avx2, "avx512": cpu.avx512, "avx512_bf16": cpu.avx512_bf16, "amx": cpu.amx}
    rows = dict(info.rows())
    assert rows["CPU matrix instructions"] == ", ".join(cpu.matrix_features)
    assert rows["CPU"] == cpu.model


@pytest.mark.parametrize("kind", SIMULATED)
def test_the_bench_skips_bf16_with_the_reason_where_the_cpu_lacks_it(kind):
    from benchmarks.bench import precision_skip_reason

    reason = precision_skip_reason("bf16", "cpu", SIMULATED[kind])
    if EXPECTED[kind][0]:
        assert reason is None
    else:
        assert reason and "bf16 needs AVX-512 BF16 or AMX" in reason


def test_the_command_line_refuses_bf16_with_this_cpus_reason(tmp_path):
    """On this machine's real CPU: bf16 starts where the CPU has it, else the CLI exits with the
    reason and no traceback."""
    import numpy as np
    import soundfile

    audio = tmp_path / "a.wav"
    soundfile.write(audio, np.zeros(16000, dtype=np.float32), 16000)
    done = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--model", "random:tiny",
                           "--device", "cpu", "--precision", "bf16", "--vad", "energy",
                           "--punctuation", "off", str(audio)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr
    if REAL.bf16:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2 and "this CPU has neither" in done.stderr


def test_the_simulated_kinds_are_the_three_seen():
    assert not ZEN3_AVX2.avx512 and ZEN3_AVX2.avx2
    assert ZEN4_AVX512_BF16.avx512_bf16 and not ZEN4_AVX512_BF16.amx
    assert XEON_AMX.amx and XEON_AMX.bf16
