"""What the check runs, and how long each step may take.

The real plan fits 8 minutes on one GPU: every step has a cap, and the runner shortens a step so
that the steps after it keep at least their minimum. The dry run is the same plan on the CPU with
the tiny model and tiny workloads, so the script stays runnable between GPU sessions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Step:
    name: str
    module: str | None  # a worker `python -m MODULE RESULT PLAN`; None: runs in the runner
    cap_s: float  # the most it may take
    min_s: float  # less time than this left: skipped
    needs: tuple[str, ...] = ()  # steps that must pass first
    what: str = ""


STEPS = (
    Step("install", None, 150, 10, what="the kit's wheels, offline, beside the machine's torch"),
    Step("probe", "gpu_check.probe", 60, 10, (),
         "versions, CUDA, NVML figures; `import asr.engine`"),
    Step("models", "gpu_check.models", 120, 15, ("probe",),
         "build the random: models offline and load the checked one on the device"),
    Step("gpu_tests", "gpu_check.tests_step", 200, 30, ("probe",),
         "tests/test_gpu.py: padding invariance, fp16/bf16 vs fp32, real OOM back-off, NVML, wizard"),
    Step("memory", "gpu_check.memory", 75, 15, ("probe",),
         "peak CUDA memory per batch size and length, per precision (points for a memory model)"),
    Step("bench", "gpu_check.bench_step", 200, 30, ("probe",),
         "python -m benchmarks.bench on long clips: variants A, B, C, and C in fp16/bf16"),
)


@dataclass
class Plan:
    dry_run: bool
    device: str
    model: str
    precisions: list[str]
    deadline_s: float  # from the start of the run, everything included
    quick_tests: bool
    memory_seconds: list[float]  # segment lengths measured
    memory_batches: list[int]
    bench: dict = field(default_factory=dict)
    install: str = "always"  # always | auto (only when the interpreter lacks the packages) | never

    def to_dict(self) -> dict:
        return asdict(self)


def make_plan(dry_run: bool = False, deadline_s: float | None = None) -> Plan:
    if dry_run:
        return Plan(dry_run=True, device="cpu", model="random:tiny", precisions=["fp32"],
                    deadline_s=deadline_s or 240, quick_tests=True, memory_seconds=[2.0, 4.0],
                    memory_batches=[1, 2],
                    bench={"files": 1, "clip_seconds": "2-3", "long": False, "variants": ["C"],
                           "b_sizes": "2", "repeats": 1, "run_timeout_s": 90},
                    install="auto")
    return Plan(dry_run=False, device="cuda", model="random:large", precisions=["fp32", "fp16", "bf16"],
                deadline_s=deadline_s or 450, quick_tests=False, memory_seconds=[5.0, 15.0, 30.0, 60.0],
                memory_batches=[1, 2, 4, 8, 16, 32],
                bench={"files": 6, "clip_seconds": "60-300", "long": True, "variants": ["A", "B", "C"],
                       "b_sizes": "8,16", "repeats": 1, "run_timeout_s": 150})
