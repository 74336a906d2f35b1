"""One benchmark run of one variant, in a fresh process: `python -m benchmarks.variants JOB OUT`.

The parent (`benchmarks.bench`) writes JOB (JSON) and reads OUT (JSON). A fresh process per run means
one variant's thread pools, allocator caches and lazily built kernels can neither help nor hurt
the next. Each run: load the model (not timed), warm up on the shortest and the longest file
through the same call path (not timed), then time one pass over every file. This module holds
the variants that run in the project's own environment; funasr_onnx runs in its own
(bench_onnx_worker.py).

  A   FunASR AutoModel.generate(input=path), file by file, at FunASR's defaults (ncpu=4 included);
      with job['ncpu'] set (the parent's AN), AutoModel(ncpu=N) and nothing else changed
  B   FunASR AutoModel.generate(input=[all files], batch_size=N)
  AT  FunASR AutoModel(vad_model=DIR, punc_model=DIR).generate(input=path, sentence_timestamp=True),
      file by file: FunASR's own transcript pipeline (fsmn-vad, recognition, CT-Transformer
      punctuation, sentence times); job['ncpu'] as for A (the parent's ATN)
  AS  AT plus AutoModel(spk_model=DIR): FunASR's CAM++ speaker labels on each sentence (the
      parent's AS and ASN); a missing package FunASR's speaker path imports makes it unavailable
  C   this engine, Engine(settings).run(files, use_cache=False), batch size from settings or job;
      the job's settings make it C, CT (VAD + punctuation + timestamps), CTI (CT + ITN), CS (CT +
      speakers) and the other C variants
  wizard  run_wizard(engine, files) -> the recommended batch size (not a timed variant)

Token ids for A and B are the ids FunASR hands its own tokenizer (`ids2tokens`), recorded by a
wrapper that changes nothing else, so they compare exactly with the engine's `Result.token_ids`.
AT records only texts: its segments run in FunASR's length order and its punctuation model calls
the same tokenizer class, so its token lists cannot be attributed; CT and AT are compared on their
texts (benchmarks.report.compare_texts). Every variant records its texts.

With ITN or speakers on, the engine worker also times the engine's own calls of the two text
stages (`normalize_numbers`, `diarize`, looked up by name in asr.engine) over the timed pass, so
the report can say what each costs per sentence or per file without a stage field in RunStats.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), the CPU figure the table shows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _GpuPeak:
    """Peak CUDA memory over the timed pass only (the model's own weights included)."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.active = device.startswith("cuda") and torch.cuda.is_available()

    def reset(self) -> None:
        if self.active:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict:
        if not self.active:
            return {}
        self.torch.cuda.synchronize()
        mb = 2**20
        return {"gpu_peak_allocated_mb": round(self.torch.cuda.max_memory_allocated() / mb, 1),
                "gpu_peak_reserved_mb": round(self.torch.cuda.max_memory_reserved() / mb, 1),
                "gpu_name": self.torch.cuda.get_device_name()}

    def sync(self) -> None:
        if self.active:
            self.torch.cuda.synchronize()


def _thread_info() -> dict:
    import torch

    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    return {"torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), **env}


class _TokenRecorder:
    """Records the token ids FunASR passes to its tokenizer, one list per recognised utterance.

    Patched on the tokenizer class because AutoModel keeps deep copies of its kwargs (tokenizer
    included) and restores them on every generate call, so the instance we could see is not the
    one that runs.
    """

    def __init__(self, tokenizer_class: type):
        self.captured: list[list[int]] = []
        original = tokenizer_class.ids2tokens
        recorder = self

        def ids2tokens(tokenizer, ids, *args, **kwargs):
            recorder.captured.append([int(i) for i in ids])
            return original(tokenizer, ids, *args, **kwargs)

        tokenizer_class.ids2tokens = ids2tokens

    def take(self) -> list[list[int]]:
        taken, self.captured = self.captured, []
        return taken


def _funasr_model(job: dict, **extra):
    """What a user writes; FunASR's other defaults (ncpu=4, batch_size=1) are left alone unless the
    job names an ncpu (AN, ATN), because that one default is what hurts small machines most."""
    if job.get("ncpu"):
        extra["ncpu"] = int(job["ncpu"])
    with contextlib.redirect_stdout(io.StringIO()):
        from funasr import AutoModel

        return AutoModel(model=job["model_dir"], device=job["device"], disable_update=True, **extra)


def _cpu_seconds() -> float:
    """CPU time of this process so far, all its threads, user and system."""
    usage = os.times()
    return usage.user + usage.system


def _timed(job: dict, gpu: _GpuPeak, call: Callable[[list[str]], None],
           before_timed: Callable[[], None] | None = None) -> dict:
    """Warm up untimed, then time one pass. Also returns the CPU seconds the pass got: over its
    wall time that is how many cores the run had, which on a shared machine shows starvation
    that the wall time alone cannot tell from slowness. `before_timed` runs between the two
    (untimed): to reset what the warm-up must not leave behind."""
    t0 = time.perf_counter()
    call(job["warmup"])
    gpu.sync()
    warmup_s = time.perf_counter() - t0
    if before_timed is not None:
        before_timed()
    gpu.reset()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    call(job["files"])
    gpu.sync()
    wall_s = time.perf_counter() - t0
    return {"warmup_s": warmup_s, "wall_s": wall_s, "cpu_s": round(_cpu_seconds() - cpu0, 3),
            "loadavg_1min": round(os.getloadavg()[0], 2)}


def run_funasr(job: dict) -> dict:
    """Variants A (file by file) and B (the whole list with batch_size=job['batch_size'])."""
    import torch

    started = time.perf_counter()
    model = _funasr_model(job)
    load_s = time.perf_counter() - started
    # FunASR sets batch_size=1 at load on CPU; a batch_size given to generate still overrides it.
    default_batch = model.kwargs.get("batch_size")
    recorder = _TokenRecorder(type(model.kwargs["tokenizer"]))
    gpu = _GpuPeak(job["device"])
    batched = job["variant"] == "B"
    tokens: list[list[int] | None] = []
    texts: list[str | None] = []
    batches: list[int] = []
    notes: list[str] = []

    def file_by_file(paths: list[str]) -> None:
        tokens.clear()
        texts.clear()
        recorder.take()
        for path in paths:
            results = model.generate(input=path)
            got = recorder.take()
            tokens.append(got[0] if len(got) == 1 else ([] if not results else None))
            texts.append(results[0].get("text", "") if results else "")

    def whole_list(paths: list[str]) -> None:
        tokens.clear()
        texts.clear()
        batches.clear()
        recorder.take()
        done = [0]

        def progress(end: int, total: int) -> None:
            batches.append(end - done[0])
            done[0] = end

        results = model.generate(input=list(paths), batch_size=job["batch_size"],
                                 progress_callback=progress)
        got = recorder.take()
        if len(got) == len(paths) == len(results):
            tokens.extend(got)
            texts.extend(r.get("text", "") for r in results)
        else:
            notes.append(f"{len(paths)} files gave {len(results)} results and {len(got)} token lists: "
                         "token ids cannot be matched to files")
            tokens.extend([None] * len(paths))
            texts.extend([None] * len(paths))

    timed = _timed(job, gpu, whole_list if batched else file_by_file)
    if batched and batches and max(batches) < job["batch_size"] and len(job["files"]) > max(batches):
        notes.append(f"asked for batch_size {job['batch_size']}, "
                     f"FunASR ran batches of {sorted(set(batches))}")
    return {
        "ok": True, **timed, "load_s": load_s,
        "tokens": tokens, "texts": texts, "batches": batches if batched else [1] * len(job["files"]),
        "threads": {**_thread_info(), "funasr_ncpu": model.kwargs.get("ncpu")},
        "funasr_batch_size_default": default_batch, "notes": notes,
        "device": str(next(model.model.parameters()).device), "torch_version": torch.__version__,
        **gpu.read(),
    }


def run_funasr_transcript(job: dict) -> dict:
    """Variants AT and AS: FunASR's own transcript pipeline, file by file, as its README shows it.

    The fsmn-vad and punctuation models are the directories the parent resolved (random builds
    for a random ASR model), given to AutoModel as `vad_model` and `punc_model`; FunASR builds
    them with the ASR model's device and ncpu. `sentence_timestamp=True` asks for the sentence
    list with times, the counterpart of the engine's `Result.segments`. With
    job['spk_model_dir'] (AS), `spk_model` adds FunASR's CAM++ speaker labels (its ClusterBackend,
    at its defaults), and each file's count is the number of distinct `spk` in its sentences.
    """
    import torch

    speakers = bool(job.get("spk_model_dir"))
    extra = {"vad_model": job["vad_model_dir"], "punc_model": job["punc_model_dir"]}
    if speakers:
        extra["spk_model"] = job["spk_model_dir"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                # What generate() imports for speakers (scikit-learn, scipy), imported here so a
                # missing package shows up as this variant's reason rather than a failure midway.
                from funasr.models.campplus import cluster_backend, utils  # noqa: F401
        except ImportError as exc:
            return {"ok": False, "unavailable": True,
                    "error": f"FunASR's speaker path cannot be imported here ({type(exc).__name__}: {exc})"}
    started = time.perf_counter()
    model = _funasr_model(job, **extra)
    load_s = time.perf_counter() - started
    gpu = _GpuPeak(job["device"])
    texts: list[str] = []
    sentences: list[int] = []
    found: list[int | None] = []

    def file_by_file(paths: list[str]) -> None:
        texts.clear()
        sentences.clear()
        found.clear()
        for path in paths:
            results = model.generate(input=path, sentence_timestamp=True)
            first = results[0] if results else {}  # FunASR drops a file with no speech at all
            info = first.get("sentence_info") or []
            texts.append(first.get("text", ""))
            sentences.append(len(info))
            labels = {s["spk"] for s in info if s.get("spk") is not None}
            found.append(len(labels) if labels or not info else None)

    try:
        timed = _timed(job, gpu, file_by_file)
    except ImportError as exc:
        if not speakers:
            raise
        # ClusterBackend imports umap-learn only past 2048 windows (about 25 min of speech).
        return {"ok": False, "unavailable": True,
                "error": f"FunASR's speaker clustering needs a missing package ({type(exc).__name__}: {exc})"}
    models = {"vad": job["vad_model_dir"], "punctuation": job["punc_model_dir"]}
    threads = {**_thread_info(), "funasr_ncpu": model.kwargs.get("ncpu"),
               "vad_ncpu": model.vad_kwargs.get("ncpu"), "punc_ncpu": model.punc_kwargs.get("ncpu")}
    out = {
        "ok": True, **timed, "load_s": load_s,
        "tokens": [None] * len(texts), "texts": texts, "sentences": sentences,
        "batches": [1] * len(job["files"]), "threads": threads, "models": models,
        "device": str(next(model.model.parameters()).device), "torch_version": torch.__version__,
        **gpu.read(),
    }
    if speakers:
        models["speakers"] = job["spk_model_dir"]
        threads["spk_ncpu"] = model.spk_kwargs.get("ncpu")
        out["speakers_found"] = found
    return out


def _engine(job: dict):
    from asr.engine import Engine
    from asr.settings import load_settings

    overrides = {"model": job["model_dir"], "device": job["device"], **job.get("settings", {})}
    settings = load_settings(job.get("config"), environ={}, overrides=overrides)
    return Engine(settings)


class _CallTimer:
    """Seconds spent in one function that asr.engine calls by its module-level name, summed over
    the threads that call it (speakers run on the preload threads), counted from `reset`.

    A wrapper around the engine's own call, so the figure is the stage as the engine runs it;
    `found` is False when asr.engine no longer has that name (the report then says so)."""

    def __init__(self, name: str):
        import threading

        import asr.engine

        self.name = name
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        original = getattr(asr.engine, name, None)
        self.found = callable(original)
        if not self.found:
            return

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                with self._lock:
                    self.seconds += spent
                    self.calls += 1

        setattr(asr.engine, name, timed)

    def reset(self) -> None:
        with self._lock:
            self.seconds, self.calls = 0.0, 0

    def read(self) -> dict:
        return {"s": round(self.seconds, 4), "calls": self.calls, "found": self.found}


# Text stages the engine worker times when its settings turn them on: report key -> engine name.
STAGE_CALLS = {"itn": "normalize_numbers", "speakers": "diarize"}


def _clear_itn_cache() -> bool:
    """Forget the ITN pieces the warm-up normalised: the timed pass repeats its files, and a
    cached piece costs nothing, which would understate ITN for new text. False where the cache
    is no longer where this looks (the run then notes it)."""
    from asr.text.numbers import default_itn

    itn = default_itn()
    if not hasattr(itn, "clear_cache"):
        return False
    itn.clear_cache()
    return True


def run_engine(job: dict) -> dict:
    """Variant C: the engine at its settings (config.yaml) or at job['batch_size']."""
    started = time.perf_counter()
    engine = _engine(job)
    load_s = time.perf_counter() - started
    gpu = _GpuPeak(job["device"])
    size = job.get("batch_size") or engine.default_batch_size
    flat = engine.settings.flat()
    on = {"itn": bool(flat.get("itn")), "speakers": str(flat.get("speakers.count", "off")) != "off"}
    timers = {key: _CallTimer(STAGE_CALLS[key]) for key, wanted in on.items() if wanted}
    last = {}

    def call(paths: list[str]) -> None:
        last["run"] = engine.run(paths, batch_size=size, use_cache=False)

    notes: list[str] = []

    def before_timed() -> None:
        if on["itn"] and not _clear_itn_cache() and not notes:
            notes.append("the ITN piece cache could not be cleared after the warm-up: its files' ITN "
                         "cost nothing in the timed pass")
        for timer in timers.values():
            timer.reset()

    timed = _timed(job, gpu, call, before_timed)
    run = last["run"]
    failed = [f"{r.file}: {r.error}" for r in run.results if not r.ok]
    out = {
        "ok": True, **timed, "load_s": load_s,
        "tokens": [r.token_ids if r.ok else None for r in run.results],
        "texts": [r.text if r.ok else None for r in run.results],
        "sentences": [len(r.segments) for r in run.results],
        "timed_words": [sum(len(s.words or []) for s in r.segments) for r in run.results],
        "batches": [r.batch_size for r in run.results], "batch_size": size,
        "stats": run.stats.to_dict(),
        "threads": {**_thread_info(), "engine_threads": engine.recognizer.threads,
                    "cpu_lanes": engine.recognizer.lanes, "cpu_gemm": engine.loaded.cpu_gemm},
        "engine": {"settings": engine.settings.summary(), "precision": engine.precision,
                   "preload": run.stats.preload, "device": str(engine.loaded.device),
                   "itn": on["itn"], "speakers": str(flat.get("speakers.count")),
                   "speaker_model": flat.get("speaker_model") if on["speakers"] else None},
        "notes": failed + notes, **gpu.read(),
    }
    if timers:
        out["stage_s"] = {key: timer.read() for key, timer in timers.items()}
    if on["itn"]:
        out["raw_texts"] = [r.raw_text if r.ok else None for r in run.results]
    if on["speakers"]:
        out["speakers_found"] = [len(r.speakers) if r.ok and r.speakers is not None else None
                                 for r in run.results]
        out["notes"] = out["notes"] + sorted({w for r in run.results for w in r.warnings
                                              if w.startswith("speaker labels failed")})
    return out


def run_wizard_job(job: dict) -> dict:
    """Not timed: the wizard's recommended batch size on these files, for variant CW."""
    try:
        from tuning.wizard import run_wizard
    except ImportError as exc:
        return {"ok": False, "unavailable": True, "error": f"wizard unavailable ({exc})"}
    engine = _engine(job)
    started = time.perf_counter()
    report = run_wizard(engine, job["files"])
    data = report.to_dict() if hasattr(report, "to_dict") else {}
    return {"ok": True, "recommended": int(report.recommended), "reason": getattr(report, "reason", ""),
            "wizard_s": time.perf_counter() - started, "report": data}


RUNNERS = {"A": run_funasr, "B": run_funasr, "AT": run_funasr_transcript, "AS": run_funasr_transcript,
           "C": run_engine, "wizard": run_wizard_job}


def main(argv: list[str]) -> int:
    job_path, out_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    try:
        result = RUNNERS[job["variant"]](job)
    except Exception as exc:  # noqa: BLE001 - the parent reports any failure as this run's error
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["pid"] = os.getpid()
    out_path.write_text(json.dumps(result), encoding="utf-8")
    return 0 if result.get("ok") else 1


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown: the result is on disk, and unloading what torch
    and FunASR imported measures nothing but costs seconds per worker on a small machine. The log
    is flushed first; nothing the workers keep open needs an exit hook (temporary files and
    folders are closed by their own `with`)."""
    import ctypes
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        ctypes.CDLL(None).fflush(None)  # what C and C++ code (torch, FunASR's kernels) left buffered
    except (OSError, AttributeError):
        pass
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main(sys.argv[1:]))
