"""Turn the benchmark's raw runs into the summary: speeds, ratios, token agreement, profile.

Pure functions over plain dicts (what the workers wrote), so the JSON and the printed tables are
built from the same numbers. Speeds use the median wall time over repeats; every variant is
measured on the same files, so `audio_s` is shared.
"""

from __future__ import annotations

import statistics
from difflib import SequenceMatcher

# What each variant is, in the words the table prints.
DESCRIPTIONS = {
    "A": "FunASR AutoModel, file by file, its defaults",
    "B": "FunASR AutoModel, whole list, batch_size={size}",
    "O": "funasr_onnx fp32 (FunASR's export), batch {size}",
    "O8": "funasr_onnx int8 (FunASR's export), batch {size}",
    "C": "this engine, default settings (batch {size})",
    "CW": "this engine, wizard's batch size ({size})",
    "C8": "this engine, opt-in int8 on CPU (batch {size})",
    "CM": "this engine, torch's own CPU linears (batch {size})",
    "CL": "this engine, files side by side on CPU (batch {size})",
}
ORDER = ("A", "B", "O", "O8", "C", "CW", "C8", "CM", "CL")
# (variant, reference): token comparisons reported per file when both ran.
COMPARISONS = (("C", "A"), ("C", "O"), ("C", "O8"), ("CW", "A"), ("B", "A"), ("O", "A"), ("O8", "O"),
               ("C8", "C"), ("CM", "A"), ("C", "CM"), ("CL", "A"), ("C", "CL"))
RATIO_SUBJECTS = ("C", "CW", "C8", "CM", "CL")
RATIO_REFERENCES = ("A", "B", "O", "O8", "CM", "CL")
WIDTH = 62  # of the variant column
PROFILE_STAGES = ("decode_s", "features_s", "wait_s", "encoder_s", "predictor_s", "decoder_s",
                  "postprocess_s")


def summarize_runs(runs: list[dict], audio_s: float) -> dict:
    """One label's repeats -> status, median speed and the worst memory seen."""
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        first = failed[0]
        status = "unavailable" if first.get("unavailable") else "failed"
        return {"status": status, "reason": first.get("error", "unknown error"),
                "runs": [_run_row(r, audio_s) for r in runs]}
    walls = [r["wall_s"] for r in runs]
    median = statistics.median(walls)
    tokens = [r.get("tokens") for r in runs]
    last = runs[-1]
    summary = {
        "status": "ok",
        "speed_x_realtime": round(audio_s / median, 3) if median > 0 else 0.0,
        "rtf": round(median / audio_s, 5) if audio_s > 0 else 0.0,
        "wall_s_median": round(median, 3),
        "speed_min": round(audio_s / max(walls), 3),
        "speed_max": round(audio_s / min(walls), 3),
        "peak_rss_mb": max(r.get("peak_rss_mb", 0.0) for r in runs),
        "load_s_median": round(statistics.median(r.get("load_s", 0.0) for r in runs), 2),
        "threads": last.get("threads", {}),
        "batch_size": last.get("batch_size"),
        "batches": last.get("batches"),
        "tokens_stable_across_repeats": all(t == tokens[0] for t in tokens),
        "notes": sorted({n for r in runs for n in r.get("notes", [])}),
        "runs": [_run_row(r, audio_s) for r in runs],
        "tokens": tokens[0],
    }
    for key in ("gpu_peak_allocated_mb", "gpu_peak_reserved_mb"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = max(values)
    for key in ("gpu_name", "providers", "versions", "engine", "device", "funasr_batch_size_default"):
        if key in last:
            summary[key] = last[key]
    if "stats" in last:
        summary["stats_runs"] = [r["stats"] for r in runs]
    return summary


def _run_row(run: dict, audio_s: float) -> dict:
    row = {"round": run.get("round"), "ok": bool(run.get("ok")), "pid": run.get("pid"),
           "log": run.get("log")}
    if run.get("ok"):
        row.update(wall_s=round(run["wall_s"], 3), warmup_s=round(run.get("warmup_s", 0.0), 3),
                   load_s=round(run.get("load_s", 0.0), 3), peak_rss_mb=run.get("peak_rss_mb"),
                   speed_x_realtime=round(audio_s / run["wall_s"], 3) if run["wall_s"] else 0.0)
        for key in ("gpu_peak_allocated_mb", "gpu_peak_reserved_mb"):
            if key in run:
                row[key] = run[key]
    else:
        row["error"] = run.get("error")
    return row


def pick_best_b(sizes: dict[int, dict]) -> dict:
    """B is FunASR batched at its best size: the fastest of the sizes that ran."""
    ok = {n: s for n, s in sizes.items() if s["status"] == "ok"}
    if not ok:
        reasons = "; ".join(f"batch_size {n}: {s.get('reason')}" for n, s in sizes.items())
        any_unavailable = any(s["status"] == "unavailable" for s in sizes.values())
        return {"status": "unavailable" if any_unavailable else "failed", "reason": reasons,
                "sizes": {str(n): s for n, s in sizes.items()}}
    best = max(ok, key=lambda n: ok[n]["speed_x_realtime"])
    summary = dict(ok[best])
    summary["best_batch_size"] = best
    summary["sizes"] = {str(n): {k: v for k, v in s.items() if k != "tokens"} for n, s in sizes.items()}
    return summary


def ratios(variants: dict[str, dict]) -> dict[str, float]:
    out = {}
    for subject in RATIO_SUBJECTS:
        for reference in RATIO_REFERENCES:
            a, b = variants.get(subject), variants.get(reference)
            if (subject != reference and a and b and a["status"] == b["status"] == "ok"
                    and b["speed_x_realtime"] > 0):
                out[f"{subject}/{reference}"] = round(a["speed_x_realtime"] / b["speed_x_realtime"], 3)
    return out


def compare_tokens(variants: dict[str, dict], files: list[str]) -> dict:
    """Per file and per pair: identical token ids (True/False), None where a side has none."""
    pairs = [(a, b) for a, b in COMPARISONS
             if variants.get(a, {}).get("status") == "ok" and variants.get(b, {}).get("status") == "ok"]
    rows = [{"file": name} for name in files]
    totals = {}
    for subject, reference in pairs:
        key = f"{subject} vs {reference}"
        left, right = variants[subject]["tokens"], variants[reference]["tokens"]
        same = unknown = 0
        mismatched = []
        for i, row in enumerate(rows):
            x, y = left[i], right[i]
            if x is None or y is None:
                row[key] = None
                unknown += 1
                continue
            row[key] = x == y
            if x == y:
                same += 1
            else:
                agreement = round(SequenceMatcher(None, x, y, autojunk=False).ratio(), 4)
                mismatched.append({"file": row["file"], "agreement": agreement, "tokens": [len(x), len(y)]})
        totals[key] = {"identical": same, "files": len(rows), "unknown": unknown, "mismatched": mismatched}
    return {"pairs": totals, "files": rows}


def profile(summary: dict) -> dict | None:
    """Where an engine variant spent its median run, from RunStats (seconds and share of wall)."""
    runs = summary.get("stats_runs")
    if not runs:
        return None
    walls = [s["wall_s"] for s in runs]
    stats = runs[walls.index(statistics.median_low(walls))]
    wall = stats["wall_s"] or 1e-9
    stages = {name.removesuffix("_s"): stats.get(name, 0.0) for name in PROFILE_STAGES}
    preload = bool(stats.get("preload"))
    if not preload:
        # Inline, the model thread's wait for the next input *is* that input's decode and
        # features; count only what the wait held beyond them, so nothing is counted twice.
        stages["wait"] = max(0.0, stages["wait"] - stages["decode"] - stages["features"])
    # With preload on, decode and features run on worker threads beside the model, and the model
    # thread feels them only as `wait`.
    serial = (["wait"] if preload else ["decode", "features", "wait"]) + [
        "encoder", "predictor", "decoder", "postprocess"]
    stages["other"] = max(0.0, wall - sum(stages[name] for name in serial))
    return {"wall_s": round(wall, 3), "preload": preload, "batches": stats.get("batches"),
            "stages": {k: {"s": round(v, 3), "share": round(v / wall, 4)} for k, v in stages.items()},
            "overlapped": ["decode", "features"] if preload else []}


# ---- text output ---------------------------------------------------------------------------------

def format_table(report: dict) -> str:
    audio_s = report["clips"]["audio_s"]
    device = report["device"]
    lines = [f"{report['clips']['count']} files, {audio_s:.1f} s of audio; device {device['resolved']} "
             f"({device.get('name', '')}); {report['settings']['repeats']} repeat(s), median shown", ""]
    header = (f"{'':3} {'variant':<{WIDTH}} {'x real time':>11} {'RTF':>7} {'wall s':>8} {'peak RSS MB':>11} "
              f"{'GPU peak MB':>11} {'threads':>7}")
    lines += [header, "-" * len(header)]
    for name in ORDER:
        v = report["variants"].get(name)
        if v is None:
            continue
        size = v.get("best_batch_size") or v.get("batch_size") or 1
        what = DESCRIPTIONS[name].format(size=size)
        if name == "B" and v.get("sizes"):
            what += f" (best of {','.join(v['sizes'])})"
        if v["status"] != "ok":
            lines.append(f"{name:3} {what:<{WIDTH}} {v['status']}: {v.get('reason', '')}")
            continue
        threads = v.get("threads", {})
        count = threads.get("torch_threads", threads.get("ort_intra_op_threads"))
        gpu = v.get("gpu_peak_allocated_mb")
        gpu_text = "-" if gpu is None else f"{gpu:.0f}"
        lines.append(
            f"{name:3} {what:<{WIDTH}} {v['speed_x_realtime']:>10.2f}x {v['rtf']:>7.4f} "
            f"{v['wall_s_median']:>8.2f} {v['peak_rss_mb']:>11.0f} {gpu_text:>11} "
            f"{'-' if count is None else count:>7}")
    if report["ratios"]:
        lines += ["", "speed ratios: " + "   ".join(f"{k} {v:.2f}x" for k, v in report["ratios"].items())]
    tokens = report["tokens"]
    if tokens["pairs"]:
        lines += ["", "token ids per file: 'same' = identical, else the share of tokens that agree",
                  "identical token ids, per pair: " + "   ".join(
            f"{k} {t['identical']}/{t['files']}" for k, t in tokens["pairs"].items())]
        keys = list(tokens["pairs"])
        width = max(len(r["file"]) for r in tokens["files"])
        lines.append(f"{'file':<{width}} {'seconds':>8}  " + "  ".join(f"{k:>8}" for k in keys))
        durations = {f["path"].rsplit("/", 1)[-1]: f["duration_s"] for f in report["clips"]["files"]}
        agreement = {(k, m["file"]): m["agreement"]
                     for k, t in tokens["pairs"].items() for m in t["mismatched"]}
        for row in tokens["files"]:
            cells = ["n/a" if row[k] is None else "same" if row[k] else f"{agreement[k, row['file']]:.0%}"
                     for k in keys]
            lines.append(f"{row['file']:<{width}} {durations.get(row['file'], 0):>8.1f}  "
                         + "  ".join(f"{c:>8}" for c in cells))
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def format_profile(report: dict) -> str:
    lines = []
    for name in ("C", "CW"):
        prof = report.get("profile", {}).get(name)
        if not prof:
            continue
        lines.append(f"where {name} spends its time (median run, {prof['wall_s']:.2f} s wall, "
                     f"{prof['batches']} batches, preload {'on' if prof['preload'] else 'off'}):")
        for stage, figures in prof["stages"].items():
            mark = "  (on preload threads, overlapped)" if stage in prof["overlapped"] else ""
            lines.append(f"  {stage:<12} {figures['s']:>8.3f} s  {figures['share'] * 100:>5.1f}%{mark}")
    return "\n".join(lines)
