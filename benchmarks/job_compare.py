"""`python -m benchmarks.job_compare`: the Ray batch job against `asr transcribe`, same files, one run.

Both sides recognise the same synthetic clip set (tuning/bench_clips.py) with the same settings
on this machine's CPUs:

  transcribe  one Engine in this process using every core (what `asr transcribe` runs), its
              model loaded once before timing; with --preload also as `--preload-audio` runs it
  job NxT     `run_job` on a local Ray cluster started here with all cores: N CPU actors of T
              threads each (`--layouts 2x1,1x2`), a fresh output folder each time (nothing skipped)

Reported per mode: audio seconds per wall second two ways. *steady*: once a model is loaded,
for transcribe its `Engine.run` call, for the job its wall time after the first actor had its
model loaded (the other actors' loads, the reading, the tail where one actor finishes alone and
the final results.jsonl all stay in); *end to end*: transcribe's model load plus its run, the
job's Ray start plus its whole `run_job`. Rounds alternate the modes (the order rotating every
round) so load from other processes on a shared machine hits all alike; the median of rounds is
shown, with the job's overhead against transcribe (1 - job / transcribe, steady).

Exit 0 when every file succeeded in every run, 1 otherwise; `--json OUT` saves the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from asr.settings import PROJECT_ROOT, load_settings
from benchmarks.clips import ensure_clips


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.job_compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:large", help="model (default random:large)")
    parser.add_argument("--vad", default="silero", help="speech detection (default silero)")
    parser.add_argument("--count", type=int, default=24, help="synthetic clips (default 24)")
    parser.add_argument("--seconds", type=float, nargs=2, default=(5.0, 40.0), metavar=("MIN", "MAX"),
                        help="clip lengths (default 5 40)")
    parser.add_argument("--layouts", default="2x1,1x2",
                        help="job layouts ACTORSxTHREADS, optionally then bBATCH (the actors' batch "
                             "size) and fFILES (files per actor call): 2x1b1f4 (default 2x1,1x2)")
    parser.add_argument("--files-per-call", type=int, help="the job's files per actor call (its default)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--preload", action="store_true",
                        help="also measure transcribe with --preload-audio (decoding on worker threads)")
    parser.add_argument("--json", type=Path, help="save the figures here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    layouts = [item.strip() for item in args.layouts.split(",") if item.strip()]
    cores = os.cpu_count() or 1
    clips = ensure_clips(PROJECT_ROOT / ".cache" / "bench", args.count, seconds=tuple(args.seconds))
    files = [str(c.path) for c in clips]
    audio_s = sum(c.duration_s for c in clips)
    settings = load_settings(PROJECT_ROOT / "tests" / "empty_config.yaml", environ={}, overrides={
        "model": args.model, "device": "cpu", "vad": args.vad, "punctuation": "off", "cpu_threads": cores,
        "feature_cache.enable": False})
    print(f"{len(files)} clips, {audio_s:.0f} s of audio; {args.model}, vad {args.vad}, {cores} CPU(s) "
          f"({_cpu_name()})", file=sys.stderr)

    import ray

    from asr.engine import Engine
    from asr.jobs.driver import run_job

    started = time.perf_counter()
    engine = Engine(settings)
    load_s = time.perf_counter() - started
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING)
    ray_start_s = time.perf_counter() - started
    modes = ["transcribe"] + (["transcribe-preload"] if args.preload else []) + [
        f"job {layout}" for layout in layouts]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    failures = 0
    try:
        for round_number in range(args.repeats):
            order = modes[round_number % len(modes):] + modes[:round_number % len(modes)]
            for mode in order:
                if mode.startswith("transcribe"):
                    t0 = time.perf_counter()
                    results = engine.transcribe(files, preload=mode.endswith("preload"))
                    wall = time.perf_counter() - t0
                    failures += sum(not r.ok for r in results)
                    figures = {"steady_s": wall, "end_to_end_s": wall + load_s}
                else:
                    layout, _, per_call = mode.split()[1].partition("f")
                    layout, _, batch = layout.partition("b")
                    actors, threads = (int(n) for n in layout.split("x"))
                    with tempfile.TemporaryDirectory(prefix="job-compare-") as out:
                        summary = run_job(files, out, settings, actors=actors, threads_per_actor=threads,
                                          files_per_call=int(per_call) if per_call else args.files_per_call,
                                          batch_size=int(batch) if batch else None, quiet=True)
                    failures += summary.failed
                    figures = {"steady_s": summary.wall_s - summary.ready_s,
                               "end_to_end_s": ray_start_s + summary.wall_s,
                               "ready_s": summary.ready_s, "model_load_s": summary.model_load_s,
                               "actor_busy_s": summary.actor_busy_s}
                figures = {k: round(v, 2) for k, v in figures.items()}
                figures["steady_x"] = round(audio_s / figures["steady_s"], 2)
                figures["end_to_end_x"] = round(audio_s / figures["end_to_end_s"], 2)
                runs[mode].append(figures)
                print(f"round {round_number + 1} {mode:<12} {json.dumps(figures)}", file=sys.stderr)
    finally:
        ray.shutdown()

    base = statistics.median(r["steady_x"] for r in runs["transcribe"])
    print(f"{'mode':<12} {'steady x RT':>12} {'end-to-end x RT':>16} {'overhead (steady)':>18}")
    table = {}
    for mode in modes:
        steady = statistics.median(r["steady_x"] for r in runs[mode])
        end = statistics.median(r["end_to_end_x"] for r in runs[mode])
        overhead = 1 - steady / base if base else 0.0
        table[mode] = {"steady_x": steady, "end_to_end_x": end, "overhead_pct": round(100 * overhead, 1),
                       "runs": runs[mode]}
        shown = "" if mode == "transcribe" else f"{overhead:.1%}"
        print(f"{mode:<12} {steady:>12.2f} {end:>16.2f} {shown:>18}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": _cpu_name(), "cores": cores, "model": args.model,
                                         "vad": args.vad, "files": len(files), "audio_s": round(audio_s, 1),
                                         "model_load_s": round(load_s, 2), "modes": table}, indent=2) + "\n")
    return 0 if failures == 0 else 1


def _cpu_name() -> str:
    from asr.system.cpu import detect_cpu

    return detect_cpu().model or platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
