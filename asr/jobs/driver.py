"""The job's driver: plan the actors, run the Ray pipeline, write what comes back, assemble.

    listing (driver)  asr.jobs.inputs: files, folders and list files -> paths
    read (Ray tasks)  asr.jobs.actor.read_batch: read, hash, skip what is done, decode
    recognise (actors) asr.jobs.actor.RecognitionActor: one Engine per actor, `map_batches` over
                      an actor pool; each batch is one `Engine.run`
    write (driver)    the records that came back, every few seconds, into an atomically renamed
                      part file; at the end results.jsonl, one record per input (asr.jobs.store)

Ray is imported only inside `run_job`. A worker that dies is restarted and its batch retried
(Ray Data's actor defaults, max_restarts=-1 and max_task_retries=-1, left on); what was
recognised but not yet written is simply recognised again, and what was written is never
written twice (see asr.jobs.store). An input that takes its worker down `max_attempts` times
gets an error record instead of another try (asr.jobs.attempts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.jobs.actor import RecognitionActor, parse_fault, read_batch
from asr.jobs.attempts import MAX_ATTEMPTS, AttemptLedger
from asr.jobs.inputs import Inputs, list_inputs
from asr.jobs.store import RECORD_VERSION, Assembly, JobStore
from asr.recognition.hotwords import parse_hotwords
from asr.results import Result, Segment, Word
from asr.settings import Settings, result_settings
from asr.text.export import render

log = logging.getLogger(__name__)

READ_BLOCK_FILES = 64  # paths per read task, at most (more tasks when the actors need them)
PART_FLUSH_S = 5.0  # the driver writes what came back as a part file this often...
PART_MAX_RECORDS = 1000  # ...or at this many records
# CPU actors reserve this share of their cores less, so the read tasks (0.25 CPU each) always
# find room: on 2 cores, two 1-thread actors take 1.75 and one read task runs beside them.
READ_TASK_CPUS = 0.25
CPU_RESERVE = 0.125
DEFAULT_CPU_THREADS_PER_ACTOR = 1  # measured against 1 actor x 2 threads: see docs/jobs.md


class JobSetupError(ValueError):
    """The job cannot start as asked (no GPU for device cuda, ...); the message says why."""


@dataclass
class JobOptions:
    """How one job runs, beyond the engine's settings."""

    hotwords: str | list[str] | None = None
    formats: Sequence[str] = ()  # per-file formats written into DIR/transcripts at the end
    address: str | None = None  # Ray cluster to join; None: start a local one
    actors: int | None = None  # default: one per GPU, else cores / threads_per_actor
    threads_per_actor: int | None = None
    files_per_call: int | None = None
    batch_size: int | None = None  # overrides settings.batch_size for the actors
    quiet: bool = False
    fault: str | None = None  # ASR_JOB_FAULT (a test seam)
    progress: Callable[[int, int], None] | None = None  # (inputs answered, inputs)
    flush_s: float = PART_FLUSH_S
    # Worker deaths (crash, out-of-memory kill) on one input before it gets an error record
    # instead of another try (asr.jobs.attempts).
    max_attempts: int = MAX_ATTEMPTS


# ---- what makes results differ ----------------------------------------------------------------

def settings_fingerprint(settings: Settings, hotwords: list[str]) -> tuple[str, dict]:
    """(fingerprint, the settings it covers): every setting the schema marks as changing a
    transcript (asr.settings.result_settings), the hotwords and the record version. Batch size,
    threads, lanes and kernels are not among them: the engine guarantees that batching changes
    no token in fp32; precision is."""
    covered = result_settings(settings)
    covered["hotwords"] = list(hotwords)
    covered["record_version"] = RECORD_VERSION
    text = json.dumps(covered, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], covered


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
            options: JobOptions | None = None, **fields) -> JobSummary:
    """Run the job; return its summary. `options` and/or keyword fields of JobOptions. Uses the
    Ray connection already made in this process (tests), else joins `address` or starts a local
    cluster (and shuts down what it started)."""
    import ray  # deliberate lazy import: Ray is an optional extra, needed only to run a job

    opts = dataclasses.replace(options or JobOptions(), **fields)
    started, started_at = time.perf_counter(), time.time()
    words = parse_hotwords(opts.hotwords, settings.hotwords.max_count, settings.hotwords.max_chars)
    try:
        fault = parse_fault(opts.fault)
    except ValueError as exc:
        raise JobSetupError(str(exc)) from None
    fingerprint, covered = settings_fingerprint(settings, words)
    listed = list_inputs(inputs)
    output = Path(output).expanduser().absolute()
    run_id = uuid.uuid4().hex[:12]
    summary = JobSummary(output=output, inputs=len(listed.paths), fingerprint=fingerprint)

    with JobStore(output, fingerprint) as store:
        job = _RunningJob(listed, store, settings, opts, words, fingerprint, run_id, store.done(), summary,
                          fault, started_at)
        store.write_json("job.json", {"fingerprint": fingerprint, "settings": covered,
                                      "inputs": len(listed.paths), "run": run_id,
                                      "ray": ray.__version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        started_ray = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a job
            # No address means a cluster of our own ("local"), never whatever /tmp/ray's
            # ray_current_cluster points at (a stale file there would make ray.init join or fail).
            ray.init(address=opts.address or "local", include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=not opts.quiet)
            started_ray = True
        summary.startup_s = time.perf_counter() - started
        try:
            keys = _execute(ray, job)
        finally:
            if started_ray:
                ray.shutdown()
        assembled = _assemble(store, listed, keys, run_id, opts.formats, settings.subtitles.min_s)
        summary.ok, summary.failed, summary.audio_s = assembled.ok, assembled.failed, assembled.audio_s
        summary.missing = assembled.missing
        summary.wall_s = time.perf_counter() - started
        store.write_json("summary.json", summary.to_dict())
    log.info("job done: %s", summary.text().replace("\n", "; "))
    return summary


@dataclass
class _RunningJob:
    """Everything one run of the pipeline needs, decided before Ray starts."""

    listed: Inputs
    store: JobStore
    settings: Settings
    options: JobOptions
    words: list[str]  # the parsed hotwords
    fingerprint: str
    run_id: str
    done: dict  # records already written under this fingerprint, by key
    summary: JobSummary
    fault: dict[str, str]
    started_at: float  # wall clock, compared with the actors' (same cluster)


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
    (measured, docs/jobs.md). CPU actors take 4 files a call so that the last calls of a
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


def _execute(ray, job: _RunningJob) -> dict[str, str]:
    """Run the Ray pipeline; write parts as batches come back. Returns each input's key when it
    succeeded now or earlier (the assembly's map)."""
    import ray.data  # deliberate lazy import: Ray is an optional extra

    opts, summary, listed, fingerprint = job.options, job.summary, job.listed, job.fingerprint
    quiet = opts.quiet

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    context.execution_options.preserve_order = False  # write whatever is done first
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    layout = _layout(ray, job.settings, opts.actors, opts.threads_per_actor, opts.files_per_call,
                     opts.batch_size)
    summary.actors, summary.layout = layout.actors, layout.text
    log.info("job: %d input(s), %d already done under settings %s; %d actor(s) (%s), %d file(s) a call",
             len(listed.paths), len(job.done), fingerprint, layout.actors, layout.text, layout.files_per_call)

    keys: dict[str, str] = {}
    if not listed.paths:
        return keys
    # Longest first (by size): the last batches are the short ones, so actors finish together.
    order = sorted(range(len(listed.paths)), key=lambda i: (-_size(listed.paths[i]), i))
    items = [{"path": listed.paths[i], "index": i} for i in order]
    blocks = max(min(len(items), 4 * layout.actors), math.ceil(len(items) / READ_BLOCK_FILES))
    # One ledger for the run: which inputs took a worker down, and how often (asr.jobs.attempts).
    ledger = ray.remote(num_cpus=0)(AttemptLedger).remote()
    try:
        return _run_pipeline(ray, job, layout, items, blocks, ledger)
    finally:
        ray.kill(ledger)


def _run_pipeline(ray, job: _RunningJob, layout: Layout, items: list[dict], blocks: int,
                  ledger) -> dict[str, str]:
    opts, summary, listed, fingerprint = job.options, job.summary, job.listed, job.fingerprint
    quiet = opts.quiet
    keys: dict[str, str] = {}
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    # Two files a read call: decoded audio leaves a read task in small blocks, as it is ready.
    dataset = dataset.map_batches(read_batch, batch_size=2, num_cpus=READ_TASK_CPUS,
                                  fn_kwargs={"done": frozenset(job.done), "fingerprint": fingerprint,
                                             "input_settings": job.settings.input, "ledger": ledger,
                                             "max_attempts": opts.max_attempts, "fault": job.fault})
    actor_level = "WARNING" if quiet or job.settings.log_level != "DEBUG" else "DEBUG"
    dataset = dataset.map_batches(
        RecognitionActor, batch_size=layout.files_per_call,
        # CPU actors get their next batch when they return one: batches go to whichever actor is
        # free, longest first, so the actors end together (two in flight ended 9 s apart in 40 s).
        # A GPU actor keeps one waiting: its calls are short, so the hand-over gap would show.
        compute=ray.data.ActorPoolStrategy(size=layout.actors,
                                           max_tasks_in_flight_per_actor=layout.in_flight),
        fn_constructor_kwargs={"settings": layout.settings, "hotwords": job.words, "fingerprint": fingerprint,
                               "run_id": job.run_id, "fault": job.fault, "log_level": actor_level,
                               "ledger": ledger, "max_attempts": opts.max_attempts},
        **layout.resources)
    seen: set[str] = set()
    writer = _PartWriter(job.store, opts.flush_s, PART_MAX_RECORDS)
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
            writer.add(batch["record"][i], f"{path}\t{key}\t{job.run_id}")
        writer.tick()
        summary.model_load_s = max(summary.model_load_s, float(max(batch["load_s"], default=0.0)))
        summary.actor_busy_s += float(sum(batch["call_s"]))
        ready = [float(t) for t in batch["ready_at"] if t > 0]
        if ready:
            first = min(ready) - job.started_at
            summary.ready_s = min(summary.ready_s, first) if summary.ready_s else first
        if opts.progress is not None:
            opts.progress(len(seen), len(listed.paths))
    writer.flush()
    return keys


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _assemble(store: JobStore, listed: Inputs, keys: dict[str, str], run_id: str,
              formats: Sequence[str], min_s: float = 0.0) -> Assembly:
    folder = store.folder / "transcripts"

    def write_formats(index: int, record: dict) -> None:
        if record.get("error") is not None:
            return
        result = result_from_record(record)
        stem = folder / listed.labels[index]
        stem.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            stem.with_name(f"{stem.name}.{fmt}").write_text(render(result, fmt, min_s), encoding="utf-8")

    return store.assemble(listed.paths, keys, run_id, write_formats if formats else None)


def result_from_record(record: dict) -> Result:
    """A Result from a job record (for the per-file formats)."""
    names = {f.name for f in dataclasses.fields(Result)} - {"segments", "token_ids"}
    segments = []
    for s in record.get("segments") or []:
        words = [Word(**w) for w in s["words"]] if s.get("words") is not None else None
        segments.append(Segment(s["start_s"], s["end_s"], s["text"], s.get("confidence", 0.0), words,
                                s.get("speaker"), s.get("raw_text")))
    return Result(**{k: v for k, v in record.items() if k in names}, segments=segments)
