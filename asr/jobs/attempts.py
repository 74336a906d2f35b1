"""How often each input of a job took its worker down with it, so a poisoned file is given up on.

Ray retries a task or an actor call whose worker process died (a crash in a decoder, the kernel's
or Ray's out-of-memory killer) without limit: one file that kills every worker that reads it
would keep the job from ever finishing, and no record would say why. So each stage tells one
ledger (a Ray actor owned by the driver, `AttemptLedger`) when it starts and when it finishes an
input: a start that never finished is a worker that died on that input. Past `max_attempts` such
deaths the stage writes an error record for the input instead of trying again, and the rest of
the job finishes.

A batch the recognition actors run together cannot say which of its files killed them: after
one such death its files are recognised one at a time, and only deaths while an input ran alone
count against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

MAX_ATTEMPTS = 3  # deaths of a worker on one input before it gets an error record instead


class AttemptLedger:
    """Starts and finishes per input key for the whole job run (a Ray actor, no CPU): alone, and
    as part of a batch. Only deaths while an input ran alone are its own."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.batch_started: Counter[str] = Counter()
        self.batch_finished: Counter[str] = Counter()

    def suspects(self, keys: Sequence[str]) -> list[bool]:
        """Per key: did a worker ever die while handling it, alone or in a batch."""
        return [self.started[k] > self.finished[k] or self.batch_started[k] > self.batch_finished[k]
                for k in keys]

    def begin(self, key: str) -> int:
        """Count a start of `key` alone; returns the deaths of workers handling it alone before."""
        deaths = self.started[key] - self.finished[key]
        self.started[key] += 1
        return deaths

    def begin_batch(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.batch_started[key] += 1

    def finish(self, keys: Sequence[str], batch: bool = False) -> None:
        for key in keys:
            (self.batch_finished if batch else self.finished)[key] += 1


class Attempts:
    """A stage's side of the ledger; with no ledger (a stage called directly) nothing counts."""

    def __init__(self, ledger: Any | None, max_attempts: int = MAX_ATTEMPTS):
        self.ledger = ledger
        self.max_attempts = max_attempts

    def suspects(self, keys: Sequence[str]) -> list[bool]:
        if self.ledger is None:
            return [False] * len(keys)
        import ray  # deliberate lazy import: stages run in Ray workers; without a ledger, no Ray

        return ray.get(self.ledger.suspects.remote(list(keys)))

    def begin(self, key: str) -> int:
        """Deaths before this start; waits for the ledger, so the start is counted before the work."""
        if self.ledger is None:
            return 0
        import ray  # deliberate lazy import: as above

        return ray.get(self.ledger.begin.remote(key))

    def begin_batch(self, keys: Sequence[str]) -> None:
        if self.ledger is not None:
            import ray  # deliberate lazy import: as above

            ray.get(self.ledger.begin_batch.remote(list(keys)))

    def finish(self, keys: Sequence[str], batch: bool = False) -> None:
        if self.ledger is not None and keys:
            import ray  # deliberate lazy import: as above

            # Waited for, so a death right after cannot undo it.
            ray.get(self.ledger.finish.remote(list(keys), batch))

    def gave_up(self, deaths: int) -> str | None:
        """The error for an input that took down its worker `deaths` times, once that is too often."""
        if deaths < self.max_attempts:
            return None
        times = "once" if deaths == 1 else f"{deaths} times"
        return (f"this input stopped the worker process that handled it {times} (a crash, or killed "
                f"for using too much memory); it was given up after {deaths} attempt(s) so that the rest "
                f"of the job could finish")
