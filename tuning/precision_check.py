""""Does bf16 change my transcripts?": fp32 against the fastest reduced precision, on the user's files.

Reduced precision is faster where the hardware has it, but it rounds every matrix product, so a
close call between two tokens can go the other way. Only the user's own audio says how often that
happens on their recordings, so the check runs each file in both precisions and reports, per
file, the time each took and how many tokens agree (1 - token edit distance / fp32's tokens, the
token error rate of one precision against the other). Runs alternate between the two precisions,
so slow drift on a shared machine hits both alike, and each runs with the model to itself.
One check at a time; `cancel_precision_check()` (the Tab's Cancel button, Ctrl+C on the command
line) stops it and releases the model.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from asr.recognition.batcher import Cancelled
from asr.recognition.precision import PrecisionUnavailable, check_precision
from asr.settings import SettingsError, coerce
from asr.system.cpu import CpuFeatures
from asr.text.distance import edit_distance
from tuning.one_run import OneRun, RunBusy

log = logging.getLogger(__name__)

REFERENCE = "fp32"
CHECK_COLUMNS = ["file", "audio (s)", "fp32 (s)", "{candidate} (s)", "speed-up", "tokens (fp32)",
                 "tokens agree", "identical"]


MAX_FILES = 256  # as the wizard's: the most files one check takes

CHECK = OneRun("precision check")


class PrecisionCheckError(ValueError):
    """The check cannot run as asked; the message says why."""


class PrecisionCheckCancelled(PrecisionCheckError):
    """The check was cancelled before it finished; the model is free again."""


def cancel_precision_check() -> bool:
    """Stop the precision check in progress in this process (False when none is running)."""
    return CHECK.cancel()


@dataclass
class FileCheck:
    """One file in both precisions."""

    file: str
    audio_s: float
    reference_s: float  # median over repeats
    candidate_s: float
    reference_tokens: int
    token_edits: int  # substitutions, insertions and deletions from fp32's tokens to the candidate's
    agreement: float  # 1 - token edit distance / reference tokens (1.0: identical)
    identical: bool
    reference_text: str
    candidate_text: str
    error: str | None = None

    @property
    def speedup(self) -> float | None:
        return self.reference_s / self.candidate_s if self.candidate_s > 0 else None


@dataclass
class PrecisionReport:
    reference: str
    candidate: str
    device: str
    files: list[FileCheck]
    repeats: int
    reference_total_s: float
    candidate_total_s: float
    agreement: float  # over all files: 1 - total edits / total reference tokens
    identical_files: int
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        return self.reference_total_s / self.candidate_total_s if self.candidate_total_s > 0 else None

    def columns(self) -> list[str]:
        return [c.format(candidate=self.candidate) for c in CHECK_COLUMNS]

    def table(self) -> list[list]:
        return [[Path(f.file).name, round(f.audio_s, 2), round(f.reference_s, 3), round(f.candidate_s, 3),
                 None if f.speedup is None else round(f.speedup, 2), f.reference_tokens,
                 f"{f.agreement * 100:.1f}%", "yes" if f.identical else "no"] for f in self.files]

    def summary(self) -> str:
        speed = "-" if self.speedup is None else f"{self.speedup:.2f}x"
        return (f"{self.candidate} against {self.reference} on {self.device}: {speed} the speed; "
                f"tokens agree {self.agreement * 100:.1f}% overall, {self.identical_files} of "
                f"{len(self.files)} file(s) identical (median of {self.repeats} run(s) per file)")

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "device": self.device,
                "repeats": self.repeats, "speedup": None if self.speedup is None else round(self.speedup, 3),
                "reference_total_s": round(self.reference_total_s, 4),
                "candidate_total_s": round(self.candidate_total_s, 4),
                "agreement": round(self.agreement, 4), "identical_files": self.identical_files,
                "summary": self.summary(), "notes": self.notes, "columns": self.columns(),
                "table": self.table(), "files": [asdict(f) for f in self.files]}


def fastest_reduced_precision(device: torch.device, cpu: CpuFeatures | None = None) -> str | None:
    """The reduced precision worth checking on `device` (with `cpu`'s features on a CPU), or None
    when it has none.

    On a GPU bf16 where it runs (the same tensor-core speed as fp16, with fp32's range, so no
    overflow in long sums), else fp16. On a CPU bf16 where AVX-512 BF16 or AMX multiply it,
    else int8 (dynamic int8 linear layers run on any x86 CPU)."""
    order = ("bf16", "fp16") if device.type == "cuda" else ("bf16", "int8")
    for precision in order:
        try:
            check_precision(precision, device, cpu)
        except PrecisionUnavailable:
            continue
        return precision
    return None


def run_precision_check(engine, files: Sequence[str | Path], candidate: str | None = None,
                        repeats: int = 1,
                        progress: Callable[[float, str], None] | None = None,
                        cancel: threading.Event | None = None) -> PrecisionReport:
    """Run every file in fp32 and in `candidate` (default: the fastest reduced precision this
    hardware has) and compare. Raises PrecisionCheckError for unusable input or while another
    check runs, PrecisionCheckCancelled when `cancel` is set or cancel_precision_check() called."""
    paths = [Path(f) for f in files]
    if not paths:
        raise PrecisionCheckError("choose at least one audio file to check")
    if len(paths) > MAX_FILES:
        raise PrecisionCheckError(f"choose at most {MAX_FILES} files to check, got {len(paths)}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PrecisionCheckError(f"file not found: {missing[0]}")
    try:
        repeats = coerce("tuning.repeats", repeats, "the precision check")  # its ceiling bounds the run
    except SettingsError as exc:
        raise PrecisionCheckError(str(exc)) from None
    device = engine.loaded.device
    candidate = candidate or fastest_reduced_precision(device, engine.cpu)
    if candidate is None:
        raise PrecisionCheckError(f"this {device.type.upper()} has no reduced precision to compare with fp32")
    if candidate == REFERENCE:
        raise PrecisionCheckError("choose a precision other than fp32 to compare with fp32")
    try:
        check_precision(candidate, device, engine.cpu)
    except PrecisionUnavailable as exc:
        raise PrecisionCheckError(str(exc)) from None
    try:
        with CHECK.running(cancel) as event:
            return _run_check(engine, paths, candidate, repeats, progress, event)
    except RunBusy as exc:
        raise PrecisionCheckError(str(exc)) from None
    except Cancelled:
        log.info("precision check cancelled; the model is free again")
        raise PrecisionCheckCancelled("the precision check was cancelled") from None


def _run_check(engine, paths: list[Path], candidate: str, repeats: int,
               progress: Callable[[float, str], None] | None, cancel: threading.Event) -> PrecisionReport:
    device = engine.loaded.device
    engines = {REFERENCE: engine.with_precision(REFERENCE), candidate: engine.with_precision(candidate)}
    times: dict[str, list[list[float]]] = {name: [[] for _ in paths] for name in engines}
    results: dict[str, list] = {name: [None] * len(paths) for name in engines}
    steps = (1 + repeats) * len(paths) * 2
    done = 0

    def run_once(name: str, index: int) -> float:
        nonlocal done
        if cancel.is_set():
            raise Cancelled("cancelled")
        target = engines[name]
        started = time.perf_counter()
        if target is engine:
            run = target.run([paths[index]], use_cache=False, exclusive=True, cancel=cancel)
        else:
            with engine.quiet():  # the user's engine runs nothing meanwhile: a quiet model
                run = target.run([paths[index]], use_cache=False, exclusive=True, cancel=cancel)
        elapsed = time.perf_counter() - started
        results[name][index] = run.results[0]
        done += 1
        if progress:
            progress(done / steps, f"{name}: {paths[index].name}")
        return elapsed

    # A warm-up pass per precision (first calls pay for kernels and allocator pools), then timed
    # passes that alternate the two precisions file by file.
    for index in range(len(paths)):
        for name in engines:
            run_once(name, index)
    for _ in range(repeats):
        for index in range(len(paths)):
            for name in engines:
                times[name][index].append(run_once(name, index))

    checks = [_compare(paths[i], results[REFERENCE][i], results[candidate][i],
                       statistics.median(times[REFERENCE][i]), statistics.median(times[candidate][i]))
              for i in range(len(paths))]
    ok = [c for c in checks if c.error is None]
    edits = sum(c.token_edits for c in ok)
    tokens = sum(c.reference_tokens for c in ok)
    notes = []
    if device.type == "cpu":
        notes.append(f"CPU matrix instructions: {engine.cpu.describe()}")
    report = PrecisionReport(
        reference=REFERENCE, candidate=candidate, device=_describe(engine), files=checks, repeats=repeats,
        reference_total_s=sum(c.reference_s for c in ok), candidate_total_s=sum(c.candidate_s for c in ok),
        agreement=max(0.0, 1.0 - edits / tokens) if tokens else 1.0,
        identical_files=sum(c.identical for c in ok), notes=notes)
    log.info("precision check: %s", report.summary())
    return report


def _compare(path: Path, reference, candidate, reference_s: float, candidate_s: float) -> FileCheck:
    error = reference.error or candidate.error
    ref_ids, cand_ids = reference.token_ids, candidate.token_ids
    distance = edit_distance(ref_ids, cand_ids) if error is None else 0
    agreement = max(0.0, 1.0 - distance / len(ref_ids)) if ref_ids else float(not cand_ids)
    return FileCheck(str(path), reference.duration_s, reference_s, candidate_s, len(ref_ids), distance,
                     agreement, error is None and ref_ids == cand_ids, reference.text, candidate.text, error)


def _describe(engine) -> str:
    device = engine.loaded.device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"CPU ({engine.recognizer.threads} threads)"
