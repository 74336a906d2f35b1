"""`python -m benchmarks.load`: many OpenAI clients at once against a real server, shared batching on and off.

The API promises that clients sharing the server share its batches. This measures what that is
worth where it counts, at the HTTP door, with the official `openai` client as users call it:

  concurrent  N clients at once (`--clients`), each sending its `--requests` files back to back,
              to a server with cross-request batching as configured (`batching.max_wait_ms`)
  serial      the very same requests, one client in a row, to a server whose engine has
              `batching.max_wait_ms: 0`: each request alone with its own batches, fired at once,
              which is what the product did before batching was shared (one job at a time)

Both servers run in this process on free ports and share the loaded model weights (they are
never busy at the same time); their engines are otherwise identical, with the settings a server
would read (config.yaml or `--config`, then SEACO_ variables: `SEACO_BATCH_SIZE=1 python -m
benchmarks.load` measures batch size 1), the feature cache off. `max_wait_ms: 0` alone is not
"batching off": segments that wait while the model is busy still share a batch, so the baseline
also sends one request at a time.

The workload is a mix of short (`--short-s`, 5 s) and long (`--long-s`, 30-60 s) synthetic
speech-like files (the benchmark's clips, tuning/bench_clips.py), half of each, the same files in
both modes. After an untimed warm-up, rounds alternate the two modes (`--repeats`, the order
flipping every round) so drift on a shared machine hits both alike.

Reported per mode: throughput (audio seconds per wall second; median of rounds), p50/p95 request
latency over every request of every round (and for the short files alone; numpy's linear
percentiles), and batch fill (model units per batch, from the batcher's statistics before and
after each run). The targets are printed beside the measured values: on a CPU no throughput
loss against one client in a row (the paired per-round ratio concurrent/serial >= 0.95), with
the short files' p95 latency under load shown; on a GPU concurrent >= 3x serial.

`--url` drives a server that is already running instead: both modes then go to that one server
(serial is then that server's own batching, one client in a row) and batch fill is not
available, as an outside process cannot read the batcher's statistics.

Progress goes to stderr, the table to stdout; `--json OUT` saves everything. Exit 0 when every
request succeeded, 1 when any failed (the figures are then not comparable), 2 on bad options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.clips import Clip, ensure_clips

MODES = ("concurrent", "serial")
CPU_RATIO_TARGET = 0.95  # "no throughput loss", with room for this machine's run-to-run noise
GPU_RATIO_TARGET = 3.0
MAX_DISTINCT_CLIPS = 8  # files of each kind; requests beyond that reuse them (the feature cache is off)
REQUEST_TIMEOUT_S = 1800.0
MODEL_NAME = "seaco-paraformer"
SERVER_PUNCTUATION = "server"  # `--punctuation` without a value: keep the server's own setting

Audio = dict[Path, bytes]  # every file's bytes, read once so no request times a disk read


# ---- results ---------------------------------------------------------------------------------


@dataclass
class Job:
    """One request of the workload: which simulated client sends which file."""

    client: int
    number: int  # its place in that client's sequence
    clip: Clip
    short: bool


@dataclass
class Sample:
    """One request's outcome as the client saw it."""

    client: int
    short: bool
    audio_s: float
    latency_s: float
    ok: bool = True
    error: str | None = None


@dataclass
class BatchCounts:
    """The batcher's counters moved by one run (the difference of two `BatcherStats`)."""

    batches: int = 0
    units: int = 0
    shared_batches: int = 0

    @property
    def fill(self) -> float | None:
        return self.units / self.batches if self.batches else None

    def __add__(self, other: BatchCounts) -> BatchCounts:
        return BatchCounts(self.batches + other.batches, self.units + other.units,
                           self.shared_batches + other.shared_batches)


@dataclass
class ModeRun:
    """One mode in one round."""

    mode: str
    round: int
    wall_s: float
    samples: list[Sample]
    counts: BatchCounts | None  # None: the batcher could not be read (--url)
    busy_cores_before: float | None = None

    @property
    def audio_s(self) -> float:
        return sum(s.audio_s for s in self.samples if s.ok)

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(not s.ok for s in self.samples)

    def to_dict(self) -> dict[str, Any]:
        counts = None if self.counts is None else {**asdict(self.counts), "fill": _round(self.counts.fill)}
        return {"mode": self.mode, "round": self.round, "wall_s": round(self.wall_s, 3),
                "audio_s": round(self.audio_s, 3), "throughput": round(self.throughput, 3),
                "errors": self.errors, "batches": counts, "busy_cores_before": self.busy_cores_before,
                "requests": [{**asdict(s), "latency_s": round(s.latency_s, 4)} for s in self.samples]}


@dataclass
class ModeSummary:
    """A mode over all rounds: throughput is the median of rounds, latencies pool every request."""

    mode: str
    description: str
    requests: int
    errors: int
    throughput: float
    throughput_rounds: list[float]
    p50_s: float | None
    p95_s: float | None
    short_p50_s: float | None
    short_p95_s: float | None
    batch_fill: float | None
    batches: int | None
    units: int | None
    shared_batches: int | None


@dataclass
class Target:
    """One of the issue's targets, beside what was measured."""

    name: str
    wanted: str
    measured: str
    status: str  # met, missed, shown, not measured (...)


@dataclass
class LoadReport:
    command: str
    when: str
    machine: dict[str, Any]
    server: dict[str, Any]
    workload: dict[str, Any]
    modes: dict[str, ModeSummary]
    ratio: float | None  # median over rounds of concurrent/serial throughput, paired by round
    ratio_rounds: list[float]
    targets: list[Target]
    notes: list[str]
    runs: list[ModeRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "when": self.when, "machine": self.machine, "server": self.server,
                "workload": self.workload, "modes": {k: _rounded(asdict(v)) for k, v in self.modes.items()},
                "ratio_concurrent_over_serial": _round(self.ratio),
                "ratio_rounds": [round(r, 3) for r in self.ratio_rounds],
                "targets": [asdict(t) for t in self.targets], "notes": self.notes,
                "runs": [r.to_dict() for r in self.runs]}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _rounded(data: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else
            [round(x, 3) for x in v] if isinstance(v, list) else v for k, v in data.items()}


# ---- options ---------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"expected 0.5 to 600 seconds, got {text!r}")
    return value


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split("-")) if "-" in text else (float(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in seconds, e.g. 30-60, got {text!r}") from None
    if not 0.5 <= low <= high <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0.5 <= MIN <= MAX <= 3600, got {text!r}")
    return low, high


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--model", default="random:large",
                   help="ModelScope id, local model directory, or random:tiny|large (default random:large)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--clients", type=_positive, default=8, help="clients at once (default 8)")
    p.add_argument("--requests", type=_positive, default=2,
                   help="requests per client per round, short and long files alternating (default 2)")
    p.add_argument("--short-s", type=_seconds, default=5.0, help="length of the short files (default 5)")
    p.add_argument("--long-s", type=_range, default=(30.0, 60.0), metavar="MIN-MAX",
                   help="length range of the long files (default 30-60)")
    p.add_argument("--repeats", type=_positive, default=3, help="rounds, each running both modes (default 3)")
    p.add_argument("--json", metavar="OUT", help="write the full report, every request included, to OUT")
    p.add_argument("--url", help="an already running server (e.g. http://127.0.0.1:7860) instead of "
                   "starting one here; batch fill is then not available")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY") or "none",
                   help="key for --url servers with server.api_keys (default $OPENAI_API_KEY)")
    p.add_argument("--punctuation", nargs="?", const=SERVER_PUNCTUATION, default="off", metavar="MODEL",
                   help="default off (measures recognition); bare --punctuation keeps the server's "
                   "own setting; or a model (random:large, a directory, a ModelScope id)")
    p.add_argument("--vad", choices=("silero", "fsmn", "energy", "off"),
                   help="speech detection (default: the server's own setting)")
    p.add_argument("--config", help="config.yaml for the server's settings (default: the project's)")
    return p


# ---- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    """A server to send requests to; `engine` is None for one running elsewhere (--url)."""

    url: str
    engine: Any = None
    handle: Any = None

    def counts(self) -> Any:
        return None if self.engine is None else self.engine.batcher.stats()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.should_exit = True
            self.handle.thread.join(10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_settings(args: argparse.Namespace, max_wait_ms: float | None = None):
    """The project's settings (config.yaml, environment) as a server would read them, with this
    run's choices. The feature cache is off: every round re-sends the same files, and a cache
    hit would flatter whichever mode came second."""
    from asr.settings import load_settings

    overrides: dict[str, Any] = {"model": args.model, "device": args.device, "feature_cache.enable": False,
                                 "server.api": True, "server.api_keys": "", "vad": args.vad,
                                 "batching.max_wait_ms": max_wait_ms}
    if args.punctuation != SERVER_PUNCTUATION:
        overrides["punctuation"] = args.punctuation
    return load_settings(args.config, overrides=overrides)


def start_servers(args: argparse.Namespace) -> tuple[Server, Server]:
    """The batching server and the one-at-a-time server, on one loaded model."""
    import api
    from asr.engine import Engine

    shared = Engine(server_settings(args))
    alone = Engine(server_settings(args, max_wait_ms=0.0), loaded=shared.loaded, punctuator=shared.punctuator)
    servers = []
    for engine in (shared, alone):
        port = _free_port()
        handle = api.serve(api.build_api(engine), "127.0.0.1", port)
        servers.append(Server(f"http://127.0.0.1:{port}", engine, handle))
    return servers[0], servers[1]


def server_description(server: Server) -> dict[str, Any]:
    """What the report says about the server: its settings, or what /health tells of a remote one."""
    if server.engine is None:
        import httpx

        try:
            health = httpx.get(server.url.rstrip("/") + "/health", timeout=30).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OSError(f"no server answering at {server.url}/health: {exc}") from None
        return {"where": server.url, "model": health.get("model"), "device": health.get("device"),
                "batching_max_wait_ms": "the server's own", "batch_size": "the server's own"}
    engine = server.engine
    s = engine.settings
    return {"where": "in-process (api.build_api + api.serve on 127.0.0.1)", "model": s.model,
            "device": str(engine.loaded.device), "batch_size": s.batch_size,
            "batching_max_wait_ms": s.batching.max_wait_ms, "vad": s.vad, "punctuation": s.punctuation,
            "timestamps": s.timestamps, "precision": engine.precision,
            "cpu_threads": s.cpu_threads or engine.loaded.threads, "feature_cache": False,
            "padding_limit_pct": s.padding_limit_pct}


# ---- the workload ----------------------------------------------------------------------------


def build_jobs(clients: int, requests: int, shorts: Sequence[Clip], longs: Sequence[Clip]) -> list[Job]:
    """Each client alternates short and long files, half the clients starting with a long one,
    so short files always arrive while long ones are in the server."""
    jobs = []
    used = {True: 0, False: 0}
    for client in range(clients):
        for number in range(requests):
            short = (client + number) % 2 == 0
            pool = shorts if short else longs
            jobs.append(Job(client, number, pool[used[short] % len(pool)], short))
            used[short] += 1
    return jobs


def workload_clips(root: Path, args: argparse.Namespace) -> tuple[list[Clip], list[Clip]]:
    """The short and long clips (synthesised once under `root`, reused after)."""
    shorts_needed = sum((c + n) % 2 == 0 for c in range(args.clients) for n in range(args.requests))
    longs_needed = args.clients * args.requests - shorts_needed
    shorts = ensure_clips(root, min(MAX_DISTINCT_CLIPS, max(1, shorts_needed)),
                          seconds=(args.short_s, args.short_s))
    longs = ensure_clips(root, min(MAX_DISTINCT_CLIPS, max(1, longs_needed)), seconds=args.long_s)
    return shorts, longs


def describe_workload(jobs: Sequence[Job], args: argparse.Namespace) -> dict[str, Any]:
    shorts = [j for j in jobs if j.short]
    longs = [j for j in jobs if not j.short]
    return {"clients": args.clients, "requests_per_client": args.requests, "rounds": args.repeats,
            "short_requests": len(shorts), "long_requests": len(longs),
            "short_s": args.short_s, "long_s": list(args.long_s),
            "audio_s_per_round": round(sum(j.clip.duration_s for j in jobs), 3),
            "files": sorted({str(j.clip.path) for j in jobs})}


# ---- the clients -----------------------------------------------------------------------------


def make_client(url: str, api_key: str):
    """One simulated client: the official client, no retries (a refusal must show, not be hidden)."""
    from openai import OpenAI

    return OpenAI(base_url=url.rstrip("/") + "/v1", api_key=api_key, max_retries=0,
                  timeout=REQUEST_TIMEOUT_S)


def send(client, job: Job, audio: bytes) -> Sample:
    """One transcription request, timed from the call to the parsed answer."""
    started = time.perf_counter()
    try:
        client.audio.transcriptions.create(model=MODEL_NAME, file=(job.clip.name, audio, "audio/wav"),
                                           language="zh", response_format="json")
    except Exception as exc:  # noqa: BLE001 - any failure is recorded and reported, never fatal
        return Sample(job.client, job.short, job.clip.duration_s, time.perf_counter() - started,
                      ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    return Sample(job.client, job.short, job.clip.duration_s, time.perf_counter() - started)


def run_concurrent(url: str, api_key: str, jobs: Sequence[Job], audio: Audio) -> tuple[float, list[Sample]]:
    """Every client on its own thread, released together; wall time until the last answer."""
    by_client: dict[int, list[Job]] = {}
    for job in jobs:
        by_client.setdefault(job.client, []).append(job)
    samples: list[Sample] = []
    lock = threading.Lock()
    gate = threading.Barrier(len(by_client) + 1)

    def client_loop(own: list[Job]) -> None:
        client = make_client(url, api_key)
        gate.wait()
        for job in own:
            sample = send(client, job, audio[job.clip.path])
            with lock:
                samples.append(sample)

    threads = [threading.Thread(target=client_loop, args=(own,), name=f"load-client-{n}", daemon=True)
               for n, own in by_client.items()]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, samples


def run_serial(url: str, api_key: str, jobs: Sequence[Job], audio: Audio) -> tuple[float, list[Sample]]:
    """The same requests from one client, one after another, in the clients' interleaved order."""
    client = make_client(url, api_key)
    ordered = sorted(jobs, key=lambda j: (j.number, j.client))
    started = time.perf_counter()
    samples = [send(client, job, audio[job.clip.path]) for job in ordered]
    return time.perf_counter() - started, samples


def counts_between(before: Any, after: Any) -> BatchCounts | None:
    if before is None or after is None:
        return None
    return BatchCounts(after.batches - before.batches, after.units - before.units,
                       after.shared_batches - before.shared_batches)


# ---- the run ---------------------------------------------------------------------------------


def _progress(message: str) -> None:
    sys.stderr.write(f"[load {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def warm_up(servers: Sequence[Server], api_key: str, jobs: Sequence[Job], audio: Audio) -> None:
    """Untimed: the shortest and longest file through each server, so lazy initialisation, the
    largest shapes and the HTTP stack's first connection are paid before anything is measured."""
    by_length = sorted(jobs, key=lambda j: j.clip.duration_s)
    for server in servers:
        client = make_client(server.url, api_key)
        for job in {id(j.clip): j for j in (by_length[0], by_length[-1])}.values():
            sample = send(client, job, audio[job.clip.path])
            if not sample.ok:
                raise RuntimeError(f"warm-up request to {server.url} failed: {sample.error}")


def run_rounds(servers: dict[str, Server], api_key: str, jobs: Sequence[Job], audio: Audio,
               repeats: int, busy: Callable[[], float | None]) -> list[ModeRun]:
    """Both modes each round, the order flipped every round, so neither always runs first."""
    runners = {"concurrent": run_concurrent, "serial": run_serial}
    runs = []
    for number in range(1, repeats + 1):
        order = MODES if number % 2 else MODES[::-1]
        for mode in order:
            server = servers[mode]
            busy_before = busy()
            before = server.counts()
            wall, samples = runners[mode](server.url, api_key, jobs, audio)
            run = ModeRun(mode, number, wall, samples, counts_between(before, server.counts()), busy_before)
            runs.append(run)
            fill = "n/a" if run.counts is None or run.counts.fill is None else f"{run.counts.fill:.2f}"
            _progress(f"round {number}/{repeats} {mode}: {run.audio_s:.0f} s of audio in {wall:.1f} s = "
                      f"{run.throughput:.1f} audio s/s, batch fill {fill}, {run.errors} error(s)"
                      + (f", other processes used {busy_before:.1f} cores before" if busy_before else ""))
    return runs


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(mode: str, description: str, runs: Sequence[ModeRun]) -> ModeSummary:
    samples = [s for r in runs for s in r.samples]
    ok = [s.latency_s for s in samples if s.ok]
    short = [s.latency_s for s in samples if s.ok and s.short]
    total = None
    if runs and all(r.counts is not None for r in runs):
        total = sum((r.counts for r in runs), BatchCounts())
    rounds = [r.throughput for r in runs]
    return ModeSummary(
        mode=mode, description=description, requests=len(samples), errors=sum(not s.ok for s in samples),
        throughput=statistics.median(rounds) if rounds else 0.0, throughput_rounds=rounds,
        p50_s=percentile(ok, 50), p95_s=percentile(ok, 95),
        short_p50_s=percentile(short, 50), short_p95_s=percentile(short, 95),
        batch_fill=None if total is None else total.fill, batches=None if total is None else total.batches,
        units=None if total is None else total.units,
        shared_batches=None if total is None else total.shared_batches)


def paired_ratios(runs: Sequence[ModeRun]) -> list[float]:
    """concurrent/serial throughput within each round (same minutes of the machine's life)."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run.round, {})[run.mode] = run.throughput
    return [r["concurrent"] / r["serial"] for r in by_round.values()
            if r.get("serial") and "concurrent" in r]


def targets(device: str, ratio: float | None, summaries: dict[str, ModeSummary],
            short_s: float) -> list[Target]:
    """The issue's targets: which apply depends on the device the model ran on."""
    on_gpu = device.startswith("cuda")
    shown = "-" if ratio is None else f"{ratio:.2f}x"
    if on_gpu:
        cpu = Target("CPU: no throughput loss", f"concurrent/serial >= {CPU_RATIO_TARGET:g}", shown,
                     "not measured (a GPU run)")
        gpu = Target("GPU: throughput", f"concurrent/serial >= {GPU_RATIO_TARGET:g}", shown,
                     "met" if ratio is not None and ratio >= GPU_RATIO_TARGET else "missed")
    else:
        cpu = Target("CPU: no throughput loss", f"concurrent/serial >= {CPU_RATIO_TARGET:g}", shown,
                     "met" if ratio is not None and ratio >= CPU_RATIO_TARGET else "missed")
        gpu = Target("GPU: throughput", f"concurrent/serial >= {GPU_RATIO_TARGET:g}", "-",
                     "not measured (no GPU)")
    loaded, alone = summaries["concurrent"].short_p95_s, summaries["serial"].short_p95_s
    measured = "-" if loaded is None else (
        f"{loaded:.2f} s under load" + ("" if alone is None else f" (one client in a row: {alone:.2f} s)"))
    latency = Target(f"p95 latency of {short_s:g} s files under load", "shown", measured, "shown")
    return [cpu, latency, gpu]


def machine() -> dict[str, Any]:
    """The CPU and versions every figure belongs to."""
    import torch

    from asr.system.cpu import detect_cpu

    cpu = detect_cpu()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu.model or platform.processor() or platform.machine(),
            "cpu_family": cpu.family, "cpu_model": cpu.model_number, "cpu_features": cpu.matrix_features,
            "cores": os.cpu_count(),
            "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def thread_pool_note(clients: int) -> str | None:
    """The API waits for the engine on its own pool of api.API_THREADS threads: past that many
    clients, requests wait in the server before their audio reaches the batcher."""
    import api

    if clients <= api.API_THREADS:
        return None
    return (f"{clients} clients, but the API runs at most {api.API_THREADS} requests in the engine at "
            "once (api.API_THREADS); the others wait in the server before their audio reaches the batcher")


def build_report(args: argparse.Namespace, argv: Sequence[str], server_info: dict[str, Any],
                 jobs: Sequence[Job], runs: list[ModeRun], remote: bool) -> LoadReport:
    wait = server_info["batching_max_wait_ms"]
    descriptions = {
        "concurrent": f"{args.clients} clients at once, shared batching (max_wait_ms "
                      + (f"{wait:g})" if isinstance(wait, (int, float)) else f"{wait})"),
        "serial": "one client in a row, same server" if remote else
                  "one client in a row, each request its own batches (max_wait_ms 0)"}
    summaries = {m: summarize(m, descriptions[m], [r for r in runs if r.mode == m]) for m in MODES}
    ratios = paired_ratios(runs)
    ratio = statistics.median(ratios) if ratios else None
    notes = []
    if remote:
        notes.append("--url: batch fill not available (the server's batcher statistics are not "
                     "exposed over HTTP); serial mode used that same server's own batching settings; "
                     "the CPU named above is this client's, the device the server's (/health)")
    else:
        note = thread_pool_note(args.clients)
        if note:
            notes.append(note)
    notes.append("the clients run in this process too, on the same cores as the server, in both modes")
    failed = sum(s.errors for s in summaries.values())
    if failed:
        notes.append(f"{failed} request(s) failed; see runs[].requests[].error in the JSON")
    return LoadReport(
        command="python -m benchmarks.load " + " ".join(argv), when=datetime.now(timezone.utc).isoformat(),
        machine=machine(), server=server_info, workload=describe_workload(jobs, args), modes=summaries,
        ratio=ratio, ratio_rounds=ratios,
        targets=targets(str(server_info.get("device") or ""), ratio, summaries, args.short_s),
        notes=notes, runs=runs)


# ---- output ----------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(report: LoadReport) -> str:
    """The markdown table the README quotes, then the ratio, the targets and the notes."""
    w = report.workload
    m = report.machine
    lines = [f"command: {report.command}",
             f"CPU: {m['cpu']} ({m['cores']} cores)" + (f", GPU: {m['gpu']}" if m["gpu"] else ""),
             f"server: {report.server['model']} on {report.server['device']}, "
             f"batch_size {report.server.get('batch_size')}, vad {report.server.get('vad', '?')}, "
             f"punctuation {report.server.get('punctuation', '?')}",
             f"workload per round: {w['clients']} clients x {w['requests_per_client']} requests = "
             f"{w['short_requests']} short ({w['short_s']:g} s) + {w['long_requests']} long "
             f"({w['long_s'][0]:g}-{w['long_s'][1]:g} s) files, {w['audio_s_per_round']:.0f} s of audio; "
             f"{w['rounds']} round(s), modes alternating", "",
             "| mode | throughput (audio s/s) | p50 s | p95 s | p50 s, short | p95 s, short "
             "| batch fill (units/batch) | shared batches | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for summary in report.modes.values():
        rounds = ", ".join(f"{t:.1f}" for t in summary.throughput_rounds)
        shared = "-" if summary.shared_batches is None else f"{summary.shared_batches}/{summary.batches}"
        lines.append(f"| {summary.description} | {summary.throughput:.1f} ({rounds}) | {_s(summary.p50_s)} "
                     f"| {_s(summary.p95_s)} | {_s(summary.short_p50_s)} | {_s(summary.short_p95_s)} "
                     f"| {_s(summary.batch_fill)} | {shared} | {summary.errors}/{summary.requests} |")
    ratio_rounds = ", ".join(f"{r:.2f}" for r in report.ratio_rounds)
    lines += ["", f"throughput ratio concurrent/serial: {_s(report.ratio)} "
                  f"(median of the rounds' ratios: {ratio_rounds})", "", "targets:"]
    lines += [f"  {t.name}: wanted {t.wanted}; measured {t.measured}: {t.status}" for t in report.targets]
    busy = [f"{r.round}{r.mode[0]} {r.busy_cores_before:.1f}" for r in report.runs
            if r.busy_cores_before is not None]
    if busy:
        lines.append("cores busy just before each run (round, c=concurrent s=serial): " + ", ".join(busy))
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


# ---- entry point -----------------------------------------------------------------------------


def _quiet_logs() -> None:
    """One engine log line per request would bury the progress lines: warnings only."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)


def open_servers(args: argparse.Namespace) -> dict[str, Server]:
    """The server each mode sends to: two in-process ones, or the one at --url for both."""
    if args.url:
        remote = Server(args.url)
        return {"concurrent": remote, "serial": remote}
    _progress(f"starting two in-process servers on {args.model} (a random model is generated on first use)")
    shared, alone = start_servers(args)
    return {"concurrent": shared, "serial": alone}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    _quiet_logs()
    from asr.models import ModelLoadError
    from asr.settings import PROJECT_ROOT, SettingsError
    from benchmarks.bench import busy_cores

    by_mode: dict[str, Server] = {}
    try:
        by_mode = open_servers(args)
        info = server_description(by_mode["concurrent"])
        shorts, longs = workload_clips(PROJECT_ROOT / ".cache" / "load", args)
        jobs = build_jobs(args.clients, args.requests, shorts, longs)
        audio = {clip.path: clip.path.read_bytes() for clip in {j.clip.path: j.clip for j in jobs}.values()}
        _progress(f"{len(jobs)} requests per mode per round, {sum(j.clip.duration_s for j in jobs):.0f} s "
                  f"of audio; warming up (untimed)")
        servers = list({id(s): s for s in by_mode.values()}.values())
        warm_up(servers, args.api_key, jobs, audio)
        runs = run_rounds(by_mode, args.api_key, jobs, audio, args.repeats, lambda: busy_cores(0.5))
    except (SettingsError, ModelLoadError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in {id(s): s for s in by_mode.values()}.values():
            server.close()
    report = build_report(args, argv, info, jobs, runs, remote=bool(args.url))
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) + "\n",
                                   encoding="utf-8")
        _progress(f"report written to {args.json}")
    return 1 if any(s.errors for s in report.modes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
