"""Find and load the SeACo-Paraformer model: ModelScope id, local directory, or `random:SIZE`.

Loading goes through FunASR's own `AutoModel.build_model`, so a generated directory is proven to
be what FunASR expects. A hub id that is neither cached nor reachable fails within seconds with
a message that says what to do, instead of hanging in retries.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .cpu_kernels import onednn_linear_works, use_onednn_linears
from .random_model import ensure_random_model, is_random_spec
from .threads import set_thread_count

log = logging.getLogger(__name__)

MODELSCOPE_HOST = ("modelscope.cn", 443)


class ModelLoadError(RuntimeError):
    """The model cannot be found or loaded; the message says how to fix it."""


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


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but torch sees no CUDA GPU; use --device cpu")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _hub_reachable(timeout_s: float = 5.0) -> bool:
    try:
        socket.create_connection(MODELSCOPE_HOST, timeout=timeout_s).close()
        return True
    except OSError:
        return False


_ASR_ADVICE = ("Point --model (or `model:` in config.yaml) at a local model directory, or use --model "
               "random:tiny / random:large for a random-weight model that exercises every code path.")


def _download_from_modelscope(model_id: str, advice: str = _ASR_ADVICE) -> Path:
    from modelscope.hub.snapshot_download import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached yet: any failure means "go download"
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"model '{model_id}' is not in the ModelScope cache and modelscope.cn cannot be "
            f"reached, so it cannot be downloaded. {advice}"
        )
    log.info("downloading %s from ModelScope (first run only)", model_id)
    try:
        return Path(snapshot_download(model_id))
    except Exception as exc:  # noqa: BLE001 - modelscope raises many types
        raise ModelLoadError(
            f"downloading model '{model_id}' from ModelScope failed: {exc}. {advice}"
        ) from exc


def resolve_model_dir(spec: str, cache_dir: Path,
                      ensure_random: Callable[[str, Path], Path] = ensure_random_model,
                      advice: str = _ASR_ADVICE) -> Path:
    """The directory of a model given as `random:SIZE`, a local directory or a ModelScope id.

    `ensure_random` builds a `random:` spec into `cache_dir/models` (the ASR model's builder by
    default; the VAD and punctuation models pass their own), and `advice` tells a user who cannot
    download the model what to set instead."""
    if is_random_spec(spec):
        try:
            return ensure_random(spec, cache_dir / "models")
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
    local = Path(spec).expanduser()
    if local.is_dir():
        missing = [n for n in ("config.yaml", "model.pt") if not (local / n).is_file()]
        if missing:
            raise ModelLoadError(f"model directory {local} lacks {', '.join(missing)}")
        return local.resolve()
    if local.exists() or spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"model path {local} is not a directory")
    return _download_from_modelscope(spec, advice)


class _FunasrChatterFilter(logging.Filter):
    """FunASR logs on the root logger: per-load INFO lines and a 'trust_remote_code: False'
    warning on every load. Keep its real warnings and errors, drop the chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "funasr" not in record.pathname.replace("\\", "/").split("/"):
            return True
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and "trust_remote_code" not in str(record.msg)


_chatter_filter = _FunasrChatterFilter()


def import_funasr():
    """Import FunASR with its import-time banners (printed to stdout) kept out of our output,
    which must stay clean for `--json`."""
    root = logging.getLogger()
    if _chatter_filter not in root.filters:
        root.addFilter(_chatter_filter)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # pydub (pulled in by FunASR) warns about ffmpeg, which this project does not use.
        warnings.filterwarnings("ignore", message="Couldn't find ffmpeg", category=RuntimeWarning)
        import funasr
        from funasr.models.seaco_paraformer import model  # noqa: F401
    return funasr


def load_model(spec: str, device: str, cache_dir: Path, cpu_threads: int,
               cpu_gemm: str = "onednn") -> LoadedModel:
    AutoModel = import_funasr().AutoModel

    started = time.perf_counter()
    directory = resolve_model_dir(spec, cache_dir)
    target = resolve_device(device)
    threads = cpu_threads or default_cpu_threads()
    log.info("loading model %s from %s on %s", spec, directory, target)
    try:
        # Loaded on one thread, and the loading thread stays at one: the model runs on the
        # engine's batcher thread with `threads`. A second OpenMP team on another thread, even
        # idle, makes libgomp count more threads than cores and throttle its spinning, which
        # slowed the model by about 10% on the 2-core bench machine.
        with contextlib.redirect_stdout(io.StringIO()):
            model, kwargs = AutoModel.build_model(
                model=str(directory), device=str(target), ncpu=1, disable_update=True,
                disable_log=True,
            )
    except Exception as exc:  # noqa: BLE001 - FunASR raises many types on a bad directory
        raise ModelLoadError(f"FunASR could not load the model in {directory}: {exc}") from exc
    if type(model).__name__ != "SeacoParaformer":
        raise ModelLoadError(
            f"{directory} holds a {type(model).__name__}, but this workbench needs SeacoParaformer"
        )
    set_thread_count(1)
    model.eval()
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


def default_cpu_threads() -> int:
    """Physical cores where known; FunASR's default of 4 oversubscribes small machines."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, count or 1)


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
