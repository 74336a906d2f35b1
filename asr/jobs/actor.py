"""The job's Ray stages: read tasks (bytes -> hash -> decoded samples) and recognition actors
(one Engine each). Both run in Ray worker processes; neither raises for a bad input: its error
travels in the batch and becomes that input's record.

An input whose reading or recognition kills the worker process (a crash, an out-of-memory kill)
is retried by Ray; after `max_attempts` such deaths it gets an error record instead
(asr.jobs.attempts), so one poisoned file cannot stall the job.

`ASR_JOB_FAULT` is a test seam read by the driver: comma-separated `exit-once:MARKER` (the first
actor to finish a batch with work while MARKER does not exist creates it and exits the process
before returning the batch: a real worker death), `delay:SECONDS` (each actor call sleeps
first, so a test can stop a job midway), `kill-reading:NAME` and `kill-recognising:NAME` (the
read task, or the actor, exits its process whenever it reads, or recognises, an input of that
file name: a file that kills every worker).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from asr.jobs.attempts import MAX_ATTEMPTS, Attempts
from asr.jobs.store import content_hash
from asr.results import Result
from asr.settings import InputSettings, Settings

log = logging.getLogger(__name__)

FAULT_ENV = "ASR_JOB_FAULT"
FAULTS = ("exit-once", "delay", "kill-reading", "kill-recognising")


class FaultSpecError(ValueError):
    """ASR_JOB_FAULT does not parse; the message says why."""


class EngineStartError(RuntimeError):
    """An actor could not build its Engine (a model that will not load, a precision the
    machine lacks): raised in the actor, found again in the driver's Ray error."""


def engine_start_error(exc: BaseException | None) -> str | None:
    """The EngineStartError message inside a Ray error: Ray Data passes the actor's exception on
    as text (its traceback), not as an object, so it is found by its name."""
    for _ in range(20):
        if exc is None:
            return None
        if isinstance(exc, EngineStartError):
            return str(exc)
        marker = f"{EngineStartError.__name__}: "
        for line in str(exc).splitlines():
            if marker in line:
                return line.split(marker, 1)[1].strip()
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def parse_fault(text: str | None) -> dict[str, str]:
    spec: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            name, _, value = part.strip().partition(":")
            if name not in FAULTS or not value:
                raise FaultSpecError(f"{FAULT_ENV}: '{part}' is not exit-once:MARKER, delay:SECONDS, "
                                     f"kill-reading:NAME or kill-recognising:NAME")
            if name == "delay":
                float(value)  # a bad number stops the job here, not in an actor
            spec[name] = value
    return spec


def read_batch(batch: dict, done: frozenset, fingerprint: str, input_settings: InputSettings | None = None,
               ledger=None, max_attempts: int = MAX_ATTEMPTS, fault: dict[str, str] | None = None) -> dict:
    """A read task: bytes -> key -> (done: skip) or samples decoded by the engine's decoder,
    within the `input.*` limits (None: their defaults), as the engine decodes. Never raises for
    an input: its error travels in the `error` column. `ledger`: the job's AttemptLedger."""
    # deliberate lazy imports: these load torch, which runs in the Ray workers, not the driver
    import numpy as np

    from asr.audio import decode as audio_io
    from asr.system.threads import thread_count

    limits = audio_io.DecodeLimits.from_settings(input_settings or InputSettings())
    attempts = Attempts(ledger, max_attempts)
    kill = (fault or {}).get("kill-reading")
    columns: dict[str, list] = {name: [] for name in ("path", "index", "sha256", "error", "skip",
                                                      "samples", "read_s")}
    for path, index in zip(batch["path"], batch["index"], strict=True):
        started = time.perf_counter()
        sha, error, skip, samples = "", "", False, b""
        given_up = attempts.gave_up(attempts.begin(path))
        try:
            if given_up:
                error = given_up
            else:
                data = audio_io.read_file(path)
                sha = content_hash(data)
                if f"{sha}:{fingerprint}" in done:
                    skip = True
                else:
                    if kill and Path(path).name == kill:
                        os._exit(18)  # the kill-reading seam: a worker that dies on this file
                    with thread_count(1):  # as the engine decodes: one thread beside the model
                        decoded = audio_io.decode_bytes(data, Path(path).name, limits)
                    samples = decoded.samples.tobytes()
        except (audio_io.AudioError, ValueError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad input must never fail the job
            error = f"could not prepare this input: {type(exc).__name__}: {exc}"
        attempts.finish([path])
        for name, value in (("path", path), ("index", int(index)), ("sha256", sha), ("error", error),
                            ("skip", skip), ("samples", samples),
                            ("read_s", time.perf_counter() - started)):
            columns[name].append(value)
    out = {name: np.array(values, dtype=object) for name, values in columns.items()}
    out["index"] = np.array(columns["index"], dtype=np.int64)
    out["skip"] = np.array(columns["skip"], dtype=bool)
    out["read_s"] = np.array(columns["read_s"], dtype=np.float64)
    return out


class RecognitionActor:
    """One Engine per actor process; each call recognises one batch of decoded inputs and
    returns one JSON record per input that was not skipped.

    The engine loads at the first batch with work: a rerun whose inputs are all done passes
    its skipped rows through without loading a model."""

    def __init__(self, settings: Settings, hotwords: list[str], fingerprint: str, run_id: str,
                 fault: dict[str, str], log_level: str, ledger=None, max_attempts: int = MAX_ATTEMPTS):
        logging.basicConfig(level=getattr(logging, log_level), force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.engine = None
        self.hotwords = hotwords
        self.fingerprint = fingerprint
        self.run_id = run_id
        self.fault = fault
        self.attempts = Attempts(ledger, max_attempts)

    def __call__(self, batch: dict) -> dict:
        # deliberate lazy imports: torch-loading modules run in the actor process, not the driver
        import numpy as np

        called = time.perf_counter()
        if "delay" in self.fault:
            time.sleep(float(self.fault["delay"]))
        count = len(batch["path"])
        records = [""] * count
        ok = np.zeros(count, dtype=bool)
        duration = np.zeros(count, dtype=np.float64)
        load_s = ready_at = 0.0
        todo = []
        for i in range(count):
            if batch["skip"][i]:
                continue
            if batch["error"][i]:
                self._record(records, ok, duration, i, batch,
                             Result(file=Path(batch["path"][i]).name, decode_s=float(batch["read_s"][i]),
                                    error=batch["error"][i]))
            else:
                todo.append(i)
        if todo:
            if self.engine is None:
                started = time.perf_counter()
                from asr.engine import Engine  # deliberate lazy import: the engine loads at first work

                try:
                    self.engine = Engine(self.settings)
                except Exception as exc:  # a model that will not load fails every batch alike
                    raise EngineStartError(f"{type(exc).__name__}: {exc}") from None
                load_s = time.perf_counter() - started
                ready_at = time.time()  # wall clock: compared with the driver's (same cluster)
            for i, result in self._recognise_guarded(batch, todo):
                result.file = Path(batch["path"][i]).name
                result.decode_s += float(batch["read_s"][i])  # read and decoded in the read task
                self._record(records, ok, duration, i, batch, result)
            self._maybe_die()
        return {"path": batch["path"], "index": batch["index"], "sha256": batch["sha256"],
                "skip": batch["skip"], "record": np.array(records, dtype=object), "ok": ok,
                "duration_s": duration, "load_s": np.full(count, load_s),
                "ready_at": np.full(count, ready_at),
                "call_s": np.full(count, (time.perf_counter() - called) / count)}

    def _recognise_guarded(self, batch: dict, todo: list[int]):
        """(row, Result) for each row of `todo`: as one batch while no input of it ever took an
        actor down; else one at a time, and an input that did so too often gets an error."""
        import numpy as np  # deliberate lazy import: as in __call__

        from asr.audio.decode import TARGET_RATE

        paths = [str(batch["path"][i]) for i in todo]

        def samples(i: int):
            return np.frombuffer(batch["samples"][i], dtype=np.float32).copy(), TARGET_RATE

        if len(paths) > 1 and not any(self.attempts.suspects(paths)):
            self.attempts.begin_batch(paths)
            self._maybe_kill(paths)
            results = self._recognise([samples(i) for i in todo])
            self.attempts.finish(paths, batch=True)
            return list(zip(todo, results, strict=True))
        out = []
        for i, path in zip(todo, paths, strict=True):
            given_up = self.attempts.gave_up(self.attempts.begin(path))
            if given_up:
                out.append((i, Result(file="", error=given_up)))
            else:
                self._maybe_kill([path])
                out.append((i, self._recognise([samples(i)])[0]))
            self.attempts.finish([path])
        return out

    def _maybe_kill(self, paths: list[str]) -> None:
        name = self.fault.get("kill-recognising")
        if name and any(Path(p).name == name for p in paths):
            os._exit(19)  # the kill-recognising seam: an actor that dies on this file

    def _recognise(self, inputs: list) -> list[Result]:
        try:
            return self.engine.run(inputs, hotwords=self.hotwords, quiet=True).results
        except Exception:  # noqa: BLE001 - the engine keeps errors per file; this is a last resort
            log.exception("a batch failed as a whole; recognising its files one at a time")
        results = []
        for item in inputs:
            try:
                results.extend(self.engine.run([item], hotwords=self.hotwords, quiet=True).results)
            except Exception as exc:  # noqa: BLE001
                results.append(Result(file="", error=f"recognition failed: {type(exc).__name__}: {exc}"))
        return results

    def _record(self, records, ok, duration, i, batch, result: Result) -> None:
        data = result.to_dict()
        data.update(path=batch["path"][i], sha256=batch["sha256"][i] or None,
                    settings=self.fingerprint, run=self.run_id)
        records[i] = json.dumps(data, ensure_ascii=False)
        ok[i] = result.ok
        duration[i] = result.duration_s

    def _maybe_die(self) -> None:
        marker = self.fault.get("exit-once")
        if not marker:
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        log.warning("%s: this actor exits now, its batch recognised but not returned", FAULT_ENV)
        os._exit(17)
