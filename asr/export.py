"""Turn lists of `Result` into the files users download: txt, srt, json, csv and a zip of txt.

Pure functions returning str or bytes, so the UI, the CLI and tests share one definition of each
format and none of them needs a web server to check it. Failed files stay in every export (with
their error) so an export never silently hides a file that went wrong.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import PurePath

from .results import Result

CSV_COLUMNS = ("file", "text", "confidence", "duration_s", "processing_s", "rtf", "status", "error")


def status_of(result: Result) -> str:
    """'ok' or the error message: the one-word answer a results table shows."""
    return "ok" if result.ok else f"error: {result.error}"


def to_txt(results: Sequence[Result]) -> str:
    """One file: just the text. Several: a header line per file, a blank line between files."""
    if len(results) == 1:
        r = results[0]
        return (r.text if r.ok else f"[error] {r.error}") + "\n"
    blocks = []
    for r in results:
        body = r.text if r.ok else f"[error] {r.error}"
        blocks.append(f"# {r.file}\n{body}\n")
    return "\n".join(blocks)


def _srt_time(seconds: float) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(results: Sequence[Result]) -> str:
    """One cue per successful file spanning its whole duration (the engine has no word timings).

    Several files are laid end to end on one timeline, in order, so the cues never overlap.
    """
    cues = []
    offset = 0.0
    for r in results:
        if not r.ok:
            continue
        start, end = offset, offset + max(r.duration_s, 0.001)
        cues.append(f"{len(cues) + 1}\n{_srt_time(start)} --> {_srt_time(end)}\n{r.text}\n")
        offset = end
    return "\n".join(cues)


def to_json(results: Sequence[Result]) -> str:
    """A JSON list of result dicts (Result.to_dict plus a status), UTF-8 text, Chinese unescaped."""
    rows = []
    for r in results:
        data = r.to_dict()
        data["status"] = "ok" if r.ok else "error"
        rows.append(data)
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


def result_row(result: Result) -> list:
    """The CSV_COLUMNS values for one result, rounded for people rather than machines."""
    return [
        result.file, result.text, round(result.confidence, 4), round(result.duration_s, 3),
        round(result.processing_s, 3), round(result.rtf, 4), "ok" if result.ok else "error",
        result.error or "",
    ]


def to_csv(results: Sequence[Result]) -> str:
    """CSV with a header row. Starts with a UTF-8 BOM so spreadsheet programs read Chinese right."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow(result_row(r))
    return "\ufeff" + buffer.getvalue()


def _txt_name(file: str, used: set[str]) -> str:
    stem = PurePath(file).stem or "audio"
    name = f"{stem}.txt"
    number = 2
    while name in used:  # two inputs called a.wav and a.mp3 must not overwrite each other
        name = f"{stem}-{number}.txt"
        number += 1
    used.add(name)
    return name


def to_txt_zip(results: Sequence[Result]) -> bytes:
    """A zip holding one UTF-8 .txt per input (named after it); failed inputs hold their error."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for r in results:
            body = r.text if r.ok else f"[error] {r.error}"
            archive.writestr(_txt_name(r.file, used), body + "\n")
    return buffer.getvalue()
