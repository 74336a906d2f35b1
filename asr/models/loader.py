"""The one loader for FunASR models: recogniser, punctuation, fsmn-vad and speaker models alike.

Every model goes through FunASR's own `AutoModel.build_model`, so a generated directory is proven
to be what FunASR expects; its stdout banners are kept out of our output, and whatever FunASR
raises on a bad directory becomes a `ModelLoadError` naming the model and the folder.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.models import ModelLoadError
from asr.models.funasr import import_funasr
from asr.models.hub import resolve_model_dir
from asr.models.random_weights.base import RandomBuild, RandomBuilds

log = logging.getLogger(__name__)


def resolve_device(requested: str | torch.device) -> torch.device:
    """`auto` is the first CUDA GPU where torch sees one, else the CPU; `cuda` without a GPU is
    refused with the fix."""
    if isinstance(requested, torch.device):
        return requested
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but torch sees no CUDA GPU; use --device cpu")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@dataclass(frozen=True)
class ModelKind:
    """What a loader needs to know about one kind of model."""

    label: str  # for messages: "model", "punctuation model", "fsmn VAD model"
    class_names: tuple[str, ...]  # FunASR class(es) a directory of this kind must hold
    random_build: RandomBuild | RandomBuilds  # how `random:SIZE` is generated
    advice: str  # what to set when the model cannot be had


@dataclass
class BuiltModel:
    model: torch.nn.Module
    kwargs: dict[str, Any]  # FunASR's: tokenizer, frontend, ...
    directory: Path


def model_dir(spec: str, kind: ModelKind, cache_dir: Path) -> Path:
    """The directory `spec` names for a model of `kind` (generated, local or from ModelScope)."""
    return resolve_model_dir(spec, cache_dir, kind.random_build, kind.advice, kind.label)


def build_funasr_model(spec: str, kind: ModelKind, device: torch.device, cache_dir: Path,
                       ncpu: int | None = None) -> BuiltModel:
    """Resolve `spec` to a directory and build it with FunASR, quietly, in eval mode.

    `ncpu`: the torch thread count build_model sets on the calling thread (default: keep the
    current one)."""
    directory = model_dir(spec, kind, cache_dir)
    auto_model = import_funasr().AutoModel
    log.debug("loading %s %s from %s on %s", kind.label, spec, directory, device)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model, kwargs = auto_model.build_model(
                model=str(directory), device=str(device), ncpu=ncpu or torch.get_num_threads(),
                disable_update=True, disable_log=True)
    except Exception as exc:  # noqa: BLE001 - FunASR raises many types on a bad directory
        raise ModelLoadError(f"FunASR could not load the {kind.label} in {directory}: {exc}") from exc
    if type(model).__name__ not in kind.class_names:
        raise ModelLoadError(f"{directory} holds a {type(model).__name__}, but the {kind.label} must be "
                             f"a {' or '.join(kind.class_names)}")
    model.eval()
    return BuiltModel(model, kwargs, Path(directory))
