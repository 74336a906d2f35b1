"""MD5-keyed feature cache: a byte-bounded in-memory LRU with an optional disk tier.

The key is the MD5 of the file's bytes plus the frontend fingerprint, so the same recording under
another name hits, and a model with other fbank/LFR/CMVN settings never reuses stale features.
Disk entries carry a checksum of their payload: a truncated or corrupt file is dropped and
recomputed, never served.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

_MAGIC = b"SEACOFEAT1"


@dataclass
class CacheStats:
    enabled: bool
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    disk_hits: int
    corrupt_dropped: int
    directory: str

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict:
        data = self.__dict__.copy()
        data["hit_rate"] = round(self.hit_rate, 4)
        data["mb"] = round(self.bytes / 2**20, 2)
        return data


@dataclass
class CachedFeatures:
    """Everything the engine needs to skip decoding: per-segment features and the duration."""

    segments: list[torch.Tensor]
    duration_s: float

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.segments)


def cache_key(audio_md5: str, fingerprint: str) -> str:
    return hashlib.md5(f"{audio_md5}:{fingerprint}".encode()).hexdigest()


class FeatureCache:
    """Thread-safe; shared by preload workers and concurrent web users."""

    def __init__(self, max_bytes: int, directory: Path | None = None, enabled: bool = True,
                 max_disk_bytes: int = 2048 * 2**20):
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.directory = directory
        self.max_disk_bytes = max_disk_bytes  # not enforced yet: the disk-bound change does it
        self._entries: OrderedDict[str, CachedFeatures] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._disk_hits = self._corrupt = 0
        if enabled and directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> CachedFeatures | None:
        if not self.enabled:
            return None
        with self._lock:
            feats = self._entries.get(key)
            if feats is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return feats
        feats = self._read_disk(key)
        with self._lock:
            if feats is None:
                self._misses += 1
                return None
            self._hits += 1
            self._disk_hits += 1
            self._insert(key, feats)
        return feats

    def put(self, key: str, feats: CachedFeatures) -> None:
        if not self.enabled:
            return
        feats = CachedFeatures([s.detach().to("cpu").contiguous() for s in feats.segments],
                               float(feats.duration_s))
        with self._lock:
            self._insert(key, feats)
        self._write_disk(key, feats)

    def _insert(self, key: str, feats: CachedFeatures) -> None:
        size = feats.nbytes
        if size > self.max_bytes:
            return  # never let one huge entry blow the budget
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._entries[key] = feats
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.feat"

    def _read_disk(self, key: str) -> CachedFeatures | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            blob = path.read_bytes()
            header, digest, payload = blob[:10], blob[10:26], blob[26:]
            if header != _MAGIC or hashlib.md5(payload).digest() != digest:
                raise ValueError("checksum mismatch")
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                count = int(archive["count"])
                segments = [torch.from_numpy(archive[f"seg{i}"].copy()) for i in range(count)]
                return CachedFeatures(segments, float(archive["duration_s"]))
        except (OSError, ValueError, EOFError, KeyError) as exc:
            log.warning("feature cache: dropping unreadable entry %s (%s)", path.name, exc)
            with self._lock:
                self._corrupt += 1
            path.unlink(missing_ok=True)
            return None

    def _write_disk(self, key: str, feats: CachedFeatures) -> None:
        path = self._path(key)
        if path is None:
            return
        buffer = io.BytesIO()
        arrays = {f"seg{i}": s.numpy() for i, s in enumerate(feats.segments)}
        np.savez(buffer, count=np.array(len(feats.segments)),
                 duration_s=np.array(feats.duration_s), **arrays)
        payload = buffer.getvalue()
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(_MAGIC + hashlib.md5(payload).digest() + payload)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("feature cache: cannot write %s (%s)", path, exc)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                enabled=self.enabled, entries=len(self._entries), bytes=self._bytes,
                max_bytes=self.max_bytes, hits=self._hits, misses=self._misses,
                disk_hits=self._disk_hits, corrupt_dropped=self._corrupt,
                directory=str(self.directory or ""),
            )
