"""What every command-line entry point shares: its log format and a progress bar on stderr.

stdout stays free for results (`--json`), so logs and progress both go to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .settings import Settings, SettingsError, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level_name: str, quiet: bool = False) -> None:
    """`force=True`: importing FunASR/ModelScope may already have configured the root logger,
    which would silently turn our level and format into a no-op."""
    level = logging.WARNING if quiet else getattr(logging, level_name)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


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
