"""Step `probe`: what the machine is and whether the engine imports on it.

Versions (Python, torch and its CUDA and cuDNN, the kit's packages), the GPU (name, capability,
memory, bf16 support), `nvidia-smi -L` and NVML's figures through asr.system.gpu, torchaudio's extension
state, and whether this build has the `precision` setting. Fails when `asr.engine` does not
import, or when the plan wants CUDA and torch sees none (then nothing after it can run).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess

from .worker import main

PACKAGES = ("torch", "torchaudio", "numpy", "funasr", "soundfile", "silero-vad", "nvidia-ml-py", "pyyaml",
            "pytest", "omegaconf", "setuptools")


def _versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=15)
        return (done.stdout or done.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"


def probe(plan: dict, save) -> dict:
    import platform

    import torch

    data: dict = {"python": platform.python_version(), "versions": _versions(),
                  "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                  "nvidia_smi": _nvidia_smi()}
    try:
        data["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - a CPU build may have none
        data["cudnn"] = None
    import torchaudio
    from torchaudio import _extension

    data["torchaudio_extension"] = bool(getattr(_extension, "_IS_TORCHAUDIO_EXT_AVAILABLE", False))
    data["torchaudio_path"] = torchaudio.__file__
    import asr.engine  # noqa: F401 - the import this step vouches for
    from asr.settings import SCHEMA
    from asr.system.gpu import gpu_memory

    data["precision_setting"] = "precision" in SCHEMA
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        data["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                       "total_mb": round(props.total_memory / 2**20), "count": torch.cuda.device_count(),
                       "bf16_supported": torch.cuda.is_bf16_supported(),
                       "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                       "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    data["nvml"] = gpu_memory().to_dict()
    highlights = {"python": data["python"], "torch": data["versions"]["torch"], "cuda": data["torch_cuda"],
                  "gpu": data.get("gpu", {}).get("name"), "precision_setting": data["precision_setting"],
                  "torchaudio_extension": data["torchaudio_extension"],
                  "nvml": data["nvml"].get("message") or "ok"}
    data["highlights"] = highlights
    if plan["device"] == "cuda" and not torch.cuda.is_available():
        return {"status": "fail", "reason": "torch sees no CUDA GPU", "data": data}
    return {"status": "pass", "data": data}


if __name__ == "__main__":
    raise SystemExit(main(probe))
