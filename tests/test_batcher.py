"""Batches shared across requests: one batcher in front of the model, real engine, real audio.

Concurrent `engine.run` calls (as the web UI, the API and the CLI make them) put their segments
into the same batches; each file still gets exactly the tokens it gets alone.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile
from helpers import run_together, speechlike, tiny_settings

from asr.engine import Engine
from asr.recognition.batcher import QueueFull


@pytest.fixture(scope="module")
def files(tmp_path_factory, clip_dir, reference_wavs):
    """Eight distinct files of mixed lengths."""
    return sorted(clip_dir.glob("*.wav"))[:5] + list(reference_wavs)


def test_eight_concurrent_requests_share_batches_and_keep_their_tokens(loaded_tiny, files):
    engine = Engine(tiny_settings(padding_limit_pct=1000, **{"batching.max_wait_ms": 200}),
                    loaded=loaded_tiny)
    alone = {p.name: engine.transcribe([p], batch_size=1)[0].token_ids for p in files}
    before = engine.batcher.stats()
    results = run_together([lambda p=p: engine.transcribe([p], batch_size=8)[0] for p in files])
    for path, result in zip(files, results, strict=True):
        assert result.ok and result.token_ids == alone[path.name], path.name
    stats = engine.batcher.stats()
    assert stats.shared_batches > before.shared_batches  # requests really met in batches
    assert max(r.batch_size for r in results) > 1
    assert stats.mixed_hotword_batches == 0


def test_requests_with_different_hotwords_never_share_a_batch(loaded_tiny, files):
    engine = Engine(tiny_settings(padding_limit_pct=1000, **{"batching.max_wait_ms": 200}),
                    loaded=loaded_tiny)
    words = ["达摩院", "魔搭", None, "达摩院", "魔搭", None, "达摩院", None]
    alone = {(p.name, w): engine.transcribe([p], batch_size=1, hotwords=w)[0].token_ids
             for p, w in zip(files, words, strict=True)}
    results = run_together([lambda p=p, w=w: engine.transcribe([p], batch_size=8, hotwords=w)[0]
                             for p, w in zip(files, words, strict=True)])
    for path, word, result in zip(files, words, results, strict=True):
        assert result.token_ids == alone[(path.name, word)]
    stats = engine.batcher.stats()
    assert stats.mixed_hotword_batches == 0
    assert stats.shared_batches > 0  # the same hotwords did meet


def test_a_short_request_is_not_held_back_by_a_long_one(loaded_tiny, tmp_path):
    """Fairness: 5 s sent while 40 files of 12 s run comes back long before they do."""
    engine = Engine(tiny_settings(batch_size=2), loaded=loaded_tiny)
    long_files = []
    for i in range(40):
        path = tmp_path / f"long{i:02d}.wav"
        soundfile.write(path, speechlike(12.0, seed=100 + i), 16000)
        long_files.append(path)
    short = (speechlike(5.0, seed=7), 16000)
    expected = engine.transcribe([short])[0].token_ids
    started = threading.Event()
    timings = {}

    def long_run():
        t0 = time.perf_counter()
        engine.transcribe(long_files, progress=lambda done, total, name: started.set())
        timings["long"] = time.perf_counter() - t0

    thread = threading.Thread(target=long_run)
    thread.start()
    assert started.wait(60)
    t0 = time.perf_counter()
    result = engine.transcribe([short])[0]
    timings["short"] = time.perf_counter() - t0
    thread.join()
    assert result.token_ids == expected
    print(f"\nfairness: short {timings['short']:.2f} s beside a long run of {timings['long']:.2f} s")
    assert timings["short"] < 0.5 * timings["long"], timings


def test_a_cancelled_request_harms_no_one_else(loaded_tiny, files):
    """A caller that goes away mid-run (here: its progress callback raises) is dropped; the
    batcher keeps serving the others, who get their full, correct results."""
    engine = Engine(tiny_settings(batch_size=1), loaded=loaded_tiny)
    alone = [engine.transcribe([p])[0].token_ids for p in files]

    def leaves():
        with pytest.raises(ConnectionAbortedError):
            engine.transcribe(files * 3, progress=_raise_after(2))
        return "left"

    outcomes = run_together([leaves, lambda: engine.transcribe(files)])
    assert outcomes[0] == "left"
    assert [r.token_ids for r in outcomes[1]] == alone
    assert [r.token_ids for r in engine.transcribe(files)] == alone  # still serving


def _raise_after(count: int):
    seen = []

    def progress(done, total, name):
        seen.append(name)
        if len(seen) >= count:
            raise ConnectionAbortedError("the client disconnected")

    return progress


def test_past_max_queued_s_new_requests_are_refused(loaded_tiny, files):
    """While the wizard holds the model, queued audio grows; past the bound a request is refused
    with a clear message instead of waiting without end."""
    engine = Engine(tiny_settings(**{"batching.max_queued_s": 5}), loaded=loaded_tiny)
    holder = engine.batcher.ticket(None, False, 1, lambda outcome: None, name="holder")
    waiting = threading.Thread(target=lambda: engine.transcribe(files))
    with engine.batcher.exclusive(holder):
        waiting.start()
        deadline = time.monotonic() + 30
        while engine.batcher.stats().queued_s <= 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(QueueFull, match="batching.max_queued_s"):
            engine.transcribe(files[:1])
    waiting.join()
    assert engine.transcribe(files[:1])[0].ok  # room again once the queue drained


def test_an_exclusive_run_shares_no_batch(loaded_tiny, files):
    engine = Engine(tiny_settings(padding_limit_pct=1000, **{"batching.max_wait_ms": 100}),
                    loaded=loaded_tiny)
    before = engine.batcher.stats().shared_batches
    outcomes = run_together([lambda: engine.run(files, batch_size=4, exclusive=True),
                              lambda: engine.run(files, batch_size=4)])
    assert all(r.ok for run in outcomes for r in run.results)
    assert engine.batcher.stats().shared_batches == before
    assert np.all([r.batch_size <= 4 for r in outcomes[0].results])
