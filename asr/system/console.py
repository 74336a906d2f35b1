"""What every command-line entry point shares: its log format and a progress bar on stderr.

stdout stays free for results (`--json`), so logs and progress both go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asr.settings import Settings, SettingsError, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level_name: str, quiet: bool = False) -> None:
    """`force=True`: importing FunASR/ModelScope may already have configured the root logger,
    which would silently turn our level and format into a no-op."""
    level = logging.WARNING if quiet else getattr(logging, level_name)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


# Flag (argparse dest) -> setting key.
_ENGINE_FLAGS = {name: name for name in ("model", "device", "precision", "fp16", "int8", "preload_audio",
                                         "batch_size", "vad", "punctuation", "timestamps", "itn",
                                         "speaker_model")}
_ENGINE_FLAGS["speakers"] = "speakers.count"


def add_engine_flags(parser: argparse.ArgumentParser, batch_size: bool = True) -> None:
    """The flags every command shares for choosing and shaping the engine (and --config).

    On/off flags come in pairs (`--int8` / `--no-int8`) and default to None, meaning "not
    given": config.yaml and the environment decide.
    """
    parser.add_argument("--model", help="ModelScope id, local model directory, or random:tiny|large")
    parser.add_argument("--device", help="auto, cuda or cpu")
    if batch_size:
        parser.add_argument("--batch-size", type=int, help="files (or long-file segments) per model call")
    on_off = argparse.BooleanOptionalAction  # --x switches on, --no-x off, neither: config decides
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8"),
                        help="fp32 (exact), bf16 (CPUs with AVX-512 BF16 or AMX; Ampere+ GPUs), fp16 "
                             "(CUDA) or int8 (CPU linear layers); reduced ones may change tokens")
    parser.add_argument("--fp16", action=on_off, default=None, help="deprecated: --precision fp16")
    parser.add_argument("--int8", action=on_off, default=None, help="deprecated: --precision int8")
    parser.add_argument("--preload-audio", action=on_off, default=None,
                        help="decode and extract features on worker threads ahead of the model")
    parser.add_argument("--vad", help="speech detection: silero, fsmn, energy or off")
    parser.add_argument("--punctuation",
                        help="punctuation model: ModelScope id, local directory, random:tiny, or off")
    parser.add_argument("--timestamps", action=on_off, default=None,
                        help="word and sentence times (the timestamp head; a little more model work)")
    parser.add_argument("--itn", action=on_off, default=None,
                        help="numbers, dates and amounts as digits (2024年3月5日, 下午3:15, 5%%); "
                             "the raw text is kept beside")
    parser.add_argument("--speakers", metavar="auto|N|off",
                        help="speaker labels: auto (the count is found), a known count N, or off")
    parser.add_argument("--speaker-model",
                        help="speaker embeddings: a CAM++ ModelScope id or directory, cam++, ge2e, or "
                             "random:tiny")
    parser.add_argument("--config", help="config.yaml to read (default: the project's)")


def engine_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings overrides from the flags `add_engine_flags` defined (None: not given)."""
    return {key: getattr(args, name, None) for name, key in _ENGINE_FLAGS.items()}


def settings_for_command(config: str | Path | None, overrides: Mapping[str, Any],
                         quiet: bool = False) -> Settings | None:
    """Settings for a command-line entry point, with logging set up from them.

    None (after saying why on stderr) when a setting is bad: the caller exits with status 2.
    """
    try:
        settings = load_settings(config, overrides=overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_level, quiet)
    return settings


class ProgressBar:
    """A one-line text bar; call it with a fraction done (0-1) and a short message."""

    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.last = ""
        self.finished = False

    def __call__(self, fraction: float, message: str) -> None:
        filled = int(self.width * min(1.0, max(0.0, fraction)))
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:3.0f}% {message[:50]:<50}"
        if line != self.last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self.last = line
        if fraction >= 1.0 and not self.finished:
            sys.stderr.write("\n")
            self.finished = True

    def files(self, done: int, total: int, name: str) -> None:
        """The engine's progress callback shape: (files done, files total, file name)."""
        self(done / total if total else 1.0, f"{done}/{total} {name}")
