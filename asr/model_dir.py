"""Write a generated model directory so that a reader never sees half of one.

The random-weight builds (recogniser, punctuation, fsmn-vad) are generated on first use, possibly
by two processes at once (a test run and a server). Each is written into a staging folder beside
its target and swapped in whole; if another process finished the same directory first, its copy
is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import yaml


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
    return _swap_in(target, fill, lambda d: all((d / n).is_file() for n in names))


def _swap_in(target: Path, fill: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
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
