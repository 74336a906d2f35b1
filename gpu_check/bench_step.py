"""Step `bench`: `python -m benchmarks.bench` on the device: FunASR file by file (A) and batched (B)
against this engine (C) at fp32, and C in fp16 (CH) and bf16 (CB) where the bench has those
variants (else extra runs of C with --precision, or --fp16 on a build from before `precision`).

Each bench's full report lands in OUT/bench/; the step keeps the figures that matter per variant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .worker import deadline, main

KEEP = ("status", "reason", "speed_x_realtime", "rtf", "wall_s_median", "gpu_peak_allocated_mb",
        "gpu_peak_reserved_mb", "batch_size", "load_s_median", "peak_rss_mb")


def _capabilities() -> dict:
    from benchmarks import bench

    help_text = bench.parser().format_help()
    return {"variants": list(bench.VARIANTS), "precision_flag": "--precision" in help_text}


def _runs(plan: dict, caps: dict, notes: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """(label, variants, extra arguments) for each bench invocation."""
    wanted = {"fp16": "CH", "bf16": "CB"}
    variants = list(plan["bench"]["variants"])
    runs = []
    separate = []
    for precision, label in wanted.items():
        if precision not in plan["precisions"]:
            continue
        if label in caps["variants"]:
            variants.append(label)
        elif caps["precision_flag"]:
            separate.append((precision, ["C"], ["--precision", precision]))
        elif precision == "fp16":
            separate.append((precision, ["C"], ["--fp16"]))
        else:
            notes.append(f"{precision}: this bench has neither {label} nor --precision; not measured")
    runs.append(("fp32" if separate else "all", variants, []))
    return runs + separate


def _summary(report: dict) -> dict:
    variants = {name: {k: v[k] for k in KEEP if k in v} for name, v in report.get("variants", {}).items()}
    tokens = {pair: {k: t.get(k) for k in ("identical", "files")}
              for pair, t in report.get("tokens", {}).get("pairs", {}).items()}
    clips = report.get("clips", {})
    return {"variants": variants, "ratios": report.get("ratios"), "tokens": tokens,
            "clips": {k: clips.get(k) for k in ("count", "audio_s", "shortest_s", "longest_s") if k in clips},
            "device": report.get("device", {}).get("name"), "elapsed_s": report.get("elapsed_s")}


def bench(plan: dict, save) -> dict:
    out = Path(plan["out"]) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    until = deadline(plan)
    caps = _capabilities()
    spec = plan["bench"]
    data: dict = {"capabilities": caps, "runs": {}, "notes": []}
    failed = []
    for label, variants, extra in _runs(plan, caps, data["notes"]):
        left = until - time.monotonic()
        if left < 20:
            data["runs"][label] = {"status": "skip", "reason": f"out of time ({left:.0f} s left)"}
            failed.append(label)
            continue
        report_path = out / f"bench-{label}.json"
        command = [sys.executable, "-m", "benchmarks.bench", "--device", plan["device"],
                   "--model", plan["model"],
                   "--files", str(spec["files"]), "--clip-seconds", spec["clip_seconds"],
                   "--variants", ",".join(variants), "--repeats", str(spec["repeats"]),
                   "--b-sizes", spec["b_sizes"], "--timeout", str(int(min(spec["run_timeout_s"], left))),
                   "--json", str(report_path), *(["--long"] if spec["long"] else []), *extra]
        print("$ " + " ".join(command), flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run(command, stdout=sys.stdout, stderr=subprocess.STDOUT, timeout=left)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = None
        entry = {"variants": variants, "extra": extra, "exit_code": code,
                 "seconds": round(time.monotonic() - started, 1), "report": report_path.name}
        if report_path.is_file():
            entry.update(_summary(json.loads(report_path.read_text(encoding="utf-8"))))
        entry["status"] = "pass" if code == 0 else "fail"
        if code != 0:
            failed.append(label)
            entry["reason"] = "timed out" if code is None else f"exit {code} (a variant failed: see its log)"
        data["runs"][label] = entry
        save(data)
    data["highlights"] = {label: {name: v.get("speed_x_realtime", v.get("status"))
                                  for name, v in run.get("variants", {}).items()}
                          for label, run in data["runs"].items()}
    if failed:
        return {"status": "fail", "reason": f"bench runs failed: {', '.join(failed)}", "data": data}
    return {"status": "pass", "data": data}


if __name__ == "__main__":
    raise SystemExit(main(bench))
