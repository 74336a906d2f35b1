"""PRELOAD_AUDIO: identical transcripts, ordered output, bounded look-ahead, worker errors isolated."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile
import torch
from helpers import speechlike, tiny_settings

from asr.audio.preload import PreloadPipeline, Prepared
from asr.engine import Engine


def test_preload_gives_the_same_transcripts(engine, clip_dir, reference_wavs, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    files = sorted(clip_dir.glob("*.wav")) + list(reference_wavs) + [tmp_path / "bad.wav"]
    inline = engine.run(files, batch_size=3, preload=False)
    preload_engine = Engine(tiny_settings(preload_audio=True), loaded=engine.loaded)
    preloaded = preload_engine.run(files, batch_size=3)
    assert preloaded.stats.preload and not inline.stats.preload
    assert [r.token_ids for r in preloaded.results] == [r.token_ids for r in inline.results]
    assert [r.file for r in preloaded.results] == [p.name for p in files]
    assert preloaded.results[-1].error and "not a readable audio file" in preloaded.results[-1].error
    assert inline.stats.wait_s > 0  # inline, the model waits for every decode


def test_queue_bound_holds_on_a_large_batch(engine, tmp_path):
    """60 files of 4-8 s with a 1 MB cap: never more than the cap queued, all recognised."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(60):
        path = tmp_path / f"f{i:02d}.wav"
        soundfile.write(path, speechlike(float(rng.uniform(4, 8)), seed=100 + i), 16000)
        files.append(path)
    overrides = {"preload_audio": True, "preload.queue_mb": 1, "preload.queue_items": 8,
                 "preload.workers": 2}
    bounded = Engine(tiny_settings(**overrides), loaded=engine.loaded)
    run = bounded.run(files, batch_size=4)
    assert all(r.ok for r in run.results)
    assert 0 < run.stats.peak_queued_mb <= 1.0


def test_pipeline_yields_in_order_and_respects_item_cap():
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def prepare(job: int) -> Prepared:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        item = Prepared(index=job, name=str(job), segments=[torch.zeros(10, 4)])
        with lock:
            in_flight -= 1
        return item

    pipeline = PreloadPipeline(prepare, list(range(50)), estimate_bytes=lambda j: 160, workers=3,
                               max_items=4, max_bytes=10_000)
    seen = []
    for item in pipeline:
        seen.append(item.index)
        assert pipeline._reserved_items <= 4  # noqa: SLF001 - the bound under test
    assert seen == list(range(50))
    assert peak <= 3


def test_pipeline_benchmark_command_smoke(tmp_path, loaded_tiny):
    """The measuring command runs end to end and writes its JSON (no timing assertions)."""
    import json

    from benchmarks.pipeline import main

    out = tmp_path / "pipeline.json"
    assert main(["--model", "random:tiny", "--device", "cpu", "--files", "2", "--repeats", "1",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["preload"]["summary"]) >= {"off", "on", "wall_ratio_off_over_on"}
    assert report["cache"]["repeat"]["cache_hits"] == 2


def test_queue_budget_estimates_match_real_feature_sizes(engine, clip_dir):
    """The byte cap is enforced on estimates; they must track the real feature sizes closely."""
    for path in sorted(clip_dir.glob("*.wav")):
        job = engine._job(0, path, use_cache=False)  # noqa: SLF001 - the estimate under test
        prepared = engine._prepare(job)  # noqa: SLF001
        assert prepared.error is None
        assert engine._estimate_bytes(job) == pytest.approx(prepared.nbytes, rel=0.05)  # noqa: SLF001
