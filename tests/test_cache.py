"""Feature cache: same transcripts on and off, byte-bounded LRU, disk tier, fingerprint misses."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch
from conftest import tiny_settings

from asr.cache import CachedFeatures, FeatureCache, cache_key
from asr.engine import Engine


def feats(frames: int, value: float = 0.0) -> CachedFeatures:
    return CachedFeatures([torch.full((frames, 560), float(value))], duration_s=frames * 0.06)


def test_lru_never_exceeds_its_byte_budget():
    one = feats(100).nbytes
    cache = FeatureCache(max_bytes=3 * one + one // 2)
    for i in range(10):
        cache.put(f"k{i}", feats(100, i))
        assert cache.stats().bytes <= cache.max_bytes
    assert cache.stats().entries == 3
    assert cache.get("k0") is None  # evicted, oldest first
    assert cache.get("k9") is not None
    cache.get("k7")  # touch: k7 becomes most recent
    cache.put("k10", feats(100))
    assert cache.get("k7") is not None and cache.get("k8") is None
    cache.put("huge", feats(1000))  # larger than the whole budget: refused, nothing evicted
    assert cache.get("huge") is None and cache.stats().bytes <= cache.max_bytes


def test_cache_is_thread_safe_under_concurrent_use():
    cache = FeatureCache(max_bytes=20 * feats(50).nbytes)
    errors = []

    def worker(seed: int):
        try:
            for i in range(200):
                key = f"k{(seed * 7 + i) % 40}"
                if cache.get(key) is None:
                    cache.put(key, feats(50, seed))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats.bytes <= cache.max_bytes and stats.hits + stats.misses == 6 * 200


def test_same_transcripts_with_cache_on_and_off(engine, clip_dir, reference_wavs):
    files = sorted(clip_dir.glob("*.wav")) + list(reference_wavs)
    plain = engine.transcribe(files, batch_size=3)
    cached_engine = Engine(tiny_settings(**{"feature_cache.enable": True}), loaded=engine.loaded)
    first = cached_engine.run(files, batch_size=3)
    second = cached_engine.run(files, batch_size=3)
    assert [r.token_ids for r in first.results] == [r.token_ids for r in plain]
    assert [r.token_ids for r in second.results] == [r.token_ids for r in plain]
    assert not any(r.cache_hit for r in first.results)
    assert all(r.cache_hit and r.features_s == 0.0 for r in second.results)
    assert second.stats.cache_hits == len(files)
    stats = cached_engine.cache.stats()
    assert stats.hits == len(files) and stats.misses == len(files) and stats.hit_rate == 0.5
    # use_cache=False bypasses it entirely (the tuning wizard relies on this).
    bypass = cached_engine.run(files, batch_size=3, use_cache=False)
    assert not any(r.cache_hit for r in bypass.results)


def test_same_bytes_under_another_name_hit(engine, reference_wavs, tmp_path):
    copy = tmp_path / "renamed.wav"
    shutil.copy(reference_wavs[0], copy)
    cached_engine = Engine(tiny_settings(**{"feature_cache.enable": True}), loaded=engine.loaded)
    cached_engine.transcribe([reference_wavs[0]])
    [again] = cached_engine.transcribe([copy])
    assert again.cache_hit and again.file == "renamed.wav"


def test_disk_tier_survives_a_new_engine_and_drops_corrupt_entries(engine, reference_wavs, tmp_path):
    overrides = {"feature_cache.enable": True, "feature_cache.dir": str(tmp_path / "fc")}
    first_engine = Engine(tiny_settings(**overrides), loaded=engine.loaded)
    baseline = first_engine.transcribe(reference_wavs)
    entries = sorted((tmp_path / "fc").glob("*.feat"))
    assert len(entries) == len(reference_wavs)

    restarted = Engine(tiny_settings(**overrides), loaded=engine.loaded)
    again = restarted.transcribe(reference_wavs)
    assert all(r.cache_hit for r in again)
    assert [r.token_ids for r in again] == [r.token_ids for r in baseline]
    assert restarted.cache.stats().disk_hits == len(reference_wavs)

    # Truncate one entry and flip a byte in another: both are detected, dropped and recomputed.
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    data = bytearray(entries[1].read_bytes())
    data[-10] ^= 0xFF
    entries[1].write_bytes(bytes(data))
    third = Engine(tiny_settings(**overrides), loaded=engine.loaded)
    recomputed = third.transcribe(reference_wavs)
    assert [r.token_ids for r in recomputed] == [r.token_ids for r in baseline]
    assert sum(not r.cache_hit for r in recomputed) == 2
    assert third.cache.stats().corrupt_dropped == 2
    assert len(list((tmp_path / "fc").glob("*.feat"))) == len(reference_wavs)  # rewritten


def test_changed_frontend_fingerprint_misses(engine, reference_wavs):
    cache = FeatureCache(max_bytes=2**24)
    key = cache_key("0123abcd", engine.features.fingerprint)
    cache.put(key, feats(10))
    assert cache.get(cache_key("0123abcd", engine.features.fingerprint)) is not None
    frontend = engine.loaded.frontend
    original = frontend.lfr_n
    try:
        frontend.lfr_n = original + 1
        from asr.features import frontend_fingerprint

        changed = frontend_fingerprint(frontend)
    finally:
        frontend.lfr_n = original
    assert changed != engine.features.fingerprint
    assert cache.get(cache_key("0123abcd", changed)) is None


@pytest.mark.parametrize("enable", [False, True])
def test_disabled_cache_stores_nothing(enable):
    cache = FeatureCache(max_bytes=2**20, enabled=enable)
    cache.put("k", feats(5))
    assert (cache.get("k") is not None) is enable


def test_a_changed_segment_length_does_not_reuse_cached_segments(engine, tmp_path):
    """Cached segments were cut at the old input.segment_s; a new length must recompute."""
    import soundfile
    from conftest import speechlike

    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, speechlike(70.0, seed=5), 16000)
    overrides = {"feature_cache.enable": True, "feature_cache.dir": str(tmp_path / "fc")}
    at_60 = Engine(tiny_settings(**overrides), loaded=engine.loaded)
    at_60.transcribe([long_file])
    at_30 = Engine(tiny_settings(**overrides, **{"input.segment_s": 30}), loaded=engine.loaded)
    [fresh] = at_30.transcribe([long_file])
    assert not fresh.cache_hit
    [again] = at_30.transcribe([long_file])
    assert again.cache_hit and again.token_ids == fresh.token_ids
