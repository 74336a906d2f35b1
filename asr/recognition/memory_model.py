"""Predict the memory one recognition batch needs before it runs.

The batcher used to find the memory limit by hitting it (a CUDA out-of-memory halves the batch);
with a `MemoryModel` it can split a batch whose predicted peak exceeds the free memory before
running it, and the out-of-memory back-off stays as the safety net. On a CPU there is no such
net at all (Linux overcommits, and the OOM killer ends the process), so prediction is the only
guard there.

The model: the peak of one padded batch of B segments, the longest T feature frames (LFR frames,
the recognizer's input rows, 60 ms each), above what was allocated before the call:

    bytes = a + B·T·max(d, b + c·T)

Memory live at any moment is what the stage running then holds, so a batch's peak is the larger
of its stages' peaks, and both stages' tensors are rows of the padded batch:

- the encoder: every activation is a [B, T, width] tensor (the padded input, linear and FFN
  outputs, FSMN memory): `b·B·T`; and each attention layer materialises [B, heads, T, T] scores
  and the softmax's copy: `c·B·T²`. A fused attention kernel never materialises them: then c = 0
  (the fit finds c ≈ 0, or `quadratic=False` fixes it).
- the decoder: its token count L grows with T (a speaking rate), so its [B, L, vocabulary] logits
  and log-softmax and its [B, L, width] states, beside the [B, T, width] encoder output they
  attend to, are all `d·B·T`. With the large model's 8404-token vocabulary this stage is the
  peak at short lengths; the encoder's T² takes over past T = (d - b) / c.
- `a`: what does not grow with the batch: workspaces, hotword tensors, small per-call buffers,
  and under CUDA autocast the half-precision copies of the weights it caches for the call.

Nothing grows faster than T², and nothing grows with B but through these rows. The coefficients
cannot be negative, and the fit keeps them so. With d = 0 this is a + b·B·T + c·B·T²; fitting that
single sum to random:large on the CPU missed by -11% to +8% (the sum bends between the two stages),
the larger-of-two form by under 3% on runs it was fitted to and held out. The fit also keeps a
`margin`, its worst under-prediction of a measured run, by which every prediction is raised, so a
prediction is an upper bound on every run it was fitted to: a split comes a little early rather
than an out-of-memory a little late.

Precision: a model holds for the precision it was measured at (`precision`: fp32, bf16, fp16,
int8), since half precision halves most activations but not all (autocast runs the softmax in
fp32), and int8 (dynamic quantisation) keeps fp32 activations. `rescaled` gives a conservative
estimate for another precision when no measurement exists.

Side by side (a CPU batch with `lanes > 1`): the files of a batch run each alone, up to `lanes`
at once, so the peak is at most min(B, lanes) single-file peaks: `predict` uses that bound.

Measuring: on a GPU torch's own counters (`reset_peak_memory_stats`, `max_memory_allocated`),
above `memory_allocated` before the call. On a CPU torch keeps no peak counter; the profiler's
memory events are the CPU allocator's own report of every allocation and free (with sizes), so
their running sum over one call's timeline peaks exactly where torch's CPU allocations peak. The
profiler only sees the thread it runs in, so batches of more than one file are measured on a
padded twin of the recognizer (the same model, `lanes=1`): that is the form fitted anyway. The
process's RSS high-water mark (VmHWM, resettable by writing 5 to /proc/self/clear_refs) is no
use here: freed tensors stay in malloc's heap and are reused, so after the first call a batch's
peak barely moves RSS, whatever the allocator's own peak was.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from asr.recognition.model import load_model, quantize_int8
from asr.recognition.recognizer import Recognizer
from asr.settings import PROJECT_ROOT, load_settings
from asr.system.cpu import detect_cpu

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Bytes of one activation element at each precision (int8 is dynamic quantisation: its
# activations stay fp32; only weights are int8).
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 4}
NO_LIMIT = 1 << 30  # largest_batch's answer when no batch size can exceed the budget
DEFAULT_BATCHES = (1, 2, 4)
DEFAULT_FRAMES = (100, 250, 500, 1000)  # 6 to 60 s (input.segment_s's default); four lengths
# for the four coefficients
_MB = 2**20


@dataclass(frozen=True)
class MemoryPoint:
    """One measurement: the peak above the starting allocation of one batch."""

    batch: int
    frames: int  # the longest segment's (padded) length in feature frames
    peak_bytes: int


@dataclass
class MemoryModel:
    """bytes = (a + B·T·max(d, b + c·T)) × (1 + margin) for one padded batch (module docstring)."""

    a: float  # bytes
    b: float  # encoder: bytes per (segment · frame)
    c: float  # encoder attention: bytes per (segment · frame²)
    d: float = 0.0  # decoder: bytes per (segment · frame)
    margin: float = 0.0  # the fit's worst under-prediction of a measured run
    precision: str = "fp32"
    device: str = "cpu"
    lanes: int = 1  # > 1: a CPU batch runs side by side, at most `lanes` files at once
    label: str = ""  # what it was measured on (model, device name, torch version)
    points: list[MemoryPoint] = field(default_factory=list)  # the measurements it was fitted to

    # ---- fitting ---------------------------------------------------------------------------------

    @classmethod
    def fit(cls, points: Iterable[MemoryPoint | tuple[int, int, int]], precision: str = "fp32",
            device: str = "cpu", lanes: int = 1, label: str = "", quadratic: bool = True,
            stages: bool = True) -> MemoryModel:
        """Least squares with non-negative coefficients, on relative errors (each point weighs by
        1/its peak: a 5 MB batch matters as much as a 500 MB one in a prediction's ratio).

        Which stage peaks depends on T only, so the fit tries each split of the measured lengths
        (the k shortest peak in the decoder, the rest in the encoder; k = 0 is the plain sum
        a + b·B·T + c·B·T²), solves each as a linear problem with a shared `a`, and keeps the
        best by the larger-of-two prediction's own error. With four unknowns the exact
        non-negative solution is found by solving every subset of free coefficients.
        `stages=False` fits the plain sum only; `quadratic=False` fixes c = 0."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        pts = [p if isinstance(p, MemoryPoint) else MemoryPoint(*map(int, p)) for p in points]
        if not pts:
            raise ValueError("no measurements to fit")
        batch = np.array([p.batch for p in pts], dtype=float)
        frames = np.array([p.frames for p in pts], dtype=float)
        target = np.array([max(1.0, float(p.peak_bytes)) for p in pts])
        weights = 1.0 / target

        def predicted(coef: np.ndarray) -> np.ndarray:
            a, b, c, d = coef
            return a + batch * frames * np.maximum(d, b + c * frames)

        best, best_error = np.zeros(4), float(len(pts))  # all zero: every relative error is -1
        lengths = sorted({p.frames for p in pts})
        for k in range(len(lengths) + 1 if stages else 1):
            low = frames <= lengths[k - 1] if k else np.zeros(len(pts), dtype=bool)
            # Columns: a, b and c on the encoder's points, d on the decoder's.
            design = np.stack([np.ones(len(pts)), batch * frames * ~low,
                               batch * frames ** 2 * ~low, batch * frames * low], axis=1)
            rows, goal = design * weights[:, None], target * weights
            free_columns = [0, 1] + ([2] if quadratic else []) + ([3] if k else [])
            for size in range(1, len(free_columns) + 1):
                for free in itertools.combinations(free_columns, size):
                    solution, *_ = np.linalg.lstsq(rows[:, free], goal, rcond=None)
                    if np.any(solution < 0):
                        continue
                    coef = np.zeros(4)
                    coef[list(free)] = solution
                    error = float(np.sum((predicted(coef) * weights - 1.0) ** 2))
                    if error < best_error * (1 - 1e-9) - 1e-12:  # a simpler fit wins ties
                        best, best_error = coef, error
        a, b, c, d = (float(v) for v in best)
        if d <= b:
            d = 0.0  # the decoder never peaks: the plain sum
        margin = max(0.0, float(np.max(target / np.maximum(predicted(np.array([a, b, c, d])), 1.0))) - 1.0)
        return cls(a, b, c, d, margin=margin, precision=precision, device=device, lanes=max(1, int(lanes)),
                   label=label, points=pts)

    # ---- predicting ------------------------------------------------------------------------------

    def _copies_and_rows(self, batch: int) -> tuple[int, int]:
        """(calls running at once, rows per call): one padded call of `batch` rows, or up to
        `lanes` single-file calls side by side."""
        if self.lanes > 1:
            return min(batch, self.lanes), 1
        return 1, batch

    def predict(self, batch: int, frames: int) -> int:
        """Peak bytes above the starting allocation of a batch of `batch` segments whose longest
        has `frames` feature frames."""
        if batch < 1 or frames < 1:
            return 0
        copies, rows = self._copies_and_rows(batch)
        return int(math.ceil(copies * (self.a + rows * self._per_row(frames)) * (1.0 + self.margin)))

    def _per_row(self, frames: int) -> float:
        return frames * max(self.d, self.b + self.c * frames)

    def largest_batch(self, frames: int, budget_bytes: float) -> int:
        """The most segments of up to `frames` frames whose predicted peak fits in `budget_bytes`:
        0 when even one does not fit, NO_LIMIT when no batch size can exceed it."""
        scale = 1.0 + self.margin
        fixed, per_row = self.a * scale, self._per_row(frames) * scale
        if self.lanes > 1:
            one = fixed + per_row
            if one > budget_bytes:
                return 0
            fits = int(budget_bytes // one) if one > 0 else NO_LIMIT
            return NO_LIMIT if fits >= self.lanes else fits
        if fixed + per_row > budget_bytes:
            return 0
        if per_row <= 0:
            return NO_LIMIT
        fits = int((budget_bytes - fixed) // per_row)
        while fits > 1 and self.predict(fits, frames) > budget_bytes:  # float rounding at the edge
            fits -= 1
        return min(max(1, fits), NO_LIMIT)

    def errors(self, points: Iterable[MemoryPoint] | None = None) -> list[float]:
        """Relative error (predicted / measured - 1) at each point (default: the fitted ones)."""
        return [self.predict(p.batch, p.frames) / max(1, p.peak_bytes) - 1.0
                for p in (self.points if points is None else points)]

    def with_lanes(self, lanes: int) -> MemoryModel:
        """The same fit for a recognizer that runs `lanes` files side by side (1: padded)."""
        return replace(self, lanes=max(1, int(lanes)))

    def rescaled(self, precision: str) -> MemoryModel:
        """An estimate for another precision, from the ratio of activation sizes: the B·T terms
        scale; the constant and the T² term only grow (autocast computes the softmax over the
        attention scores in fp32, so half precision does not halve them). Conservative when
        going to a smaller precision; a measurement at that precision is better."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        ratio = ACTIVATION_BYTES[precision] / ACTIVATION_BYTES[self.precision]
        c = self.c * max(1.0, ratio)
        return replace(self, b=self.b * ratio, c=c, d=self.d * ratio, precision=precision,
                       label=f"{self.label} (rescaled from {self.precision})".strip(), points=[])

    def describe(self) -> str:
        decoder = f", d={self.d:.0f} B/(segment·frame)" if self.d else ""
        return (f"a={self.a / _MB:.2f} MB, b={self.b:.0f} B/(segment·frame), "
                f"c={self.c:.2f} B/(segment·frame²){decoder}, margin {self.margin:.1%} "
                f"[{self.precision}, {self.device}"
                + (f", {self.lanes} lanes" if self.lanes > 1 else "") + "]")

    # ---- JSON ------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        data = asdict(self)
        data["points"] = [[p.batch, p.frames, p.peak_bytes] for p in self.points]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MemoryModel:
        known = {"a", "b", "c", "d", "margin", "precision", "device", "lanes", "label"}
        values = {k: v for k, v in data.items() if k in known}
        points = [MemoryPoint(*map(int, p)) for p in data.get("points", [])]
        model = cls(**values, points=points)
        if model.precision not in PRECISIONS:
            raise ValueError(f"memory model: unknown precision {model.precision!r}")
        if min(model.a, model.b, model.c, model.d, model.margin) < 0:
            raise ValueError("memory model: coefficients must not be negative")
        return model

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str | Path) -> MemoryModel:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ---- the memory there is ---------------------------------------------------------------------------


def free_memory_bytes(device: torch.device | str) -> int:
    """What a batch could still allocate: on a GPU the driver's free memory plus what torch holds
    cached but unallocated (torch reuses it before asking the driver); on a CPU MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, cached))
    return mem_available_bytes()


def mem_available_bytes() -> int:
    """Linux's estimate of memory available to new allocations without swapping (/proc/meminfo)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 0


def memory_budget(device: torch.device | str, limit_pct: float) -> int:
    """The bytes a batch may use: free memory × `limit_pct` / 100 (tuning.memory_limit_pct)."""
    return int(free_memory_bytes(device) * limit_pct / 100.0)


# ---- measuring -------------------------------------------------------------------------------------


def measure_peak(recognizer, feats: Sequence[torch.Tensor], hotwords=None, timestamps: bool = False) -> int:
    """Peak bytes above the starting allocation of one `recognizer.recognize(feats)` call.

    GPU: torch's peak counter. CPU: the profiler's allocator events (see the module docstring),
    on a padded twin for a side-by-side recognizer given more than one file. The caller makes
    sure nothing else runs the model meanwhile (`measure_grid` does for an Engine)."""
    device = recognizer.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        recognizer.recognize(list(feats), hotwords, None, timestamps)
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    if len(feats) > 1 and getattr(recognizer, "lanes", 1) > 1:
        recognizer = padded_twin(recognizer)
    return cpu_allocation_peak(lambda: recognizer.recognize(list(feats), hotwords, None, timestamps))


def cpu_allocation_peak(call) -> int:
    """The peak of torch's CPU allocations made by `call()` in this thread, above the start:
    the running sum of the allocator's (allocation +, free -) events in time order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the profiler's notes on cycles and missing CUDA
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            call()
        events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU]
    events.sort(key=lambda e: e[0])  # stable: one thread's events keep their order
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def padded_twin(recognizer):
    """The same model as a padded recognizer (lanes=1): what `measure_peak` runs on a CPU, whose
    profiler sees only its own thread. Shares every weight; builds nothing new."""
    return Recognizer(recognizer.model, recognizer.tokenizer, recognizer.frontend, recognizer.device,
                      precision=getattr(recognizer, "precision", "fp32"), threads=recognizer.threads, lanes=1,
                      simulate_oom_frames=getattr(recognizer, "simulate_oom_frames", 0),
                      attention=getattr(recognizer, "attention", "auto"))


def synthetic_features(recognizer, batch: int, frames: int, seed: int = 0,
                       source: torch.Tensor | None = None) -> list[torch.Tensor]:
    """`batch` feature matrices of `frames` rows: windows of `source` (features of real speech,
    repeated as needed) at different offsets, or normalised noise (what CMVN makes of speech, in
    scale). The decoder's share depends on how many tokens the model hears, so real speech
    measures a trained model best."""
    generator = torch.Generator().manual_seed(seed * 7919 + frames * 31 + batch)
    if source is not None:
        tiled = source.repeat(math.ceil((frames * 2) / max(1, source.shape[0])) + 1, 1)
        offsets = torch.randint(0, max(1, tiled.shape[0] - frames), (batch,), generator=generator)
        return [tiled[int(o): int(o) + frames].clone() for o in offsets]
    size = _feature_size(recognizer)
    return [torch.randn(frames, size, generator=generator) for _ in range(batch)]


def _feature_size(recognizer) -> int:
    frontend = recognizer.frontend
    with contextlib.suppress(Exception):
        return int(frontend.output_size())
    return int(getattr(frontend, "n_mels", 80)) * int(getattr(frontend, "lfr_m", 7))


def measure_grid(target, batches: Sequence[int] = DEFAULT_BATCHES,
                 frames: Sequence[int] = DEFAULT_FRAMES, hotwords=None, timestamps: bool = False,
                 source: torch.Tensor | None = None, warmup: bool = True) -> list[MemoryPoint]:
    """Measure the peak at every batch size × length. `target`: a Recognizer, or an Engine
    (measured on its recognizer while its batcher runs nothing else). A run that runs out of
    memory is left out, with the larger batch sizes at its length."""
    recognizer = getattr(target, "recognizer", target)
    batcher = getattr(target, "batcher", None)
    quiet = contextlib.nullcontext()
    if batcher is not None:
        ticket = batcher.ticket(None, False, 1, lambda outcome: None, name="memory-model")
        quiet = batcher.exclusive(ticket)
    points = []
    with quiet:
        if warmup:  # first calls build kernels and caches that later calls do not
            recognizer.recognize(synthetic_features(recognizer, 1, min(frames), source=source),
                                 hotwords, None, timestamps)
        for length in frames:
            for batch in sorted(batches):
                feats = synthetic_features(recognizer, batch, length, source=source)
                started = time.perf_counter()
                try:
                    peak = measure_peak(recognizer, feats, hotwords, timestamps)
                except Exception as exc:
                    if not _is_out_of_memory(exc):
                        raise
                    if recognizer.device.type == "cuda":
                        torch.cuda.empty_cache()
                    log.info("memory: batch %d x %d frames ran out of memory; not measured", batch, length)
                    break
                log.debug("memory: batch %d x %d frames: %.2f MB (%.1f s)", batch, length, peak / _MB,
                          time.perf_counter() - started)
                points.append(MemoryPoint(batch, length, peak))
    return points


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def frames_grid(longest: int) -> tuple[int, ...]:
    """Four lengths up to `longest` frames (the longest segment the engine makes: input.segment_s
    × frames per second) to measure at: a tenth, a quarter, a half and all of it."""
    longest = max(8, int(longest))
    return tuple(sorted({max(4, round(longest * share)) for share in (0.1, 0.25, 0.5, 1.0)}))


def fit_memory_model(target, precision: str = "fp32", batches: Sequence[int] | None = None,
                     frames: Sequence[int] = DEFAULT_FRAMES, label: str = "", quadratic: bool = True,
                     **measure) -> MemoryModel:
    """Measure a grid on `target` (Recognizer or Engine) and fit the model for its recognizer's
    lanes. A side-by-side CPU recognizer only ever runs single files, so only batch 1 is
    measured for it unless `batches` says otherwise."""
    recognizer = getattr(target, "recognizer", target)
    lanes = getattr(recognizer, "lanes", 1)
    if batches is None:
        batches = (1,) if lanes > 1 else DEFAULT_BATCHES
    points = measure_grid(target, batches, frames, **measure)
    device = recognizer.device
    model = MemoryModel.fit(points, precision=precision, device=str(device), lanes=lanes,
                            label=label or device_label(device), quadratic=quadratic)
    log.info("memory model fitted from %d runs: %s", len(points), model.describe())
    return model


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{_cpu_name()}, torch {torch.__version__}"


def _cpu_name() -> str:
    return detect_cpu().model or "CPU"


def cache_path(directory: str | Path, model_dir: str | Path, device: torch.device | str, precision: str,
               variant: str = "") -> Path:
    """Where a fitted model for this model directory, device, precision and torch lives: each of
    them changes the allocations. `variant` names anything else that does (fused attention).
    Not the lanes: one fit serves padded and side-by-side batches (`with_lanes`)."""
    model_dir, device = Path(model_dir), torch.device(device)
    weights = model_dir / "model.pt"
    stamp = f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}" if weights.is_file() else ""
    key = "|".join([str(model_dir.resolve()), stamp, device_label(device), precision, variant])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return Path(directory) / f"{model_dir.name}-{device.type}-{precision}-{digest}.json"


def load_or_fit(recognizer, path: str | Path, precision: str = "fp32", **fit) -> MemoryModel:
    """The model saved at `path`, or one fitted on `recognizer` now and saved there."""
    path = Path(path)
    lanes = getattr(recognizer, "lanes", 1)
    if path.is_file():
        try:
            model = MemoryModel.load(path)
            if model.precision == precision:
                log.info("memory model from %s: %s", path, model.describe())
                return model.with_lanes(lanes)
            log.warning("memory model %s is for %s, not %s; measuring again", path, model.precision,
                        precision)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("memory model %s unreadable (%s); measuring again", path, exc)
    model = fit_memory_model(recognizer, precision=precision, **fit)
    try:
        model.save(path)
    except OSError as exc:
        log.warning("could not save the memory model to %s: %s", path, exc)
    return model


# ---- command line ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run the parsed `memory-model` command."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    loaded = load_model(args.model, args.device, PROJECT_ROOT / ".cache", args.threads, "onednn")
    if args.precision == "int8":
        loaded.model = quantize_int8(loaded.model)
    recognizer = padded_twin(SimpleNamespace(
        model=loaded.model, tokenizer=loaded.tokenizer, frontend=loaded.frontend, device=loaded.device,
        threads=args.threads or loaded.threads, precision=args.precision))
    precision = args.precision
    batches = [int(v) for v in args.batches.split(",")]
    frames = [int(v) for v in args.frames.split(",")]
    started = time.perf_counter()
    model = fit_memory_model(recognizer, precision, batches, frames,
                             label=f"{args.model}, {device_label(loaded.device)}")
    print(f"{args.model} on {device_label(loaded.device)}: {model.describe()} "
          f"({time.perf_counter() - started:.0f} s to measure)")
    for point, error in zip(model.points, model.errors(), strict=True):
        print(f"  fit   B={point.batch} T={point.frames}: measured {point.peak_bytes / _MB:8.2f} MB, "
              f"predicted {model.predict(point.batch, point.frames) / _MB:8.2f} MB ({error:+.1%})")
    for spec in filter(None, args.check.split(",")):
        batch, length = (int(v) for v in spec.split(":"))
        measured = measure_peak(recognizer, synthetic_features(recognizer, batch, length, seed=1))
        predicted = model.predict(batch, length)
        print(f"  check B={batch} T={length}: measured {measured / _MB:8.2f} MB, predicted "
              f"{predicted / _MB:8.2f} MB ({predicted / max(1, measured) - 1:+.1%})")
    targets = [Path(args.out)] if args.out else []
    if args.save:
        settings = load_settings()
        targets.append(cache_path(settings.resolve_path(settings.cache_dir) / "memory", loaded.directory,
                                  loaded.device, precision))
    for target in targets:
        model.save(target)
        print(f"saved {target}")
    return 0
