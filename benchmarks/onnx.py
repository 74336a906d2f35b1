"""FunASR's ONNX runtime for the benchmark: its own virtualenv, and the model exported by FunASR.

Two environments, each created on first use under .cache/bench/ and reused after:

- `onnx-venv/`: `pip install funasr-onnx`, the way its users install it. It cannot share the
  project's venv: funasr_onnx pins numpy<=1.26.4 and the project runs numpy 2. It runs the O/O8
  variants (tuning/bench_onnx_worker.py) and nothing else.
- `onnx-export-deps/`: the export has to run where FunASR and torch are, i.e. the project's
  interpreter (copying torch and FunASR into the ONNX venv would add gigabytes). FunASR's exporter
  also needs `onnx`, and `onnxruntime` for its int8 quantisation; those go into this folder with
  `pip install --target`, and only the export process appends it to sys.path, after the project's
  own packages, so the project venv itself is never changed and its numpy stays the one in use.

The export is FunASR's own (`AutoModel(...).export(type="onnx", quantize=True)`), with one shim:
torch 2.11's `torch.onnx.export` defaults to the dynamo exporter, which cannot trace FunASR's
export wrappers, so the export process passes `dynamo=False` (torch's TorchScript-based exporter,
the one FunASR was written for). Run as `python -m benchmarks.onnx export MODEL_DIR OUT_DIR`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

FUNASR_ONNX_REQUIREMENTS = ["funasr-onnx==0.4.3", "onnxruntime==1.32.0"]
# onnx and onnxruntime's own needs not already in the project venv (numpy, protobuf, packaging,
# typing_extensions are); installed without dependency resolution so nothing of ours is replaced.
EXPORT_REQUIREMENTS = ["onnx==1.23.2", "onnxruntime==1.32.0", "ml_dtypes==0.6.0", "flatbuffers==25.12.19"]
MODEL_FILES = ("config.yaml", "am.mvn", "tokens.json")
EXPORTED = {False: ("model.onnx", "model_eb.onnx"), True: ("model_quant.onnx", "model_eb_quant.onnx")}
WORKER = Path(__file__).with_name("bench_onnx_worker.py")
INSTALL_TIMEOUT_S = 1800
EXPORT_TIMEOUT_S = 3600


class OnnxUnavailable(RuntimeError):
    """The ONNX variants cannot run here; the message says why (shown as 'unavailable: ...')."""


@dataclass
class OnnxSetup:
    python: Path  # the ONNX venv's interpreter
    model_dir: Path  # exported model: config.yaml, am.mvn, tokens.json, model*.onnx
    notes: list[str] = field(default_factory=list)
    export: dict = field(default_factory=dict)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def _pip(python: str | Path, args: list[str], what: str) -> None:
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    log.info("installing %s: %s", what, " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise OnnxUnavailable(f"installing {what} took over {INSTALL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise OnnxUnavailable(f"could not install {what} (offline?): {_tail(done.stderr or done.stdout)}")


def base_python() -> str:
    """The interpreter the project venv was made from: the ONNX venv gets the same Python."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_runtime_env(root: Path) -> Path:
    """Create root/onnx-venv with funasr_onnx on first use; return its python."""
    venv = root / "onnx-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = " ".join(FUNASR_ONNX_REQUIREMENTS)
    if python.exists() and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == wanted:
        return python
    if not python.exists():
        log.info("creating the ONNX runtime virtualenv at %s (first use only)", venv)
        done = subprocess.run([base_python(), "-m", "venv", str(venv)], capture_output=True, text=True)
        if done.returncode != 0:
            raise OnnxUnavailable(f"could not create a virtualenv at {venv}: {_tail(done.stderr)}")
    _pip(python, FUNASR_ONNX_REQUIREMENTS, f"funasr_onnx into {venv}")
    stamp.write_text(wanted + "\n", encoding="utf-8")
    return python


def ensure_export_deps(root: Path) -> Path | None:
    """onnx + onnxruntime for FunASR's exporter, in a folder the export process adds to sys.path.

    None when the project's interpreter already has both (nothing to add).
    """
    probe = subprocess.run([sys.executable, "-c", "import onnx, onnxruntime.quantization"],
                           capture_output=True)
    if probe.returncode == 0:
        return None
    target = root / "onnx-export-deps"
    stamp = target / ".installed"
    wanted = " ".join(EXPORT_REQUIREMENTS)
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == wanted:
        return target
    if target.exists():
        shutil.rmtree(target)
    _pip(sys.executable, ["--no-deps", "--target", str(target), *EXPORT_REQUIREMENTS],
         f"the exporter's onnx packages into {target}")
    stamp.write_text(wanted + "\n", encoding="utf-8")
    return target


def _model_fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha1()
    for name in ("config.yaml", "model.pt", "tokens.json", "am.mvn"):
        path = model_dir / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    from importlib.metadata import version

    digest.update(f"funasr {version('funasr')}".encode())
    return digest.hexdigest()[:10]


def check_exportable(model_dir: Path) -> None:
    """FunASR's SeACo exporter traces with a 512-wide hotword embedding; say so up front."""
    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    width = (config.get("model_conf") or {}).get("inner_dim", 512)
    if width != 512:
        raise OnnxUnavailable(
            f"FunASR's ONNX exporter builds its sample hotword embedding 512 wide "
            f"(funasr/models/seaco_paraformer/export_meta.py) but this model's is {width}; "
            "use random:large or a real model for the ONNX variants")


def ensure_export(model_dir: Path, root: Path) -> tuple[Path, dict]:
    """Export model_dir with FunASR's exporter (fp32 + int8) once; return the folder and its record."""
    check_exportable(model_dir)
    target = root / "onnx" / f"{model_dir.name}-{_model_fingerprint(model_dir)}"
    record_path = target / "export.json"
    if record_path.is_file() and all((target / n).is_file() for pair in EXPORTED.values() for n in pair):
        return target, json.loads(record_path.read_text(encoding="utf-8"))
    deps = ensure_export_deps(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    command = [sys.executable, "-m", "benchmarks.onnx", "export", str(model_dir), str(staging)]
    if deps:
        command += ["--deps", str(deps)]
    log.info("exporting %s to ONNX with FunASR's exporter (first use only; about a minute for "
             "the large model)", model_dir)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S,
                              cwd=Path(__file__).resolve().parent.parent)
        if done.returncode != 0:
            raise OnnxUnavailable(f"FunASR's ONNX export failed: {_tail(done.stderr, 3)}")
        record = json.loads((staging / "export.json").read_text(encoding="utf-8"))
        record["export_s"] = round(time.perf_counter() - started, 1)
        (staging / "export.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except subprocess.TimeoutExpired:
        raise OnnxUnavailable(f"FunASR's ONNX export took over {EXPORT_TIMEOUT_S} s") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, record


def check_gpu_provider(python: Path) -> None:
    """On a CUDA run, funasr_onnx without onnxruntime's CUDA provider would quietly use the CPU."""
    code = "import onnxruntime; print(onnxruntime.get_available_providers())"
    probe = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if "CUDAExecutionProvider" not in probe.stdout:
        raise OnnxUnavailable(
            "this is a CUDA run, but the ONNX environment's onnxruntime has no CUDAExecutionProvider, so "
            "funasr_onnx would quietly run on the CPU (install onnxruntime-gpu into "
            f"{python.parent.parent} for a GPU comparison)")


def prepare(model_dir: Path, root: Path, device: str = "cpu") -> OnnxSetup:
    """Everything O/O8 need, or OnnxUnavailable with the reason."""
    check_exportable(model_dir)
    python = ensure_runtime_env(root)
    if device == "cuda":
        check_gpu_provider(python)
    exported, record = ensure_export(model_dir, root)
    return OnnxSetup(python=python, model_dir=exported, export=record)


def worker_command(setup: OnnxSetup, job_path: Path, out_path: Path) -> list[str]:
    return [str(setup.python), str(WORKER), str(job_path), str(out_path)]


# ---- the export process -------------------------------------------------------------------------

def _export(model_dir: Path, out_dir: Path, deps: Path | None) -> dict:
    if deps:
        sys.path.append(str(deps))  # after site-packages: the project's numpy/protobuf win
    import contextlib
    import io

    import torch

    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
    with contextlib.redirect_stdout(io.StringIO()):
        import funasr
        from funasr import AutoModel

        model = AutoModel(model=str(model_dir), device="cpu", disable_update=True, disable_log=True)
    for name in MODEL_FILES:
        shutil.copy2(model_dir / name, out_dir / name)
    model.export(type="onnx", quantize=True, output_dir=str(out_dir))
    missing = [n for pair in EXPORTED.values() for n in pair if not (out_dir / n).is_file()]
    if missing:
        raise RuntimeError(f"FunASR's exporter did not write {', '.join(missing)}")
    import onnx
    import onnxruntime

    record = {"source": str(model_dir), "funasr": funasr.__version__, "torch": torch.__version__,
              "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
              "exporter": "torch.onnx.export(dynamo=False) via AutoModel.export(type='onnx', quantize=True)",
              "files": {n: (out_dir / n).stat().st_size for pair in EXPORTED.values() for n in pair}}
    (out_dir / "export.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="export a SeACo-Paraformer directory with FunASR's exporter")
    export.add_argument("model_dir", type=Path)
    export.add_argument("out_dir", type=Path)
    export.add_argument("--deps", type=Path, help="folder with onnx/onnxruntime to append to sys.path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(_export(args.model_dir, args.out_dir, args.deps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
