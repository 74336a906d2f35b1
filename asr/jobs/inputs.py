"""What a job recognises: files as given, folders' audio files (recursively), and list files
(.txt/.lst/.list, one path a line). Runs on the driver; needs neither Ray nor torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.text.export import unique_name

LIST_SUFFIXES = (".txt", ".lst", ".list")  # an input with one of these names lists paths, one a line


@dataclass
class Inputs:
    paths: list[str]  # absolute, each once, in the order given
    labels: list[str]  # relative names for per-file formats, distinct, without extension


def list_inputs(specs: Sequence[str | Path]) -> Inputs:
    """Files as given, folders' audio files (recursively, sorted), list files' lines (relative
    paths are relative to the list). A path that does not exist is still an input: its record
    says so. The same path given twice is one input."""
    found: list[tuple[str, str]] = []  # (absolute path, label)

    def add(path: Path, label: str) -> None:
        found.append((os.path.abspath(path), label))

    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            # deliberate lazy import: asr.audio loads torch, which a driver listing files needs not
            from asr.audio.decode import AUDIO_EXTENSIONS

            for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                               and p.is_file()):
                add(file, str(Path(path.name or "input") / file.relative_to(path)))
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    listed = Path(entry).expanduser()
                    add(listed if listed.is_absolute() else path.parent / listed,
                        listed.name if listed.is_absolute() else entry)
        else:
            add(path, path.name)
    paths: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    used: set[str] = set()
    for absolute, label in found:
        if absolute in seen:
            continue
        seen.add(absolute)
        stem = str(Path(label).with_suffix("")) if Path(label).suffix else label
        stem = stem.lstrip("/").replace("..", "_") or "audio"
        paths.append(absolute)
        labels.append(unique_name(stem, used))
    return Inputs(paths, labels)
