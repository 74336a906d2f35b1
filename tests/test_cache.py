"""Feature cache: same transcripts on and off, byte-bounded LRU, disk tier, fingerprint misses."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny_settings

from asr.audio.cache import CachedFeatures, FeatureCache, cache_key
from asr.engine import Engine
from asr.settings import PROJECT_ROOT


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
        from asr.audio.features import frontend_fingerprint

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


# --- disk tier bound -------------------------------------------------------------------------------


def random_feats(seed: int) -> CachedFeatures:
    """50-300 KB of random float32 features, the same for a seed in every process."""
    frames = 23 + seed * 37 % 111
    generator = torch.Generator().manual_seed(seed)
    return CachedFeatures([torch.randn(frames, 560, generator=generator)], duration_s=frames * 0.06)


# Run with python -c: importing this test module would pull in the engine (seconds per process).
_WRITER = """
import json, random, sys
from pathlib import Path
import torch
from asr.audio.cache import CachedFeatures, FeatureCache
""" + inspect.getsource(random_feats) + """
folder, bound, proc, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cache = FeatureCache(max_bytes=1, directory=folder, max_disk_bytes=bound)  # every get reads disk
rng = random.Random(proc)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    cache.put(f"p{proc}-{i}", random_feats(proc * 1000 + i))
    cache.get(f"p{rng.randrange(3)}-{rng.randrange(i + 1)}")  # races other processes' evictions
print(json.dumps(cache.stats().to_dict()), flush=True)
"""


def folder_bytes(folder: Path) -> int:
    total = 0
    with os.scandir(folder) as listing:
        for item in listing:
            try:
                total += item.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                pass  # evicted, or a temp file renamed, while we looked
    return total


def on_disk(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.feat")}


def backdate(folder: Path, ages_s: dict[str, int]) -> None:
    now = time.time_ns()
    for key, age in ages_s.items():
        then = now - age * 10**9
        os.utime(folder / f"{key}.feat", ns=(then, then))


def disk_cache(folder: Path, entries: int = 3) -> FeatureCache:
    """Room on disk for ``entries`` of feats(100), the npz header included, but not one more."""
    one = feats(100).nbytes
    return FeatureCache(max_bytes=2**26, directory=folder, max_disk_bytes=entries * one + one // 2)


def test_disk_folder_never_exceeds_its_bound_with_processes_writing_at_once(tmp_path):
    bound, count = 3 * 2**20 // 2, 25
    folder = tmp_path / "fc"
    folder.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(bound), str(n), str(count)],
                                cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for n in range(3)]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready"
    for writer in writers:  # start together, so the writes really overlap
        writer.stdin.write("go\n")
        writer.stdin.close()
    largest = samples = 0
    while any(w.poll() is None for w in writers):
        largest = max(largest, folder_bytes(folder))
        samples += 1
    reports = [json.loads(w.stdout.read()) for w in writers]
    assert [w.wait() for w in writers] == [0, 0, 0]
    assert samples > 10 and 0 < largest <= bound
    assert sum(r["disk_evictions"] for r in reports) > 0
    assert all(r["corrupt_dropped"] == 0 for r in reports)  # evicted under a reader: a plain miss

    reader = FeatureCache(max_bytes=2**26, directory=folder, max_disk_bytes=bound)
    stats = reader.stats()
    assert 3 <= stats.disk_entries and stats.disk_bytes == folder_bytes(folder) <= bound
    assert not list(folder.glob("*.tmp"))
    for key in on_disk(folder):
        proc, i = (int(part) for part in key[1:].split("-"))
        expected, got = random_feats(proc * 1000 + i), reader.get(key)
        assert got is not None and got.duration_s == expected.duration_s
        assert torch.equal(got.segments[0], expected.segments[0])
    assert reader.stats().disk_hits == stats.disk_entries


def test_disk_tier_evicts_the_least_recently_used_entry(tmp_path):
    writer = disk_cache(tmp_path)
    for value, key in enumerate("ABC"):
        writer.put(key, feats(100, value))
    reader = disk_cache(tmp_path)  # another process, in effect: nothing in its memory
    assert reader.get("A") is not None and reader.stats().disk_hits == 1  # A is now the newest
    reader.put("D", feats(100, 3))
    assert on_disk(tmp_path) == {"A", "C", "D"}
    stats = reader.stats()
    assert stats.disk_evictions == 1 and stats.disk_entries == 3
    assert stats.disk_bytes <= stats.max_disk_bytes == reader.max_disk_bytes
    assert torch.equal(disk_cache(tmp_path).get("A").segments[0], feats(100, 0).segments[0])


def test_memory_hits_keep_the_disk_entry_fresh(tmp_path):
    cache = disk_cache(tmp_path)
    for value, key in enumerate("ABC"):
        cache.put(key, feats(100, value))
    backdate(tmp_path, {"A": 300, "B": 200, "C": 100})  # as if served from memory for minutes
    stale = (tmp_path / "A.feat").stat().st_mtime_ns
    cache.touch_interval_s = 3600
    assert cache.get("A") is not None  # a memory hit, but put refreshed the file a moment ago
    assert (tmp_path / "A.feat").stat().st_mtime_ns == stale
    cache.touch_interval_s = 0
    assert cache.get("A") is not None and cache.stats().disk_hits == 0
    assert (tmp_path / "A.feat").stat().st_mtime_ns > stale
    cache.put("D", feats(100, 3))
    assert on_disk(tmp_path) == {"A", "C", "D"}


def test_entry_larger_than_the_disk_bound_is_not_written_and_evicts_nothing(tmp_path, caplog):
    cache = disk_cache(tmp_path)
    cache.put("A", feats(100, 1))
    cache.put("B", feats(100, 2))
    with caplog.at_level(logging.INFO, logger="asr.audio.cache"):
        cache.put("huge", feats(1000))
    assert on_disk(tmp_path) == {"A", "B"} and not list(tmp_path.glob("*.tmp"))
    assert cache.stats().disk_evictions == 0
    assert "larger than the disk bound" in caplog.text
    assert cache.get("huge") is not None  # still served from memory, which has room for it


def test_entry_deleted_by_another_process_is_a_plain_miss(tmp_path, caplog):
    disk_cache(tmp_path).put("A", feats(100))
    reader = disk_cache(tmp_path)
    (tmp_path / "A.feat").unlink()  # another process evicted it after this one looked
    with caplog.at_level(logging.WARNING, logger="asr.audio.cache"):
        assert reader.get("A") is None
    stats = reader.stats()
    assert stats.misses == 1 and stats.corrupt_dropped == 0 and not caplog.records


def test_stale_temp_files_are_removed_and_fresh_ones_count_toward_the_bound(tmp_path):
    one = feats(100).nbytes
    stale, fresh = tmp_path / ".killed.tmp", tmp_path / ".writing.tmp"
    stale.write_bytes(bytes(one))
    fresh.write_bytes(bytes(one))
    then = time.time_ns() - 11 * 60 * 10**9
    os.utime(stale, ns=(then, then))
    cache = disk_cache(tmp_path)
    for value, key in enumerate("ABC"):
        cache.put(key, feats(100, value))
    assert not stale.exists() and fresh.exists()
    assert on_disk(tmp_path) == {"B", "C"}  # the fresh temp file took A's room
    assert folder_bytes(tmp_path) <= cache.max_disk_bytes
