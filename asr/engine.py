"""The one public entry point: every tab, the CLI, the wizard and the tests call `Engine`.

Data flows one way: inputs -> decode -> features (cache) -> segments -> length-sorted batches ->
FunASR stages -> results in input order. Whatever goes wrong with one input becomes that input's
`Result.error`; a CUDA out-of-memory halves the batch and retries, so no file is lost to it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.audio import decode as audio_io
from asr.audio.cache import CachedFeatures, FeatureCache, cache_key
from asr.audio.features import FeatureExtractor
from asr.audio.folders import read_confined
from asr.audio.preload import PreloadPipeline, Prepared, run_inline
from asr.progress import DECODING, SPEECH, ProgressCallback, ProgressTracker
from asr.recognition.batcher import Batcher, Cancelled, Ticket
from asr.recognition.hotwords import parse_hotwords
from asr.recognition.memory_model import MemoryModel, cache_path, frames_grid, load_or_fit, memory_budget
from asr.recognition.model import LoadedModel, load_model, quantize_int8, resolve_device
from asr.recognition.precision import check_precision
from asr.recognition.recognizer import BatchTimings, Recognizer
from asr.request import RUN_NUMBERS, EnterOnce, Progress, Request
from asr.results import Result, RunStats, Transcription
from asr.settings import Settings, coerce, normalize_speaker_count
from asr.speech.vad import load_detector, plan_segments
from asr.system.cpu import CpuFeatures, default_linear_kernels, detect_cpu
from asr.system.gpu import release_cached_memory
from asr.system.threads import thread_count
from asr.text.punctuation import Punctuator, load_punctuator
from asr.text.sentences import CueLimits
from asr.text.speaker_encoders import SpeakerEncoder, load_speaker_encoder
from asr.text.speakers import SpeakerOptions, diarize, match_known_speakers, rename
from asr.text.transcript import Piece, Transcript, assemble, normalize_numbers

log = logging.getLogger(__name__)

AudioInput = str | Path | tuple[np.ndarray, int]


@dataclass
class _Job:
    index: int
    name: str
    source: AudioInput
    probed_s: float
    use_cache: bool = True
    roots: Sequence[Path] | None = None  # read only inside these folders (checked at open time)
    speakers: SpeakerOptions | None = None  # diarize this file's own audio after speech detection
    tracker: ProgressTracker | None = None  # told when the file enters a stage
    cancel: threading.Event | None = None  # checked between the stages of a long preparation


@dataclass
class RunOptions:
    """How one run goes. None means the engine's setting (batch size, timestamps, preload)."""

    batch_size: int | None = None
    hotwords: str | list[str] | None = None
    timestamps: bool | None = None  # word times and sentence segments (settings.timestamps)
    preload: bool | None = None  # decode on threads ahead of the model (settings.preload_audio)
    use_cache: bool = True  # False: bypass the feature cache (the wizard and benchmarks, so hits
    # cannot flatter a size)
    quiet: bool = False  # log the run summary at DEBUG (the live microphone runs every second)
    exclusive: bool = False  # run no other request's segments meanwhile (the wizard's quiet model)
    # Folder runs pass their allowed roots: every file is checked against them again when it is
    # opened, so a link swapped in after listing reads nothing outside.
    confine_to: Sequence[Path] | None = None
    progress: Progress | None = None  # (files done, files total, name) as files finish
    # The run's progress in seconds of audio, with its stage (asr.progress.RunProgress), on the
    # caller's thread whenever it moves; raising from it stops the run like `cancel`.
    on_progress: ProgressCallback | None = None
    # When set (a client went away), the run stops with `Cancelled` and its waiting segments
    # leave the queue.
    cancel: threading.Event | None = None
    # Called on the caller's thread with each recognised piece of a file, in time order, as soon
    # as all before it are done (the API streams them).
    on_piece: Callable[[int, Piece], None] | None = None
    itn: bool | None = None  # numbers as digits in texts (settings.itn)
    speakers: str | int | None = None  # off, auto or a count (settings.speakers.count)
    # Named reference voices (name -> 16 kHz mono samples, a few seconds each): found speakers
    # that sound like one take its name instead of S1, S2...
    known_speakers: Mapping[str, np.ndarray] | None = None


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
            # Auto: side by side. Batches mix requests of any length, and on a CPU padding costs
            # as much as speech (`python -m benchmarks.load` compares the two; docs/benchmarks.md).
            # int8 needs it anyway (padded batches share activation scales).
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
        self._speaker_encoder = None
        self._speaker_lock = threading.Lock()
        if settings.speakers.count != "off":
            self.speaker_encoder()  # a default that cannot load stops the start, as punctuation's does
        self.cue_limits = CueLimits(settings.subtitles.max_s, settings.subtitles.max_chars,
                                    settings.subtitles.pause_s, settings.subtitles.min_s)
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

    def transcribe(self, inputs: Sequence[AudioInput], options: RunOptions | None = None,
                   **fields: Any) -> list[Result]:
        """Recognise `inputs` (paths or (samples, rate)); one Result per input, in input order.
        `options` and/or keyword fields of RunOptions (batch_size=, hotwords=, ...)."""
        return self.run(inputs, options, **fields).results

    def run(self, inputs: Sequence[AudioInput], options: RunOptions | None = None,
            **fields: Any) -> Transcription:
        """Like transcribe, plus the run's statistics (wait time, stage times, back-offs)."""
        opts = dataclasses.replace(options or RunOptions(), **fields)
        started = time.perf_counter()
        size = int(opts.batch_size or self.default_batch_size)
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        if not opts.exclusive:
            self.batcher.check_room()  # QueueFull: past batching.max_queued_s of waiting audio
        hw = self.settings.hotwords
        hotword_ids = self.recognizer.hotword_list(parse_hotwords(opts.hotwords, hw.max_count, hw.max_chars))
        preload = self.settings.preload_audio if opts.preload is None else opts.preload

        speakers = self._speaker_options(opts.speakers)
        jobs = [self._job(i, source, opts.use_cache, opts.confine_to, speakers)
                for i, source in enumerate(inputs)]
        # Longest first: similar lengths share a batch (little padding), and an out-of-memory
        # shows up on the first batch rather than the last.
        ordered = sorted(jobs, key=lambda j: (-j.probed_s, j.index))
        tracker = ProgressTracker([j.name for j in jobs], [j.probed_s for j in jobs], opts.on_progress,
                                  opts.progress)
        for job in jobs:
            job.tracker, job.cancel = tracker, opts.cancel
        stats = RunStats(files=len(jobs), requested_batch_size=size, preload=preload)
        results: list[Result | None] = [None] * len(jobs)
        timestamps = self.settings.timestamps if opts.timestamps is None else bool(opts.timestamps)
        # Speakers cut sentences at word times, so they need the timestamp head.
        timestamps = timestamps or speakers is not None
        itn = self.settings.itn if opts.itn is None else bool(opts.itn)
        known = self._known_voices(opts.known_speakers) if speakers is not None else {}
        assemble_file = functools.partial(self._assemble_file, itn=itn, known=known)
        # Side-by-side CPU batches pad nothing, but the same limit bounds how long their lanes sit
        # idle waiting for the batch's longest file: the same sum, lanes x longest - total.
        request = Request(self.batcher, assemble_file, size, hotword_ids, stats, results,
                          tracker, self.settings.padding_limit_pct / 100.0,
                          timestamps,
                          name=f"run-{next(RUN_NUMBERS)}", cancel=opts.cancel, on_piece=opts.on_piece)
        with self._prepared(ordered, preload, stats) as items:
            self._feed(request, items, opts)

        final = [r for r in results if r is not None]
        assert len(final) == len(jobs), "every input must get a result"
        stats.failed = sum(1 for r in final if not r.ok)
        stats.audio_s = sum(r.duration_s for r in final if r.ok)
        stats.wall_s = time.perf_counter() - started
        log.log(logging.DEBUG if opts.quiet else logging.INFO,
                "transcribed %d file(s), %d failed, %.1f s audio in %.2f s (%.1fx real time), "
                "batch %d, %d back-off(s), model waited %.2f s", stats.files, stats.failed,
                stats.audio_s, stats.wall_s, stats.speed, size, stats.backoffs, stats.wait_s)
        return Transcription(final, stats)

    @contextlib.contextmanager
    def _prepared(self, ordered: list[_Job], preload: bool, stats: RunStats) -> Iterator[Iterator[Prepared]]:
        """The jobs decoded and featurised, in order: on preload threads ahead of the model, or
        inline. The workers stop when the block ends, however it ends."""
        if not (preload and len(ordered) > 1):
            yield run_inline(self._prepare, ordered)
            return
        p = self.settings.preload
        pipeline = PreloadPipeline(self._prepare, ordered, self._estimate_bytes, workers=p.workers,
                                   max_items=p.queue_items, max_bytes=p.queue_mb * 2**20)
        try:
            yield iter(pipeline)
        finally:
            pipeline.close()
            stats.peak_queued_mb = pipeline.peak_bytes / 2**20

    def _feed(self, request: Request, items: Iterator[Prepared], opts: RunOptions) -> None:
        """Hand each prepared file to the request (a failed one becomes its Result at once), then
        wait for the rest. Exclusive runs take the model alone from their first ready file on."""
        stats, cancel = request.stats, opts.cancel
        alone_once = EnterOnce(self.batcher.exclusive(request.ticket) if opts.exclusive
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
                    request.fail(item)
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

    def _assemble_file(self, pieces: list[Piece], item: Prepared, timestamps: bool, *, itn: bool = False,
                       known: Mapping[str, np.ndarray] | None = None) -> Transcript:
        """The text stages, per file after recognition: join, punctuate, cut into sentences at
        sentence marks and speaker changes, name known voices, write numbers as digits."""
        punctuator = self.punctuator
        diarization = item.diarization
        if diarization is not None and known:
            matches = match_known_speakers(diarization, dict(known))
            diarization = rename(diarization, {m.label: m.name for m in matches})
        transcript = assemble(pieces, punctuator.punctuate if punctuator else None, timestamps,
                              self.cue_limits, speakers=diarization)
        return normalize_numbers(transcript) if itn else transcript

    # ---- speakers ---------------------------------------------------------------------------

    def speaker_encoder(self) -> SpeakerEncoder:
        """The speaker model (`speaker_model`), loaded at its first use and kept."""
        with self._speaker_lock:
            if self._speaker_encoder is None:
                settings = self.settings
                self._speaker_encoder = load_speaker_encoder(
                    settings.speaker_model, "cpu" if self.loaded.device.type == "cpu" else self.loaded.device,
                    settings.resolve_path(settings.cache_dir))
            return self._speaker_encoder

    def _speaker_options(self, requested: str | int | None) -> SpeakerOptions | None:
        """This run's speaker request (off -> None), checked like the setting."""
        count = normalize_speaker_count(self.settings.speakers.count if requested is None else requested)
        if count == "off":
            return None
        s = self.settings.speakers
        return SpeakerOptions(count=None if count == "auto" else int(count), max_speakers=s.max,
                              threshold=s.threshold or None)

    def _known_voices(self, voices: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """Reference clips as embeddings, once per run (each file's speakers are matched to them)."""
        if not voices:
            return {}
        encoder = self.speaker_encoder()
        with thread_count(1):
            return {name: encoder.embed_clip(np.asarray(samples, dtype=np.float32))
                    for name, samples in voices.items()}

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
             roots: Sequence[Path] | None = None, speakers: SpeakerOptions | None = None) -> _Job:
        if isinstance(source, (str, Path)):
            # A confined file is not probed by name (a FIFO swapped in would block the probe):
            # its size stands in for its length, for sorting only.
            probed = _size_seconds(Path(source)) if roots is not None else _probe_seconds(Path(source))
            return _Job(index, Path(source).name, source, probed, use_cache, roots, speakers)
        samples, rate = source
        seconds = len(samples) / rate if rate else 0.0
        return _Job(index, f"input-{index + 1}", source, seconds, use_cache, speakers=speakers)

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
        except Cancelled:
            raise  # the whole run stops, not just this input
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
        _enter_stage(job, DECODING)
        if isinstance(job.source, (str, Path)):
            data = (read_confined(job.source, job.roots) if job.roots is not None
                    else audio_io.read_file(job.source))
            # How the file is cut is part of the key: cached segments must match today's settings.
            key = cache_key(audio_io.md5_of(data), f"{self.features.fingerprint}/{self._cut_fingerprint}")
            # Speakers need the samples themselves, which the cache does not keep.
            cached = self.cache.get(key) if job.use_cache and job.speakers is None else None
            if cached is not None:
                # Same bytes, same frontend: decoding would give the same samples, so skip it.
                audio_io.check_duration_s(cached.duration_s, limits.min_duration_s,
                                          limits.max_duration_s)
                item.duration_s, item.segments, item.cache_hit = (cached.duration_s,
                                                                  cached.segments, True)
                item.starts_s = cached.starts_s
                item.decode_s = time.perf_counter() - t0
                if job.tracker is not None:
                    job.tracker.length(job.index, cached.duration_s)
                return
            decoded = audio_io.decode_bytes(data, job.name, audio_io.DecodeLimits.from_settings(limits))
        else:
            key = None
            decoded = audio_io.decode_samples(job.source[0], job.source[1], job.name,
                                              audio_io.DecodeLimits.from_settings(limits))
        item.duration_s = decoded.duration_s
        audio_io.check_duration(decoded, limits.min_duration_s, limits.max_duration_s)
        t1 = time.perf_counter()
        item.decode_s = t1 - t0
        if job.tracker is not None:
            job.tracker.length(job.index, decoded.duration_s)
        _enter_stage(job, SPEECH)
        regions = self.vad.detect(decoded.samples)
        ranges = plan_segments(decoded.samples, regions, self.vad.name, limits.segment_s,
                               limits.vad_merge_gap_s)
        if job.speakers is not None:
            self._diarize(decoded.samples, regions, job.speakers, item)
        t2 = time.perf_counter()
        item.vad_s = t2 - t1
        item.segments = []
        for a, b in ranges:
            _enter_stage(job, None)  # a long file's features take a while: a cancel is seen between segments
            item.segments.append(self.features(decoded.samples[a:b]))
        item.starts_s = [a / audio_io.TARGET_RATE for a, _ in ranges]
        if any(s.shape[0] == 0 for s in item.segments):
            raise audio_io.AudioError("the audio is too short to produce any feature frames")
        item.features_s = time.perf_counter() - t2
        if key and job.use_cache:
            self.cache.put(key, CachedFeatures(item.segments, item.duration_s, item.starts_s))

    def _diarize(self, samples: np.ndarray, regions, options: SpeakerOptions, item: Prepared) -> None:
        """The file's speakers from its own audio and speech regions (never its batch mates').
        A failure costs the labels, with a warning, never the transcript."""
        try:
            item.diarization = diarize(samples, [(a / audio_io.TARGET_RATE, b / audio_io.TARGET_RATE)
                                                 for a, b in regions], self.speaker_encoder(), options)
        except Exception as exc:  # noqa: BLE001 - an extra must never cost a transcript
            log.warning("speaker labels failed for %s: %s: %s", item.name, type(exc).__name__, exc)
            item.warnings.append(f"speaker labels failed ({type(exc).__name__}: {exc}); the text has none")

    @functools.cached_property
    def _cut_fingerprint(self) -> str:
        limits = self.settings.input
        return f"{self.vad.fingerprint}/seg{limits.segment_s:g}/gap{limits.vad_merge_gap_s:g}"

    # ---- model -------------------------------------------------------------------------------

    def _recognize(self, feats: list[torch.Tensor], hotword_ids, timings: BatchTimings, timestamps: bool):
        """The batcher's one way to the model (it calls from its own thread only)."""
        return self.recognizer.recognize(feats, hotword_ids, timings, timestamps)


def _enter_stage(job: _Job, stage: str | None) -> None:
    """Tell the run's progress that `job` entered `stage` (None: no new stage), and stop here if
    the run was cancelled meanwhile."""
    if job.cancel is not None and job.cancel.is_set():
        raise Cancelled("the request was cancelled")
    if stage is not None and job.tracker is not None:
        job.tracker.stage(job.index, stage)


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM type, plus the allocation failures cuBLAS/cuDNN report as plain RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "ALLOC_FAILED" in text)


def _probe_seconds(path: Path) -> float:
    """Cheap duration guess for sorting and queue budgeting; decoding later gives the truth.
    Probed as uploads are decoded (no demuxer that opens other files), else guessed from size."""
    seconds = audio_io.probe_seconds(path)
    return _size_seconds(path) if seconds is None else seconds


def _size_seconds(path: Path) -> float:
    """A length guess from the file size alone (16 kHz 16-bit mono)."""
    try:
        return path.stat().st_size / 32000
    except OSError:
        return 0.0


