"""The SeACo-Paraformer model as the engine holds it: loaded once (through the one FunASR
loader, asr.models.loader), its CPU kernels chosen, and its int8 copy made on request."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.models import ModelLoadError
from asr.models.loader import ModelKind, build_funasr_model, resolve_device
from asr.models.random_weights.base import RandomBuilds
from asr.models.random_weights.hotword import HOTWORD
from asr.models.random_weights.seaco import SEACO
from asr.recognition.cpu_kernels import onednn_linear_works, use_onednn_linears
from asr.system.threads import default_cpu_threads, set_thread_count

__all__ = ["LoadedModel", "ModelLoadError", "load_model", "quantize_int8", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    spec: str
    directory: Path
    model: torch.nn.Module
    tokenizer: object
    frontend: torch.nn.Module
    device: torch.device
    dtype: str
    parameters: int
    load_s: float
    threads: int = 1  # torch CPU threads the model was loaded with
    cpu_gemm: str = "torch"  # what runs its linear layers on a CPU: "onednn" or torch's default


SEACO_MODEL = ModelKind(
    label="model", class_names=("SeacoParaformer",), random_build=RandomBuilds("model", (SEACO, HOTWORD)),
    advice=("Point --model (or `model:` in config.yaml) at a local model directory, or use --model "
            "random:tiny / random:large for a random-weight model that exercises every code path "
            "(random:hotword: a planted model whose hotword path provably decides its text)."))


def load_model(spec: str, device: str, cache_dir: Path, cpu_threads: int,
               cpu_gemm: str = "torch") -> LoadedModel:
    started = time.perf_counter()
    target = resolve_device(device)
    threads = cpu_threads or default_cpu_threads()
    # Loaded on one thread, and the loading thread stays at one: the model runs on the engine's
    # batcher thread with `threads`. A second OpenMP team on another thread, even idle, makes
    # libgomp count more threads than cores and throttle its spinning, which slowed the model
    # measurably on 2 cores.
    built = build_funasr_model(spec, SEACO_MODEL, target, cache_dir, ncpu=1)
    model, kwargs, directory = built.model, built.kwargs, built.directory
    log.info("loaded model %s from %s on %s", spec, directory, target)
    set_thread_count(1)
    gemm = "torch"
    if target.type == "cpu" and cpu_gemm == "onednn":
        if onednn_linear_works():
            gemm = "onednn"
            log.info("oneDNN kernels for %d linear layers", use_onednn_linears(model))
        else:
            log.warning("cpu_gemm=onednn, but this torch build cannot run oneDNN linears; using torch's")
    parameters = sum(p.numel() for p in model.parameters())
    loaded = LoadedModel(
        spec=spec, directory=directory, model=model, tokenizer=kwargs["tokenizer"],
        frontend=kwargs["frontend"], device=target, dtype=str(next(model.parameters()).dtype),
        parameters=parameters, load_s=time.perf_counter() - started, threads=threads,
        cpu_gemm=gemm,
    )
    log.info("model ready: %.1f M parameters, %s, %d CPU threads, %.1f s",
             parameters / 1e6, target, threads, loaded.load_s)
    return loaded


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with its linear layers in dynamic int8 (CPU only).

    torch's dynamic quantisation stores weights as int8 once and quantises each activation
    tensor on the fly with a scale taken from that whole tensor, so in a padded batch a file's
    tokens can depend on its batch mates. Side-by-side CPU batches (cpu_lanes, the default with
    int8) run each file alone, so there batching leaves int8 tokens alone too; with cpu_lanes=1
    it does not.
    The encoder's linears are about three quarters of the model's work on CPU.
    """
    with warnings.catch_warnings():
        # torch 2.11 points to torchao for the future; the built-in path works and needs nothing new.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torchao.*")
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    quantized.eval()
    return quantized
