"""The wizard's decision rules over recorded measurements: pure functions, no engine, no timing.

Kept apart from the measuring code so the rules can be tested over hand-written tables (a failure,
a memory breach, a gain just under the margin) and so a user can check an answer by hand:

- the knee: walking up from batch 1, a size is *taken* when it ran without a failure, its peak
  memory is at most `memory_limit_pct` of the total, and it cuts time per file by at least
  `margin_pct` against the last taken size. A failure or a memory breach ends the walk (larger
  batches need more memory, so they are unsafe too); a size that is merely not fast enough is
  passed over and the next one is compared with the last taken size.
- the golden value: over the refine step's repeats, the fastest safe size by median time per
  file, where a larger size only counts as faster when it beats the current pick by the margin
  (gains inside the margin are noise; the smaller size uses less memory for the same speed).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

_EPSILON = 1e-9  # a gain of exactly the margin must count despite float rounding


@dataclass(frozen=True)
class Measurement:
    """One measured run as the rules see it. `memory_pct` None means the memory rule cannot apply."""

    batch_size: int
    per_file_s: float
    memory_pct: float | None = None
    ok: bool = True
    status: str = "ok"  # "ok", "oom" or "error"


@dataclass
class Rejection:
    batch_size: int
    why: str
    unsafe: bool  # a failure or memory breach: larger sizes are not worth trying


@dataclass
class Knee:
    size: int
    chosen: Measurement
    rejected: list[Rejection] = field(default_factory=list)  # sizes above the knee, and why
    stopped: bool = False  # the walk ended on an unsafe size

    @property
    def first_unsafe(self) -> Rejection | None:
        return next((r for r in self.rejected if r.unsafe), None)


@dataclass
class Golden:
    size: int
    medians: dict[int, float]  # safe sizes only
    unsafe: dict[int, str]  # size -> why it was excluded in the refine step
    passed_over: list[Rejection] = field(default_factory=list)  # safe sizes slower than the pick


def improvement_pct(before_s: float, after_s: float) -> float:
    """How much time per file `after_s` saves against `before_s`, in percent (negative: slower)."""
    if before_s <= 0:
        return 0.0
    return (before_s - after_s) / before_s * 100.0


def pct(value: float) -> str:
    """46% and 2.6% rather than 46.0% and 3% (a rounded 3% next to a 3% margin would confuse)."""
    return f"{value:.0f}%" if abs(value) >= 10 else f"{value:.1f}%"


def over_limit(m: Measurement, memory_limit_pct: float | None) -> bool:
    return memory_limit_pct is not None and m.memory_pct is not None and m.memory_pct > memory_limit_pct


def _problems(m: Measurement, best: Measurement, margin_pct: float,
              memory_limit_pct: float | None) -> tuple[list[str], bool]:
    """Why `m` cannot be taken over `best` (empty when it can), and whether it is unsafe."""
    problems: list[str] = []
    unsafe = False
    if not m.ok:
        problems.append({"oom": "ran out of memory", "unformed": "never formed a batch that large"}
                        .get(m.status, "failed"))
        return problems, True
    gain = improvement_pct(best.per_file_s, m.per_file_s)
    if gain + _EPSILON < margin_pct:
        if gain >= 0:
            problems.append(f"was only {pct(gain)} faster than {best.batch_size}")
        else:
            problems.append(f"was {pct(-gain)} slower than {best.batch_size}")
    if over_limit(m, memory_limit_pct):
        problems.append(f"used {m.memory_pct:.0f}% of memory (limit {memory_limit_pct:g}%)")
        unsafe = True
    return problems, unsafe


def find_knee(baseline: Measurement, sweep: Iterable[Measurement], margin_pct: float,
              memory_limit_pct: float | None) -> Knee:
    """The last size that still pays: see the module docstring for the rule."""
    best = baseline
    rejected: list[Rejection] = []
    stopped = False
    for m in sorted(sweep, key=lambda x: x.batch_size):
        if m.batch_size <= baseline.batch_size:
            continue
        problems, unsafe = _problems(m, best, margin_pct, memory_limit_pct)
        if not problems:
            best = m
            rejected = []  # only sizes above the knee explain the answer
            continue
        rejected.append(Rejection(m.batch_size, " and ".join(problems), unsafe))
        if unsafe:
            stopped = True
            break
    return Knee(best.batch_size, best, rejected, stopped)


def neighbours(knee: int, safe_sizes: Iterable[int]) -> list[int]:
    """The knee and the safe sizes just below and just above it, ascending."""
    sizes = sorted(set(safe_sizes) | {knee})
    i = sizes.index(knee)
    return sizes[max(0, i - 1): i + 2]


def choose_golden(runs: Iterable[Measurement], margin_pct: float, memory_limit_pct: float | None,
                  fallback: int = 1) -> Golden:
    """Fastest safe size by median over the refine repeats (ties within the margin: smaller).

    `fallback` (batch 1, which the baseline already ran safely) is the answer when every refined
    size failed.
    """
    by_size: dict[int, list[Measurement]] = {}
    for m in runs:
        by_size.setdefault(m.batch_size, []).append(m)
    if not by_size:
        raise ValueError("no refine runs to choose from")
    unsafe: dict[int, str] = {}
    medians: dict[int, float] = {}
    for size, ms in sorted(by_size.items()):
        failed = [m for m in ms if not m.ok]
        if failed:
            unsafe[size] = ("ran out of memory" if any(m.status == "oom" for m in failed) else "failed") + \
                f" in {len(failed)} of {len(ms)} runs"
            continue
        peaks = [m.memory_pct for m in ms if m.memory_pct is not None]
        if memory_limit_pct is not None and peaks and max(peaks) > memory_limit_pct:
            unsafe[size] = f"used {max(peaks):.0f}% of memory (limit {memory_limit_pct:g}%)"
            continue
        medians[size] = statistics.median(m.per_file_s for m in ms)
    if not medians:
        return Golden(fallback, medians, unsafe)
    pick = min(medians)
    passed: list[Rejection] = []
    for size in sorted(medians):
        if size == pick:
            continue
        gain = improvement_pct(medians[pick], medians[size])
        if gain + _EPSILON >= margin_pct:
            passed = []  # all smaller: the new pick supersedes them
            pick = size
        else:
            word = f"only {pct(gain)} faster than" if gain >= 0 else f"{pct(-gain)} slower than"
            passed.append(Rejection(size, f"was {word} {pick} (median)", False))
    return Golden(pick, medians, unsafe, passed)


@dataclass(frozen=True)
class Spread:
    """One size's refine runs: how far apart they lie says how far a difference can be trusted."""

    size: int
    runs: int
    median: float
    low: float
    high: float

    def describe(self) -> str:
        if self.runs < 2:
            return "one run"
        return f"median of {self.runs} runs, {self.low:.3g}-{self.high:.3g} s"


def spreads(runs: Iterable[Measurement]) -> dict[int, Spread]:
    """Per size, its successful runs' median, lowest and highest time per file."""
    by_size: dict[int, list[float]] = {}
    for m in runs:
        if m.ok:
            by_size.setdefault(m.batch_size, []).append(m.per_file_s)
    return {size: Spread(size, len(times), statistics.median(times), min(times), max(times))
            for size, times in sorted(by_size.items())}


def doubt(pick: Spread, other: Spread) -> str:
    """How sure the choice of `pick` over `other` is, from the spread of their runs."""
    gain = improvement_pct(other.median, pick.median)
    word = f"{pct(gain)} faster" if gain >= 0 else f"{pct(-gain)} slower"
    if pick.runs < 2 or other.runs < 2:
        return (f"{pick.size} was {word} than {other.size} in a single run each, which a busy machine "
                f"can turn around: more refine runs (tuning.repeats) make it surer")
    ranges = f"{pick.size}: {pick.describe()}; {other.size}: {other.describe()}"
    if pick.high < other.low:
        return f"{pick.size} was faster than {other.size} in every run ({ranges})"
    return (f"the runs of {pick.size} and {other.size} overlap ({ranges}), so the {pct(abs(gain))} "
            f"between them is within the noise: either is a sound choice")


def explain(golden: Golden, baseline: Measurement, knee: Knee, margin_pct: float,
            runs_per_size: int, memory_note: str = "", refine: Iterable[Measurement] = ()) -> str:
    """A few readable sentences: the answer, what it gains against one reference, how sure that
    is, and why the other sizes lost.

    Every "x as fast" is against the same batch-1 figure: its refine median when batch 1 was
    refined, else the baseline's single run, and the text says which."""
    size = golden.size
    spread = spreads(refine)
    if 1 in golden.medians:
        reference, reference_text = golden.medians[1], spread[1].describe() if 1 in spread else "refine"
    else:
        reference, reference_text = baseline.per_file_s, "the baseline, one run"
    parts: list[str] = []
    if not golden.medians:
        parts.append(f"{size}: every refined size failed, and batch {size} ran safely in the baseline")
    elif size == baseline.batch_size:
        parts.append(f"{size}: no larger batch was at least {margin_pct:g}% faster")
    else:
        median = golden.medians[size]
        gain = improvement_pct(reference, median)
        speedup = reference / median if median > 0 else float("inf")
        mine = spread[size].describe() if size in spread else "refine"
        parts.append(f"{size}: {pct(gain)} less time per file than batch 1, {speedup:.2f}x as fast "
                     f"({median:.3g} s against {reference:.3g} s; {size}: {mine}; batch 1: {reference_text})")
    others = [s for s in golden.medians if s != size and s in spread]
    if size in spread and others:
        runner_up = min(others, key=lambda s: abs(spread[s].median - spread[size].median))
        parts.append(doubt(spread[size], spread[runner_up]))
    reasons = [f"{r.batch_size} {r.why}" for r in golden.passed_over]
    reasons += [f"{s} {why}" for s, why in sorted(golden.unsafe.items()) if s > size]
    refined = set(golden.medians) | set(golden.unsafe)
    reasons += [f"{r.batch_size} {r.why} (sweep, one run)" for r in knee.rejected
                if r.batch_size > size and r.batch_size not in refined]
    text = "; ".join(parts + reasons)
    if len(golden.medians) > 1:
        medians = ", ".join(f"{s}: {t:.3g} s" for s, t in sorted(golden.medians.items()))
        text += f". Median time per file over {runs_per_size} run(s) each: {medians}"
    if memory_note:
        text += f". {memory_note[0].upper()}{memory_note[1:]}"
    return text
