"""Variants O and O8: FunASR's ONNX runtime (funasr_onnx), run inside its own virtualenv.

Started by path (`<onnx venv>/bin/python tuning/bench_onnx_worker.py JOB OUT`), never imported by
the project: it needs only the standard library, numpy and funasr_onnx, which live in the ONNX
environment with funasr_onnx's own numpy pin.

It runs what a funasr_onnx user runs, `SeacoParaformer(model_dir, batch_size=..., quantize=...)`
called with `hotwords=""`, with two workarounds for funasr_onnx 0.4.3 that the measurements need:
- a call with more files than its batch size loses every batch after the first (its hotword
  embedding gains a dimension per loop), so it is called one batch at a time;
- its text drops the last token of every file, so token ids are taken from the model's own
  scores (argmax over the first `token_num` positions, blank/<s>/</s> removed, exactly as FunASR's
  PyTorch model decodes), recorded by a wrapper around its backbone call that changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

SPECIAL_IDS = (0, 1, 2)  # <blank>, <s>, </s>


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(job: dict) -> dict:
    import numpy as np
    import onnxruntime
    from funasr_onnx import SeacoParaformer

    options = {"batch_size": job["batch_size"], "quantize": job["quantize"]}
    if job.get("threads"):
        options["intra_op_num_threads"] = job["threads"]
    if job["device"].startswith("cuda"):
        options["device_id"] = "0"
    started = time.perf_counter()
    model = SeacoParaformer(job["onnx_dir"], **options)
    load_s = time.perf_counter() - started
    providers = model.ort_infer_bb.session.get_providers()
    if job["device"].startswith("cuda") and "CUDAExecutionProvider" not in providers:
        return {"ok": False, "unavailable": True,
                "error": "funasr_onnx would run on the CPU: the ONNX environment's onnxruntime has no "
                         "CUDAExecutionProvider (install onnxruntime-gpu there for a GPU run)"}

    recorded: list[list[int]] = []
    backbone = model.bb_infer

    def recording_bb_infer(feats, feats_len, bias_embed):
        outputs = backbone(feats, feats_len, bias_embed)
        scores, counts = outputs[0], outputs[1]
        for row in range(scores.shape[0]):
            ids = scores[row, : int(counts[row])].argmax(axis=-1)
            recorded.append([int(i) for i in ids if int(i) not in SPECIAL_IDS])
        return outputs

    model.bb_infer = recording_bb_infer
    size = job["batch_size"]
    tokens: list[list[int] | None] = []
    notes: list[str] = []

    def call(paths: list[str]) -> None:
        tokens.clear()
        for start in range(0, len(paths), size):
            batch = paths[start:start + size]
            recorded.clear()
            results = model(batch, hotwords="")
            if len(results) == len(batch) == len(recorded):
                tokens.extend(recorded)
            else:
                notes.append(f"batch of {len(batch)} from {Path(batch[0]).name} gave {len(results)} results")
                tokens.extend([None] * len(batch))

    t0 = time.perf_counter()
    call(job["warmup"])
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    call(job["files"])
    wall_s = time.perf_counter() - t0
    session = model.ort_infer_bb.session.get_session_options()
    from importlib.metadata import version

    return {
        "ok": True, "wall_s": wall_s, "warmup_s": warmup_s, "load_s": load_s, "tokens": tokens,
        "batches": [min(size, len(job["files"]) - i) for i in range(0, len(job["files"]), size)],
        "batch_size": size, "notes": notes, "providers": providers,
        "threads": {"ort_intra_op_threads": session.intra_op_num_threads,
                    **{k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}},
        "versions": {"funasr_onnx": version("funasr_onnx"),
                     "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
    }


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        result = run(job)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as this run's error
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["pid"] = os.getpid()
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
