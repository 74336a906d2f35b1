"""Turn the benchmark's raw runs into the summary: speeds, ratios, agreement, targets, profile.

Pure functions over plain dicts (what the workers wrote), so the JSON and the printed tables are
built from the same numbers. Speeds use the median wall time over repeats; every variant is
measured on the same files, so `audio_s` is shared.

Peers: FunASR's variants run twice, at its defaults (A, AT, AS) and with ncpu = cores (AN, ATN,
ASN), because its default of 4 threads can be pathological on a 2-core machine. A comparison that
claims "faster than FunASR" must beat the better of the two, so `peers` picks the faster of each
pair and `peer_ratios` and `targets` use that one.
"""

from __future__ import annotations

import statistics
import unicodedata
from difflib import SequenceMatcher

from asr.text.distance import edit_distance  # noqa: F401 - also read as report.edit_distance

# What each variant is, in the words the table prints.
DESCRIPTIONS = {
    "A": "FunASR AutoModel, file by file, its defaults (ncpu {ncpu})",
    "AN": "FunASR AutoModel, file by file, ncpu {ncpu} (= cores)",
    "B": "FunASR AutoModel, whole list, batch_size={size}",
    "O": "funasr_onnx fp32 (FunASR's export), batch {size}",
    "O8": "funasr_onnx int8 (FunASR's export), batch {size}",
    "C": "this engine, default settings (batch {size})",
    "CW": "this engine, wizard's batch size ({size})",
    "C8": "this engine, opt-in int8 on CPU (batch {size})",
    "CB": "this engine in bf16 (batch {size})",
    "CH": "this engine in fp16 (batch {size})",
    "CA": "this engine, fused attention (batch {size})",
    "CM": "this engine, torch's own CPU linears (batch {size})",
    "CL": "this engine, padded CPU batches (batch {size})",
    "AT": "FunASR AutoModel + fsmn-vad + punc + sentence times (ncpu {ncpu})",
    "ATN": "FunASR AutoModel + fsmn-vad + punc + sentence times, ncpu {ncpu}",
    "CT": "this engine + silero VAD + punc + timestamps (batch {size})",
    "CTI": "this engine + silero VAD + punc + timestamps + ITN (batch {size})",
    "AS": "FunASR AutoModel + fsmn-vad + punc + CAM++ speakers (ncpu {ncpu})",
    "ASN": "FunASR AutoModel + fsmn-vad + punc + CAM++ speakers, ncpu {ncpu}",
    "CS": "this engine + silero VAD + punc + timestamps + speakers (batch {size})",
}
ORDER = ("A", "AN", "B", "O", "O8", "C", "CW", "C8", "CB", "CH", "CA", "CM", "CL", "AT", "ATN", "CT", "CTI",
         "AS", "ASN", "CS")
# (variant, reference): token comparisons reported per file when both ran.
COMPARISONS = (("C", "A"), ("C", "O"), ("C", "O8"), ("CW", "A"), ("B", "A"), ("O", "A"), ("O8", "O"),
               ("C8", "C"), ("CB", "C"), ("CH", "C"), ("CA", "C"),
               ("CM", "A"), ("C", "CM"), ("CL", "A"), ("C", "CL"), ("AN", "A"),
               # ITN and speakers run after recognition: the tokens must not move.
               ("CTI", "CT"), ("CS", "CT"))
# (variant, reference): text comparisons (punctuation and spaces removed). CT and AT cut the audio
# with different VADs, so their tokens cannot line up one to one. C vs A calibrates the measure
# (identical tokens must read 100%); CT vs C is the same engine with only the cuts and extras
# changed, and C vs AT the two runtimes with only FunASR's fsmn cuts between them: where CT vs C
# reads like CT vs AT and C vs AT near 100%, the VAD's cuts explain the difference, not the runtime.
# Speakers only relabel and cut sentences, so CS vs CT and AS vs AT must read 100%; CS vs AS is
# CT vs AT again with speakers on both sides. CTI is left out: ITN rewrites the text on purpose
# (its raw text against CT's is checked in `itn_cost`).
TEXT_COMPARISONS = (("CT", "AT"), ("CT", "ATN"), ("ATN", "AT"), ("CT", "C"), ("C", "AT"), ("C", "A"),
                    ("CS", "AS"), ("CS", "ASN"), ("CS", "CT"), ("AS", "AT"))
RATIO_SUBJECTS = ("C", "CW", "C8", "CB", "CH", "CA", "CM", "CL")
RATIO_REFERENCES = ("A", "AN", "B", "O", "O8", "C", "CM", "CL")
EXTRA_RATIOS = (("CT", "AT"), ("CT", "ATN"), ("CT", "C"), ("AN", "A"), ("ATN", "AT"), ("CTI", "CT"),
                ("CS", "AS"), ("CS", "ASN"), ("CS", "CT"), ("ASN", "AS"), ("AS", "AT"), ("ASN", "ATN"))
# FunASR's default-settings variant -> its ncpu = cores twin; the faster of the two is the peer.
PEER_PAIRS = {"A": "AN", "AT": "ATN", "AS": "ASN"}
# (subject, reference) quoted against the faster FunASR setting; the reference is in PEER_PAIRS.
PEER_COMPARISONS = (("C", "A"), ("CT", "AT"), ("CS", "AS"))
# (name, subject, reference, at least): the CPU targets; a reference in PEER_PAIRS means its peer.
TARGETS = (("CT/AT", "CT", "AT", 2.0), ("CT/C", "CT", "C", 0.75), ("CS/AS", "CS", "AS", 2.0),
           ("CS/CT", "CS", "CT", 0.8))
WIDTH = 66  # of the variant column
FUNASR_DEFAULT_NCPU = 4
PROFILE_STAGES = ("decode_s", "vad_s", "features_s", "wait_s", "encoder_s", "predictor_s", "timestamp_s",
                  "decoder_s", "postprocess_s", "punctuation_s")
# Stages only the transcript settings use: printed only where they took time.
OPTIONAL_STAGES = ("vad", "timestamp", "punctuation")


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
        "cores_used": _median_cores(runs),
        "load_s_median": round(statistics.median(r.get("load_s", 0.0) for r in runs), 2),
        "threads": last.get("threads", {}),
        "batch_size": last.get("batch_size"),
        "batches": last.get("batches"),
        "tokens_stable_across_repeats": all(t == tokens[0] for t in tokens),
        "notes": sorted({n for r in runs for n in r.get("notes", [])}),
        "runs": [_run_row(r, audio_s) for r in runs],
        "tokens": tokens[0],
        "texts": last.get("texts"),
        "texts_stable_across_repeats": all(r.get("texts") == last.get("texts") for r in runs),
    }
    for key in ("sentences", "timed_words", "models", "speakers_found", "raw_texts"):
        if key in last:
            summary[key] = last[key]
    for key in ("gpu_peak_allocated_mb", "gpu_peak_reserved_mb"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = max(values)
    for key in ("gpu_name", "providers", "versions", "engine", "device", "funasr_batch_size_default"):
        if key in last:
            summary[key] = last[key]
    if "stats" in last:
        summary["stats_runs"] = [r["stats"] for r in runs]
    if "stage_s" in last:
        summary["stage_s_runs"] = [r.get("stage_s") for r in runs]
    if "speakers_found" in last:
        summary["speakers_stable_across_repeats"] = all(r.get("speakers_found") == last["speakers_found"]
                                                        for r in runs)
    return summary


def _cores(run: dict) -> float | None:
    """Cores the timed pass had: its CPU seconds over its wall seconds (None if not recorded)."""
    if "cpu_s" not in run or not run.get("wall_s"):
        return None
    return round(run["cpu_s"] / run["wall_s"], 2)


def _median_cores(runs: list[dict]) -> float | None:
    values = [c for r in runs if (c := _cores(r)) is not None]
    return round(statistics.median(values), 2) if values else None


def contention_notes(raw: dict[str, list[dict]], idle_cores: float) -> list[str]:
    """A note when runs started while other processes were busy: their speeds are a lower bound."""
    busy = [(label, r["round"], r["busy_cores_before"]) for label, runs in raw.items() for r in runs
            if (r.get("busy_cores_before") or 0.0) >= idle_cores]
    if not busy:
        return []
    worst = max(b for _, _, b in busy)
    return [f"{len(busy)} of {sum(len(r) for r in raw.values())} runs started while other processes used "
            f"{idle_cores:g}+ cores (up to {worst:.1f}): compare 'cores used' with 'threads' to see which "
            "runs were starved (--wait-idle SECONDS waits for a quiet machine)"]


def _run_row(run: dict, audio_s: float) -> dict:
    row = {"round": run.get("round"), "ok": bool(run.get("ok")), "pid": run.get("pid"),
           "log": run.get("log")}
    if run.get("ok"):
        row.update(wall_s=round(run["wall_s"], 3), warmup_s=round(run.get("warmup_s", 0.0), 3),
                   load_s=round(run.get("load_s", 0.0), 3), peak_rss_mb=run.get("peak_rss_mb"),
                   speed_x_realtime=round(audio_s / run["wall_s"], 3) if run["wall_s"] else 0.0,
                   cores_used=_cores(run), busy_cores_before=run.get("busy_cores_before"),
                   loadavg_1min=run.get("loadavg_1min"))
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


def _speed_ratio(variants: dict[str, dict], subject: str, reference: str,
                 key: str = "speed_x_realtime") -> float | None:
    """Speed of `subject` over speed of `reference` (x real time, median by default; `key`
    "speed_max" for each one's fastest repeat), or None unless both ran."""
    a, b = variants.get(subject), variants.get(reference)
    if (subject == reference or not a or not b or a["status"] != "ok" or b["status"] != "ok"
            or not b.get(key)):
        return None
    return round(a[key] / b[key], 3)


def ratios(variants: dict[str, dict]) -> dict[str, float]:
    """Every measured subject/reference ratio, each against the variant its name says."""
    pairs = [(s, r) for s in RATIO_SUBJECTS for r in RATIO_REFERENCES] + list(EXTRA_RATIOS)
    return {f"{s}/{r}": value for s, r in pairs if (value := _speed_ratio(variants, s, r)) is not None}


def peers(variants: dict[str, dict], key: str = "speed_x_realtime") -> dict[str, str]:
    """For A, AT and AS: whichever of the default-settings run and its ncpu = cores twin was faster
    (by median speed; `key` "speed_max" compares their fastest repeats instead)."""
    out = {}
    for default, tuned in PEER_PAIRS.items():
        ran = [n for n in (default, tuned) if variants.get(n, {}).get("status") == "ok"]
        if ran:
            out[default] = max(ran, key=lambda n: variants[n].get(key) or 0.0)
    return out


def peer_ratios(variants: dict[str, dict]) -> dict[str, dict]:
    """C/A, CT/AT and CS/AS against the faster FunASR setting: the ratios a claim should quote."""
    chosen = peers(variants)
    out = {}
    for subject, reference in PEER_COMPARISONS:
        peer = chosen.get(reference)
        value = _speed_ratio(variants, subject, peer) if peer else None
        if value is not None:
            out[f"{subject}/{reference}"] = {"peer": peer, "ratio": value}
    return out


def targets(variants: dict[str, dict], device: str) -> list[dict]:
    """The CPU targets with their measured values; `passed` is None where they do not apply.

    Pass or fail is decided on the medians. `best` (each side's fastest repeat) is shown beside
    it because on a shared machine other processes only ever slow a run down: where the two
    disagree, the machine was busy, and the cores-used column says which runs suffered."""
    chosen, chosen_best = peers(variants), peers(variants, "speed_max")
    out = []
    for name, subject, reference, minimum in TARGETS:
        against = chosen.get(reference, reference)
        best_against = chosen_best.get(reference, reference)
        value = _speed_ratio(variants, subject, against)
        row = {"name": name, "against": against, "minimum": minimum, "value": value,
               "best": _speed_ratio(variants, subject, best_against, "speed_max"),
               "best_against": best_against}
        if device != "cpu":
            row.update(passed=None, why="a CPU target; this run is on " + device)
        elif value is None:
            row.update(passed=None, why=f"{subject} or {against} did not run")
        else:
            row["passed"] = value >= minimum
        out.append(row)
    return out


def plain_text(text: str) -> str:
    """What character agreement compares: the text without punctuation or whitespace, so neither
    the punctuation model's marks nor how segments were joined (FunASR puts spaces between VAD
    segments) counts as a difference."""
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def _text_row(subject: str | None, reference: str | None) -> dict | None:
    """One file's CER of `subject` against `reference`, and agreement = max(0, 1 - CER)."""
    if subject is None or reference is None:
        return None
    hyp, ref = plain_text(subject), plain_text(reference)
    errors = edit_distance(hyp, ref)
    cer = errors / len(ref) if ref else float(bool(hyp))
    return {"errors": errors, "chars": [len(hyp), len(ref)], "cer": round(cer, 4),
            "agreement": round(max(0.0, 1.0 - cer), 4)}


def compare_texts(variants: dict[str, dict], files: list[str]) -> dict:
    """Character agreement per file and overall (1 - CER of the first variant against the second,
    punctuation and spaces removed), for each pair of TEXT_COMPARISONS that both ran."""
    pairs = {}
    for subject, reference in TEXT_COMPARISONS:
        a, b = variants.get(subject, {}), variants.get(reference, {})
        left, right = a.get("texts"), b.get("texts")
        if not (left and right) or a.get("status") != "ok" or b.get("status") != "ok":
            continue
        rows = [_text_row(x, y) for x, y in zip(left, right, strict=True)]
        known = [r for r in rows if r is not None]
        chars = sum(r["chars"][1] for r in known)
        errors = sum(r["errors"] for r in known)
        cer = errors / chars if chars else 0.0
        pairs[f"{subject} vs {reference}"] = {
            "agreement": round(max(0.0, 1.0 - cer), 4), "cer": round(cer, 4), "chars": chars,
            "files": len(rows), "unknown": len(rows) - len(known),
            "per_file": [dict(r, file=name) if r else {"file": name} for name, r in zip(files, rows,
                                                                                       strict=True)]}
    return {"pairs": pairs}


def _median_stage(summary: dict, stage: str) -> dict | None:
    """A text stage's timer (seconds, calls) from the run with the median wall time, or None
    where the stage was not timed or the engine no longer makes the call by that name."""
    runs, stats = summary.get("stage_s_runs") or [], summary.get("stats_runs") or []
    if not runs or len(runs) != len(stats):
        return None
    walls = [s["wall_s"] for s in stats]
    timer = (runs[walls.index(statistics.median_low(walls))] or {}).get(stage)
    return timer if timer and timer.get("found") else None


def _text_stages_s(summary: dict) -> float | None:
    """Median over repeats of the engine's text-stage time (RunStats.punctuation_s: assembly,
    punctuation, sentences, speakers' cuts and ITN, per file after recognition)."""
    values = [s.get("punctuation_s") for s in summary.get("stats_runs") or []]
    return statistics.median(values) if values and None not in values else None


def itn_cost(variants: dict[str, dict]) -> dict | None:
    """What `itn: true` costs, from CTI (CT plus ITN) in the same run as CT.

    Two measures: `ms_per_sentence`, the engine's own ITN call timed inside CTI's timed pass
    (file text and sentence texts, over the sentences CTI produced; the warm-up's cached pieces
    are forgotten first), and `text_stages_ms_per_sentence`, CTI's text-stage time minus CT's, a
    cross-check that needs no timer but carries two runs' noise. `raw_equals_ct` counts files
    whose raw text (before ITN) is CT's text: ITN must change nothing else."""
    cti, ct = variants.get("CTI") or {}, variants.get("CT") or {}
    if cti.get("status") != "ok":
        return None
    sentences = sum(cti.get("sentences") or [])
    texts, raw = cti.get("texts") or [], cti.get("raw_texts") or []
    out: dict = {"sentences": sentences, "files": len(texts),
                 "changed_files": sum(1 for t, r in zip(texts, raw, strict=False)
                                      if r is not None and t != r)}
    timer = _median_stage(cti, "itn")
    out["measured_s"] = timer["s"] if timer else None
    out["ms_per_sentence"] = round(1000 * timer["s"] / sentences, 3) if timer and sentences else None
    if timer is None:
        out["why"] = "the engine's ITN call (asr.engine.normalize_numbers) was not timed"
    if ct.get("status") == "ok":
        out["speed_ratio"] = _speed_ratio(variants, "CTI", "CT")
        both = (_text_stages_s(cti), _text_stages_s(ct))
        if None not in both and sentences:
            out["text_stages_ms_per_sentence"] = round(1000 * (both[0] - both[1]) / sentences, 3)
        ct_texts = ct.get("texts") or []
        if raw and len(raw) == len(ct_texts):
            out["raw_equals_ct"] = sum(1 for r, t in zip(raw, ct_texts, strict=True)
                                       if r is not None and r == t)
    return out


def speaker_counts(variants: dict[str, dict], files: list[str]) -> dict:
    """Speakers found per file by CS (this engine, `speakers.count: auto`) and AS/ASN (FunASR's
    ClusterBackend at its defaults), and what CS's diarization took (its timer: embeddings and
    clustering, summed over the preload threads that run it)."""
    names = [n for n in ("CS", "AS", "ASN") if variants.get(n, {}).get("status") == "ok"
             and variants[n].get("speakers_found") is not None]
    if not names:
        return {}
    rows = [{"file": name, **{n: variants[n]["speakers_found"][i] for n in names}}
            for i, name in enumerate(files)]
    out: dict = {"variants": names, "files": rows,
                 "stable_across_repeats": {n: variants[n].get("speakers_stable_across_repeats")
                                           for n in names}}
    timer = _median_stage(variants["CS"], "speakers") if "CS" in names else None
    if timer is not None:
        wall = variants["CS"]["wall_s_median"]
        out["cs_diarize"] = {"s": timer["s"], "files": timer["calls"],
                             "share_of_wall": round(timer["s"] / wall, 4) if wall else None}
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
    preparing = ["decode", "vad", "features"]
    if not preload:
        # Inline, the model thread's wait for the next input *is* that input's decode, VAD and
        # features; count only what the wait held beyond them, so nothing is counted twice.
        stages["wait"] = max(0.0, stages["wait"] - sum(stages[name] for name in preparing))
    # With preload on, decode, VAD and features run on worker threads beside the model, and the
    # model thread feels them only as `wait`. Timestamps and punctuation run on the model thread.
    serial = (["wait"] if preload else [*preparing, "wait"]) + [
        "encoder", "predictor", "timestamp", "decoder", "postprocess", "punctuation"]
    stages["other"] = max(0.0, wall - sum(stages[name] for name in serial))
    within = {}  # text stages timed inside the stage that holds them (ITN: punctuation; speakers: vad)
    for name, holder in (("itn", "punctuation"), ("speakers", "vad")):
        if (timer := _median_stage(summary, name)) is not None:
            within[name] = {"s": round(timer["s"], 3), "share": round(timer["s"] / wall, 4), "inside": holder}
    return {"wall_s": round(wall, 3), "preload": preload, "batches": stats.get("batches"),
            "stages": {k: {"s": round(v, 3), "share": round(v / wall, 4)} for k, v in stages.items()},
            "overlapped": preparing if preload else [], "within": within}


# ---- text output ---------------------------------------------------------------------------------

def format_table(report: dict) -> str:
    audio_s = report["clips"]["audio_s"]
    device = report["device"]
    lines = [f"{report['clips']['count']} files, {audio_s:.1f} s of audio; device {device['resolved']} "
             f"({device.get('name', '')}); {report['settings']['repeats']} repeat(s), median shown", ""]
    lines += _variant_rows(report)
    if report["ratios"]:
        lines += ["", "speed ratios: " + "   ".join(f"{k} {v:.2f}x" for k, v in report["ratios"].items())]
    lines += _peer_lines(report)
    lines += _itn_lines(report)
    lines += _speaker_lines(report)
    lines += _token_lines(report)
    lines += _text_lines(report)
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _describe(name: str, v: dict, report: dict) -> str:
    size = v.get("best_batch_size") or v.get("batch_size") or 1
    tuned = name in ("AN", "ATN", "ASN")
    ncpu = v.get("threads", {}).get("funasr_ncpu") or (
        report["settings"].get("funasr_ncpu_tuned", "?") if tuned else FUNASR_DEFAULT_NCPU)
    what = DESCRIPTIONS[name].format(size=size, ncpu=ncpu)
    if name == "B" and v.get("sizes"):
        what += f" (best of {','.join(v['sizes'])})"
    return what


def _variant_rows(report: dict) -> list[str]:
    header = (f"{'':3} {'variant':<{WIDTH}} {'x real time':>11} {'RTF':>7} {'wall s':>8} {'peak RSS MB':>11} "
              f"{'GPU peak MB':>11} {'threads':>7} {'cores used':>10}")
    lines = [header, "-" * len(header)]
    for name in ORDER:
        v = report["variants"].get(name)
        if v is None:
            continue
        what = _describe(name, v, report)
        if v["status"] != "ok":
            lines.append(f"{name:3} {what:<{WIDTH}} {v['status']}: {v.get('reason', '')}")
            continue
        threads = v.get("threads", {})
        # The engine's model thread, not the calling thread (which the engine keeps at one).
        count = threads.get("engine_threads", threads.get("torch_threads",
                                                          threads.get("ort_intra_op_threads")))
        gpu = v.get("gpu_peak_allocated_mb")
        gpu_text = "-" if gpu is None else f"{gpu:.0f}"
        used = v.get("cores_used")
        lines.append(
            f"{name:3} {what:<{WIDTH}} {v['speed_x_realtime']:>10.2f}x {v['rtf']:>7.4f} "
            f"{v['wall_s_median']:>8.2f} {v['peak_rss_mb']:>11.0f} {gpu_text:>11} "
            f"{'-' if count is None else count:>7} {'-' if used is None else f'{used:.2f}':>10}")
    return lines


def _peer_lines(report: dict) -> list[str]:
    """The ratios against the faster FunASR setting, and the targets with pass/fail."""
    lines = []
    if report.get("peer_ratios"):
        lines += ["", "against FunASR's faster setting (its defaults or ncpu = cores): " + "   ".join(
            f"{k} {r['ratio']:.2f}x (peer {r['peer']})" for k, r in report["peer_ratios"].items())]
    for row in report.get("targets", []):
        # Three decimals: a ratio printed as the target itself must not read FAIL.
        measured = "not measured" if row["value"] is None else f"{row['value']:.3f}x"
        if row.get("best") is not None:
            measured += f" (fastest repeats: {row['best']:.3f}x against {row['best_against']})"
        verdict = f"n/a ({row['why']})" if row["passed"] is None else "PASS" if row["passed"] else "FAIL"
        lines.append(f"target {row['name']} >= {row['minimum']:.2f}x (against {row['against']}): "
                     f"{measured}  {verdict}")
    return lines


def _itn_lines(report: dict) -> list[str]:
    itn = report.get("itn")
    if not itn:
        return []
    cost = ("not measured" if itn["ms_per_sentence"] is None
            else f"{itn['ms_per_sentence']:.2f} ms per sentence ({itn['measured_s']:.3f} s)")
    line = f"ITN (CTI against CT): {cost} over {itn['sentences']} sentences"
    if itn.get("text_stages_ms_per_sentence") is not None:
        line += f"; text stages CTI - CT: {itn['text_stages_ms_per_sentence']:.2f} ms per sentence"
    if itn.get("speed_ratio") is not None:
        line += f"; speed CTI/CT {itn['speed_ratio']:.3f}x"
    lines = ["", line, f"ITN changed the text of {itn['changed_files']}/{itn['files']} files"
             + (f"; raw text = CT's text in {itn['raw_equals_ct']}/{itn['files']}" if "raw_equals_ct" in itn
                else "")]
    if itn.get("why"):
        lines.append(f"ITN: {itn['why']}")
    return lines


def _speaker_lines(report: dict) -> list[str]:
    found = report.get("speakers") or {}
    if not found:
        return []
    names = found["variants"]
    lines = ["", "speakers found per file (CS: this engine, speakers.count auto; AS/ASN: FunASR's "
             "ClusterBackend, which gives one speaker under 20 windows):"]
    if "cs_diarize" in found:
        d = found["cs_diarize"]
        share = "" if d["share_of_wall"] is None else f", {d['share_of_wall']:.1%} of CS's wall time"
        lines.append(f"CS diarization: {d['s']:.3f} s over {d['files']} files (summed over threads{share})")
    width = max(len(row["file"]) for row in found["files"])
    lines.append(f"{'file':<{width}} {'seconds':>8}  " + "  ".join(f"{n:>4}" for n in names))
    durations = _durations(report)
    for row in found["files"]:
        lines.append(f"{row['file']:<{width}} {durations.get(row['file'], 0):>8.1f}  "
                     + "  ".join(f"{'n/a' if row[n] is None else row[n]:>4}" for n in names))
    return lines


def _token_lines(report: dict) -> list[str]:
    tokens = report["tokens"]
    if not tokens["pairs"]:
        return []
    lines = ["", "token ids per file: 'same' = identical, else the share of tokens that agree",
             "identical token ids, per pair: " + "   ".join(
                 f"{k} {t['identical']}/{t['files']}" for k, t in tokens["pairs"].items())]
    keys = list(tokens["pairs"])
    width = max(len(r["file"]) for r in tokens["files"])
    lines.append(f"{'file':<{width}} {'seconds':>8}  " + "  ".join(f"{k:>8}" for k in keys))
    durations = _durations(report)
    agreement = {(k, m["file"]): m["agreement"]
                 for k, t in tokens["pairs"].items() for m in t["mismatched"]}
    for row in tokens["files"]:
        cells = ["n/a" if row[k] is None else "same" if row[k] else f"{agreement[k, row['file']]:.0%}"
                 for k in keys]
        lines.append(f"{row['file']:<{width}} {durations.get(row['file'], 0):>8.1f}  "
                     + "  ".join(f"{c:>8}" for c in cells))
    return lines


def _durations(report: dict) -> dict[str, float]:
    return {f["path"].rsplit("/", 1)[-1]: f["duration_s"] for f in report["clips"]["files"]}


def _text_lines(report: dict) -> list[str]:
    pairs = report.get("texts", {}).get("pairs", {})
    if not pairs:
        return []
    lines = ["", "character agreement of the texts (1 - CER of the first against the second, punctuation "
             "and spaces removed):",
             "overall: " + "   ".join(f"{k} {p['agreement']:.1%} ({p['chars']} chars)"
                                      for k, p in pairs.items())]
    keys = list(pairs)
    files = [row["file"] for row in next(iter(pairs.values()))["per_file"]]
    width = max(len(name) for name in files)
    lines.append(f"{'file':<{width}} {'seconds':>8}  " + "  ".join(f"{k:>11}" for k in keys))
    durations = _durations(report)
    for index, name in enumerate(files):
        cells = [pairs[k]["per_file"][index].get("agreement") for k in keys]
        lines.append(f"{name:<{width}} {durations.get(name, 0):>8.1f}  "
                     + "  ".join(f"{'n/a' if c is None else f'{c:.1%}':>11}" for c in cells))
    return lines


def format_profile(report: dict) -> str:
    lines = []
    for name in ("C", "CW", "CT", "CTI", "CS"):
        prof = report.get("profile", {}).get(name)
        if not prof:
            continue
        lines.append(f"where {name} spends its time (median run, {prof['wall_s']:.2f} s wall, "
                     f"{prof['batches']} batches, preload {'on' if prof['preload'] else 'off'}):")
        for stage, figures in prof["stages"].items():
            if stage in OPTIONAL_STAGES and figures["s"] == 0:
                continue
            mark = "  (on preload threads, overlapped)" if stage in prof["overlapped"] else ""
            lines.append(f"  {stage:<12} {figures['s']:>8.3f} s  {figures['share'] * 100:>5.1f}%{mark}")
        for stage, figures in prof.get("within", {}).items():
            lines.append(f"  {'  ' + stage:<12} {figures['s']:>8.3f} s  {figures['share'] * 100:>5.1f}%"
                         f"  (inside {figures['inside']})")
    return "\n".join(lines)
