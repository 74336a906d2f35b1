"""The one public entry point: every tab, the CLI, the wizard and the tests call `Engine`.

Data flows one way: inputs -> decode -> features (cache) -> segments -> length-sorted batches ->
FunASR stages -> results in input order. Whatever goes wrong with one input becomes that input's
`Result.error`; a CUDA out-of-memory halves the batch and retries, so no file is lost to it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch

from asr.audio import decode as audio_io
from asr.audio.cache import CachedFeatures, FeatureCache, cache_key
from asr.audio.features import FeatureExtractor
from asr.audio.folders import read_confined
from asr.audio.preload import PreloadPipeline, Prepared, run_inline
from asr.recognition.batcher import Batcher, Cancelled, Outcome, Ticket, Unit
from asr.recognition.hotwords import parse_hotwords
from asr.recognition.memory_model import MemoryModel, cache_path, frames_grid, load_or_fit, memory_budget
from asr.recognition.model import LoadedModel, load_model, quantize_int8, resolve_device
from asr.recognition.precision import check_precision
from asr.recognition.recognizer import BatchTimings, Decoded, Recognizer
from asr.results import Result, RunStats, Transcription
from asr.settings import Settings, coerce
from asr.speech.vad import load_detector, plan_segments
from asr.system.cpu import CpuFeatures, default_linear_kernels, detect_cpu
from asr.system.gpu import release_cached_memory
from asr.system.threads import thread_count
from asr.text.punctuation import Punctuator, load_punctuator
from asr.text.sentences import CueLimits
from asr.text.transcript import Piece, assemble

log = logging.getLogger(__name__)

AudioInput = str | Path | tuple[np.ndarray, int]
POOL_BATCHES = 4  # units wait in a pool of this many batches' worth to find batch mates of similar length
Progress = Callable[[int, int, str], None]  # (files done, files total, message)


@dataclass
class _Job:
    index: int
    name: str
    source: AudioInput
    probed_s: float
    use_cache: bool = True
    roots: Sequence[Path] | None = None  # read only inside these folders (checked at open time)


@dataclass
class _FileProgress:
    """A file whose segments are still in flight: what its Result will be assembled from."""

    item: Prepared
    outstanding: set[tuple[int, ...]] = field(default_factory=set)  # unit keys still to come back
    decoded: dict[tuple[int, ...], Decoded | None] = field(default_factory=dict)  # None: failed
    spans: dict[tuple[int, ...], tuple[float, float]] = field(default_factory=dict)  # key -> (start, end) s
    model_s: float = 0.0  # its share of the model time of every batch it rode in
    batch: int = 0  # the largest batch any of its segments ran in
    backed_off: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    handed_out: set[tuple[int, ...]] = field(default_factory=set)  # pieces given to on_piece


class Engine:
    """Loaded once per process; thread-safe. Model calls are serialised (one GPU job at a time)."""

    def __init__(self, settings: Settings, loaded: LoadedModel | None = None,
                 punctuator: Punctuator | None = None, cpu: CpuFeatures | None = None):
        """`loaded` and `punctuator` share models another Engine already loaded (tests, tools).
        `cpu`: the CPU every hardware decision is made for (default: this machine's)."""
        self.settings = settings
        self.cpu = cpu or detect_cpu()
        cache_dir = settings.resolve_path(settings.cache_dir)
        # Before the weights load: a precision this machine lacks stops the start with the reason.
        self.precision = settings.precision
        check_precision(self.precision, loaded.device if loaded else resolve_device(settings.device),
                        self.cpu)
        gemm = (default_linear_kernels(self.cpu) if settings.cpu_gemm == "auto" else settings.cpu_gemm)
        self.loaded = loaded or load_model(settings.model, settings.device, cache_dir,
                                           settings.cpu_threads, gemm)
        if loaded is not None and loaded.device.type == "cpu" and loaded.cpu_gemm != gemm:
            log.warning("cpu_gemm=%s, but the shared model was loaded with %s kernels; it keeps them",
                        gemm, loaded.cpu_gemm)
        self.features = FeatureExtractor(self.loaded.frontend)
        model = self.loaded.model
        if self.precision == "int8":
            model = quantize_int8(model)
            log.info("int8: linear layers quantised (dynamic); tokens may differ from fp32")
        threads = settings.cpu_threads or self.loaded.threads
        self.recognizer = Recognizer(
            model, self.loaded.tokenizer, self.loaded.frontend, self.loaded.device,
            precision=self.precision, simulate_oom_frames=settings.simulate_oom_frames,
            attention=settings.attention,
            # Auto: side by side. Batches now mix requests of any length, and on a CPU padding
            # costs as much as speech: with 8 clients at once `python -m benchmarks.load` measured
            # 1.09x the throughput of one client in a row side by side, 0.88x padded. int8
            # needs it anyway (padded batches share activation scales).
            threads=threads, lanes=settings.cpu_lanes or threads,
        )
        fc = settings.feature_cache
        self.cache = FeatureCache(
            max_bytes=fc.max_size_mb * 2**20,
            directory=settings.resolve_path(fc.dir) if fc.dir else None,
            enabled=fc.enable,
            max_disk_bytes=fc.max_disk_mb * 2**20,
        )
        self.vad = load_detector(settings.vad, settings.vad_model, cache_dir, "cpu")
        self.punctuator = punctuator if punctuator is not None else (
            load_punctuator(settings.punctuation, self.loaded.device, cache_dir))
        self.cue_limits = CueLimits(settings.subtitles.max_s, settings.subtitles.max_chars,
                                    settings.subtitles.pause_s)
        self.default_batch_size = settings.batch_size
        self._variants: dict[str, Engine] = {}  # with_precision's engines
        self._variants_lock = threading.Lock()
        batching = settings.batching
        self.batcher = Batcher(self._recognize, self.features.frames_per_second,
                               settings.padding_limit_pct / 100.0, batching.max_wait_ms / 1000.0,
                               batching.max_queued_s, release_cached_memory, _is_out_of_memory,
                               memory_model=self._memory_model(), memory_budget=self._memory_budget)
        lanes = self.recognizer.lanes
        cpu = (f", {threads} CPU threads, {self.linear_kernels} linears"
               + (f", up to {lanes} files side by side" if lanes > 1 else "")
               if self.loaded.device.type == "cpu" else "")
        log.info("engine ready on %s (%s%s): %s", self.loaded.device, self.precision, cpu,
                 settings.summary())

    # ---- public API -------------------------------------------------------------------------

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def fp16(self) -> bool:
        return self.precision == "fp16"

    @property
    def linear_kernels(self) -> str:
        """What multiplies the linear layers on a CPU: int8, or the cpu_gemm library (in bf16)."""
        if self.int8:
            return "int8"
        return self.loaded.cpu_gemm + (" (bf16)" if self.precision == "bf16" else "")

    def transcribe(self, inputs: Sequence[AudioInput], batch_size: int | None = None,
                   hotwords: str | list[str] | None = None, progress: Progress | None = None,
                   preload: bool | None = None, quiet: bool = False,
                   confine_to: Sequence[Path] | None = None,
                   timestamps: bool | None = None) -> list[Result]:
        """Recognise `inputs` (paths or (samples, rate)); one Result per input, in input order."""
        return self.run(inputs, batch_size, hotwords, progress, preload, quiet=quiet,
                        confine_to=confine_to, timestamps=timestamps).results

    def run(self, inputs: Sequence[AudioInput], batch_size: int | None = None,
            hotwords: str | list[str] | None = None, progress: Progress | None = None,
            preload: bool | None = None, use_cache: bool = True,
            quiet: bool = False, confine_to: Sequence[Path] | None = None,
            timestamps: bool | None = None, exclusive: bool = False,
            cancel: threading.Event | None = None,
            on_piece: Callable[[int, Piece], None] | None = None) -> Transcription:
        """Like transcribe, plus the run's statistics (wait time, stage times, back-offs).

        `confine_to`: folder runs pass their allowed roots; every file is then checked against
        them again when it is opened, so a link swapped in after listing reads nothing outside.
        `timestamps` overrides settings.timestamps: word times and sentence segments.

        `preload` overrides settings.preload_audio for this call; `use_cache=False` bypasses the
        feature cache (the tuning wizard and benchmark use it so cache hits cannot flatter a size).
        `quiet=True` logs the run summary at DEBUG (the live microphone calls this every second).
        `exclusive=True` runs no other request's segments meanwhile (the wizard's quiet model).
        `cancel`: when set (a client went away), the run stops with `Cancelled` and its waiting
        segments leave the queue. `on_piece(input index, piece)` is called on this thread with
        each recognised piece of a file, in time order, as soon as all before it are done (the
        API streams them).
        """
        started = time.perf_counter()
        size = int(batch_size or self.default_batch_size)
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        if not exclusive:
            self.batcher.check_room()  # QueueFull: past batching.max_queued_s of waiting audio
        hw = self.settings.hotwords
        words = parse_hotwords(hotwords, hw.max_count, hw.max_chars)
        hotword_ids = self.recognizer.hotword_list(words)
        use_preload = self.settings.preload_audio if preload is None else preload

        jobs = [self._job(i, source, use_cache, confine_to) for i, source in enumerate(inputs)]
        # Longest first: similar lengths share a batch (little padding), and an out-of-memory
        # shows up on the first batch rather than the last.
        ordered = sorted(jobs, key=lambda j: (-j.probed_s, j.index))
        stats = RunStats(files=len(jobs), requested_batch_size=size, preload=use_preload)
        results: list[Result | None] = [None] * len(jobs)
        report = _ProgressReport(progress, len(jobs))

        pipeline = None
        if use_preload and len(jobs) > 1:
            p = self.settings.preload
            pipeline = PreloadPipeline(self._prepare, ordered, self._estimate_bytes,
                                       workers=p.workers, max_items=p.queue_items,
                                       max_bytes=p.queue_mb * 2**20)
            items = iter(pipeline)
        else:
            items = run_inline(self._prepare, ordered)

        # Side-by-side CPU batches pad nothing, but the same limit bounds how long their lanes sit
        # idle waiting for the batch's longest file: the same sum, lanes x longest - total.
        with_times = self.settings.timestamps if timestamps is None else bool(timestamps)
        request = _Request(self, size, hotword_ids, stats, results, report,
                           self.settings.padding_limit_pct / 100.0, with_times,
                           name=f"run-{next(_RUN_NUMBERS)}", cancel=cancel, on_piece=on_piece)
        alone_once = _EnterOnce(self.batcher.exclusive(request.ticket) if exclusive
                                else contextlib.nullcontext())
        try:
            while True:
                waited = time.perf_counter()
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the request was cancelled")
                item = next(items, None)
                stats.wait_s += time.perf_counter() - waited
                if item is None:
                    break
                stats.decode_s += item.decode_s
                stats.features_s += item.features_s
                stats.vad_s += item.vad_s
                stats.cache_hits += int(item.cache_hit)
                if item.error:
                    results[item.index] = Result(file=item.name, duration_s=item.duration_s,
                                                 decode_s=item.decode_s, features_s=item.features_s,
                                                 error=item.error)
                    report.done(item.name)
                    continue
                with alone_once:
                    request.add(item)
            with alone_once:
                request.flush()
        except BaseException:
            request.ticket.cancel()  # the caller went away: drop what still waits for the model
            raise
        finally:
            alone_once.close()
            request.close()
            if pipeline is not None:  # stop the workers even when something above raised
                pipeline.close()
                stats.peak_queued_mb = pipeline.peak_bytes / 2**20

        final = [r for r in results if r is not None]
        assert len(final) == len(jobs), "every input must get a result"
        stats.failed = sum(1 for r in final if not r.ok)
        stats.audio_s = sum(r.duration_s for r in final if r.ok)
        stats.wall_s = time.perf_counter() - started
        log.log(logging.DEBUG if quiet else logging.INFO,
                "transcribed %d file(s), %d failed, %.1f s audio in %.2f s (%.1fx real time), "
                "batch %d, %d back-off(s), model waited %.2f s", stats.files, stats.failed,
                stats.audio_s, stats.wall_s, stats.speed, size, stats.backoffs, stats.wait_s)
        return Transcription(final, stats)

    def piece_text(self, piece: Piece) -> str:
        """One piece's text for a live stream, punctuated on its own (the file's final text is
        punctuated whole, so a mark at a piece's edge may differ there)."""
        punctuator = self.punctuator
        return assemble([piece], punctuator.punctuate if punctuator else None).text

    def _memory_budget(self) -> int:
        """Bytes the next batch may use: free memory now x tuning.memory_limit_pct."""
        return memory_budget(self.loaded.device, self.settings.tuning.memory_limit_pct)

    def _memory_model(self) -> MemoryModel | None:
        """Each batch's predicted peak, so the batcher splits a batch before it runs out of memory.

        On a GPU it is fitted at the first start (a few small batches) and kept in
        cache_dir/memory/ per model, GPU, precision and torch version. On a CPU, where RAM is
        rarely the limit and measuring is slow, only a model fitted beforehand is used
        (`python -m asr.recognition.memory_model --model ... --precision ... --save`). A failure here costs
        the prediction, never the start: the out-of-memory back-off stays the safety net."""
        try:
            attention = self.settings.attention
            path = cache_path(self.settings.resolve_path(self.settings.cache_dir) / "memory",
                              self.loaded.directory, self.loaded.device, self.precision,
                              variant="" if attention == "auto" else attention)
            if self.loaded.device.type != "cuda" and not path.is_file():
                return None
            longest = int(self.settings.input.segment_s * self.features.frames_per_second)
            return load_or_fit(self.recognizer, path, self.precision, frames=frames_grid(longest))
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("no memory model (%s: %s); batches rely on the out-of-memory back-off",
                        type(exc).__name__, exc)
            return None

    def quiet(self):
        """A block in which this engine runs no batch: the one running now finishes first, and
        requests' segments wait. For measuring another engine on the same hardware, and for
        switching precision between batches."""
        return self.batcher.exclusive(Ticket(self.batcher, None, False, 1, lambda _outcome: None,
                                             name="quiet"))

    def with_precision(self, precision: str) -> Engine:
        """This engine's settings and weights computing in `precision` (the precision check's
        other side). Cached, one per precision for the life of the process: each holds a model
        thread, and int8 a quantised copy of the linear layers."""
        if precision == self.precision:
            return self
        coerce("precision", precision, "the precision to compare")
        with self._variants_lock:
            variant = self._variants.get(precision)
            if variant is None:
                settings = copy.deepcopy(self.settings)
                settings.precision = precision
                variant = Engine(settings, loaded=self.loaded, punctuator=self.punctuator, cpu=self.cpu)
                variant.default_batch_size = self.default_batch_size
                self._variants[precision] = variant
        return variant

    def set_precision(self, precision: str) -> None:
        """Compute in `precision` from the next batch on (the Tuning tab's apply). Refused, with
        the reason, where the hardware lacks it; no batch ever mixes two precisions."""
        coerce("precision", precision, "the new precision")
        check_precision(precision, self.loaded.device, self.cpu)
        if precision == self.precision:
            return
        model = quantize_int8(self.loaded.model) if precision == "int8" else self.loaded.model
        with self.quiet():
            self.recognizer.set_precision(precision, model)
            self.precision = precision
            self.settings.precision = precision
            self.batcher.memory_model = self._memory_model()
        log.info("precision set to %s", precision)

    def set_default_batch_size(self, size: int) -> None:
        coerce("batch_size", size, "the new default batch size")  # same bounds as config.yaml
        self.default_batch_size = int(size)
        self.settings.batch_size = int(size)  # so every view of the settings agrees
        log.info("default batch size set to %d", size)

    # ---- preparation (runs inline or on preload threads) -----------------------------------

    def _job(self, index: int, source: AudioInput, use_cache: bool,
             roots: Sequence[Path] | None = None) -> _Job:
        if isinstance(source, (str, Path)):
            # A confined file is not probed by name (a FIFO swapped in would block the probe):
            # its size stands in for its length, for sorting only.
            probed = _size_seconds(Path(source)) if roots is not None else _probe_seconds(Path(source))
            return _Job(index, Path(source).name, source, probed, use_cache, roots)
        samples, rate = source
        seconds = len(samples) / rate if rate else 0.0
        return _Job(index, f"input-{index + 1}", source, seconds, use_cache)

    def _estimate_bytes(self, job: _Job) -> int:
        dim = self.loaded.frontend.output_size()
        return int(job.probed_s * self.features.frames_per_second * dim * 4)

    def _prepare(self, job: _Job) -> Prepared:
        item = Prepared(index=job.index, name=job.name)
        try:
            # One torch thread: this runs beside the model (on the caller's or a preload thread),
            # and a second thread of small ops only spins against the model's threads.
            with thread_count(1):
                self._decode_and_featurize(job, item)
        except (audio_io.AudioError, ValueError) as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad input must never sink the batch
            log.exception("unexpected failure preparing %s", job.name)
            item.error = f"could not prepare this input: {type(exc).__name__}: {exc}"
        if item.error:
            log.warning("input %s rejected: %s", job.name, item.error)
            item.segments = []
        return item

    def _decode_and_featurize(self, job: _Job, item: Prepared) -> None:
        t0 = time.perf_counter()
        limits = self.settings.input
        if isinstance(job.source, (str, Path)):
            data = (read_confined(job.source, job.roots) if job.roots is not None
                    else audio_io.read_file(job.source))
            # How the file is cut is part of the key: cached segments must match today's settings.
            key = cache_key(audio_io.md5_of(data), f"{self.features.fingerprint}/{self._cut_fingerprint}")
            cached = self.cache.get(key) if job.use_cache else None
            if cached is not None:
                # Same bytes, same frontend: decoding would give the same samples, so skip it.
                audio_io.check_duration_s(cached.duration_s, limits.min_duration_s,
                                          limits.max_duration_s)
                item.duration_s, item.segments, item.cache_hit = (cached.duration_s,
                                                                  cached.segments, True)
                item.starts_s = cached.starts_s
                item.decode_s = time.perf_counter() - t0
                return
            decoded = audio_io.decode_bytes(data, job.name)
        else:
            key = None
            decoded = audio_io.decode_samples(job.source[0], job.source[1], job.name)
        item.duration_s = decoded.duration_s
        audio_io.check_duration(decoded, limits.min_duration_s, limits.max_duration_s)
        t1 = time.perf_counter()
        item.decode_s = t1 - t0
        regions = self.vad.detect(decoded.samples)
        ranges = plan_segments(decoded.samples, regions, self.vad.name, limits.segment_s,
                               limits.vad_merge_gap_s)
        t2 = time.perf_counter()
        item.vad_s = t2 - t1
        item.segments = [self.features(decoded.samples[a:b]) for a, b in ranges]
        item.starts_s = [a / audio_io.TARGET_RATE for a, _ in ranges]
        if any(s.shape[0] == 0 for s in item.segments):
            raise audio_io.AudioError("the audio is too short to produce any feature frames")
        item.features_s = time.perf_counter() - t2
        if key and job.use_cache:
            self.cache.put(key, CachedFeatures(item.segments, item.duration_s, item.starts_s))

    @functools.cached_property
    def _cut_fingerprint(self) -> str:
        limits = self.settings.input
        return f"{self.vad.fingerprint}/seg{limits.segment_s:g}/gap{limits.vad_merge_gap_s:g}"

    # ---- model -------------------------------------------------------------------------------

    def _recognize(self, feats: list[torch.Tensor], hotword_ids, timings: BatchTimings, timestamps: bool):
        """The batcher's one way to the model (it calls from its own thread only)."""
        return self.recognizer.recognize(feats, hotword_ids, timings, timestamps)


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM type, plus the allocation failures cuBLAS/cuDNN report as plain RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "ALLOC_FAILED" in text)


def _probe_seconds(path: Path) -> float:
    """Cheap duration guess for sorting and queue budgeting; decoding later gives the truth."""
    try:
        info = soundfile.info(str(path))
        return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - not readable by libsndfile: fall back to PyAV or size
        pass
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000
    except Exception:  # noqa: BLE001 - corrupt or unknown: decode reports it properly later
        pass
    return _size_seconds(path)


def _size_seconds(path: Path) -> float:
    """A length guess from the file size alone (16 kHz 16-bit mono)."""
    try:
        return path.stat().st_size / 32000
    except OSError:
        return 0.0


class _EnterOnce:
    """A context manager entered at the first `with` and left only by `close()`: exclusive use
    of the batcher starts when the first segment is ready (decoding runs meanwhile) and ends
    when the run ends."""

    def __init__(self, manager):
        self._manager = manager
        self._entered = False

    def __enter__(self):
        if not self._entered:
            self._manager.__enter__()
            self._entered = True
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def close(self) -> None:
        if self._entered:
            self._entered = False
            self._manager.__exit__(None, None, None)


_RUN_NUMBERS = itertools.count(1)


class _ProgressReport:
    def __init__(self, callback: Progress | None, total: int):
        self.callback = callback
        self.total = total
        self.count = 0

    def done(self, name: str) -> None:
        self.count += 1
        if self.callback:
            self.callback(self.count, self.total, name)


class _Request:
    """One `Engine.run` at the batcher: its files in flight, and their results as they complete.

    Units are proposed to the batcher a batch at a time, longest first from a pool a few
    batches deep (so the short tail of a long file finds short batch mates), and the pool is
    refilled only while few of this request's units are unanswered: a 500-file request never
    queues all its features at once, and others' requests get their turn. Outcomes arrive on the
    batcher's thread and are only recorded there; results are assembled (joined, punctuated,
    cut into sentences) on the caller's thread.
    """

    def __init__(self, engine: Engine, size: int, hotword_ids, stats: RunStats,
                 results: list[Result | None], report: _ProgressReport, padding_limit: float,
                 timestamps: bool, name: str, cancel: threading.Event | None = None,
                 on_piece: Callable[[int, Piece], None] | None = None):
        self.engine = engine
        self.cancel = cancel
        self.on_piece = on_piece
        self._touched: set[int] = set()  # files with pieces not yet handed to on_piece
        self.size = size
        self.padding_limit = padding_limit
        self.timestamps = timestamps
        self.stats = stats
        self.results = results
        self.report = report
        self.pending: list[Unit] = []
        self.partial: dict[int, _FileProgress] = {}
        self._lock = threading.Lock()
        self._ready: list[int] = []  # files whose every unit is answered, to assemble
        self.ticket = engine.batcher.ticket(hotword_ids, timestamps, size, self._deliver, name)

    def add(self, item: Prepared) -> None:
        entry = _FileProgress(item)
        starts = item.starts_s or [0.0] * len(item.segments)
        with self._lock:
            self.partial[item.index] = entry
            for number, (feats, start) in enumerate(zip(item.segments, starts, strict=True)):
                self.pending.append(Unit(self.ticket, item.index, (number,), feats, start, item.name))
                entry.outstanding.add((number,))
            if not item.segments:
                self._ready.append(item.index)  # no speech at all: an empty transcript, not an error
        while len(self.pending) >= self.size * POOL_BATCHES:
            self.ticket.submit(self._take_batch())
        self._wait(lambda: self.ticket.in_flight <= self.size * POOL_BATCHES)

    def flush(self) -> None:
        while self.pending:
            self.ticket.submit(self._take_batch())
        self._wait(lambda: self.ticket.in_flight == 0)
        self._finish_ready()

    def _wait(self, done: Callable[[], bool]) -> None:
        """Wait for `done`, assembling files as they complete (so progress moves meanwhile),
        handing out finished pieces, and giving up if the caller was cancelled."""
        self._finish_ready()
        while not done():
            self.engine.batcher.wait_for(lambda: done() or bool(self._ready) or bool(self._touched),
                                         timeout=0.2 if self.cancel is not None else None)
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("the request was cancelled")
            self._finish_ready()

    def _take_batch(self) -> list[Unit]:
        """The longest waiting unit plus the next longest, while padding stays within the limit."""
        self.pending.sort(key=lambda unit: -unit.frames)  # stable: ties keep input order
        longest = self.pending[0].frames
        taken = 1
        real = longest
        while taken < min(self.size, len(self.pending)):
            frames = self.pending[taken].frames
            padded = (taken + 1) * longest
            if padded - (real + frames) > self.padding_limit * padded:
                break  # every later unit is shorter still
            real += frames
            taken += 1
        batch, self.pending = self.pending[:taken], self.pending[taken:]
        return batch

    def _deliver(self, outcome: Outcome) -> None:
        """On the batcher's thread: record what came back for one unit."""
        unit = outcome.unit
        with self._lock:
            entry = self.partial[unit.file]
            entry.backed_off |= outcome.backed_off
            if outcome.halves:
                if not any("cut at quiet points" in w for w in entry.warnings):
                    entry.warnings.append("out of GPU memory even alone: part of this file was "
                                          "recognised in pieces cut at quiet points (a lower "
                                          "input.segment_s avoids this)")
                entry.outstanding.discard(unit.key)
                entry.outstanding.update(h.key for h in outcome.halves)
                return
            if outcome.decoded is None and outcome.error is None:
                return  # a note (backed off), not an answer
            entry.decoded[unit.key] = outcome.decoded
            seconds = unit.frames / self.ticket.batcher.frames_per_second
            entry.spans[unit.key] = (unit.start_s, unit.start_s + seconds)
            entry.outstanding.discard(unit.key)
            if outcome.error:
                entry.error = outcome.error
            entry.model_s += outcome.model_s
            entry.batch = max(entry.batch, outcome.batch_size)
            if self.on_piece is not None:
                self._touched.add(unit.file)
            if not entry.outstanding:
                self._ready.append(unit.file)

    def _finish_ready(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            touched, self._touched = self._touched, set()
        for index in sorted(touched):
            self._hand_out_pieces(index)
        for index in ready:
            self._finish(index)

    def _hand_out_pieces(self, index: int) -> None:
        """Give on_piece the file's pieces that are done and have nothing unfinished before them."""
        with self._lock:
            entry = self.partial.get(index)
            if entry is None:
                return
            waiting = min(entry.outstanding, default=None)
            fresh = [key for key in sorted(entry.decoded) if key not in entry.handed_out
                     and (waiting is None or key < waiting)]
            entry.handed_out.update(fresh)
            pieces = [Piece(*entry.spans[k], entry.decoded[k]) for k in fresh if entry.decoded[k] is not None]
        for piece in pieces:
            self.on_piece(index, piece)

    def close(self) -> None:
        """Copy the shared batches' figures into this run's statistics."""
        ticket = self.ticket
        self.stats.batches += ticket.batches
        self.stats.backoffs += ticket.backoffs
        for name in ("encoder_s", "predictor_s", "decoder_s", "timestamp_s", "postprocess_s"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(ticket.timings, name))

    def _finish(self, index: int) -> None:
        with self._lock:
            entry = self.partial.pop(index)
        item = entry.item
        ok = [Piece(*entry.spans[key], entry.decoded[key]) for key in sorted(entry.decoded)
              if entry.decoded[key] is not None]
        tokens = [t for p in ok for t in p.decoded.token_ids]
        weights = [max(1, len(p.decoded.token_ids)) for p in ok]
        confidence = (sum(p.decoded.confidence * w for p, w in zip(ok, weights, strict=True))
                      / sum(weights) if ok else 0.0)
        started = time.perf_counter()
        punctuator = self.engine.punctuator
        with thread_count(1):  # beside the model, as _prepare: its small ops gain nothing from two
            transcript = assemble(ok, punctuator.punctuate if punctuator else None, self.timestamps,
                                  self.engine.cue_limits)
        self.stats.punctuation_s += time.perf_counter() - started
        warnings = entry.warnings + transcript.warnings
        if not item.segments:
            warnings.append("no speech found")
        self.results[index] = Result(
            file=item.name, text=transcript.text,
            confidence=round(confidence, 4), duration_s=item.duration_s, decode_s=item.decode_s,
            features_s=item.features_s + item.vad_s, model_s=entry.model_s, batch_size=entry.batch,
            backed_off=entry.backed_off, cache_hit=item.cache_hit, token_ids=tokens,
            error=entry.error, warnings=warnings, segments=transcript.segments,
        )
        self.report.done(item.name)

