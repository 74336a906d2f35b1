"""The engine on a real CUDA GPU (marker `gpu`): skipped where torch sees no CUDA device.

`bash gpu_check/run.sh OUT` runs these on a GPU machine (see gpu_check/); by hand:
`pytest -m gpu tests/test_gpu.py`. Settings from the environment:

- GPU_CHECK_MODEL: default `random:large` (FunASR's real SeACo-Paraformer architecture with random
  weights, built offline into .cache/models on first use);
- GPU_CHECK_DEVICE: default `cuda`; `cpu` runs the checks a CPU can run (the kit's dry run);
- GPU_CHECK_QUICK=1: fewer files and batch sizes;
- GPU_CHECK_FIGURES=PATH: each test adds its measured figures to this JSON file (the kit's summary).

Precision: written against the `precision` setting (fp32, bf16, fp16, int8); on a build from
before it, fp16 falls back to `fp16: true` and bf16 is skipped.
"""

from __future__ import annotations

import json
import os
import random
import time
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from helpers import speechlike, tiny_settings

DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")
MODEL = os.environ.get("GPU_CHECK_MODEL", "random:large")
QUICK = os.environ.get("GPU_CHECK_QUICK") == "1"
MB = 2**20

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                       reason="CUDA is not available (GPU_CHECK_DEVICE=cpu runs the CPU-capable checks)"),
]


def record(name: str, **figures) -> None:
    """Add this test's figures to GPU_CHECK_FIGURES (a JSON object keyed by test), if set."""
    path = os.environ.get("GPU_CHECK_FIGURES")
    if not path:
        return
    target = Path(path)
    current = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else {}
    current[name] = figures
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(current, indent=1, default=str), encoding="utf-8")
    os.replace(temporary, target)


def needs_cuda() -> None:
    if DEVICE != "cuda":
        pytest.skip("needs CUDA (GPU_CHECK_DEVICE is not cuda)")


def precision_overrides(precision: str) -> dict | None:
    """Settings for `precision`; None where this build has no such mode."""
    from asr.settings import SCHEMA

    if "precision" in SCHEMA:
        return {"precision": precision}
    return {"fp32": {}, "fp16": {"fp16": True}}.get(precision)


def device_settings(**overrides):
    """The test settings on the checked device: padded batches (cpu_lanes 1, as a GPU's), the
    padding limit lifted so that batches of very different lengths really form."""
    base = {"model": MODEL, "device": DEVICE, "batch_size": 8, "cpu_lanes": 1, "padding_limit_pct": 1000}
    base.update(overrides)
    return tiny_settings(**base)


def engine_for(loaded, **overrides):
    """An Engine on the shared weights; its batcher predicts nothing, so memory limits are hit."""
    from asr.engine import Engine

    engine = Engine(device_settings(**overrides), loaded=loaded)
    if hasattr(engine.batcher, "memory_model"):
        engine.batcher.memory_model = None
    return engine


def agreement(a: list[int], b: list[int]) -> float:
    return 1.0 if a == b else round(SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)


@pytest.fixture(scope="module")
def device_engine():
    from asr.engine import Engine

    return Engine(device_settings())


@pytest.fixture(scope="module")
def mixed_files(clip_dir, reference_wavs) -> list[Path]:
    files = sorted(clip_dir.glob("*.wav")) + list(reference_wavs)
    return files[::3] if QUICK else files


def _write(path: Path, samples: np.ndarray) -> Path:
    soundfile.write(path, samples, 16000)
    return path


def test_batches_never_change_tokens_fp32(device_engine, mixed_files):
    """A file alone and in padded batches of 2-8, two orders: the same tokens (fp32)."""
    started = time.perf_counter()
    alone = {p.name: device_engine.transcribe([p], batch_size=1)[0] for p in mixed_files}
    assert all(r.ok and r.token_ids for r in alone.values()), [r.error for r in alone.values()]
    shuffled = list(mixed_files)
    random.Random(7).shuffle(shuffled)
    sizes = list(range(2, 4 if QUICK else 9))
    mismatches, formed = [], {}
    for size in sizes:
        for order in (mixed_files, shuffled):
            results = device_engine.transcribe(order, batch_size=size)
            formed[size] = max(formed.get(size, 0), max(r.batch_size for r in results))
            for path, result in zip(order, results, strict=True):
                if result.token_ids != alone[path.name].token_ids:
                    mismatches.append({"file": path.name, "batch": size,
                                       "agreement": agreement(result.token_ids, alone[path.name].token_ids)})
    record("padding_invariance_fp32", files=len(mixed_files), sizes=sizes, runs=2 * len(sizes),
           largest_batch_formed=formed, mismatches=mismatches,
           seconds=round(time.perf_counter() - started, 2))
    assert all(formed[s] == s for s in sizes), formed
    assert not mismatches


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_tokens_against_fp32(device_engine, mixed_files, precision):
    """fp16 and bf16 run every file; the share of tokens that agree with fp32 is reported (random
    weights give flat scores, so reduced precision may flip more tokens than a trained model)."""
    from asr.models import ModelLoadError

    overrides = precision_overrides(precision)
    if overrides is None:
        pytest.skip(f"this build has no {precision} mode (no `precision` setting)")
    try:
        reduced = engine_for(device_engine.loaded, **overrides)
    except (ModelLoadError, ValueError) as exc:  # PrecisionUnavailable: the hardware lacks it
        pytest.skip(f"{precision} unavailable here: {exc}")
    running = getattr(reduced, "precision", "fp16" if getattr(reduced, "fp16", False) else "fp32")
    if running != precision:  # a build from before `precision` falls back to fp32 with a warning
        pytest.skip(f"the engine runs {running} here, not {precision}")
    started = time.perf_counter()
    reference = device_engine.transcribe(mixed_files, batch_size=4)
    fp32_s = time.perf_counter() - started
    started = time.perf_counter()
    results = reduced.transcribe(mixed_files, batch_size=4)
    reduced_s = time.perf_counter() - started
    alone = [reduced.transcribe([p], batch_size=1)[0] for p in mixed_files]
    per_file = []
    for path, ref, got, single in zip(mixed_files, reference, results, alone, strict=True):
        per_file.append({"file": path.name, "tokens_fp32": len(ref.token_ids), "tokens": len(got.token_ids),
                         "identical": ref.token_ids == got.token_ids,
                         "agreement": agreement(got.token_ids, ref.token_ids),
                         "same_alone_and_batched": single.token_ids == got.token_ids})
    identical = sum(f["identical"] for f in per_file)
    record(f"precision_{precision}", files=len(per_file), identical_files=identical,
           identical_share=round(identical / len(per_file), 4),
           mean_token_agreement=round(sum(f["agreement"] for f in per_file) / len(per_file), 4),
           batch_invariant_files=sum(f["same_alone_and_batched"] for f in per_file),
           fp32_s=round(fp32_s, 3), reduced_s=round(reduced_s, 3), per_file=per_file)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert all(r.token_ids for r, ref in zip(results, reference, strict=True) if ref.token_ids)


def _peak_above(engine, files, batch_size) -> int:
    """Peak CUDA bytes above what was allocated before one run."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    results = engine.transcribe(files, batch_size=batch_size)
    torch.cuda.synchronize()
    assert all(r.ok for r in results)
    return torch.cuda.max_memory_allocated() - base


def _limited_run(engine, files, batch_size, limit_above: float):
    """engine.run under a real CUDA memory cap: `limit_above` bytes above what is allocated now."""
    device = engine.loaded.device
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    limit = torch.cuda.memory_allocated(device) + limit_above
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), device)
    try:
        return engine.run(files, batch_size=batch_size, use_cache=False), limit
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def test_real_cuda_out_of_memory_backs_off_and_loses_nothing(device_engine, tmp_path):
    """A memory cap (set_per_process_memory_fraction) that fits batches of 2 but not of 4: a
    batch of 8 really runs out of CUDA memory, halves, and every file comes back with its tokens."""
    needs_cuda()
    engine = engine_for(device_engine.loaded)
    files = [_write(tmp_path / f"long{i}.wav", speechlike(50.0, seed=100 + i)) for i in range(8)]
    expected = {p.name: engine.transcribe([p], batch_size=1)[0].token_ids for p in files}
    one = _peak_above(engine, files[:1], 1)
    two = _peak_above(engine, files[:2], 2)
    per_file = max(two - one, one // 4)
    fixed = max(0, one - per_file)
    run, limit = _limited_run(engine, files, 8, fixed + 2.6 * per_file)
    results = run.results
    split = [r.file for r in results if any("cut at quiet points" in w for w in r.warnings)]
    record("real_oom_backoff", one_file_peak_mb=round(one / MB, 1), two_files_peak_mb=round(two / MB, 1),
           limit_mb=round(limit / MB, 1), backoffs=run.stats.backoffs,
           batch_sizes=[r.batch_size for r in results], backed_off=sum(r.backed_off for r in results),
           failed=[f"{r.file}: {r.error}" for r in results if not r.ok], split=split,
           seconds=round(run.stats.wall_s, 2))
    assert run.stats.backoffs >= 1, "the cap was not hit: no back-off"
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert any(r.backed_off for r in results)
    for r in results:
        if r.file not in split:
            assert r.token_ids == expected[r.file], r.file


def test_real_cuda_out_of_memory_alone_halves_the_piece(device_engine, tmp_path):
    """Too big for the cap even alone: the piece is cut at its pause and recognised in halves."""
    needs_cuda()
    engine = engine_for(device_engine.loaded)
    half = speechlike(26.0, seed=200)
    whole = _write(tmp_path / "whole.wav", np.concatenate([half, np.zeros(32000, np.float32),
                                                           speechlike(26.0, seed=201)]))
    part = _write(tmp_path / "part.wav", half)
    full_peak = _peak_above(engine, [whole], 1)
    half_peak = _peak_above(engine, [part], 1)
    run, limit = _limited_run(engine, [whole], 1, (full_peak + half_peak) / 2)
    result = run.results[0]
    record("real_oom_alone_split", whole_peak_mb=round(full_peak / MB, 1),
           half_peak_mb=round(half_peak / MB, 1), limit_mb=round(limit / MB, 1),
           backoffs=run.stats.backoffs, ok=result.ok, error=result.error, warnings=result.warnings)
    assert result.ok, result.error
    assert result.backed_off and run.stats.backoffs >= 1
    assert any("cut at quiet points" in w for w in result.warnings)


def test_nvml_reports_the_card(device_engine):
    """asr.system.gpu's NVML figures: the card's name, memory and utilisation, beside torch's own."""
    needs_cuda()
    from asr.system.gpu import gpu_memory

    info = gpu_memory(device_engine.loaded.device)
    free, total = torch.cuda.mem_get_info(device_engine.loaded.device)
    record("nvml", **info.to_dict(), torch_free_mb=round(free / MB, 1), torch_total_mb=round(total / MB, 1))
    assert info.available and info.name
    assert info.message == "", info.message  # pynvml answered
    assert info.used_mb > 0 and info.total_mb > 0
    assert abs(info.total_mb - total / MB) <= 0.05 * total / MB
    assert info.torch_allocated_mb > 0  # the model's weights


def test_batch_size_wizard_end_to_end(device_engine, tmp_path):
    """tuning.run_wizard on the device: baseline, sweep, refine, and a recommendation."""
    from tuning import run_wizard

    clip = _write(tmp_path / "wizard.wav", speechlike(12.0 if QUICK else 40.0, seed=300))
    sizes, copies = ([2], 2) if QUICK else ([2, 4, 8], 8)
    report = run_wizard(device_engine, [clip], sizes=sizes, copies=copies, repeats=1)
    runs = [{"step": r.step, "batch": r.batch_size, "per_file_s": round(r.per_file_s, 4), "status": r.status,
             "peak_mb": r.peak_mb, "memory_pct": r.memory_pct} for r in report.runs()]
    record("wizard", recommended=report.recommended, reason=report.reason, knee=report.knee,
           device=report.device, memory_source=report.memory_source, memory_total_mb=report.memory_total_mb,
           elapsed_s=round(report.elapsed_s, 2), runs=runs)
    assert report.recommended >= 1
    assert any(r.ok for r in report.runs())
    if DEVICE == "cuda":
        assert report.memory_source.startswith("GPU")
        assert all(r.peak_mb and r.peak_mb > 0 for r in report.runs() if r.ok)


def test_transcripts_on_the_device(device_engine, reference_wavs):
    """Silero VAD, punctuation (random:tiny, on the same device) and word times, end to end."""
    engine = engine_for(device_engine.loaded, vad="silero", punctuation="random:tiny", timestamps=True)
    results = engine.transcribe(reference_wavs, batch_size=4)
    record("transcripts", files=len(results), segments=[len(r.segments) for r in results],
           words=[sum(len(s.words or []) for s in r.segments) for r in results],
           errors=[r.error for r in results if not r.ok])
    assert all(r.ok and r.segments for r in results), [r.error for r in results]
    for r in results:
        words = [w for s in r.segments for w in (s.words or [])]
        assert words
        starts = [w.start_s for w in words]
        assert starts == sorted(starts) and 0 <= starts[0] and words[-1].end_s <= r.duration_s + 0.5
