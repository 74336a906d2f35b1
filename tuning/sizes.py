"""The wizard's error type and its reading of a typed list of batch sizes.

Kept apart from tuning.wizard (which loads torch and FunASR) so the command line can check its
arguments, and answer --help or a usage error, at once.
"""

from __future__ import annotations

import re


class WizardError(ValueError):
    """The wizard cannot run as asked (missing or unreadable file, bad sizes, already running)."""


def sizes_from_text(text: str) -> list[int]:
    """'2, 4, 6 8' -> [2, 4, 6, 8] (commas, semicolons or spaces); the one reading of a typed list
    of batch sizes for the tab, the wizard's CLI and the bench. Empty gives []."""
    parts = [p for p in re.split(r"[\s,;]+", text or "") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise WizardError(f"batch sizes must be whole numbers separated by commas, got {text!r}") from None
    if any(v < 1 for v in values):
        raise WizardError(f"batch sizes must be at least 1, got {text!r}")
    return values
