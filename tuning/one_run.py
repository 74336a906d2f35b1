"""One run at a time of a long measurement, and a way to cancel it from elsewhere.

The wizard and the precision check hold the model alone for minutes. Two at once would time each
other, and a run nobody can stop keeps every other request waiting: the Tuning tab's Cancel
button and the command line's Ctrl+C both reach the run in progress through its `OneRun`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class RunBusy(RuntimeError):
    """A run of this kind is already in progress in this process."""


class RunCancelled(RuntimeError):
    """The run was cancelled; the model is free again."""


class OneRun:
    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._cancel: threading.Event | None = None

    @contextlib.contextmanager
    def running(self, cancel: threading.Event | None = None) -> Iterator[threading.Event]:
        """Hold the one run; yields the event that cancels it (`cancel`, or a new one)."""
        if not self._lock.acquire(blocking=False):
            raise RunBusy(f"a {self.what} is already in progress; wait for it to finish or cancel it")
        event = cancel if cancel is not None else threading.Event()
        self._cancel = event
        try:
            yield event
        finally:
            self._cancel = None
            self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def cancel(self) -> bool:
        """Ask the run in progress to stop; False when none is running."""
        event = self._cancel
        if event is None:
            return False
        event.set()
        return True
