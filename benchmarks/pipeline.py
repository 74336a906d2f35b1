"""Measure what PRELOAD_AUDIO and the feature cache buy, as ratios taken in one run.

    python -m benchmarks.pipeline [--model random:large] [--device auto] [--files 12]
                                    [--repeats 2] [--batch-size N] [--json OUT]

PRELOAD_AUDIO: the same clip set with preload off and on, alternating, `repeats` times each; the
engine reports `wait_s`, the time the model stood idle waiting for input, and the wall time.
Feature cache: a first run and a repeat run of the same files on a fresh cache; the figure is
decode + feature time, which a hit should all but remove.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

from asr.engine import Engine
from asr.settings import PROJECT_ROOT, SettingsError, load_settings
from asr.system.console import configure_logging
from benchmarks.clips import ensure_clips

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random:large")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--files", type=int, default=12, help="synthetic clips of 3-60 s")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--json", help="write every measurement here")
    return parser


def measure_preload(engine: Engine, files: list[Path], repeats: int, batch_size: int | None) -> dict:
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in ("off", "on"):
            stats = engine.run(files, batch_size=batch_size, preload=mode == "on", use_cache=False).stats
            runs[mode].append(stats.to_dict())
            print(f"  preload {mode:3s}: wall {stats.wall_s:7.2f} s  model waited {stats.wait_s:6.2f} s  "
                  f"{stats.speed:6.1f}x real time", file=sys.stderr)
    summary = {mode: {"wall_s": statistics.median(r["wall_s"] for r in rs),
                      "wait_s": statistics.median(r["wait_s"] for r in rs)} for mode, rs in runs.items()}
    off, on = summary["off"], summary["on"]
    summary["wall_ratio_off_over_on"] = round(off["wall_s"] / on["wall_s"], 3) if on["wall_s"] else None
    summary["wait_ratio_off_over_on"] = round(off["wait_s"] / on["wait_s"], 3) if on["wait_s"] else None
    return {"runs": runs, "summary": summary}


def measure_cache(engine: Engine, files: list[Path], batch_size: int | None) -> dict:
    settings = load_settings(engine.settings.config_path, environ={}, overrides={
        "model": engine.settings.model, "device": engine.settings.device,
        "feature_cache.enable": True, "feature_cache.dir": "", "punctuation": "off",
    })
    cached = Engine(settings, loaded=engine.loaded)
    first = cached.run(files, batch_size=batch_size).stats
    repeat = cached.run(files, batch_size=batch_size).stats
    prep_first = first.decode_s + first.features_s
    prep_repeat = repeat.decode_s + repeat.features_s
    return {
        "first": first.to_dict(), "repeat": repeat.to_dict(),
        "prep_first_s": round(prep_first, 4), "prep_repeat_s": round(prep_repeat, 4),
        "prep_ratio_first_over_repeat": round(prep_first / prep_repeat, 1) if prep_repeat else None,
        "wall_ratio_first_over_repeat": round(first.wall_s / repeat.wall_s, 3),
        "cache": cached.cache.stats().to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging("WARNING")
    try:
        # Punctuation runs after the model, outside what this measures (decoding, VAD, features).
        settings = load_settings(None, overrides={"model": args.model, "device": args.device,
                                                  "punctuation": "off"})
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    clips = ensure_clips(PROJECT_ROOT / ".cache" / "bench", count=args.files)
    files = [clip.path for clip in clips]
    engine = Engine(settings)
    engine.run(files[:2], batch_size=args.batch_size, use_cache=False)  # warm-up
    audio_s = sum(clip.duration_s for clip in clips)
    print(f"{len(files)} clips, {audio_s:.0f} s of audio, model {args.model} on {engine.loaded.device}",
          file=sys.stderr)
    preload = measure_preload(engine, files, args.repeats, args.batch_size)
    cache = measure_cache(engine, files, args.batch_size)
    s = preload["summary"]
    print(f"PRELOAD_AUDIO  off: wall {s['off']['wall_s']:.2f} s, model waited {s['off']['wait_s']:.2f} s")
    print(f"PRELOAD_AUDIO  on : wall {s['on']['wall_s']:.2f} s, model waited {s['on']['wait_s']:.2f} s")
    print(f"  end-to-end off/on = {s['wall_ratio_off_over_on']}, "
          f"model wait off/on = {s['wait_ratio_off_over_on']}")
    print(f"feature cache  decode+features first run {cache['prep_first_s']:.3f} s, repeat "
          f"{cache['prep_repeat_s']:.3f} s (first/repeat = {cache['prep_ratio_first_over_repeat']}); "
          f"end-to-end first/repeat = {cache['wall_ratio_first_over_repeat']}")
    if args.json:
        report = {"model": args.model, "device": str(engine.loaded.device), "files": len(files),
                  "audio_s": audio_s, "preload": preload, "cache": cache}
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
