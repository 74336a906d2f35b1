"""What every random-weight build shares: the `random:SIZE` spec, FunASR's own classes built with
a fixed seed, the ModelScope files (configuration.json, am.mvn), and an atomic write.

The builds are generated on first use, possibly by two processes at once (a test run and a
server). Each is written into a staging folder beside its target and swapped in whole; if another
process finished the same directory first, its copy is kept, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from asr.models.funasr import import_funasr

log = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"


def is_random_spec(spec: str) -> bool:
    return spec.startswith(RANDOM_PREFIX)


@dataclass(frozen=True)
class RandomBuild:
    """One kind of generated model: its sizes, its folder name and how to write one.

    `generate(size, target)` writes a complete directory at `target` (through
    `write_model_dir`); `ensure` does it once per size and version into a models cache."""

    label: str  # for messages: "model", "punctuation model", "fsmn VAD model"
    folder: str  # cache folder stem: "random", "random-punc", ...
    sizes: tuple[str, ...]
    version: int  # bump when the generated layout or weights change
    files: tuple[str, ...]  # what a complete directory holds
    generate: Callable[[str, Path], Path]

    def size_of(self, spec: str) -> str:
        if not is_random_spec(spec):
            raise ValueError(f"'{spec}' is not a {RANDOM_PREFIX} spec")
        size = spec[len(RANDOM_PREFIX):]
        if size not in self.sizes:
            raise ValueError(f"{self.label} '{spec}': a random {self.label}'s size must be one of "
                             f"{', '.join(self.sizes)}, not '{size}'")
        return size

    def directory(self, spec: str, cache_dir: Path) -> Path:
        return cache_dir / f"{self.folder}-{self.size_of(spec)}-v{self.version}"

    def complete(self, directory: Path) -> bool:
        return all((directory / name).is_file() for name in self.files)

    def ensure(self, spec: str, cache_dir: Path) -> Path:
        """The directory for `spec`, generated once into `cache_dir` (the models cache)."""
        target = self.directory(spec, cache_dir)
        if self.complete(target):
            return target
        log.info("building %s %s into %s (first use only)", spec, self.label, target)
        return self.generate(self.size_of(spec), target)


@dataclass(frozen=True)
class RandomBuilds:
    """Several builds of one kind of model, chosen by the spec's size (random:tiny, random:hotword)."""

    label: str
    builds: tuple[RandomBuild, ...]

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(size for build in self.builds for size in build.sizes)

    def ensure(self, spec: str, cache_dir: Path) -> Path:
        size = spec[len(RANDOM_PREFIX):] if is_random_spec(spec) else ""
        for build in self.builds:
            if size in build.sizes:
                return build.ensure(spec, cache_dir)
        raise ValueError(f"{self.label} '{spec}': a random {self.label}'s size must be one of "
                         f"{', '.join(self.sizes)}, not '{size}'")


def instantiate(model_name: str, seed: int, **kwargs: Any) -> torch.nn.Module:
    """FunASR's registered class `model_name`, built with `kwargs` from a fixed seed (the global
    RNG is left as it was), in eval mode."""
    import_funasr()  # importing funasr registers its model classes
    from funasr.register import tables  # deliberate lazy import: only after funasr registered them

    model_class = tables.model_classes.get(model_name)
    if model_class is None:
        raise ValueError(f"FunASR has no model class {model_name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(**kwargs)
    return model.eval()


def configuration_json(task: str, file_path_metas: dict[str, Any], generator: str) -> dict:
    """ModelScope's configuration.json for a FunASR model directory."""
    return {
        "framework": "pytorch",
        "task": task,
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml", **file_path_metas},
        "generated_by": f"seaco-webui {generator}",
    }


def cmvn_text(shift: torch.Tensor, scale: torch.Tensor) -> str:
    """am.mvn: Kaldi nnet text with <AddShift>/<Rescale>, the format FunASR's load_cmvn reads."""
    dim = shift.numel()

    def vector(values: torch.Tensor) -> str:
        return "[ " + " ".join(f"{v:.6f}" for v in values.tolist()) + " ]"

    return (
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 {vector(shift)}\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 {vector(scale)}\n"
        "</Nnet>\n"
    )


def write_model_dir(target: Path, state_dict: dict[str, Any], config: dict, texts: dict[str, str],
                    configuration: dict, required: Iterable[str] = ()) -> Path:
    """model.pt, config.yaml, configuration.json and `texts` (name -> content) at `target`."""

    def fill(staging: Path) -> None:
        torch.save(state_dict, staging / "model.pt")
        (staging / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                                             encoding="utf-8")
        (staging / "configuration.json").write_text(json.dumps(configuration, indent=2, ensure_ascii=False),
                                                    encoding="utf-8")
        for name, content in texts.items():
            (staging / name).write_text(content, encoding="utf-8")

    names = ("model.pt", "config.yaml", "configuration.json", *texts, *required)
    return swap_in(target, fill, lambda d: all((d / n).is_file() for n in names))


def swap_in(target: Path, fill: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
    """Fill a staging folder beside `target` and rename it into place in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(staging)
        if target.exists() and not complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a broken leftover
        try:
            os.replace(staging, target)
        except OSError:
            if not complete(target):  # not another process winning the race: a real failure
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

