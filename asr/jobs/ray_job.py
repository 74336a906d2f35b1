"""`python -m asr job INPUT... --output DIR`: recognise an archive on a Ray cluster, resumably.

    listing (driver)  files, folders (their audio files, recursively) and list files -> paths
    read (Ray tasks)  read each file's bytes, hash them, skip the ones already done, decode the
                      rest with the engine's decoder (asr.audio.decode.decode_bytes), on CPU workers
    recognise (actors) one Engine per actor (one per GPU, or CPU actors sized to the cores),
                      `map_batches` over an actor pool; each batch is one `Engine.run`
    write (driver)    the records that came back, every few seconds, into an atomically renamed
                      part file; at the end results.jsonl, one record per input (asr.jobs.store)

Ray is an optional extra (`pip install '.[distributed]'`); nothing else in the app imports this
module, and this module imports Ray only inside `run_job`. A worker that dies is restarted and its
batch retried (Ray Data's actor defaults, max_restarts=-1 and max_task_retries=-1, which this
module leaves on); what was recognised but not yet written is simply recognised again, and what
was written is never written twice (see asr.jobs.store).

`ASR_JOB_FAULT` is a test seam read by the driver: comma-separated `exit-once:MARKER` (the first
actor to finish a batch with work while MARKER does not exist creates it and exits the process
before returning the batch: a real worker death) and `delay:SECONDS` (each actor call sleeps
first, so a test can stop a job midway).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.jobs.store import RECORD_VERSION, Assembly, JobBusy, JobStore, content_hash
from asr.results import Result, Segment, Word
from asr.settings import Settings
from asr.system.console import add_engine_flags, engine_overrides, settings_for_command
from asr.text.export import parse_formats, render, unique_name

log = logging.getLogger("asr.jobs.ray_job")

FAULT_ENV = "ASR_JOB_FAULT"
LIST_SUFFIXES = (".txt", ".lst", ".list")  # an input with one of these names lists paths, one a line
READ_BLOCK_FILES = 64  # paths per read task, at most (more tasks when the actors need them)
PART_FLUSH_S = 5.0  # the driver writes what came back as a part file this often...
PART_MAX_RECORDS = 1000  # ...or at this many records
# CPU actors reserve this share of their cores less, so the read tasks (0.25 CPU each) always
# find room: on 2 cores, two 1-thread actors take 1.75 and one read task runs beside them.
READ_TASK_CPUS = 0.25
CPU_RESERVE = 0.125
DEFAULT_CPU_THREADS_PER_ACTOR = 1  # measured against 1 actor x 2 threads: see README "Batch jobs"
RAY_MISSING = ("the job command needs Ray, an optional extra: .venv/bin/pip install -e '.[distributed]' "
               "or bash run.sh install distributed")


# ---- command line ---------------------------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    """The `job` subcommand, beside `transcribe` (no Ray import here)."""
    job = sub.add_parser(
        "job", help="recognise an archive on a Ray cluster: resumable, one JSON line per input",
        description="Recognise files, folders (their audio files, recursively) or lists of paths "
                    "(.txt/.lst/.list, one path a line) with Ray Data; a rerun with the same "
                    "--output skips what is done.")
    job.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders, or list files")
    job.add_argument("--output", type=Path, required=True,
                     help="folder for results.jsonl, summary.json, parts/ and transcripts/")
    add_engine_flags(job)
    job.add_argument("--hotwords", help="hotwords separated by spaces or commas")
    job.add_argument("--format", help="also write one file per input into DIR/transcripts: txt, json, "
                                      "srt, vtt, tsv (comma-separated) or all; srt/vtt switch timestamps on")
    job.add_argument("--address", help="Ray cluster to join ('auto': the one `ray start` runs here); "
                                       "default: start a local one")
    job.add_argument("--actors", type=int,
                     help="recognition actors (default: one per GPU, else cores / --threads-per-actor)")
    job.add_argument("--threads-per-actor", type=int,
                     help=f"CPU threads per CPU actor (default: cpu_threads if set, else "
                          f"{DEFAULT_CPU_THREADS_PER_ACTOR})")
    job.add_argument("--files-per-call", type=int,
                     help="files an actor recognises in one engine call (default: 4 on CPU actors, "
                          "16 on GPU actors)")
    job.add_argument("--quiet", action="store_true", help="no progress, warnings only")
    return job


def main(args: argparse.Namespace) -> int:
    """Run the parsed `job` command. Exit 0: every input succeeded; 1: any failed; 2: usage,
    configuration, a busy output folder, or Ray missing."""
    try:
        formats = parse_formats(args.format) if args.format else []
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in ("actors", "threads_per_actor", "files_per_call"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        import ray  # noqa: F401 - only to say clearly that it is missing
    except ImportError:
        print(f"error: {RAY_MISSING}", file=sys.stderr)
        return 2
    overrides = engine_overrides(args)
    if {"srt", "vtt"} & set(formats) and overrides.get("timestamps") is None:
        overrides["timestamps"] = True  # as `transcribe`: subtitles want sentence-sized cues
    settings = settings_for_command(args.config, overrides, quiet=args.quiet)
    if settings is None:
        return 2
    from asr.recognition.hotwords import HotwordError

    try:
        summary = run_job(args.inputs, args.output, settings, hotwords=args.hotwords, formats=formats,
                          address=args.address, actors=args.actors,
                          threads_per_actor=args.threads_per_actor, files_per_call=args.files_per_call,
                          batch_size=args.batch_size,
                          quiet=args.quiet, fault=os.environ.get(FAULT_ENV) or None)
    except (JobBusy, HotwordError, JobSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"error: cannot join the Ray cluster ({exc}); start one with `ray start --head`, or leave "
              "out --address to run on this machine", file=sys.stderr)
        return 2
    except Exception as exc:
        cause = _engine_start_error(exc)
        if cause is None:
            raise
        print(f"error: the recognition actors could not start their engine: {cause}", file=sys.stderr)
        return 2
    print(summary.text())
    return 0 if summary.failed == 0 else 1


class JobSetupError(ValueError):
    """The job cannot start as asked (no GPU for device cuda, ...); the message says why."""


class EngineStartError(RuntimeError):
    """An actor could not build its Engine (a model that will not load, a precision the
    machine lacks): raised in the actor, found again in the driver's Ray error."""


def _engine_start_error(exc: BaseException | None) -> str | None:
    """The EngineStartError message inside a Ray error: Ray Data passes the actor's exception on
    as text (its traceback), not as an object, so it is found by its name."""
    for _ in range(20):
        if exc is None:
            return None
        if isinstance(exc, EngineStartError):
            return str(exc)
        marker = f"{EngineStartError.__name__}: "
        for line in str(exc).splitlines():
            if marker in line:
                return line.split(marker, 1)[1].strip()
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


# ---- inputs ---------------------------------------------------------------------------------

@dataclass
class Inputs:
    paths: list[str]  # absolute, each once, in the order given
    labels: list[str]  # relative names for per-file formats, distinct, without extension


def list_inputs(specs: Sequence[str | Path]) -> Inputs:
    """Files as given, folders' audio files (recursively, sorted), list files' lines (relative
    paths are relative to the list). A path that does not exist is still an input: its record
    says so. The same path given twice is one input."""
    found: list[tuple[str, str]] = []  # (absolute path, label)

    def add(path: Path, label: str) -> None:
        found.append((os.path.abspath(path), label))

    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            from asr.audio.decode import (
                AUDIO_EXTENSIONS,  # here only: it loads torch, which a driver needs not
            )

            for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                               and p.is_file()):
                add(file, str(Path(path.name or "input") / file.relative_to(path)))
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    listed = Path(entry).expanduser()
                    add(listed if listed.is_absolute() else path.parent / listed,
                        listed.name if listed.is_absolute() else entry)
        else:
            add(path, path.name)
    paths: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    used: set[str] = set()
    for absolute, label in found:
        if absolute in seen:
            continue
        seen.add(absolute)
        stem = str(Path(label).with_suffix("")) if Path(label).suffix else label
        stem = stem.lstrip("/").replace("..", "_") or "audio"
        paths.append(absolute)
        labels.append(unique_name(stem, used))
    return Inputs(paths, labels)


# ---- what makes results differ ----------------------------------------------------------------

def settings_fingerprint(settings: Settings, hotwords: list[str]) -> tuple[str, dict]:
    """(fingerprint, the settings it covers): the settings that change a transcript. Batch size,
    threads, lanes and kernels are not among them (the engine guarantees that batching changes
    no token in fp32); precision is."""
    flat = settings.flat()
    covered = {key: flat[key] for key in ("model", "precision", "vad", "punctuation", "timestamps",
                                          "simulate_oom_frames")}
    if settings.vad == "fsmn":
        covered["vad_model"] = settings.vad_model
    covered.update({k: v for k, v in flat.items() if k.startswith(("input.", "subtitles."))})
    covered["hotwords"] = list(hotwords)
    covered["record_version"] = RECORD_VERSION
    text = json.dumps(covered, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], covered


def parse_fault(text: str | None) -> dict[str, str]:
    spec: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            name, _, value = part.strip().partition(":")
            if name not in ("exit-once", "delay") or not value:
                raise JobSetupError(f"{FAULT_ENV}: '{part}' is not exit-once:MARKER or delay:SECONDS")
            if name == "delay":
                float(value)  # a bad number stops the job here, not in an actor
            spec[name] = value
    return spec


# ---- Ray stages ----------------------------------------------------------------------------

def read_batch(batch: dict, done: frozenset, fingerprint: str) -> dict:
    """A read task: bytes -> key -> (done: skip) or samples decoded by the engine's decoder.
    Never raises for an input: its error travels in the `error` column."""
    import numpy as np

    from asr.audio import decode as audio_io
    from asr.system.threads import thread_count

    columns: dict[str, list] = {name: [] for name in ("path", "index", "sha256", "error", "skip",
                                                      "samples", "read_s")}
    for path, index in zip(batch["path"], batch["index"], strict=True):
        started = time.perf_counter()
        sha, error, skip, samples = "", "", False, b""
        try:
            data = audio_io.read_file(path)
            sha = content_hash(data)
            if f"{sha}:{fingerprint}" in done:
                skip = True
            else:
                with thread_count(1):  # as the engine decodes: one thread beside the model
                    decoded = audio_io.decode_bytes(data, Path(path).name)
                samples = decoded.samples.tobytes()
        except (audio_io.AudioError, ValueError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad input must never fail the job
            error = f"could not prepare this input: {type(exc).__name__}: {exc}"
        for name, value in (("path", path), ("index", int(index)), ("sha256", sha), ("error", error),
                            ("skip", skip), ("samples", samples),
                            ("read_s", time.perf_counter() - started)):
            columns[name].append(value)
    out = {name: np.array(values, dtype=object) for name, values in columns.items()}
    out["index"] = np.array(columns["index"], dtype=np.int64)
    out["skip"] = np.array(columns["skip"], dtype=bool)
    out["read_s"] = np.array(columns["read_s"], dtype=np.float64)
    return out


class RecognitionActor:
    """One Engine per actor process; each call recognises one batch of decoded inputs and
    returns one JSON record per input that was not skipped.

    The engine loads at the first batch with work: a rerun whose inputs are all done passes
    its skipped rows through without loading a model."""

    def __init__(self, settings: Settings, hotwords: list[str], fingerprint: str, run_id: str,
                 fault: dict[str, str], log_level: str):
        logging.basicConfig(level=getattr(logging, log_level), force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.engine = None
        self.hotwords = hotwords
        self.fingerprint = fingerprint
        self.run_id = run_id
        self.fault = fault

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from asr.audio.decode import TARGET_RATE

        called = time.perf_counter()
        if "delay" in self.fault:
            time.sleep(float(self.fault["delay"]))
        count = len(batch["path"])
        records = [""] * count
        ok = np.zeros(count, dtype=bool)
        duration = np.zeros(count, dtype=np.float64)
        load_s = ready_at = 0.0
        todo = []
        for i in range(count):
            if batch["skip"][i]:
                continue
            if batch["error"][i]:
                self._record(records, ok, duration, i, batch,
                             Result(file=Path(batch["path"][i]).name, decode_s=float(batch["read_s"][i]),
                                    error=batch["error"][i]))
            else:
                todo.append(i)
        if todo:
            if self.engine is None:
                started = time.perf_counter()
                from asr.engine import Engine

                try:
                    self.engine = Engine(self.settings)
                except Exception as exc:  # a model that will not load fails every batch alike
                    raise EngineStartError(f"{type(exc).__name__}: {exc}") from None
                load_s = time.perf_counter() - started
                ready_at = time.time()  # wall clock: compared with the driver's (same cluster)
            inputs = [(np.frombuffer(batch["samples"][i], dtype=np.float32).copy(), TARGET_RATE)
                      for i in todo]
            for i, result in zip(todo, self._recognise(inputs), strict=True):
                result.file = Path(batch["path"][i]).name
                result.decode_s += float(batch["read_s"][i])  # read and decoded in the read task
                self._record(records, ok, duration, i, batch, result)
            self._maybe_die()
        return {"path": batch["path"], "index": batch["index"], "sha256": batch["sha256"],
                "skip": batch["skip"], "record": np.array(records, dtype=object), "ok": ok,
                "duration_s": duration, "load_s": np.full(count, load_s),
                "ready_at": np.full(count, ready_at),
                "call_s": np.full(count, (time.perf_counter() - called) / count)}

    def _recognise(self, inputs: list) -> list[Result]:
        try:
            return self.engine.run(inputs, hotwords=self.hotwords, quiet=True).results
        except Exception:  # noqa: BLE001 - the engine keeps errors per file; this is a last resort
            log.exception("a batch failed as a whole; recognising its files one at a time")
        results = []
        for item in inputs:
            try:
                results.extend(self.engine.run([item], hotwords=self.hotwords, quiet=True).results)
            except Exception as exc:  # noqa: BLE001
                results.append(Result(file="", error=f"recognition failed: {type(exc).__name__}: {exc}"))
        return results

    def _record(self, records, ok, duration, i, batch, result: Result) -> None:
        data = result.to_dict()
        data.update(path=batch["path"][i], sha256=batch["sha256"][i] or None,
                    settings=self.fingerprint, run=self.run_id)
        records[i] = json.dumps(data, ensure_ascii=False)
        ok[i] = result.ok
        duration[i] = result.duration_s

    def _maybe_die(self) -> None:
        marker = self.fault.get("exit-once")
        if not marker:
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        log.warning("%s: this actor exits now, its batch recognised but not returned", FAULT_ENV)
        os._exit(17)


# ---- the run --------------------------------------------------------------------------------

@dataclass
class JobSummary:
    output: Path
    inputs: int = 0
    recognised: int = 0  # recognised (or failed) in this run
    skipped: int = 0  # already done by an earlier run with the same bytes and settings
    ok: int = 0
    failed: int = 0
    audio_s: float = 0.0  # of every successful input, this run's and earlier ones'
    recognised_audio_s: float = 0.0  # of the inputs recognised in this run
    wall_s: float = 0.0  # from the cluster's start (or join) to results.jsonl written
    startup_s: float = 0.0  # of which starting or joining Ray
    model_load_s: float = 0.0  # the longest model load of an actor (inside the pipeline's time)
    ready_s: float = 0.0  # from the start until the first actor had its model loaded
    actor_busy_s: float = 0.0  # the actors' time in their calls, model loads included, summed
    actors: int = 0
    layout: str = ""
    fingerprint: str = ""
    missing: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """Audio seconds recognised in this run per wall second, start to end."""
        return self.recognised_audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ready_speed(self) -> float:
        """The same from the moment the first actor had its model loaded: what the cluster
        recognises once started, without Ray's start and the model loads (the workload's
        own tail stays in)."""
        working = self.wall_s - self.ready_s
        return self.recognised_audio_s / working if self.ready_s and working > 0 else 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["output"] = str(self.output)
        data["audio_hours"] = round(self.audio_s / 3600, 4)
        data["audio_seconds_per_second"] = round(self.speed, 3)
        data["audio_seconds_per_second_once_ready"] = round(self.ready_speed, 3)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}

    def text(self) -> str:
        return (f"{self.inputs} input(s): {self.recognised} recognised now, {self.skipped} already done; "
                f"{self.ok} ok, {self.failed} failed\n"
                f"audio: {self.audio_s / 3600:.3f} h in all; {self.recognised_audio_s:.1f} s recognised now "
                f"in {self.wall_s:.1f} s: {self.speed:.2f} audio-seconds per second "
                f"({self.ready_speed:.2f} once the first model was loaded, after {self.ready_s:.1f} s; "
                f"Ray start {self.startup_s:.1f} s)\n"
                f"{self.actors} actor(s): {self.layout}\n"
                f"results: {self.output / 'results.jsonl'}")


def run_job(inputs: Sequence[str | Path], output: str | Path, settings: Settings,
            hotwords: str | list[str] | None = None, formats: Sequence[str] = (),
            address: str | None = None, actors: int | None = None,
            threads_per_actor: int | None = None, files_per_call: int | None = None,
            batch_size: int | None = None, quiet: bool = False, fault: str | None = None,
            progress: Callable[[int, int], None] | None = None, flush_s: float = PART_FLUSH_S) -> JobSummary:
    """Run the job; return its summary. Uses the Ray connection already made in this process
    (tests), else joins `address` or starts a local cluster (and shuts down what it started).
    `batch_size` overrides settings.batch_size for the actors (see `_layout` for the default)."""
    import ray

    from asr.recognition.hotwords import parse_hotwords

    started, started_at = time.perf_counter(), time.time()
    words = parse_hotwords(hotwords, settings.hotwords.max_count, settings.hotwords.max_chars)
    fault_spec = parse_fault(fault)
    fingerprint, covered = settings_fingerprint(settings, words)
    listed = list_inputs(inputs)
    output = Path(output).expanduser().absolute()
    run_id = uuid.uuid4().hex[:12]
    summary = JobSummary(output=output, inputs=len(listed.paths), fingerprint=fingerprint)

    with JobStore(output, fingerprint) as store:
        done = store.done()
        store.write_json("job.json", {"fingerprint": fingerprint, "settings": covered,
                                      "inputs": len(listed.paths), "run": run_id,
                                      "ray": ray.__version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        started_ray = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a job
            # No address means a cluster of our own ("local"), never whatever /tmp/ray's
            # ray_current_cluster points at (a stale file there would make ray.init join or fail).
            ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=not quiet)
            started_ray = True
        summary.startup_s = time.perf_counter() - started
        try:
            keys = _execute(ray, listed, store, settings, words, fingerprint, run_id, done, summary,
                            actors, threads_per_actor, files_per_call, batch_size, quiet, fault_spec,
                            progress, flush_s, started_at)
        finally:
            if started_ray:
                ray.shutdown()
        assembled = _assemble(store, listed, keys, run_id, formats)
        summary.ok, summary.failed, summary.audio_s = assembled.ok, assembled.failed, assembled.audio_s
        summary.missing = assembled.missing
        summary.wall_s = time.perf_counter() - started
        store.write_json("summary.json", summary.to_dict())
    log.info("job done: %s", summary.text().replace("\n", "; "))
    return summary


@dataclass
class Layout:
    actors: int
    resources: dict  # Ray resources of one actor
    settings: Settings  # what each actor's Engine is built with
    files_per_call: int
    text: str
    in_flight: int = 1  # batches an actor holds at once (running plus waiting)


def _layout(ray, settings: Settings, actors: int | None, threads: int | None, files_per_call: int | None,
            batch_size: int | None) -> Layout:
    """How many actors, with what, for this cluster: one per GPU; else CPU actors of
    `threads` threads (default 1) filling the cores.

    One-thread CPU actors recognise one file per model call (batch size 1 unless given): on one
    thread a batch of several is padded, and side by side is what the actors themselves are
    (measured, README "Batch jobs"). CPU actors take 4 files a call so that the last calls of a
    job end together; GPU actors 16, so the engine can sort them into well-filled batches."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    actor_settings = dataclasses.replace(settings)
    if batch_size:
        actor_settings.batch_size = batch_size
    if settings.device in ("auto", "cuda") and gpus > 0:
        return Layout(actors or gpus, {"num_gpus": 1, "num_cpus": 1}, actor_settings,
                      files_per_call or max(16, 4 * actor_settings.batch_size),
                      f"1 GPU each, {gpus} GPU(s) in the cluster", in_flight=2)
    if settings.device == "cuda":
        raise JobSetupError("device cuda was asked for, but the Ray cluster has no GPU; use --device cpu "
                            "or auto, or join a cluster with GPUs (--address)")
    per_actor = threads or settings.cpu_threads or DEFAULT_CPU_THREADS_PER_ACTOR
    count = actors or max(1, int(cpus // per_actor))
    actor_settings.device = "cpu"
    actor_settings.cpu_threads = per_actor
    if per_actor == 1 and not batch_size:
        actor_settings.batch_size = 1
    # Logical CPUs: a little under the threads, so read tasks always fit beside the actors.
    share = max(0.1, min(per_actor * (1 - CPU_RESERVE), (cpus - READ_TASK_CPUS) / count))
    return Layout(count, {"num_cpus": round(share, 3)}, actor_settings, files_per_call or 4,
                  f"CPU, {per_actor} thread(s) and batch size {actor_settings.batch_size} each, "
                  f"{cpus:g} CPU(s) in the cluster")


class _PartWriter:
    """Buffers the records coming back and writes them as one part every `every_s` seconds or
    `max_records` records: few files for a large archive, and a kill loses only the buffer."""

    def __init__(self, store: JobStore, every_s: float, max_records: int):
        self.store, self.every_s, self.max_records = store, every_s, max_records
        self.records: list[str] = []
        self.identities: list[str] = []
        self.last = time.monotonic()

    def add(self, record: str, identity: str) -> None:
        self.records.append(record)
        self.identities.append(identity)
        if len(self.records) >= self.max_records:
            self.flush()

    def tick(self) -> None:
        if self.records and time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self.store.write_part(self.records, self.identities)
        self.records, self.identities = [], []
        self.last = time.monotonic()


def _execute(ray, listed: Inputs, store: JobStore, settings: Settings, words: list[str],
             fingerprint: str, run_id: str, done: dict, summary: JobSummary, actors: int | None,
             threads: int | None, files_per_call: int | None, batch_size: int | None, quiet: bool,
             fault: dict, progress: Callable[[int, int], None] | None, flush_s: float,
             started_at: float) -> dict[str, str]:
    """Run the Ray pipeline; write parts as batches come back. Returns each input's key when it
    succeeded now or earlier (the assembly's map)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    context.execution_options.preserve_order = False  # write whatever is done first
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    layout = _layout(ray, settings, actors, threads, files_per_call, batch_size)
    summary.actors, summary.layout = layout.actors, layout.text
    log.info("job: %d input(s), %d already done under settings %s; %d actor(s) (%s), %d file(s) a call",
             len(listed.paths), len(done), fingerprint, layout.actors, layout.text, layout.files_per_call)

    keys: dict[str, str] = {}
    if not listed.paths:
        return keys
    # Longest first (by size): the last batches are the short ones, so actors finish together.
    order = sorted(range(len(listed.paths)), key=lambda i: (-_size(listed.paths[i]), i))
    items = [{"path": listed.paths[i], "index": i} for i in order]
    blocks = max(min(len(items), 4 * layout.actors), math.ceil(len(items) / READ_BLOCK_FILES))
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    # Two files a read call: decoded audio leaves a read task in small blocks, as it is ready.
    dataset = dataset.map_batches(read_batch, batch_size=2, num_cpus=READ_TASK_CPUS,
                                  fn_kwargs={"done": frozenset(done), "fingerprint": fingerprint})
    actor_level = "WARNING" if quiet or settings.log_level != "DEBUG" else "DEBUG"
    dataset = dataset.map_batches(
        RecognitionActor, batch_size=layout.files_per_call,
        # CPU actors get their next batch when they return one: batches go to whichever actor is
        # free, longest first, so the actors end together (two in flight ended 9 s apart in 40 s).
        # A GPU actor keeps one waiting: its calls are short, so the hand-over gap would show.
        compute=ray.data.ActorPoolStrategy(size=layout.actors,
                                           max_tasks_in_flight_per_actor=layout.in_flight),
        fn_constructor_kwargs={"settings": layout.settings, "hotwords": words, "fingerprint": fingerprint,
                               "run_id": run_id, "fault": fault, "log_level": actor_level},
        **layout.resources)
    seen: set[str] = set()
    writer = _PartWriter(store, flush_s, PART_MAX_RECORDS)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for i, path in enumerate(batch["path"]):
            if path in seen:  # never expected (Ray hands each output over once): no second record
                log.warning("a second answer for %s was dropped", path)
                continue
            seen.add(path)
            key = f"{batch['sha256'][i]}:{fingerprint}"
            if batch["skip"][i]:
                summary.skipped += 1
                keys[path] = key
                continue
            summary.recognised += 1
            if batch["ok"][i]:
                keys[path] = key
                summary.recognised_audio_s += float(batch["duration_s"][i])
            writer.add(batch["record"][i], f"{path}\t{key}\t{run_id}")
        writer.tick()
        summary.model_load_s = max(summary.model_load_s, float(max(batch["load_s"], default=0.0)))
        summary.actor_busy_s += float(sum(batch["call_s"]))
        ready = [float(t) for t in batch["ready_at"] if t > 0]
        if ready:
            first = min(ready) - started_at
            summary.ready_s = min(summary.ready_s, first) if summary.ready_s else first
        if progress is not None:
            progress(len(seen), len(listed.paths))
    writer.flush()
    return keys


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _assemble(store: JobStore, listed: Inputs, keys: dict[str, str], run_id: str,
              formats: Sequence[str]) -> Assembly:
    folder = store.folder / "transcripts"

    def write_formats(index: int, record: dict) -> None:
        if record.get("error") is not None:
            return
        result = result_from_record(record)
        stem = folder / listed.labels[index]
        stem.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            stem.with_name(f"{stem.name}.{fmt}").write_text(render(result, fmt), encoding="utf-8")

    return store.assemble(listed.paths, keys, run_id, write_formats if formats else None)


def result_from_record(record: dict) -> Result:
    """A Result from a job record (for the per-file formats)."""
    names = {f.name for f in dataclasses.fields(Result)} - {"segments", "token_ids"}
    segments = []
    for s in record.get("segments") or []:
        words = [Word(**w) for w in s["words"]] if s.get("words") is not None else None
        segments.append(Segment(s["start_s"], s["end_s"], s["text"], s.get("confidence", 0.0), words))
    return Result(**{k: v for k, v in record.items() if k in names}, segments=segments)
