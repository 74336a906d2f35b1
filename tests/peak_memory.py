"""The process's own peak memory around one call: VmHWM after resetting it to the current RSS.

Writing 5 to /proc/self/clear_refs resets VmHWM (the peak resident set) to the current resident
set, so the peak read afterwards is this call's own, however high the process had been before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _status_mb(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match, f"no {field} in /proc/self/status"
    return int(match.group(1)) / 1024


def peak_growth_mb(call: Callable[[], T]) -> tuple[float, T]:
    """(MB the peak resident set rose above the resident set at the start, call's result).
    An exception from `call` propagates after the measurement is taken."""
    Path("/proc/self/clear_refs").write_text("5")
    start = _status_mb("VmRSS")
    try:
        result = call()
    finally:
        grown = _status_mb("VmHWM") - start
    return grown, result


def peak_growth_raising_mb(call: Callable[[], object],
                           error: type[BaseException]) -> tuple[float, BaseException]:
    """The same for a call that must raise `error`: (MB grown, the exception)."""
    Path("/proc/self/clear_refs").write_text("5")
    start = _status_mb("VmRSS")
    try:
        call()
    except error as exc:
        return _status_mb("VmHWM") - start, exc
    raise AssertionError(f"expected {error.__name__}")
