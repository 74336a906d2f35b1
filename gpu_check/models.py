"""Step `models`: build the random-weight models offline and load the checked one on the device.

`random:large` is FunASR's real SeACo-Paraformer architecture with random weights
(asr/models/random_weights/seaco.py): built by FunASR's own class from the vendored reference
config, no download.
The tests' transcript check also needs the random:tiny punctuation model; both go into the
project's .cache/models, where the tests and the benchmark find them.
"""

from __future__ import annotations

import time

from .worker import main


def build(plan: dict, save) -> dict:
    import torch

    from asr.models.random_weights.punctuation import PUNCTUATION
    from asr.models.random_weights.seaco import SEACO
    from asr.recognition.model import load_model
    from asr.settings import PROJECT_ROOT

    cache = PROJECT_ROOT / ".cache"
    data: dict = {"built": {}}
    for spec, build in ((plan["model"], SEACO), ("random:tiny", SEACO), ("random:tiny", PUNCTUATION)):
        started = time.perf_counter()
        directory = build.ensure(spec, cache / "models")
        weights = directory / "model.pt"
        data["built"][f"{build.label} {spec}"] = {
            "dir": directory.name, "seconds": round(time.perf_counter() - started, 1),
            "model_pt_mb": round(weights.stat().st_size / 2**20, 1) if weights.is_file() else None}
        save(data)
    started = time.perf_counter()
    loaded = load_model(plan["model"], plan["device"], cache, 0)
    data["load"] = {"spec": plan["model"], "device": str(loaded.device),
                    "parameters_m": round(loaded.parameters / 1e6, 1),
                    "seconds": round(time.perf_counter() - started, 1), "dtype": loaded.dtype}
    if loaded.device.type == "cuda":
        data["load"]["weights_allocated_mb"] = round(torch.cuda.memory_allocated(loaded.device) / 2**20, 1)
    data["highlights"] = {"model": plan["model"], "parameters_m": data["load"]["parameters_m"],
                          "load_s": data["load"]["seconds"]}
    return {"status": "pass", "data": data}


if __name__ == "__main__":
    raise SystemExit(main(build))
