"""The memory model: fitting, measuring a real recognizer's peak, and the batcher splitting a batch
predicted not to fit before it runs (random:tiny on the CPU, real audio files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_settings

from asr.engine import Engine
from asr.recognition.memory_model import (
    NO_LIMIT,
    MemoryModel,
    MemoryPoint,
    cpu_allocation_peak,
    frames_grid,
    free_memory_bytes,
    load_or_fit,
    measure_grid,
    measure_peak,
    memory_budget,
    padded_twin,
    synthetic_features,
)

MB = 2**20


def _grid(a: float, b: float, c: float, d: float = 0.0, noise: float = 0.0,
          seed: int = 0) -> list[MemoryPoint]:
    rng = np.random.default_rng(seed)
    return [MemoryPoint(batch, frames, int((a + batch * frames * max(d, b + c * frames))
                                           * (1 + rng.uniform(-noise, noise))))
            for batch in (1, 2, 4, 8) for frames in (50, 200, 500, 1000)]


def test_fitting_recovers_known_coefficients():
    exact = MemoryModel.fit(_grid(3 * MB, 5000.0, 12.0))
    assert exact.a == pytest.approx(3 * MB, rel=1e-3)
    assert exact.b == pytest.approx(5000.0, rel=1e-3)
    assert exact.c == pytest.approx(12.0, rel=1e-3)
    assert exact.d == 0.0 and exact.margin < 1e-6
    # Two stages: the decoder's logits peak below ~390 frames, the encoder's T² scores above.
    staged = MemoryModel.fit(_grid(0.5 * MB, 26000.0, 28.0, d=37000.0))
    assert (staged.a, staged.b, staged.c, staged.d) == pytest.approx((0.5 * MB, 26000.0, 28.0, 37000.0),
                                                                     rel=1e-3)
    plain_sum = MemoryModel.fit(staged.points, stages=False)
    assert max(map(abs, plain_sum.errors())) > 5 * max(map(abs, staged.errors()))
    noisy = MemoryModel.fit(_grid(3 * MB, 5000.0, 12.0, noise=0.01))
    assert noisy.b == pytest.approx(5000.0, rel=0.1) and noisy.c == pytest.approx(12.0, rel=0.1)
    assert max(abs(e) for e in noisy.errors()) < 0.05
    # The margin makes every prediction an upper bound on the runs it was fitted to.
    assert 0 < noisy.margin < 0.03 and min(noisy.errors()) >= 0
    # Fused attention: no T² term. The fit finds none, and never a negative coefficient, even
    # where plain least squares would pay for noise with one.
    fused = MemoryModel.fit(_grid(0.0, 8000.0, 0.0, noise=0.02, seed=3))
    assert fused.predict(4, 1000) == pytest.approx(4 * 1000 * 8000.0, rel=0.05)
    assert min(fused.a, fused.b, fused.c, fused.d) >= 0
    assert fused.c * 1000 < 0.02 * max(fused.b, fused.d)  # no quadratic part to speak of
    linear = MemoryModel.fit(_grid(0.0, 8000.0, 5.0), quadratic=False)
    assert linear.c == 0.0


def test_predict_largest_batch_json_and_lanes(tmp_path):
    model = MemoryModel(a=10 * MB, b=4000.0, c=16.0, precision="fp16", device="cuda:0")
    frames = 800
    one = model.predict(1, frames)
    assert model.predict(4, frames) == pytest.approx(10 * MB + 4 * (one - 10 * MB), abs=4)
    budget = model.predict(5, frames) + 1
    assert model.largest_batch(frames, budget) == 5
    assert model.predict(model.largest_batch(frames, budget) + 1, frames) > budget
    assert model.largest_batch(frames, one - 1) == 0  # not even one fits
    assert MemoryModel(a=MB, b=0.0, c=0.0).largest_batch(frames, 2 * MB) == NO_LIMIT
    # Side by side: at most `lanes` single files at once, however big the batch.
    lanes = model.with_lanes(2)
    assert lanes.predict(8, frames) == lanes.predict(2, frames) == 2 * one
    assert lanes.largest_batch(frames, 2 * one) == NO_LIMIT
    assert lanes.largest_batch(frames, 2 * one - 1) == 1
    path = tmp_path / "memory.json"
    fitted = MemoryModel.fit(_grid(MB, 3000.0, 8.0), precision="bf16", device="cpu", label="x")
    fitted.save(path)
    again = MemoryModel.load(path)
    assert again == fitted
    assert again.predict(3, 333) == fitted.predict(3, 333)
    with pytest.raises(ValueError, match="precision"):
        MemoryModel.fit(_grid(MB, 1.0, 1.0), precision="fp8")
    # fp32 -> bf16: the B·T part halves; the T² part (fp32 softmax under autocast) does not.
    full = MemoryModel.fit(_grid(MB, 3000.0, 8.0), precision="fp32")
    half = full.rescaled("fp16")
    assert half.b == pytest.approx(full.b / 2) and half.c == full.c and half.precision == "fp16"


def test_the_cpu_peak_is_the_allocators_peak():
    """Three 4 MB tensors alive at once, then one freed and another made: a 12 MB peak."""
    def work():
        x = torch.empty(1000, 1000)
        y = x + 1
        z = y * 2
        del x
        return (z + y).sum()

    assert cpu_allocation_peak(work) == pytest.approx(12_000_000, rel=0.001)
    assert free_memory_bytes("cpu") > 0
    assert memory_budget("cpu", 50) == pytest.approx(free_memory_bytes("cpu") * 0.5, rel=0.05)


@pytest.fixture(scope="module")
def fitted(loaded_tiny):
    """A model fitted to measured runs of the real random:tiny recognizer (padded batches)."""
    recognizer = padded_twin(Engine(tiny_settings(cpu_lanes=1), loaded=loaded_tiny).recognizer)
    points = measure_grid(recognizer, batches=(1, 2), frames=(100, 250, 400))
    return recognizer, MemoryModel.fit(points, label="random:tiny")


def test_a_fitted_model_predicts_a_run_it_never_saw(fitted):
    recognizer, model = fitted
    print(f"\nrandom:tiny, CPU fp32: {model.describe()}; errors at the fitted points "
          + ", ".join(f"{e:+.1%}" for e in model.errors()))
    assert model.b > 0 and model.c > 0  # activations, and the encoder's T x T attention scores
    assert max(abs(e) for e in model.errors()) < 0.1
    for batch, frames in [(3, 330), (4, 150)]:
        measured = measure_peak(recognizer, synthetic_features(recognizer, batch, frames, seed=5))
        predicted = model.predict(batch, frames)
        print(f"held out B={batch} T={frames}: measured {measured / MB:.2f} MB, "
              f"predicted {predicted / MB:.2f} MB")
        assert predicted == pytest.approx(measured, rel=0.25)


def test_load_or_fit_reads_a_saved_model_without_measuring(fitted, tmp_path, loaded_tiny):
    _, model = fitted
    path = tmp_path / "tiny.json"
    model.save(path)
    side_by_side = Engine(tiny_settings(), loaded=loaded_tiny).recognizer  # 2 lanes
    loaded = load_or_fit(side_by_side, path)
    assert (loaded.a, loaded.b, loaded.c) == (model.a, model.b, model.c)
    assert loaded.lanes == side_by_side.lanes == 2


def test_a_run_out_of_memory_is_left_out_of_the_grid(loaded_tiny):
    """simulate_oom_frames: torch's OOM past 500 padded frames; the grid keeps what fits."""
    recognizer = Engine(tiny_settings(simulate_oom_frames=500), loaded=loaded_tiny).recognizer
    points = measure_grid(recognizer, batches=(1, 2, 4), frames=(60, 200), warmup=False)
    assert [(p.batch, p.frames) for p in points] == [(1, 60), (2, 60), (4, 60), (1, 200), (2, 200)]
    assert frames_grid(1000) == (100, 250, 500, 1000)


def test_the_batcher_splits_a_batch_predicted_not_to_fit(fitted, loaded_tiny, clip_dir):
    _, model = fitted
    engine = Engine(tiny_settings(cpu_lanes=1, padding_limit_pct=1000, **{"batching.max_wait_ms": 200}),
                    loaded=loaded_tiny)
    files = sorted(clip_dir.glob("*.wav"))
    alone = {p.name: engine.transcribe([p], batch_size=1)[0].token_ids for p in files}
    ran: list[tuple[int, int]] = []  # (units, longest frames) of every batch the model ran
    run_batch = engine.batcher._run_batch

    def recording(feats, *args):
        ran.append((len(feats), max(f.shape[0] for f in feats)))
        return run_batch(feats, *args)

    engine.batcher._run_batch = recording
    longest = int(11.8 * engine.features.frames_per_second) + 1  # the longest clip, whole
    budget = model.predict(2, longest) * 1.01  # two of the longest clip fit, three do not
    engine.batcher.memory_model = model
    engine.batcher.memory_budget = lambda: budget
    before = engine.batcher.stats().predicted_splits
    results = engine.transcribe(files, batch_size=8)
    assert all(r.ok for r in results)
    assert {p.name: r.token_ids for p, r in zip(files, results, strict=True)} == alone
    assert engine.batcher.stats().predicted_splits > before
    assert all(units == 1 or model.predict(units, frames) <= budget for units, frames in ran), ran
    assert max(units for units, _ in ran) > 1  # split into smaller batches, not one by one
    assert not any(r.backed_off for r in results)

    # A budget everything fits in: nothing is split, the batch runs as formed.
    ran.clear()
    engine.batcher.memory_budget = lambda: 100 * 2**30
    before = engine.batcher.stats().predicted_splits
    results = engine.transcribe(files, batch_size=8)
    assert {p.name: r.token_ids for p, r in zip(files, results, strict=True)} == alone
    assert engine.batcher.stats().predicted_splits == before
    assert max(units for units, _ in ran) == 8


def test_the_engine_loads_a_fitted_model_and_the_wizard_shows_its_prediction(engine, reference_wavs,
                                                                              tmp_path):
    """A CPU engine uses a model fitted beforehand (here: into its cache_dir), none otherwise;
    the wizard's table puts the prediction beside each measured run."""
    from asr.recognition.memory_model import cache_path
    from tuning.wizard import TABLE_COLUMNS, run_wizard

    assert Engine(tiny_settings(cache_dir=str(tmp_path)), loaded=engine.loaded).batcher.memory_model is None
    path = cache_path(tmp_path / "memory", engine.loaded.directory, engine.loaded.device, "fp32")
    fitted = load_or_fit(padded_twin(engine.recognizer), path, "fp32", batches=(1, 2), frames=(100, 300))
    assert path.is_file()
    own = Engine(tiny_settings(cache_dir=str(tmp_path)), loaded=engine.loaded)
    model = own.batcher.memory_model
    assert model is not None and (model.b, model.c) == (fitted.b, fitted.c)
    assert model.lanes == own.recognizer.lanes
    report = run_wizard(own, [reference_wavs[0]], sizes=[2], copies=2, repeats=1)
    column = TABLE_COLUMNS.index("predicted (MB)")
    assert all(row[column] is not None and row[column] > 0 for row in report.table())
    frames = int(_seconds(reference_wavs[0]) * own.features.frames_per_second)
    sweep = report.sweep[0]
    start_mb = sweep.predicted_mb - model.predict(2, frames) / MB  # the run's RSS when it started
    assert 0 < start_mb <= sweep.peak_mb
    assert not any("no memory model" in note for note in report.notes)


def _seconds(path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    return info.frames / info.samplerate
