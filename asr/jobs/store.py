"""The batch job's output folder, written so that no input is ever recorded twice.

Pure Python (no Ray, no torch): the job's driver is its only writer, and the tests read it.

    DIR/.lock                        held while a job writes here (a second job is refused)
    DIR/job.json                     what the last run was: settings fingerprint, inputs, Ray version
    DIR/parts/<fingerprint>/*.jsonl  every record made, one file per batch that came back
    DIR/results.jsonl                one record per input of the last finished run, in input order
    DIR/summary.json                 that run's summary
    DIR/transcripts/...              per-file formats (--format), named after the inputs

A record is the dict `asr transcribe --json` prints for a file, plus `path` (absolute),
`sha256` (of the file's bytes) and `settings` (the fingerprint of the settings that change a
result). Its *key* is `sha256:settings`: the same bytes under the same settings give the same
transcript, so a rerun reuses any successful record with the input's key and redoes the rest.

Exactly once: a part file is written under a temporary name and renamed into place (a crash
leaves either the whole file or none of it), its name is a hash of the records it holds (the same
batch written twice lands on the same name), the driver writes each input at most once per run,
and `results.jsonl` is assembled from the parts taking exactly one record per input. Only the
assembly decides what the results are, so even a duplicate part could not double a line there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RECORD_VERSION = 1  # part of every fingerprint: a change to the record's meaning redoes old ones


class JobBusy(RuntimeError):
    """Another job holds the output folder."""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_key(record: dict) -> str:
    return f"{record.get('sha256') or ''}:{record.get('settings') or ''}"


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write to a temporary name beside `path`, flush to disk, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class Done:
    """What the store already holds for one key: enough for the summary without re-reading."""

    duration_s: float


@dataclass
class Assembly:
    """What `JobStore.assemble` wrote."""

    records: int = 0
    ok: int = 0
    failed: int = 0
    audio_s: float = 0.0
    missing: list[str] = field(default_factory=list)  # inputs no part held a record for (never expected)


class JobStore:
    """One output folder. Use as a context manager: it holds the folder's lock meanwhile."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.parts = self.folder / "parts" / fingerprint
        self.results_path = self.folder / "results.jsonl"
        self._lock_handle = None

    # ---- lifetime --------------------------------------------------------------------------

    def __enter__(self) -> JobStore:
        self.parts.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / ".lock", "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JobBusy(f"another job is writing to {self.folder}; wait for it or choose another "
                          "--output") from None
        self._lock_handle = handle
        # Left by a writer that died between writing and renaming: never part of the results.
        for pattern in (".*.tmp", ".results.*.scratch", "parts/*/.*.tmp"):
            for stale in self.folder.glob(pattern):
                stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # ---- reading ---------------------------------------------------------------------------

    def part_files(self) -> list[Path]:
        return sorted(p for p in self.parts.glob("part-*.jsonl") if p.is_file())

    def records(self) -> Iterator[dict]:
        """Every record of every part under this fingerprint (a damaged line is skipped, logged)."""
        for part in self.part_files():
            with open(part, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        log.warning("%s line %d is not JSON; ignored", part, number)

    def done(self) -> dict[str, Done]:
        """Keys with a successful record: a rerun skips inputs whose key is here. Failed
        records are not 'done': a failure costs little to retry and may have been passing."""
        found: dict[str, Done] = {}
        for record in self.records():
            if record.get("error") is None and record.get("settings") == self.fingerprint:
                found.setdefault(record_key(record), Done(float(record.get("duration_s") or 0.0)))
        return found

    # ---- writing ---------------------------------------------------------------------------

    def write_part(self, records: Sequence[str], identities: Sequence[str]) -> Path | None:
        """Write one batch's records (JSON lines) atomically; the name hashes their identities
        (path and key), so writing the same batch again replaces the file instead of adding one."""
        if not records:
            return None
        name = hashlib.sha256("\n".join(sorted(identities)).encode("utf-8")).hexdigest()[:24]
        path = self.parts / f"part-{name}.jsonl"
        atomic_write(path, "".join(r.rstrip("\n") + "\n" for r in records))
        return path

    def write_json(self, name: str, data: dict) -> Path:
        path = self.folder / name
        atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return path

    def assemble(self, inputs: Sequence[str], keys: dict[str, str], run_id: str,
                 on_record=None) -> Assembly:
        """Write results.jsonl: exactly one record per input, in input order.

        `keys[path]` is the input's key when it succeeded (now or in an earlier run); an input
        without a key failed in this run, and its record is the one carrying this `run_id`.
        A successful record serves every input with the same bytes (its path and name are set
        to the input's). Streams: records never all sit in memory; one pass over the parts
        writes them to a scratch file, a second copies them out in input order.
        `on_record(index, record)` sees each final record (the per-file formats use it).
        """
        want_ok: dict[str, list[int]] = {}
        want_error: dict[str, int] = {}
        for index, path in enumerate(inputs):
            key = keys.get(path)
            if key:
                want_ok.setdefault(key, []).append(index)
            else:
                want_error[path] = index
        spans: list[tuple[int, int] | None] = [None] * len(inputs)
        scratch = self.folder / f".results.{os.getpid()}.scratch"
        summary = Assembly()
        try:
            with open(scratch, "wb") as out:
                for record in self.records():
                    chosen: Iterable[int] = ()
                    if record.get("error") is None:
                        chosen = want_ok.pop(record_key(record), ())
                    elif record.get("run") == run_id and record.get("path") in want_error:
                        chosen = (want_error.pop(record["path"]),)
                    for index in chosen:
                        line = _for_input(record, inputs[index])
                        start = out.tell()
                        out.write(line)
                        spans[index] = (start, len(line))
            for index, span in enumerate(spans):
                if span is None:  # its part went missing meanwhile: still one record, saying so
                    summary.missing.append(inputs[index])
            with open(scratch, "rb") as source, _atomic_open(self.results_path) as final:
                for index, span in enumerate(spans):
                    if span is None:
                        line = _missing_record(inputs[index], keys.get(inputs[index]))
                    else:
                        source.seek(span[0])
                        line = source.read(span[1])
                    final.write(line)
                    record = json.loads(line)
                    summary.records += 1
                    if record.get("error") is None:
                        summary.ok += 1
                        summary.audio_s += float(record.get("duration_s") or 0.0)
                    else:
                        summary.failed += 1
                    if on_record is not None:
                        on_record(index, record)
        finally:
            scratch.unlink(missing_ok=True)
        return summary


def _for_input(record: dict, path: str) -> bytes:
    if record.get("path") != path:
        record = dict(record, path=path, file=Path(path).name)
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def _missing_record(path: str, key: str | None) -> bytes:
    return (json.dumps({"file": Path(path).name, "path": path, "text": "",
                        "error": "its record went missing from the output folder during the run "
                                 f"(key {key}); run the job again", "segments": []},
                       ensure_ascii=False) + "\n").encode("utf-8")


@contextlib.contextmanager
def _atomic_open(path: Path):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_results(folder: Path) -> list[dict]:
    """results.jsonl as a list (for tests and small jobs)."""
    path = Path(folder) / "results.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
