"""`python -m benchmarks.bench`: this engine against FunASR's own runtimes, on the same model and files.

Variants (each run in a fresh process; repeats alternate between variants so a slow minute on a
shared machine hits all of them alike):
  A   FunASR AutoModel.generate(input=path), file by file, FunASR's defaults: what users do today
  AN  the same with AutoModel(ncpu=cores): FunASR's default ncpu=4 can be pathological on 2 cores
  B   FunASR AutoModel.generate(input=[files], batch_size=N), best of --b-sizes
  O   funasr_onnx, fp32, on the model exported by FunASR's own exporter (own virtualenv)
  O8  the same, int8-quantised by FunASR's exporter
  C   this engine (asr.engine.Engine.run, feature cache off) at its default settings
  CW  this engine at the batch size the tuning wizard recommends for these files
  C8  this engine with the opt-in int8 CPU mode (`precision: int8`); its token agreement with C is shown
  CB  this engine in bf16 (`precision: bf16`: CPUs with AVX-512 BF16 or AMX, Ampere+ GPUs); agreement with C
  CA  this engine with fused attention (`attention: fused`) where C would use FunASR's (fp32 on a
      CPU): its peak memory against C's on long files; agreement with C
  CH  this engine in fp16 (`precision: fp16`, CUDA only); agreement with C
  CM  this engine with torch's own CPU kernels for its linear layers (`cpu_gemm: torch`), to show
      what the oneDNN kernels of the default (`cpu_gemm: onednn`) are worth on this CPU
  CL  this engine with a CPU batch padded into one model call (`cpu_lanes: 1`, as on a GPU) instead
      of its files side by side (the CPU default), to show what side by side gains on this CPU
Transcripts (speech detection, punctuation, word and sentence times), on the same files:
  AT  FunASR AutoModel(vad_model=fsmn-vad, punc_model=CT-Transformer).generate(input=path,
      sentence_timestamp=True), file by file, FunASR's defaults
  ATN the same with AutoModel(ncpu=cores)
  CT  this engine with vad: silero, punctuation on, timestamps: true
  CTI CT plus itn: true (numbers as digits): the ITN cost per sentence and CTI/CT
Speakers (CAM++ embeddings and clustering on top of the transcript), on the same files:
  AS  AT plus AutoModel(spk_model=CAM++), FunASR's defaults otherwise
  ASN the same with AutoModel(ncpu=cores)
  CS  CT plus speakers.count: auto, speaker_model: the same CAM++ directory as AS
  The punctuation model is the random build matching the ASR size for random:tiny|large
  (random:tiny fsmn-vad for AT), else the real ModelScope ids (asr.text.punctuation.DEFAULT_PUNC_MODEL,
  asr.speech.fsmn.DEFAULT_FSMN_VAD); CT and AT use the very same punctuation directory. The speaker
  model is likewise the random CAM++ build of the ASR size, else the real CAM++
  (asr.text.speaker_encoders.DEFAULT_SPEAKER_MODEL); CS and AS use the very same directory.
Prints speed (x real time), RTF, peak memory, the ratios C/A, C/B, C/O, CT/AT, CT/C, CTI/CT, CS/AS,
CS/CT and, per file, whether the token ids are identical, how far CT's text agrees with AT's (1 - CER,
punctuation removed) and how many speakers CS and AS found. A, AT and AS are each compared through
their faster setting (A or AN, AT or ATN, AS or ASN: the peer), and the CPU targets CT/AT >= 2,
CT/C >= 0.75, CS/AS >= 2 and CS/CT >= 0.8 are printed with pass/fail, with ITN's cost in ms per
sentence. `--json OUT` writes everything, with versions, device and thread counts. Progress goes
to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import report as bench_report
from benchmarks.clips import describe, ensure_clips, prepare_real_files

log = logging.getLogger("benchmarks.bench")

VARIANTS = ("A", "AN", "B", "O", "O8", "C", "CW", "C8", "CB", "CH", "CA", "CM", "CL", "AT", "ATN", "CT",
            "CTI", "AS", "ASN", "CS")
TRANSCRIPT_VARIANTS = ("AT", "ATN", "CT", "CTI", "AS", "ASN", "CS")  # need the punctuation and VAD models
SPEAKER_VARIANTS = ("AS", "ASN", "CS")  # need the CAM++ speaker model too
FUNASR_DEFAULT_NCPU = 4
IDLE_CORES = 0.5  # --wait-idle: other processes' CPU use (in cores) under which a run may start
DEFAULT_B_SIZES = {"cpu": [2, 4, 8], "cuda": [8, 16, 32]}
FUNASR_ONNX_DEFAULT_BATCH = 1
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunSpec:
    """One timed configuration; each repeat of it is one worker process."""

    label: str  # "A", "AN", "B@4", "O", "O8", "C", "CW", "C8", "CM", "CL", "AT", "ATN", "CT", "CS", ...
    variant: str  # the worker's variant: A, B, AT, AS, C, O, wizard
    batch_size: int | None = None
    quantize: bool = False
    settings: dict | None = None  # engine settings on top of the bare engine's (C variants)
    ncpu: int | None = None  # AutoModel(ncpu=...) for the FunASR variants; None: FunASR's default


def _variants(text: str) -> list[str]:
    names = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"variants must be some of {','.join(VARIANTS)}, got {text!r}")
    return [v for v in VARIANTS if v in names]


def _sizes(text: str) -> list[int]:
    # tuning.sizes, not tuning.wizard: the wizard loads torch and FunASR, which this parent
    # process need not pay for to read --b-sizes (the workers load what they run).
    from tuning.sizes import WizardError, sizes_from_text

    try:
        sizes = sizes_from_text(text)
    except WizardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected batch sizes, got {text!r}")
    return sizes


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in seconds, e.g. 3-8, got {text!r}") from None
    if not 0.5 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 0.5 <= MIN <= MAX, got {text!r}")
    return low, high


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("inputs", nargs="*", help="real audio files or folders to use instead of the "
                   "synthetic clip set (decoded once into 16 kHz wav copies under .cache/bench)")
    p.add_argument("--model", default="random:large",
                   help="ModelScope id, local model directory, or random:tiny|large (default random:large)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--files", type=_positive, help="synthetic clips (default 12; 20 with --long)")
    p.add_argument("--long", action="store_true", help="1-5 minute clips instead of 3-60 s (GPU runs)")
    p.add_argument("--clip-seconds", type=_range, metavar="MIN-MAX",
                   help="length range of the synthetic clips instead of 3-60 (or 60-300 with --long)")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON to OUT")
    p.add_argument("--variants", type=_variants, default=list(VARIANTS),
                   help=f"comma-separated, default {','.join(VARIANTS)}")
    p.add_argument("--repeats", type=_positive, default=3, help="timed runs per variant (default 3)")
    p.add_argument("--profile", action="store_true", help="print where C, CT, CTI and CS spend their time")
    p.add_argument("--b-sizes", type=_sizes,
                   help="batch sizes tried for B (default 2,4,8 on CPU, 8,16,32 on CUDA)")
    p.add_argument("--onnx-batch", type=_positive, default=FUNASR_ONNX_DEFAULT_BATCH,
                   help="funasr_onnx batch size (default 1, its own default)")
    p.add_argument("--onnx-threads", type=_positive,
                   help="funasr_onnx intra-op threads (default: its own default, 4)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8"), default="fp32",
                   help="precision of C, CW and CT (default fp32; CB, CH and C8 pick their own)")
    p.add_argument("--fp16", action="store_true", help="deprecated: --precision fp16")
    p.add_argument("--config", help="config.yaml for C's default settings (default: the project's)")
    p.add_argument("--timeout", type=_positive, default=3600, help="seconds allowed per run (default 3600)")
    p.add_argument("--wait-idle", type=int, default=0, metavar="SECONDS",
                   help="on a shared machine, wait up to SECONDS before each run until other processes "
                   f"use under {IDLE_CORES:g} core (default 0: start at once); each run records what it "
                   "found")
    return p


def _progress(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def _cpu_ticks() -> tuple[int, int] | None:
    """(all, idle) jiffies of every CPU from /proc/stat; None where there is no /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:9]]
    return sum(values), values[3] + values[4]  # idle + iowait


def busy_cores(sample_s: float = 1.0) -> float | None:
    """Cores kept busy by all processes over `sample_s`. Called between runs, when the bench
    itself is idle, so it is what the machine's other users take from the next run."""
    before = _cpu_ticks()
    time.sleep(sample_s)
    after = _cpu_ticks()
    if before is None or after is None or after[0] <= before[0]:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    return round((total - idle) / total * (os.cpu_count() or 1), 2)


def wait_for_idle(max_s: int) -> float | None:
    """Wait up to `max_s` for the other processes to use under IDLE_CORES; the last reading."""
    started = time.perf_counter()
    busy = busy_cores(1.0 if max_s > 0 else 0.5)  # recorded either way: the report notes busy starts
    if busy is not None and busy >= IDLE_CORES and max_s > 0:
        _progress(f"other processes use {busy:.1f} cores: waiting up to {max_s} s for the machine to settle")
        while busy is not None and busy >= IDLE_CORES and time.perf_counter() - started < max_s:
            busy = busy_cores(2.0)
    return busy


def precision_skip_reason(precision: str, device: str, cpu) -> str | None:
    """Why a variant in `precision` cannot run on `device` with `cpu`'s features, or None."""
    import torch

    from asr.recognition.precision import PrecisionUnavailable, check_precision

    try:
        check_precision(precision, torch.device(device), cpu)
    except PrecisionUnavailable as exc:
        return str(exc)
    return None


class Bench:
    """Prepares the files, model, wizard and ONNX set-up, then runs every repeat and reports."""

    def __init__(self, args: argparse.Namespace, argv: list[str], cpu=None):
        """`cpu`: the CPU features the variants are chosen for (default: this machine's)."""
        from asr.settings import load_settings
        from asr.system.cpu import detect_cpu

        self.cpu = cpu or detect_cpu()
        self.args = args
        self.argv = argv
        self.settings = load_settings(args.config, environ={}, overrides={"model": args.model})
        cache_dir = self.settings.resolve_path(self.settings.cache_dir)
        self.root = cache_dir / "bench"
        self.models_dir = cache_dir
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_dir = self.root / "runs" / f"{stamp}-{os.getpid()}"
        self.notes: list[str] = []
        self.raw: dict[str, list[dict]] = {}
        self.wizard: dict | None = None
        self.onnx = None
        self.onnx_reason: str | None = None
        self.extras: dict | None = None  # punctuation and fsmn-vad models of CT and AT
        self.extras_reason: str | None = None
        self.speaker: dict | None = None  # the CAM++ directory of CS and AS
        self.speaker_reason: str | None = None
        self.skipped: dict[str, str] = {}

    # ---- preparation ------------------------------------------------------------------------

    def prepare(self) -> None:
        from asr.models.loader import model_dir, resolve_device
        from asr.recognition.model import SEACO_MODEL

        args = self.args
        device = resolve_device(args.device)
        self.device = "cuda" if device.type == "cuda" else "cpu"
        self.b_sizes = args.b_sizes or DEFAULT_B_SIZES[self.device]
        _progress(f"model {args.model}: resolving (a random model is generated on first use)")
        self.model_dir = model_dir(args.model, SEACO_MODEL, self.models_dir)
        if args.inputs:
            self.clips = prepare_real_files(args.inputs, self.root)
            self.source = "files"
        else:
            _progress("clip set: synthesising on first use, reused after")
            self.clips = ensure_clips(self.root, args.files, args.long, args.clip_seconds)
            self.source = "synthetic"
        # Warm-up: the shortest and the longest file, through the same call, so lazy
        # initialisation and the largest shapes (allocator growth on a GPU) are paid untimed.
        by_length = sorted(self.clips, key=lambda c: (c.duration_s, c.name))
        self.warmup = [by_length[0]] if len(by_length) == 1 else [by_length[0], by_length[-1]]
        self.audio_s = sum(c.duration_s for c in self.clips)
        segment_s = self.settings.input.segment_s
        if any(c.duration_s > segment_s for c in self.clips):
            self.notes.append(
                f"files longer than input.segment_s ({segment_s:g} s) are cut into segments by the engine "
                "(C, CW) and run whole by FunASR, so their tokens can differ near the cuts")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _progress(f"{len(self.clips)} files, {self.audio_s:.1f} s of audio; device {self.device}; "
                  f"logs in {self.run_dir}")

    def prepare_wizard(self) -> None:
        _progress("CW: running the tuning wizard on these files (not timed; minutes on a CPU)")
        self.wizard = self._worker({"variant": "wizard"}, "wizard")
        if self.wizard.get("ok"):
            _progress(f"CW: wizard recommends batch size {self.wizard['recommended']} "
                      f"({self.wizard.get('wizard_s', 0):.0f} s)")
        else:
            _progress(f"CW: {self.wizard.get('error')}")

    def prepare_onnx(self) -> None:
        from benchmarks.onnx import OnnxUnavailable, prepare

        _progress("O/O8: preparing funasr_onnx (own virtualenv) and FunASR's ONNX export (first use only)")
        try:
            self.onnx = prepare(self.model_dir, self.root, self.device)
        except OnnxUnavailable as exc:
            self.onnx_reason = str(exc)
            _progress(f"O/O8 unavailable: {exc}")

    def prepare_extras(self) -> None:
        """Resolve the punctuation and fsmn-vad models of CT and AT once, before any timed run,
        and the CAM++ speaker model of CS and AS when they were asked for."""
        from asr.models import ModelLoadError

        _progress("CT/AT: resolving the punctuation and fsmn-vad models (random ones built on first use)")
        try:
            self.extras = extra_models(self.args.model, self.models_dir)
        except (ModelLoadError, ImportError, ValueError) as exc:
            self.extras_reason = str(exc)
            _progress(f"CT/AT unavailable: {exc}")
        if not set(SPEAKER_VARIANTS) & set(self.args.variants):
            return
        _progress("CS/AS: resolving the CAM++ speaker model (a random one built on first use)")
        try:
            self.speaker = speaker_model(self.args.model, self.models_dir)
        except (ModelLoadError, ImportError, ValueError) as exc:
            self.speaker_reason = str(exc)
            _progress(f"CS/AS unavailable: {exc}")

    # ---- running ----------------------------------------------------------------------------

    def specs(self) -> list[RunSpec]:
        chosen = self.args.variants
        specs = []
        if "A" in chosen:
            specs.append(RunSpec("A", "A"))
        specs += self._tuned_ncpu_specs(chosen, [("AN", "A")])
        if "B" in chosen:
            specs += [RunSpec(f"B@{n}", "B", batch_size=n) for n in self.b_sizes]
        if self.onnx is not None:
            if "O" in chosen:
                specs.append(RunSpec("O", "O", batch_size=self.args.onnx_batch))
            if "O8" in chosen:
                specs.append(RunSpec("O8", "O", batch_size=self.args.onnx_batch, quantize=True))
        if "C" in chosen:
            specs.append(RunSpec("C", "C"))
        if "CW" in chosen and self.wizard and self.wizard.get("ok"):
            specs.append(RunSpec("CW", "C", batch_size=self.wizard["recommended"]))
        if "C8" in chosen and self.device == "cpu":  # the engine refuses int8 on CUDA
            specs.append(RunSpec("C8", "C", quantize=True))
        if "CA" in chosen:
            specs.append(RunSpec("CA", "C", settings={"attention": "fused"}))
        for label, precision in (("CB", "bf16"), ("CH", "fp16")):
            if label in chosen:
                reason = precision_skip_reason(precision, self.device, self.cpu)
                if reason:
                    self.skipped[label] = reason
                else:
                    specs.append(RunSpec(label, "C", settings={"precision": precision}))
        if "CM" in chosen and self.device == "cpu":  # cpu_gemm means nothing on CUDA
            specs.append(RunSpec("CM", "C", settings={"cpu_gemm": "torch"}))
        if "CL" in chosen and self.device == "cpu":  # GPU batches are always padded
            specs.append(RunSpec("CL", "C", settings={"cpu_lanes": 1}))
        if self.extras is not None:
            transcript = {"vad": "silero", "timestamps": True, "punctuation": self.extras["punc_dir"]}
            if "AT" in chosen:
                specs.append(RunSpec("AT", "AT"))
            specs += self._tuned_ncpu_specs(chosen, [("ATN", "AT")])
            if "CT" in chosen:
                specs.append(RunSpec("CT", "C", settings=transcript))
            if "CTI" in chosen:
                specs.append(RunSpec("CTI", "C", settings={**transcript, "itn": True}))
            if self.speaker is not None:
                if "AS" in chosen:
                    specs.append(RunSpec("AS", "AS"))
                specs += self._tuned_ncpu_specs(chosen, [("ASN", "AS")])
                if "CS" in chosen:
                    specs.append(RunSpec("CS", "C", settings={**transcript, "speakers.count": "auto",
                                                              "speaker_model": self.speaker["spk_dir"]}))
        return specs


    def _tuned_ncpu_specs(self, chosen: list[str], pairs: list[tuple[str, str]]) -> list[RunSpec]:
        """AN / ATN / ASN: FunASR with ncpu = cores; skipped where that is its default anyway."""
        from asr.system.threads import default_cpu_threads

        cores = default_cpu_threads()
        specs = []
        for label, variant in pairs:
            if label not in chosen:
                continue
            if cores == FUNASR_DEFAULT_NCPU:
                self.skipped[label] = f"ncpu = cores = {cores} is FunASR's default: the same run as {variant}"
            else:
                specs.append(RunSpec(label, variant, ncpu=cores))
        return specs

    def _job(self, spec: RunSpec) -> dict:
        job = {"variant": spec.variant, "model_dir": str(self.model_dir), "device": self.device,
               "files": [str(c.path) for c in self.clips], "warmup": [str(c.path) for c in self.warmup],
               "batch_size": spec.batch_size, "config": self.args.config, "ncpu": spec.ncpu,
               # C is the bare engine, as A is bare AutoModel: whole files, no punctuation.
               "settings": {"vad": "energy", "punctuation": "off", "timestamps": False,
                            "precision": "fp16" if self.args.fp16 else self.args.precision}}
        if spec.variant == "C" and spec.quantize:
            job["settings"] = {**job["settings"], "precision": "int8"}
        if spec.variant == "C" and spec.settings:
            job["settings"] = {**job["settings"], **spec.settings}
        if spec.variant in ("AT", "AS"):
            job.update(vad_model_dir=self.extras["vad_dir"], punc_model_dir=self.extras["punc_dir"])
        if spec.variant == "AS":
            job["spk_model_dir"] = self.speaker["spk_dir"]
        if spec.variant == "O":
            job.update(onnx_dir=str(self.onnx.model_dir), quantize=spec.quantize,
                       threads=self.args.onnx_threads)
        return job

    def _worker(self, job_extra: dict, name: str, spec: RunSpec | None = None) -> dict:
        job = self._job(spec or RunSpec(name, job_extra["variant"]))
        job.update(job_extra)
        job_path = self.run_dir / f"{name}.job.json"
        out_path = self.run_dir / f"{name}.out.json"
        log_path = self.run_dir / f"{name}.log"
        job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
        if job["variant"] == "O":
            from benchmarks.onnx import worker_command

            command = worker_command(self.onnx, job_path, out_path)
        else:
            command = [sys.executable, "-m", "benchmarks.variants", str(job_path), str(out_path)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "w", encoding="utf-8") as log_file:
            try:
                subprocess.run(command, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                               env=env, timeout=self.args.timeout, check=False)
            except subprocess.TimeoutExpired:
                return {"ok": False, "error": f"ran over --timeout {self.args.timeout} s",
                        "log": str(log_path)}
        if not out_path.is_file():
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            return {"ok": False, "error": "worker died without a result: " + " | ".join(tail),
                    "log": str(log_path)}
        result = json.loads(out_path.read_text(encoding="utf-8"))
        result["log"] = str(log_path)
        return result

    def run(self) -> None:
        specs = self.specs()
        total = len(specs) * self.args.repeats
        count = 0
        for round_index in range(self.args.repeats):
            # Rotate the order by an even share each round, so every variant runs early, midway and
            # late: on a shared VM, the position in a round alone moved speeds by about 10%.
            shift = (round_index * len(specs)) // self.args.repeats if specs else 0
            for spec in specs[shift:] + specs[:shift]:
                count += 1
                busy = wait_for_idle(self.args.wait_idle)
                _progress(f"{count}/{total} round {round_index + 1}/{self.args.repeats}: {spec.label} ...")
                result = self._worker({}, f"{spec.label.replace('@', '-')}-r{round_index + 1}", spec)
                result["round"] = round_index + 1
                result["busy_cores_before"] = busy
                self.raw.setdefault(spec.label, []).append(result)
                if result.get("ok"):
                    cores = result.get("cpu_s", 0.0) / result["wall_s"] if result["wall_s"] else 0.0
                    _progress(f"{count}/{total} {spec.label}: {result['wall_s']:.2f} s wall, "
                              f"{self.audio_s / result['wall_s']:.2f}x real time, {cores:.2f} cores used, "
                              f"peak RSS {result.get('peak_rss_mb', 0):.0f} MB")
                else:
                    _progress(f"{count}/{total} {spec.label}: {result.get('error')}")

    # ---- report -----------------------------------------------------------------------------

    def report(self) -> dict:
        variants: dict[str, dict] = {}
        if "A" in self.raw:
            variants["A"] = bench_report.summarize_runs(self.raw["A"], self.audio_s)
        if "AN" in self.skipped:
            variants["AN"] = {"status": "skipped", "reason": self.skipped["AN"]}
        if "AN" in self.raw:
            variants["AN"] = bench_report.summarize_runs(self.raw["AN"], self.audio_s)
        if "B" in self.args.variants:
            sizes = {n: bench_report.summarize_runs(self.raw[f"B@{n}"], self.audio_s)
                     for n in self.b_sizes if f"B@{n}" in self.raw}
            variants["B"] = bench_report.pick_best_b(sizes) if sizes else {"status": "failed",
                                                                            "reason": "no run"}
        for name in ("O", "O8"):
            if name in self.args.variants:
                if self.onnx is None:
                    variants[name] = {"status": "unavailable", "reason": self.onnx_reason}
                else:
                    variants[name] = bench_report.summarize_runs(self.raw[name], self.audio_s)
        for name in ("CB", "CH"):
            if name in self.skipped:
                variants[name] = {"status": "skipped", "reason": self.skipped[name]}
        for name in ("C", "C8", "CB", "CH", "CA", "CM", "CL"):
            if name in self.raw:
                variants[name] = bench_report.summarize_runs(self.raw[name], self.audio_s)
        if "CW" in self.args.variants:
            if "CW" in self.raw:
                variants["CW"] = bench_report.summarize_runs(self.raw["CW"], self.audio_s)
                variants["CW"]["wizard"] = {k: self.wizard.get(k)
                                            for k in ("recommended", "reason", "wizard_s")}
            else:
                reason = (self.wizard or {}).get("error", "the wizard did not run")
                variants["CW"] = {"status": "unavailable", "reason": reason}
        variants.update(self._transcript_variants())
        names = [c.name for c in self.clips]
        tokens = bench_report.compare_tokens(variants, names)
        data = {
            "schema": 1,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.bench", *self.argv]),
            "model": {"spec": self.args.model, "directory": str(self.model_dir)},
            "device": self._device_info(),
            "versions": self._versions(),
            "clips": {"source": self.source, "long": self.args.long, "range_s": self.args.clip_seconds,
                      **describe(self.clips),
                      "warmup": [c.name for c in self.warmup]},
            "settings": {"variants": self.args.variants, "repeats": self.args.repeats,
                         "b_sizes": self.b_sizes, "onnx_batch": self.args.onnx_batch,
                         "onnx_threads": self.args.onnx_threads or "funasr_onnx default (4)",
                         "precision": "fp16" if self.args.fp16 else self.args.precision,
                         "engine_config": self.args.config or "config.yaml",
                         "timeout_s": self.args.timeout, "funasr_ncpu_tuned": self._cores(),
                         "wait_idle_s": self.args.wait_idle,
                         "extras": self.extras, "speaker_model": self.speaker},
            "variants": variants,
            "ratios": bench_report.ratios(variants),
            "peers": bench_report.peers(variants),
            "peer_ratios": bench_report.peer_ratios(variants),
            "targets": bench_report.targets(variants, self.device),
            "tokens": tokens,
            "texts": bench_report.compare_texts(variants, names),
            "itn": bench_report.itn_cost(variants),
            "speakers": bench_report.speaker_counts(variants, names),
            "profile": {n: p for n in ("C", "CW", "C8", "CB", "CH", "CA", "CM", "CL", "CT", "CTI", "CS")
                        if n in variants and (p := bench_report.profile(variants[n])) is not None},
            "notes": self.notes + bench_report.contention_notes(self.raw, IDLE_CORES)
            # A stage that failed or could not be timed would make CTI or CS look cheaper: say so.
            + [f"{n}: {note}" for n in ("CTI", "CS") for note in variants.get(n, {}).get("notes", [])],
            "run_dir": str(self.run_dir),
        }
        if self.onnx is not None:
            data["onnx"] = {"python": str(self.onnx.python), "model_dir": str(self.onnx.model_dir),
                            "export": self.onnx.export}
        return data

    def _transcript_variants(self) -> dict[str, dict]:
        """AT, ATN, CT, CTI and the speaker variants AS, ASN, CS: summarised, or why they could not run."""
        out = {}
        for name in TRANSCRIPT_VARIANTS:
            if name in self.raw:
                out[name] = bench_report.summarize_runs(self.raw[name], self.audio_s)
            elif name in self.args.variants and self.extras is None:
                out[name] = {"status": "unavailable", "reason": self.extras_reason or "not prepared"}
            elif name in self.args.variants and name in SPEAKER_VARIANTS and self.speaker is None:
                out[name] = {"status": "unavailable", "reason": self.speaker_reason or "not prepared"}
            elif name in self.skipped:
                out[name] = {"status": "skipped", "reason": self.skipped[name]}
        return out

    @staticmethod
    def _cores() -> int:
        from asr.system.threads import default_cpu_threads

        return default_cpu_threads()

    def _device_info(self) -> dict:
        import torch

        from asr.system.threads import default_cpu_threads

        info = {"requested": self.args.device, "resolved": self.device, "platform": platform.platform(),
                "cpu_count": default_cpu_threads()}
        if self.cpu.model:
            info["cpu"] = self.cpu.model
        info["cpu_features"] = self.cpu.matrix_features
        if self.device == "cuda":
            props = torch.cuda.get_device_properties(0)
            info.update(name=props.name, gpu_total_mb=round(props.total_memory / 2**20))
        else:
            info["name"] = info.get("cpu", platform.processor())
        info["env"] = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "CUDA_VISIBLE_DEVICES") if k in os.environ}
        return info

    def _versions(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        out = {"python": platform.python_version()}
        for name in ("torch", "funasr", "numpy", "torchaudio"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = None
        try:
            out["project_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                                                   capture_output=True, text=True).stdout.strip() or None
        except OSError:
            out["project_commit"] = None
        for name in ("O", "O8"):
            runs = self.raw.get(name) or []
            if runs and runs[-1].get("versions"):
                out["onnx_env"] = runs[-1]["versions"]
                break
        return out


def extra_models(asr_spec: str, models_dir: Path) -> dict:
    """The punctuation and fsmn-vad models CT and AT share, as directories both can load.

    A random ASR model gets the random punctuation build of its own size (what a tiny or large
    real pipeline would cost) and the random fsmn-vad (`random:tiny`, the only size: the real one
    is tiny too); a real ASR model gets the real ModelScope ids, from the local cache or downloaded.
    """
    from asr.models.loader import model_dir
    from asr.models.random_weights.base import is_random_spec
    from asr.speech.fsmn import DEFAULT_FSMN_VAD, FSMN_VAD_MODEL
    from asr.text.punctuation import DEFAULT_PUNC_MODEL, PUNCTUATION_MODEL

    if is_random_spec(asr_spec):
        punc_spec, vad_spec = asr_spec, "random:tiny"
    else:
        punc_spec, vad_spec = DEFAULT_PUNC_MODEL, DEFAULT_FSMN_VAD
    punc_dir = model_dir(punc_spec, PUNCTUATION_MODEL, models_dir)
    vad_dir = model_dir(vad_spec, FSMN_VAD_MODEL, models_dir)
    return {"punc_spec": punc_spec, "punc_dir": str(punc_dir), "vad_spec": vad_spec, "vad_dir": str(vad_dir)}


def speaker_model(asr_spec: str, models_dir: Path) -> dict:
    """The CAM++ directory CS and AS share: the random CAM++ build of the ASR model's size for a
    random ASR model (random:large is the real network), else the real CAM++ from the local
    ModelScope cache or downloaded. CS gets it as `speaker_model: DIR`, AS as `spk_model=DIR`."""
    from asr.models.loader import model_dir
    from asr.models.random_weights.base import is_random_spec
    from asr.text.speaker_encoders import CAMPPLUS_MODEL, DEFAULT_SPEAKER_MODEL

    spec = asr_spec if is_random_spec(asr_spec) else DEFAULT_SPEAKER_MODEL
    return {"spk_spec": spec, "spk_dir": str(model_dir(spec, CAMPPLUS_MODEL, models_dir))}


def dump_json(report: dict) -> str:
    """Indented JSON with each list of numbers (token ids, batch sizes) kept on one line."""
    text = json.dumps(report, ensure_ascii=False, indent=1)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(0)[1:-1].split(",")) + "]",
                            text)


_NUMBER_LIST = re.compile(r"\[\s*-?\d+(?:\.\d+)?(?:,\s*-?\d+(?:\.\d+)?)*\s*\]")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    from asr.models import ModelLoadError
    from asr.settings import SettingsError

    started = time.perf_counter()
    try:
        bench = Bench(args, argv)
        bench.prepare()
    except (ModelLoadError, SettingsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "CW" in args.variants:
        bench.prepare_wizard()
    if "O" in args.variants or "O8" in args.variants:
        bench.prepare_onnx()
    if set(TRANSCRIPT_VARIANTS) & set(args.variants):
        bench.prepare_extras()
    bench.run()
    report = bench.report()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(bench_report.format_table(report))
    if args.profile:
        text = bench_report.format_profile(report)
        print("\n" + (text or "no profile: none of C, CT, CTI, CS ran"))
    if args.json:
        Path(args.json).write_text(dump_json(report) + "\n", encoding="utf-8")
        _progress(f"report written to {args.json}")
    failed = [n for n, v in report["variants"].items() if v["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
