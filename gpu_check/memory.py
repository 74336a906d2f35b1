"""Step `memory`: the peak memory of one recognition batch per batch size, length and precision.

Each point is one padded batch of B segments of T feature frames (windows of the vendored test
speech, repeated) through the engine's recognizer, the peak read from torch's counters above what
was allocated before (torch.cuda.max_memory_allocated; on a CPU the allocator events, where
asr.recognition.memory_model has them). Precisions are interleaved, shortest and smallest first, so a step cut
short by time loses the largest shapes of every precision alike. An out-of-memory ends that
length's sizes. The points are also given as [batch, frames, peak_bytes] per precision, the form
asr.recognition.memory_model.MemoryModel.fit takes, with its fit where that module is present.
"""

from __future__ import annotations

import time

import numpy as np

from .worker import deadline, main


def _overrides(precision: str, schema: dict) -> dict | None:
    if "precision" in schema:
        return {"precision": precision}
    return {"fp32": {}, "fp16": {"fp16": True}}.get(precision)


def _speech(engine, root):
    """Features of the vendored test recordings, end to end: real speech to cut windows from."""
    import soundfile
    import torch

    wavs = sorted((root / "tests" / "audio").glob("*.wav"))
    samples = [soundfile.read(p, dtype="float32")[0] for p in wavs]
    return engine.features(np.concatenate(samples)) if samples else torch.randn(1000, 560)


def _batch(source, batch: int, frames: int, seed: int) -> list:
    generator = np.random.default_rng(seed * 7919 + frames * 31 + batch)
    reps = -(-2 * frames // source.shape[0]) + 1
    tiled = source.repeat(reps, 1)
    starts = generator.integers(0, max(1, tiled.shape[0] - frames), size=batch)
    return [tiled[int(s): int(s) + frames].clone() for s in starts]


def _peak(recognizer, feats) -> dict:
    import torch

    device = recognizer.device
    started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        recognizer.recognize(feats, None)
        torch.cuda.synchronize(device)
        return {"peak_bytes": torch.cuda.max_memory_allocated(device) - base, "base_bytes": base,
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
                "seconds": round(time.perf_counter() - started, 4)}
    try:
        from asr.recognition.memory_model import cpu_allocation_peak
    except ImportError:
        recognizer.recognize(feats, None)
        return {"peak_bytes": None, "seconds": round(time.perf_counter() - started, 4),
                "note": "no CPU peak counter (asr.recognition.memory_model absent)"}
    peak = cpu_allocation_peak(lambda: recognizer.recognize(feats, None))
    return {"peak_bytes": peak, "seconds": round(time.perf_counter() - started, 4)}


def measure(plan: dict, save) -> dict:
    import torch

    from asr.engine import Engine
    from asr.settings import PROJECT_ROOT, SCHEMA, load_settings

    until = deadline(plan)
    base_overrides = {"model": plan["model"], "device": plan["device"], "cpu_lanes": 1, "vad": "energy",
                      "punctuation": "off", "feature_cache.enable": False}
    config = PROJECT_ROOT / "tests" / "empty_config.yaml"
    base = Engine(load_settings(config, environ={}, overrides=base_overrides))
    engines, skipped = {}, {}
    for precision in plan["precisions"]:
        extra = _overrides(precision, SCHEMA)
        if extra is None:
            skipped[precision] = "this build has no such mode (no `precision` setting)"
            continue
        try:
            engine = base if not extra else Engine(load_settings(config, environ={},
                                                                 overrides={**base_overrides, **extra}),
                                                   loaded=base.loaded)
        except Exception as exc:  # noqa: BLE001 - PrecisionUnavailable and the like: recorded
            skipped[precision] = f"{type(exc).__name__}: {exc}"
            continue
        engines[precision] = engine
    fps = base.features.frames_per_second
    source = _speech(base, PROJECT_ROOT)
    data: dict = {"device": str(base.loaded.device), "model": plan["model"], "frames_per_second": fps,
                  "skipped_precisions": skipped, "points": [], "model_points": {p: [] for p in engines}}
    for engine in engines.values():  # warm-up: kernels, autocast caches, cuBLAS handles
        engine.recognizer.recognize(_batch(source, 1, int(min(plan["memory_seconds"]) * fps), 0), None)
    dead: set[tuple[str, float]] = set()
    stopped = ""
    for seconds in plan["memory_seconds"]:
        frames = int(round(seconds * fps))
        for batch in plan["memory_batches"]:
            for precision, engine in engines.items():
                if (precision, seconds) in dead:
                    continue
                if time.monotonic() > until:
                    stopped = f"out of time before {batch} x {seconds:g} s"
                    break
                point = {"precision": precision, "batch": batch, "seconds": seconds, "frames": frames}
                try:
                    point.update(_peak(engine.recognizer, _batch(source, batch, frames, 1)), status="ok")
                except Exception as exc:  # noqa: BLE001 - out of memory (or a failure) ends this length
                    text = (str(exc).splitlines() or [""])[0][:200]
                    oom = isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower() \
                        or "ALLOC_FAILED" in text
                    point.update(status="oom" if oom else "error", error=f"{type(exc).__name__}: {text}")
                    dead.add((precision, seconds))
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                data["points"].append(point)
                if point["status"] == "ok" and point.get("peak_bytes") is not None:
                    data["model_points"][precision].append([batch, frames, int(point["peak_bytes"])])
                save(data)
            if stopped:
                break
        if stopped:
            break
    data["stopped"] = stopped
    data["fits"] = _fits(data, base)
    ok = [p for p in data["points"] if p["status"] == "ok"]
    largest = max((p.get("peak_bytes") or 0 for p in ok), default=0)
    data["highlights"] = {"points": len(data["points"]), "ok": len(ok),
                          "oom": sum(p["status"] == "oom" for p in data["points"]),
                          "largest_peak_mb": round(largest / 2**20, 1),
                          "fits": {p: f.get("describe") for p, f in data["fits"].items()}}
    if not ok:
        return {"status": "fail", "reason": stopped or "no point measured", "data": data}
    return {"status": "pass", "reason": stopped, "data": data}


def _fits(data: dict, engine) -> dict:
    try:
        from asr.recognition.memory_model import MemoryModel
    except ImportError:
        return {}
    fits = {}
    for precision, points in data["model_points"].items():
        if len(points) < 3:
            continue
        try:
            model = MemoryModel.fit(points, precision=precision, device=data["device"])
            fits[precision] = {**model.to_dict(), "describe": model.describe(),
                               "errors": [round(e, 4) for e in model.errors()]}
        except Exception as exc:  # noqa: BLE001 - the points are the result; the fit is a bonus
            fits[precision] = {"error": f"{type(exc).__name__}: {exc}"}
    return fits


if __name__ == "__main__":
    raise SystemExit(main(measure))
