"""The three-step batch-size wizard: baseline, sweep, refine, on the user's own machine and audio.

1. Baseline: a short warm-up (cold start must not count), then the workload at batch 1 -> T1.
   The workload is N copies of the file (or the user's own set), the same for every step, so
   every time per file compares like with like.
2. Sweep: the workload at each candidate size, extended upward while memory allows and time per
   file still improves. Each run starts with cached GPU memory released and the peak counters
   reset; its peak memory, time and success or OOM are recorded.
3. Refine: the knee (tuning.knee) and its neighbours, `repeats` runs each, interleaved so slow
   drift on a shared machine hits every size alike; the fastest safe median is the answer, and
   the spread of the runs says how sure it is.

The feature cache is bypassed for every run (`engine.run(use_cache=False)`): each run decodes and
extracts features itself, as a first-time file would, so a cache hit cannot flatter a size.

A run is bounded (tuning.copies, tuning.repeats and the number of sizes and files have ceilings)
and can be cancelled: `cancel_wizard()` (the Tab's Cancel button, Ctrl+C in `python -m tuning`)
stops it within a fraction of a second plus the batch the model is computing, and releases the
model to other requests.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from asr.audio import decode as audio_io
from asr.recognition.batcher import Cancelled
from asr.settings import SCHEMA, SettingsError, coerce
from asr.system.gpu import gpu_memory, process_rss_mb, release_cached_memory, reset_peak_memory
from tuning.knee import Measurement, choose_golden, explain, find_knee, neighbours, over_limit
from tuning.one_run import OneRun, RunBusy
from tuning.sizes import WizardError, sizes_from_text  # noqa: F401 - sizes_from_text re-exported

log = logging.getLogger(__name__)

WizardProgress = Callable[[float, str], None]  # (fraction 0..1, message)

CACHE_POLICY = ("feature cache bypassed: every tuning run calls engine.run(use_cache=False), so each "
                "run decodes the audio and extracts features itself, like a first-time file; no "
                "size gets cache hits another size did not")
WARMUP_SECONDS = 10.0  # enough to load kernels and allocator pools, short enough not to matter
MAX_EXTENSIONS = 4  # upward extensions of the sweep (doubling), beyond the configured sizes
MAX_BATCH_SIZE = int(SCHEMA["batch_size"][1]["max"])
MAX_COPIES = int(SCHEMA["tuning.copies"][1]["max"])
MAX_REPEATS = int(SCHEMA["tuning.repeats"][1]["max"])
MAX_FILES = MAX_COPIES  # several files replace the copies: the same ceiling on a run's workload
MAX_SIZES = 16  # sizes in one sweep, before its upward extensions
SAMPLE_INTERVAL_S = 0.05

TABLE_COLUMNS = ["step", "batch size", "total time (s)", "time per file (s)", "speed-up vs batch 1",
                 "peak memory (MB)", "predicted (MB)", "memory %", "status"]

WIZARD = OneRun("tuning run")  # one wizard at a time: two would time each other


class WizardCancelled(WizardError):
    """The run was cancelled before it finished; the model is free again."""


def cancel_wizard() -> bool:
    """Stop the wizard run in progress in this process (False when none is running)."""
    return WIZARD.cancel()


@dataclass
class RunRecord:
    """One measured engine run."""

    step: str  # "baseline", "sweep" or "refine"
    batch_size: int
    files: int
    total_s: float
    per_file_s: float
    status: str  # "ok", "oom" (backed off / torch OOM), "unformed" (no batch that large formed) or "error"
    audio_s: float = 0.0
    peak_mb: float | None = None  # the figure the memory rule uses (see WizardReport.memory_source)
    memory_pct: float | None = None  # peak_mb as a share of memory_total_mb
    torch_peak_reserved_mb: float | None = None
    nvml_peak_used_mb: float | None = None
    rss_peak_mb: float | None = None
    # The memory model's figure for the same run: memory at the run's start (same measure as
    # peak_mb) plus the predicted peak of its largest batch; None without a memory model.
    predicted_mb: float | None = None
    backoffs: int = 0
    repeat: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def measurement(self) -> Measurement:
        return Measurement(self.batch_size, self.per_file_s, self.memory_pct, self.ok, self.status)

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class WizardReport:
    baseline: RunRecord
    sweep: list[RunRecord]
    refine: list[RunRecord]
    recommended: int
    reason: str
    knee: int
    refine_medians: dict[int, float]
    cache_policy: str
    device: str
    memory_source: str  # what "peak memory" means on this machine
    memory_total_mb: float
    memory_rule: str  # how the memory limit was applied
    files: list[str]
    workload_files: int
    sizes: list[int]  # the sweep as run, extensions included
    copies: int
    repeats: int
    margin_pct: float
    memory_limit_pct: float
    warmup_s: float
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def t1(self) -> float:
        return self.baseline.per_file_s

    @property
    def reference_s(self) -> float:
        """Batch 1's time per file that every speed-up is against (the reason's, the table's):
        its refine median when batch 1 was refined, else the baseline."""
        return self.refine_medians.get(1, self.t1)

    def runs(self) -> list[RunRecord]:
        return [self.baseline, *self.sweep, *self.refine]

    def table(self) -> list[list]:
        """One row per measured run, in TABLE_COLUMNS order (None where a figure is unknown)."""
        rows = []
        for run in self.runs():
            step = run.step if run.step != "refine" else f"refine {run.repeat}"
            speedup = round(self.reference_s / run.per_file_s, 2) if run.per_file_s > 0 else None
            rows.append([step, run.batch_size, round(run.total_s, 3), round(run.per_file_s, 4),
                         speedup, None if run.peak_mb is None else round(run.peak_mb, 1),
                         None if run.predicted_mb is None else round(run.predicted_mb, 1),
                         None if run.memory_pct is None else round(run.memory_pct, 1),
                         "OOM" if run.status == "oom" else run.status])
        return rows

    def format_table(self) -> str:
        """The table as aligned plain text, for the CLI."""
        return aligned_table(TABLE_COLUMNS, self.table())

    def to_dict(self) -> dict:
        return {
            "recommended": self.recommended,
            "reason": self.reason,
            "knee": self.knee,
            "t1_s": round(self.t1, 4),
            "reference_s": round(self.reference_s, 4),
            "refine_medians_s": {str(k): round(v, 4) for k, v in sorted(self.refine_medians.items())},
            "cache_policy": self.cache_policy,
            "device": self.device,
            "memory_source": self.memory_source,
            "memory_total_mb": round(self.memory_total_mb, 1),
            "memory_rule": self.memory_rule,
            "files": self.files,
            "workload_files": self.workload_files,
            "sizes": self.sizes,
            "copies": self.copies,
            "repeats": self.repeats,
            "margin_pct": self.margin_pct,
            "memory_limit_pct": self.memory_limit_pct,
            "warmup_s": round(self.warmup_s, 3),
            "elapsed_s": round(self.elapsed_s, 2),
            "notes": self.notes,
            "columns": TABLE_COLUMNS,
            "table": self.table(),
            "runs": {
                "baseline": self.baseline.to_dict(),
                "sweep": [r.to_dict() for r in self.sweep],
                "refine": [r.to_dict() for r in self.refine],
            },
        }


def aligned_table(columns: list[str], rows: list[list]) -> str:
    """Rows as plain text in aligned columns (the first left, the rest right); None prints "-"."""
    cells = [columns] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths,
                                                                                            strict=True)))
                     for row in cells)


# ---- memory ---------------------------------------------------------------------------------


def total_ram_mb() -> float:
    """Physical RAM, or the container's cgroup limit when that is smaller."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text) / 2**20)
    return total


class _MemoryWatch:
    """Peak memory of one run: torch's exact peak plus a sampled NVML (GPU) or RSS (CPU) peak.

    NVML and /proc only report the current figure, so a background thread samples it; the sampler
    reads a number every 50 ms and costs nothing measurable next to a model call.
    """

    def __init__(self, device: torch.device):
        self.gpu = device.type == "cuda" and torch.cuda.is_available()
        self.device = device
        self.peak_sampled = 0.0
        self.start_mb = 0.0  # the sampled figure when the run started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> float:
        if self.gpu:
            return gpu_memory(self.device).used_mb
        return process_rss_mb()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak_sampled = max(self.peak_sampled, self._sample())

    def __enter__(self) -> _MemoryWatch:
        release_cached_memory()
        reset_peak_memory()
        self.peak_sampled = self.start_mb = self._sample()
        self._thread = threading.Thread(target=self._loop, name="tuning-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_sampled = max(self.peak_sampled, self._sample())

    def fill(self, record: RunRecord, total_mb: float) -> None:
        if self.gpu:
            torch_peak = gpu_memory(self.device).torch_peak_reserved_mb
            record.torch_peak_reserved_mb = torch_peak
            record.nvml_peak_used_mb = self.peak_sampled or None
            # NVML counts the whole card (CUDA context, other processes); torch's peak is exact but
            # only this process's pool. The larger is what stands between the run and an OOM.
            record.peak_mb = max(torch_peak, self.peak_sampled)
        else:
            record.rss_peak_mb = self.peak_sampled
            record.peak_mb = self.peak_sampled
        if total_mb > 0 and record.peak_mb is not None:
            record.memory_pct = record.peak_mb / total_mb * 100.0


# ---- the wizard -----------------------------------------------------------------------------


class _Progress:
    """Maps the three steps onto one 0..1 bar that never moves backwards."""

    PHASES = {"warm-up": (0.0, 0.03), "baseline": (0.03, 0.15), "sweep": (0.15, 0.6), "refine": (0.6, 0.99)}

    def __init__(self, callback: WizardProgress | None):
        self.callback = callback
        self.last = 0.0

    def __call__(self, phase: str, done: float, total: float, message: str) -> None:
        if not self.callback:
            return
        start, end = self.PHASES[phase]
        fraction = start + (end - start) * (min(done, total) / total if total else 1.0)
        self.last = max(self.last, fraction)
        self.callback(self.last, message)


def _duration_s(path: Path, limits: audio_io.DecodeLimits) -> float:
    """From the header when it says (refused past the limits), else by decoding within them."""
    seconds = audio_io.probe_seconds(path)
    if seconds is not None:
        if seconds > limits.max_duration_s + audio_io.DECLARED_SLACK_S:
            raise audio_io.AudioError(f"the audio is too long ({seconds:.0f} s; the limit "
                                      f"input.max_duration_s is {limits.max_duration_s:g} s)")
        return seconds
    return audio_io.decode_bytes(audio_io.read_file(path), path.name, limits).duration_s


def _parse_sizes(sizes: Sequence[int]) -> list[int]:
    try:
        values = sorted({int(s) for s in sizes})
    except (TypeError, ValueError):
        raise WizardError(f"batch sizes must be whole numbers, got {list(sizes)!r}") from None
    if any(v < 1 or v > MAX_BATCH_SIZE for v in values):
        raise WizardError(f"batch sizes must be between 1 and {MAX_BATCH_SIZE}, got {values}")
    if len(values) > MAX_SIZES:
        raise WizardError(f"give at most {MAX_SIZES} batch sizes to sweep (it extends upward by itself), "
                          f"got {len(values)}")
    values = [v for v in values if v > 1]  # batch 1 is the baseline
    if not values:
        raise WizardError("give at least one batch size above 1 to sweep")
    return values


class _Wizard:
    def __init__(self, engine, files: list[Path], sizes: list[int], copies: int, repeats: int,
                 margin_pct: float, memory_limit_pct: float, progress: WizardProgress | None,
                 cancel: threading.Event):
        self.engine = engine
        self.cancel = cancel
        self.limits = audio_io.DecodeLimits.from_settings(engine.settings.input)
        self.files = files
        self.sizes = sizes
        self.copies = copies
        self.repeats = repeats
        self.margin_pct = margin_pct
        self.memory_limit_pct = memory_limit_pct
        self.progress = _Progress(progress)
        self.device: torch.device = engine.loaded.device
        self.gpu = self.device.type == "cuda" and torch.cuda.is_available()
        self.notes: list[str] = []
        self.longest_frames = 0  # set in run()
        self.units_per_input = 1
        if self.engine.batcher.memory_model is None:
            self.notes.append("no memory model, so no predicted memory: on a GPU the engine fits one at "
                              "start; on a CPU run `python -m asr memory-model --model ... --save`")
        if self.gpu:
            info = gpu_memory(self.device)
            self.memory_total_mb = info.total_mb
            self.device_text = (f"{info.name or 'CUDA GPU'} ({info.total_mb / 1024:.1f} GiB), "
                                f"{self.device}, {engine.precision}")
            self.memory_source = "GPU: the larger of torch peak reserved and NVML used (whole card)"
            self.memory_rule = (f"memory rule: peak GPU memory at most {memory_limit_pct:g}% of the "
                                f"card's {info.total_mb:.0f} MB")
        else:
            self.memory_total_mb = total_ram_mb()
            rec = engine.recognizer
            self.device_text = (f"CPU ({os.cpu_count()} cores, {rec.threads} torch threads, "
                                f"{engine.linear_kernels} linears, up to {rec.lanes} files side by "
                                f"side), {engine.precision}; no GPU: memory is process RSS")
            self.memory_source = "CPU: process RSS (resident memory of this process), no GPU"
            self.memory_rule = (f"no GPU, so the memory rule uses process RSS against total RAM "
                                f"({self.memory_total_mb:.0f} MB, limit {memory_limit_pct:g}%)")
        self.device_text += f"; model {engine.loaded.spec}"

    # one measured run ------------------------------------------------------------------------

    def _measure(self, step: str, inputs: list, size: int, phase: str, done: int, total: int,
                 repeat: int = 0) -> RunRecord:
        label = f"{step} batch {size}" + (f" (run {repeat})" if repeat else "")

        def files_done(count: int, of: int, _name: str) -> None:
            self.progress(phase, done + count / of, total, f"{label}: {count}/{of} files")

        self._check_cancel()
        self.progress(phase, done, total, f"{label}: starting")
        status, message, backoffs, audio_s = "ok", "", 0, 0.0
        with _MemoryWatch(self.device) as watch:
            started = time.perf_counter()
            try:
                # Alone on the model (other requests wait), so a size's time is its own.
                run = self.engine.run(inputs, batch_size=size, progress=files_done, use_cache=False,
                                      exclusive=True, cancel=self.cancel)
            except Cancelled:
                raise WizardCancelled(f"cancelled during {label}") from None
            except torch.OutOfMemoryError as exc:
                elapsed = time.perf_counter() - started
                status, message = "oom", f"out of memory: {exc}"
                release_cached_memory()
            else:
                elapsed = run.stats.wall_s
                backoffs, audio_s = run.stats.backoffs, run.stats.audio_s
                failed = [r for r in run.results if not r.ok]
                oom = [r for r in run.results if r.backed_off or "out of GPU memory" in (r.error or "")]
                if backoffs or oom:
                    status = "oom"
                    message = (f"out of memory at batch {size}: the engine backed off {backoffs} "
                               f"time(s) to smaller batches")
                elif failed:
                    status, message = "error", f"{failed[0].file}: {failed[0].error}"
                else:
                    formed = max(r.batch_size for r in run.results)
                    if formed < size:
                        # Too few inputs of similar length: its time and memory are those of a
                        # smaller batch, so this size must not be recommended on them.
                        status = "unformed"
                        message = (f"no batch of {size} formed (largest {formed}; "
                                   f"{len(inputs)} input(s))")
        record = RunRecord(step, size, len(inputs), elapsed, elapsed / max(1, len(inputs)), status,
                           audio_s=audio_s, backoffs=backoffs, repeat=repeat, message=message)
        watch.fill(record, self.memory_total_mb)
        model = self.engine.batcher.memory_model
        if model is not None and self.longest_frames:
            batch = min(size, len(inputs) * self.units_per_input)
            record.predicted_mb = watch.start_mb + model.predict(batch, self.longest_frames) / 2**20
        memory = "-" if record.memory_pct is None else f"{record.peak_mb:.0f} MB ({record.memory_pct:.1f}%)"
        log.info("tuning %s: %d file(s) in %.3f s, %.4f s per file, peak memory %s, %s%s", label,
                 record.files, record.total_s, record.per_file_s, memory, status,
                 f" ({message})" if message else "")
        return record

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise WizardCancelled("cancelled")

    # the three steps -------------------------------------------------------------------------

    def run(self) -> WizardReport:
        started = time.perf_counter()
        first = self.files[0]
        try:
            decoded = audio_io.decode_bytes(audio_io.read_file(first), first.name, self.limits)
        except audio_io.AudioError as exc:
            raise WizardError(f"{first.name}: {exc}") from None

        # Warm-up: the first model call pays for lazy initialisation (kernels, allocator, caches).
        self.progress("warm-up", 0, 1, "warm-up run (not counted)")
        clip = decoded.samples[: int(WARMUP_SECONDS * audio_io.TARGET_RATE)]
        del decoded
        t0 = time.perf_counter()
        try:
            warm = self.engine.run([(clip, audio_io.TARGET_RATE)], batch_size=1, use_cache=False,
                                   exclusive=True, cancel=self.cancel)
        except Cancelled:
            raise WizardCancelled("cancelled during the warm-up") from None
        warmup_s = time.perf_counter() - t0
        if not warm.results[0].ok:
            raise WizardError(f"{first.name}: {warm.results[0].error}")

        # For the predicted memory: the longest piece a batch can hold (an upper bound, as VAD may
        # cut shorter ones) and how many pieces a file makes.
        segment_s = self.engine.settings.input.segment_s
        durations = {f: _duration_s(f, self.limits) for f in self.files}
        self.longest_frames = int(min(segment_s, max(durations.values()))
                                  * self.engine.features.frames_per_second)
        self.units_per_input = max(1, math.ceil(max(durations.values()) / segment_s))

        if len(self.files) > 1:
            workload = list(self.files)
            self.notes.append(f"sweep and refine use your {len(workload)} files; --copies does not apply")
        else:
            workload = [first] * self.copies
        units = sum(max(1, math.ceil(durations[f] / segment_s)) for f in workload)

        # Batch 1 on the same workload as every other size: its time per file is the reference.
        baseline = self._measure("baseline", workload, 1, "baseline", 0, 1)
        if not baseline.ok:
            raise WizardError(f"{first.name} could not be recognised at batch size 1: {baseline.message}")

        sweep = self._sweep(baseline, workload, units)
        knee = find_knee(baseline.measurement(), [r.measurement() for r in sweep], self.margin_pct,
                         self.memory_limit_pct)
        safe = [1] + [r.batch_size for r in sweep
                      if r.ok and not over_limit(r.measurement(), self.memory_limit_pct)]
        refine_sizes = neighbours(knee.size, safe)
        refine = self._refine(workload, refine_sizes)
        golden = choose_golden([r.measurement() for r in refine], self.margin_pct, self.memory_limit_pct)
        reason = explain(golden, baseline.measurement(), knee, self.margin_pct, self.repeats,
                         self.memory_rule, refine=[r.measurement() for r in refine])
        report = WizardReport(
            baseline=baseline, sweep=sweep, refine=refine, recommended=golden.size, reason=reason,
            knee=knee.size, refine_medians=golden.medians, cache_policy=CACHE_POLICY,
            device=self.device_text, memory_source=self.memory_source,
            memory_total_mb=self.memory_total_mb, memory_rule=self.memory_rule,
            files=[str(f) for f in self.files], workload_files=len(workload),
            sizes=[r.batch_size for r in sweep], copies=self.copies, repeats=self.repeats,
            margin_pct=self.margin_pct, memory_limit_pct=self.memory_limit_pct, warmup_s=warmup_s,
            elapsed_s=time.perf_counter() - started, notes=self.notes,
        )
        log.info("tuning done in %.1f s: recommended batch size %d (%s)", report.elapsed_s,
                 report.recommended, reason)
        if self.progress.callback:
            self.progress.callback(1.0, f"done: recommended batch size {report.recommended}")
        return report

    def _sweep(self, baseline: RunRecord, workload: list[Path], units: int) -> list[RunRecord]:
        sizes = list(self.sizes)
        records: list[RunRecord] = []
        extensions = 0
        i = 0
        while i < len(sizes):
            size = sizes[i]
            record = self._measure("sweep", workload, size, "sweep", i, len(sizes))
            records.append(record)
            i += 1
            if not record.ok or over_limit(record.measurement(), self.memory_limit_pct):
                # Larger batches need more memory: trying them would only fail again, slowly.
                why = {"oom": "ran out of memory", "unformed": "never formed a batch that large"}.get(
                    record.status, "failed" if not record.ok else f"used {record.memory_pct:.0f}% of memory")
                if i < len(sizes):
                    self.notes.append(f"sizes above {size} were not tried: {size} {why}")
                break
            if i < len(sizes):
                continue
            # Past the configured sizes: go on only while the largest size is still the knee
            # (it improved, ran, and stayed under the memory limit) and a larger batch can differ.
            knee = find_knee(baseline.measurement(), [r.measurement() for r in records],
                             self.margin_pct, self.memory_limit_pct)
            if knee.size != size or extensions >= MAX_EXTENSIONS:
                break
            if size >= units:
                self.notes.append(f"the sweep stopped at {size}: your workload has only {units} "
                                  f"batch item(s), so larger batches cannot differ; give more "
                                  f"copies or files to try larger sizes")
                break
            nxt = min(size * 2, units, MAX_BATCH_SIZE)
            if nxt <= size:
                break
            extensions += 1
            sizes.append(nxt)
            self.notes.append(f"sweep extended to {nxt}: {size} was still improving within the memory limit")
        return records

    def _refine(self, workload: list[Path], sizes: list[int]) -> list[RunRecord]:
        records: list[RunRecord] = []
        total = self.repeats * len(sizes)
        for repeat in range(1, self.repeats + 1):
            for size in sizes:  # interleaved: drift on a shared machine hits every size alike
                records.append(self._measure("refine", workload, size, "refine", len(records), total,
                                             repeat))
        return records


def run_wizard(engine, files: Sequence[str | Path], sizes: Sequence[int] | None = None,
               copies: int | None = None, repeats: int | None = None, margin_pct: float | None = None,
               memory_limit_pct: float | None = None,
               progress: WizardProgress | None = None,
               cancel: threading.Event | None = None) -> WizardReport:
    """Find the fastest safe batch size for `engine` on `files`; None means engine.settings.tuning.

    Raises WizardError for unusable input (no or unreadable files, bad sizes, values past the
    settings' ceilings) or when another wizard run is in progress in this process, and
    WizardCancelled when `cancel` is set or `cancel_wizard()` is called meanwhile.
    """
    tuning = engine.settings.tuning
    paths = [Path(f) for f in files]
    if not paths:
        raise WizardError("choose at least one audio file to tune on")
    if len(paths) > MAX_FILES:
        raise WizardError(f"choose at most {MAX_FILES} files to tune on, got {len(paths)}")
    limits = audio_io.DecodeLimits.from_settings(engine.settings.input)
    for path in paths:
        if not path.is_file():
            raise WizardError(f"file not found: {path}")
        try:
            _duration_s(path, limits)  # every file readable before minutes of measuring, not after
        except audio_io.AudioError as exc:
            raise WizardError(f"{path.name}: {exc}") from None
    chosen_sizes = _parse_sizes(tuning.sizes if sizes is None else sizes)
    try:
        copies = coerce("tuning.copies", tuning.copies if copies is None else copies, "the wizard")
        repeats = coerce("tuning.repeats", tuning.repeats if repeats is None else repeats, "the wizard")
    except SettingsError as exc:
        raise WizardError(str(exc)) from None
    margin = float(tuning.margin_pct if margin_pct is None else margin_pct)
    limit = float(tuning.memory_limit_pct if memory_limit_pct is None else memory_limit_pct)
    if not 0 <= margin <= 100 or not 0 < limit <= 100:
        raise WizardError("margin_pct must be 0-100 and memory_limit_pct above 0 and at most 100")
    try:
        with WIZARD.running(cancel) as event:
            log.info("tuning on %d file(s): sizes %s, copies %d, repeats %d, margin %g%%, memory limit %g%%",
                     len(paths), chosen_sizes, copies, repeats, margin, limit)
            try:
                return _Wizard(engine, paths, chosen_sizes, copies, repeats, margin, limit, progress,
                               event).run()
            except WizardCancelled:
                log.info("tuning cancelled; the model is free again")
                raise
    except RunBusy as exc:
        raise WizardError(str(exc)) from None
