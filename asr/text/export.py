"""Turn results into the files users download: per file txt, json, srt, vtt, tsv; per batch csv,
json and a zip of the chosen per-file formats.

Pure functions returning str or bytes, so the UI, the CLI and tests share one definition of each
format and none of them needs a web server to check it. Subtitle cues are the result's segments
(sentences with timestamps on), never one giant cue per file. Failed files stay in every batch
export with their error, so an export never silently hides a file that went wrong.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import PurePath

from asr.results import Result, Segment, join_text
from asr.text.sentences import hold_short_cues

CSV_COLUMNS = ("file", "text", "confidence", "duration_s", "processing_s", "rtf", "status", "error")
FORMATS = ("txt", "json", "srt", "vtt", "tsv")
_MIN_CUE_S = 0.001  # a cue must end after it starts; a zero-length word still gets one
# The cue formats take `min_s`, the shortest time a cue stays on screen: callers pass their
# settings' subtitles.min_s (the UI does). 0 writes the segments' own times. The segments keep
# their words' times either way; only the cues written for reading are held longer.
CUE_FORMATS = ("srt", "vtt", "tsv")


def status_of(result: Result) -> str:
    """'ok' or the error message: the one-word answer a results table shows."""
    return "ok" if result.ok else f"error: {result.error}"


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """`txt,srt` or ["txt", "srt"] or "all" -> a checked list of FORMATS, in FORMATS' order."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if "all" in names:
        return list(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(FORMATS)} or all")
    return [f for f in FORMATS if f in names]


# ---- one file ------------------------------------------------------------------------------------

def clock(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (VTT, tables) or, with ",", HH:MM:SS,mmm (SRT)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(result: Result, min_s: float = 0.0) -> list[Segment]:
    """Segments fit to be cues: text present, end after start, in time order, each on screen for
    `min_s` where the next leaves room (asr.text.sentences.hold_short_cues)."""
    cues = []
    for segment in result.segments:
        text = " ".join(segment.text.split())  # a cue line never holds a line break of its own
        if text:
            end = max(segment.end_s, segment.start_s + _MIN_CUE_S)
            cues.append(Segment(segment.start_s, end, text, segment.confidence, speaker=segment.speaker))
    return hold_short_cues(sorted(cues, key=lambda c: (c.start_s, c.end_s)), min_s)


def _labelled(cue: Segment) -> str:
    """"S1: text" when the cue has a speaker (SRT and TXT write speakers this way)."""
    return f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text


def srt(result: Result, min_s: float = 0.0) -> str:
    blocks = [f"{n}\n{clock(c.start_s, ',')} --> {clock(c.end_s, ',')}\n{_labelled(c)}\n"
              for n, c in enumerate(_cues(result, min_s), 1)]
    return "\n".join(blocks)


def _voice(cue: Segment) -> str:
    """WebVTT's voice span, `<v S1>text`, when the cue has a speaker."""
    if not cue.speaker:
        return cue.text
    name = cue.speaker.replace(">", "").replace("&", "&amp;").replace("<", "&lt;")
    return f"<v {name}>{cue.text.replace('&', '&amp;').replace('<', '&lt;')}"


def vtt(result: Result, min_s: float = 0.0) -> str:
    blocks = [f"{clock(c.start_s, '.')} --> {clock(c.end_s, '.')}\n{_voice(c)}\n"
              for c in _cues(result, min_s)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def tsv(result: Result, min_s: float = 0.0) -> str:
    """start, end (integer milliseconds, as Whisper writes them) and text: a spreadsheet's view;
    with speakers, a speaker column before the text."""
    cues = _cues(result, min_s)
    labelled = any(c.speaker for c in cues)
    lines = ["start\tend\tspeaker\ttext" if labelled else "start\tend\ttext"]
    for c in cues:
        text = c.text.replace(chr(9), " ")
        middle = f"{c.speaker or ''}\t" if labelled else ""
        lines.append(f"{round(c.start_s * 1000)}\t{round(c.end_s * 1000)}\t{middle}{text}")
    return "\n".join(lines) + "\n"


def txt(result: Result) -> str:
    """The text; with speakers, one line per turn, "S1: ..."."""
    if not result.ok:
        return f"[error] {result.error}\n"
    if not result.speakers:
        return result.text + "\n"
    turns: list[tuple[str | None, str]] = []
    for segment in result.segments:
        if turns and turns[-1][0] == segment.speaker:
            turns[-1] = (segment.speaker, join_text(turns[-1][1], segment.text))
        else:
            turns.append((segment.speaker, segment.text))
    return "".join(f"{speaker}: {text}\n" if speaker else f"{text}\n" for speaker, text in turns)


def json_one(result: Result) -> str:
    data = result.to_dict()
    data["status"] = "ok" if result.ok else "error"
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


WRITERS = {"txt": txt, "json": json_one, "srt": srt, "vtt": vtt, "tsv": tsv}


def render(result: Result, fmt: str, min_s: float | None = None) -> str:
    """One file in `fmt`; `min_s`: the cues' shortest display time (subtitles.min_s; None: 0)."""
    if fmt in CUE_FORMATS and min_s is not None:
        return WRITERS[fmt](result, min_s=min_s)
    return WRITERS[fmt](result)


def file_names(results: Sequence[Result]) -> list[str]:
    """A distinct stem per input (a.wav and a.mp3 must not overwrite each other's a.srt)."""
    used: set[str] = set()
    return [unique_name(PurePath(r.file).stem or "audio", used) for r in results]


def unique_name(stem: str, used: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... if taken; the name returned is added to `used`."""
    name, number = stem, 2
    while name in used:
        name = f"{stem}-{number}"
        number += 1
    used.add(name)
    return name


# ---- a batch -------------------------------------------------------------------------------------

def to_txt(results: Sequence[Result]) -> str:
    """One file: just the text. Several: a header line per file, a blank line between files."""
    if len(results) == 1:
        return txt(results[0])
    return "\n".join(f"# {r.file}\n{txt(r)}" for r in results)


def to_json(results: Sequence[Result], entries: Sequence[Sequence[str]] | None = None) -> str:
    """A JSON list of result dicts (Result.to_dict plus a status), UTF-8 text, Chinese unescaped.
    With `entries` (to_zip's), each row also names its files in the zip (`zip_files`)."""
    rows = []
    for number, r in enumerate(results):
        data = r.to_dict()
        data["status"] = "ok" if r.ok else "error"
        if entries is not None:
            data["zip_files"] = list(entries[number])
        rows.append(data)
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


def result_row(result: Result) -> list:
    """The CSV_COLUMNS values for one result, rounded for people rather than machines."""
    return [
        result.file, result.text, round(result.confidence, 4), round(result.duration_s, 3),
        round(result.processing_s, 3), round(result.rtf, 4), "ok" if result.ok else "error",
        result.error or "",
    ]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """A text cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage
    return) would be run as a formula, so it gets a leading apostrophe (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(results: Sequence[Result], entries: Sequence[Sequence[str]] | None = None) -> str:
    """CSV with a header row. Starts with a UTF-8 BOM so spreadsheet programs read Chinese right.
    No cell can run as a formula (file names and texts come from strangers). With `entries`
    (to_zip's), a last column names each file's entries in the zip, ";"-separated."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (("zip_files",) if entries is not None else ()))
    for number, r in enumerate(results):
        row = result_row(r) + (["; ".join(entries[number])] if entries is not None else [])
        writer.writerow([spreadsheet_cell(cell) for cell in row])
    return "\ufeff" + buffer.getvalue()


_UNSAFE_IN_ENTRY = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def zip_names(results: Sequence[Result]) -> list[str]:
    """One entry-name stem per input: its position, then its whole file name, `03_a.mp3`. The
    position makes the names distinct by construction, whatever the inputs are called (a.wav
    and a.mp3, x.wav failing beside x.error.wav, two a.wav in different folders), and the file
    name keeps them readable; results.csv in the zip maps each input to its entries."""
    width = max(2, len(str(len(results))))
    names = []
    for number, result in enumerate(results, 1):
        base = _UNSAFE_IN_ENTRY.sub("_", PurePath(result.file.replace("\\", "/")).name)[:120] or "audio"
        names.append(f"{number:0{width}d}_{base}")
    return names


def zip_entries(results: Sequence[Result], formats: Sequence[str]) -> list[list[str]]:
    """Each input's entries in to_zip: `<stem>.<format>` per chosen format, or for a failed input
    `<stem>.error.txt` alone, so a failure is never silently missing."""
    return [[f"{stem}.{fmt}" for fmt in formats] if result.ok else [f"{stem}.error.txt"]
            for result, stem in zip(results, zip_names(results), strict=True)]


def to_zip(results: Sequence[Result], formats: Sequence[str] = ("txt",), min_s: float | None = None) -> bytes:
    """The per-file exports of a batch (zip_entries) plus results.csv and results.json, whose
    `zip_files` column maps every input to its entries; `min_s` as for `render`."""
    entries = zip_entries(results, formats)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for result, names in zip(results, entries, strict=True):
            if not result.ok:
                archive.writestr(names[0], txt(result))
                continue
            for fmt, name in zip(formats, names, strict=True):
                archive.writestr(name, render(result, fmt, min_s))
        archive.writestr("results.csv", to_csv(results, entries))
        archive.writestr("results.json", to_json(results, entries))
    return buffer.getvalue()
