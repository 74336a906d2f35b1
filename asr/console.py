"""What every command-line entry point shares: its log format and a progress bar on stderr.

stdout stays free for results (`--json`), so logs and progress both go to stderr.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level_name: str, quiet: bool = False) -> None:
    """`force=True`: importing FunASR/ModelScope may already have configured the root logger,
    which would silently turn our level and format into a no-op."""
    level = logging.WARNING if quiet else getattr(logging, level_name)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


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
