"""MD5-keyed feature cache: a byte-bounded in-memory LRU with an optional, bounded disk tier.

The key is the MD5 of the file's bytes plus the frontend fingerprint, so the same recording under
another name hits, and a model with other fbank/LFR/CMVN settings never reuses stale features.
Disk entries carry a checksum of their payload: a truncated or corrupt file is dropped and
recomputed, never served.

Several processes (web server, CLI, tuning runs) may share one disk folder, so its bound cannot
be kept by counters in any one of them. Every disk write therefore takes an exclusive flock on
``.lock`` in the folder, measures what is really there, evicts least-recently-used entries (oldest
mtime first) until the new entry fits, and only then writes it. Readers take no lock: they only
ever shrink the folder, and recency is the file's mtime, which hits refresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import os
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

_MAGIC = b"SEACOFEAT1"
_ENTRY, _TEMP, _LOCK = ".feat", ".tmp", ".lock"
# A temp file seen under the lock belongs to a writer that died, or to one on another machine
# where flock is only local (some network filesystems): give the latter time to finish.
_STALE_TEMP_NS = 10 * 60 * 10**9


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
    disk_entries: int = 0
    disk_bytes: int = 0  # every cache file in the folder, shared by all processes using it
    max_disk_bytes: int = 0
    disk_evictions: int = 0  # by this process

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict:
        data = self.__dict__.copy()
        data["hit_rate"] = round(self.hit_rate, 4)
        data["mb"] = round(self.bytes / 2**20, 2)
        data["disk_mb"] = round(self.disk_bytes / 2**20, 2)
        return data


@dataclass
class CachedFeatures:
    """Everything the engine needs to skip decoding and VAD: per-segment features, where each
    segment starts in the recording, and the duration."""

    segments: list[torch.Tensor]
    duration_s: float
    starts_s: list[float] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.segments)


@dataclass
class _DiskFile:
    mtime_ns: int
    name: str
    size: int


def cache_key(audio_md5: str, fingerprint: str) -> str:
    return hashlib.md5(f"{audio_md5}:{fingerprint}".encode()).hexdigest()


class FeatureCache:
    """Thread-safe; shared by preload workers and concurrent web users."""

    # A memory hit refreshes the disk file's mtime at most this often per key: often enough that a
    # hot entry served from memory for hours is not the first one evicted from disk, rarely
    # enough to cost nothing.
    touch_interval_s: float = 5.0

    def __init__(self, max_bytes: int, directory: Path | None = None, enabled: bool = True,
                 max_disk_bytes: int = 2048 * 2**20):
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.directory = directory
        self.max_disk_bytes = max_disk_bytes
        self._entries: OrderedDict[str, CachedFeatures] = OrderedDict()
        self._touched: dict[str, float] = {}  # key -> monotonic time its disk mtime was last set
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._disk_hits = self._corrupt = 0
        self._disk_evictions = 0
        self._said_too_large = False
        if enabled and directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> CachedFeatures | None:
        if not self.enabled:
            return None
        touch = False
        with self._lock:
            feats = self._entries.get(key)
            if feats is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                touch = self._touch_due(key)
        if feats is not None:
            if touch:
                self._touch(key)
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
                               float(feats.duration_s), [float(t) for t in feats.starts_s])
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
        self._touched[key] = time.monotonic()  # callers have just written or touched the file
        while self._bytes > self.max_bytes:
            evicted_key, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
            self._touched.pop(evicted_key, None)

    def _touch_due(self, key: str) -> bool:
        if self.directory is None:
            return False
        now = time.monotonic()
        last = self._touched.get(key)
        if last is not None and now - last < self.touch_interval_s:
            return False
        self._touched[key] = now
        return True

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}{_ENTRY}"

    def _touch(self, key: str) -> None:
        """Mark the disk entry as just used, so eviction (oldest mtime first) spares it."""
        path = self._path(key)
        if path is None:
            return
        now = time.time_ns()
        try:
            os.utime(path, ns=(now, now))
        except FileNotFoundError:
            pass  # evicted by another process; it still lives in memory here
        except OSError as exc:
            log.debug("feature cache: cannot touch %s (%s)", path.name, exc)

    def _read_disk(self, key: str) -> CachedFeatures | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None  # never written, or evicted by another process: a plain miss
        except OSError as exc:
            return self._drop(path, exc)
        header, digest, payload = blob[:10], blob[10:26], blob[26:]
        try:
            if header != _MAGIC or hashlib.md5(payload).digest() != digest:
                raise ValueError("checksum mismatch")
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                count = int(archive["count"])
                segments = [torch.from_numpy(archive[f"seg{i}"].copy()) for i in range(count)]
                feats = CachedFeatures(segments, float(archive["duration_s"]),
                                       [float(t) for t in archive["starts_s"]])
        except (OSError, ValueError, EOFError, KeyError) as exc:
            return self._drop(path, exc)
        self._touch(key)
        return feats

    def _drop(self, path: Path, exc: Exception) -> None:
        log.warning("feature cache: dropping unreadable entry %s (%s)", path.name, exc)
        with self._lock:
            self._corrupt += 1
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    def _write_disk(self, key: str, feats: CachedFeatures) -> None:
        path = self._path(key)
        if path is None:
            return
        buffer = io.BytesIO()
        arrays = {f"seg{i}": s.numpy() for i, s in enumerate(feats.segments)}
        np.savez(buffer, count=np.array(len(feats.segments)), duration_s=np.array(feats.duration_s),
                 starts_s=np.array(feats.starts_s, dtype=np.float64), **arrays)
        payload = buffer.getvalue()
        blob = _MAGIC + hashlib.md5(payload).digest() + payload
        if len(blob) > self.max_disk_bytes:
            self._say_too_large(key, len(blob))
            return
        try:
            with self._disk_lock():
                if not self._make_room(len(blob)):
                    log.debug("feature cache: no room on disk for %s", key)
                    return
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=_TEMP)
                try:
                    with os.fdopen(fd, "wb") as out:
                        out.write(blob)
                    # Recency comes from time_ns, as touches do: a coarse kernel timestamp could
                    # tie with, or sort before, an entry touched a moment ago.
                    now = time.time_ns()
                    os.utime(tmp, ns=(now, now))
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except OSError as exc:
            log.warning("feature cache: cannot write %s (%s)", path, exc)

    def _say_too_large(self, key: str, size: int) -> None:
        level = logging.DEBUG if self._said_too_large else logging.INFO
        self._said_too_large = True
        log.log(level, "feature cache: %s (%.1f MB) is larger than the disk bound (%.1f MB); "
                "kept in memory only", key, size / 2**20, self.max_disk_bytes / 2**20)

    @contextlib.contextmanager
    def _disk_lock(self) -> Iterator[None]:
        """Exclusive across processes and threads: each holder opens its own descriptor."""
        assert self.directory is not None
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _make_room(self, size: int) -> bool:
        """Evict oldest entries until ``size`` more bytes fit; call with the disk lock held."""
        now = time.time_ns()
        total = 0
        entries = []
        for file in self._scan():
            if file.name.endswith(_TEMP):
                if now - file.mtime_ns > _STALE_TEMP_NS:
                    self._unlink(file.name)
                    continue
            else:
                entries.append(file)
            total += file.size
        entries.sort(key=lambda f: (f.mtime_ns, f.name))
        evicted = 0
        for file in entries:
            if total + size <= self.max_disk_bytes:
                break
            self._unlink(file.name)
            total -= file.size
            evicted += 1
        if evicted:
            with self._lock:
                self._disk_evictions += evicted
        return total + size <= self.max_disk_bytes

    def _unlink(self, name: str) -> None:
        assert self.directory is not None
        # Gone already is fine: another process's corrupt-entry drop needs no lock.
        (self.directory / name).unlink(missing_ok=True)

    def _scan(self) -> list[_DiskFile]:
        """The cache's own files in the folder; anything else there is neither counted nor touched."""
        if self.directory is None:
            return []
        files = []
        try:
            with os.scandir(self.directory) as listing:
                for item in listing:
                    if not item.name.endswith((_ENTRY, _TEMP)):
                        continue
                    try:
                        info = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        files.append(_DiskFile(info.st_mtime_ns, item.name, info.st_size))
        except FileNotFoundError:
            return []
        return files

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._touched.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        disk = self._scan() if self.enabled else []  # outside the lock: a directory listing
        with self._lock:
            return CacheStats(
                enabled=self.enabled, entries=len(self._entries), bytes=self._bytes,
                max_bytes=self.max_bytes, hits=self._hits, misses=self._misses,
                disk_hits=self._disk_hits, corrupt_dropped=self._corrupt,
                directory=str(self.directory or ""),
                disk_entries=sum(f.name.endswith(_ENTRY) for f in disk),
                disk_bytes=sum(f.size for f in disk), max_disk_bytes=self.max_disk_bytes,
                disk_evictions=self._disk_evictions,
            )
