"""What the GPU machine needs beside its own torch: the project's direct dependencies that the
engine, the tests and the benchmark import, plus exactly the packages those import at run time.

Found by running `import asr.engine`, an Engine on random:tiny with silero VAD, punctuation and
timestamps, the tuning wizard, the benchmark's FunASR variants (A, B) and pytest in a fresh
interpreter that had torch alone, installing with --no-deps whatever the next ImportError named
until none was left. FunASR's own requirement list is far longer (scipy, librosa's numba and
llvmlite, jieba, modelscope, ...; some 200 MB): those are never imported on this path, so funasr
installs with --no-deps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import ROOT

# Direct dependencies whose pins are read from pyproject.toml (so the kit follows the project).
FROM_PYPROJECT = {
    "funasr": "the model code (SeacoParaformer, its frontend and tokenizer)",
    "torchaudio": "fbank features (funasr's WavFrontend: torchaudio.compliance.kaldi) and resampling "
                  "(asr/audio.py imports torchaudio.functional at import)",
    "numpy": "everywhere; numpy 2 as torch 2.11 is built against",
    "pyyaml": "settings and model configs",
    "soundfile": "wav/flac decoding; its manylinux wheel bundles libsndfile",
    "nvidia-ml-py": "NVML figures (asr/gpu.py imports pynvml)",
    "silero-vad": "the default VAD (vad: silero); its model ships in the wheel",
    "pytest": "the CUDA tests (tests/test_gpu.py)",
}

# Imported at run time by the above, versions as verified together in the project's venv.
TRANSITIVE = {
    "cffi": ("2.1.1", "soundfile"),
    "pycparser": ("3.12", "cffi"),
    "requests": ("2.34.2", "funasr.models.seaco_paraformer imports it at module level"),
    "urllib3": ("2.8.0", "requests"),
    "idna": ("3.20", "requests"),
    "certifi": ("2026.10.19.post1", "requests"),
    "charset-normalizer": ("3.5.3", "requests (warns without it)"),
    "rapidfuzz": ("3.14.6", "funasr.metrics.common, imported by the model"),
    "six": ("1.17.0", "funasr.metrics.common"),
    "kaldiio": ("2.18.1", "funasr.utils.load_utils"),
    "librosa": ("0.11.0", "funasr.utils.load_utils imports it (never calls it: torchaudio resamples); "
                          "without its own dependencies, which it loads lazily"),
    "lazy-loader": ("0.6", "librosa's import"),
    "tqdm": ("4.70.1", "funasr.auto.auto_model"),
    "omegaconf": ("2.3.1", "funasr.auto.auto_model"),
    "antlr4-python3-runtime": ("4.9.3", "omegaconf (sdist only: built into a pure-Python wheel)"),
    "iniconfig": ("2.3.1", "pytest"),
    "pluggy": ("1.7.0", "pytest"),
    "packaging": ("26.4", "pytest, lazy-loader"),
    "pygments": ("2.21.0", "pytest"),
    "typing-extensions": ("4.16.0", "torch has it; pinned so every module sees one version"),
    "setuptools": ("81.0.0", "Python 3.12 has no distutils; funasr imports distutils.version, which "
                             "setuptools provides (torch 2.11 wants setuptools<82)"),
}

# Never in the kit, and why.
EXCLUDED = {
    "torch": "preinstalled on the GPU machine (2.11); its CUDA build must be the machine's own",
    "gradio": "the web UI only", "gradio_client": "the web UI only",
    "modelscope": "downloads hub models only; the check builds random: models offline",
    "av": "PyAV (~40 MB) decodes m4a/aac/webm only; the check uses wav, which soundfile reads",
}

SDIST_ONLY = {"antlr4-python3-runtime"}  # no wheel on PyPI: pip builds one (pure Python)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    why: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    """name -> version for every `name==version` in pyproject.toml's dependencies and extras."""
    import tomllib  # Python 3.11+: prepare runs on the development machine

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = data.get("project", {})
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    pins = {}
    for spec in specs:
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;,]+)", spec)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def pins() -> list[Pin]:
    """Every distribution of the kit, pinned."""
    project = pyproject_pins()
    missing = [n for n in FROM_PYPROJECT if canonical(n) not in project]
    if missing:
        raise ValueError(f"pyproject.toml has no == pin for {', '.join(missing)}")
    out = [Pin(n, project[canonical(n)], why) for n, why in FROM_PYPROJECT.items()]
    out += [Pin(n, version, f"needed by {why}") for n, (version, why) in TRANSITIVE.items()]
    return out
