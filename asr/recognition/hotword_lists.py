"""Hotword lists users keep: a file of one word a line, and named lists per domain.

Named lists live in one YAML file beside config.yaml (`hotwords.lists_file`, default
hotwords.yaml) as `{name: [words]}`, so a team can keep 医疗, 法律, 公司名 lists and pick one per
request. Every list is checked with the same rules as typed words (asr.recognition.hotwords), and
the product reads files itself: FunASR is only ever handed words, never a path (it would read a
`.txt` path as a list and fetch an `http` string).

FunASR's C++ runtime writes weights after the word ("阿里巴巴 20"); its Python path would make the
weight part of the word, so such a line is refused with the reason rather than silently mangled.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

import yaml

from asr.recognition.hotwords import HotwordError, parse_hotwords

_NAME = re.compile(r"^[\w\- ]{1,40}$", re.UNICODE)
_WEIGHTED = re.compile(r"^\S+\s+[0-9.]+$")
MAX_FILE_BYTES = 1 << 20  # a word list, not a document
_lock = threading.Lock()  # one writer at a time within a process; the rename is atomic across them


def words_from_text(text: str, max_count: int, max_chars: int) -> list[str]:
    """The words of a list file's text: one a line, blank lines and `#` comments ignored."""
    words = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if _WEIGHTED.match(entry):
            raise HotwordError(f"line {number}: '{entry[:40]}' looks like a word with a weight (FunASR's "
                               "runtime format); give one word a line, without a number")
        words.append(entry)
    return parse_hotwords(words, max_count, max_chars)


def read_word_file(path: str | Path, max_count: int, max_chars: int) -> list[str]:
    """A UTF-8 list file's words (see `words_from_text`)."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise HotwordError(f"{file.name} is larger than {MAX_FILE_BYTES // 1024} KB; a hotword list is "
                               "one word a line")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HotwordError(f"cannot read the hotword list {file}: {exc}") from None
    return words_from_text(text, max_count, max_chars)


class NamedLists:
    """The named lists in one YAML file; reads it fresh each time (other processes may write)."""

    def __init__(self, path: str | Path, max_count: int, max_chars: int):
        self.path = Path(path)
        self.max_count, self.max_chars = max_count, max_chars

    def all(self) -> dict[str, list[str]]:
        if not self.path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise HotwordError(f"the hotword lists in {self.path} cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise HotwordError(f"{self.path} must map list names to lists of words")
        return {str(name): parse_hotwords([str(w) for w in words or []], self.max_count, self.max_chars)
                for name, words in data.items()}

    def names(self) -> list[str]:
        return sorted(self.all())

    def get(self, name: str) -> list[str]:
        lists = self.all()
        if name not in lists:
            known = ", ".join(sorted(lists)) or "none saved yet"
            raise HotwordError(f"no hotword list named '{name}' ({known})")
        return lists[name]

    def save(self, name: str, words: str | list[str]) -> list[str]:
        """Store `words` (text or a list, checked like typed words) as `name`; returns them."""
        name = name.strip()
        if not _NAME.match(name):
            raise HotwordError("a list name is 1-40 letters, digits, spaces, - or _")
        checked = parse_hotwords(words, self.max_count, self.max_chars)
        if not checked:
            raise HotwordError("a hotword list needs at least one word")
        with _lock:
            lists = self.all()
            lists[name] = checked
            self._write(lists)
        return checked

    def delete(self, name: str) -> None:
        with _lock:
            lists = self.all()
            if lists.pop(name, None) is None:
                raise HotwordError(f"no hotword list named '{name}'")
            self._write(lists)

    def _write(self, lists: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = ("# Named hotword lists, one per domain (edited in the web UI or by hand).\n"
                + yaml.safe_dump(lists, allow_unicode=True, sort_keys=True))
        handle, staging = tempfile.mkstemp(prefix=".hotwords-", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(staging, self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
