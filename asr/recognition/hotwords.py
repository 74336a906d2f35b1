"""Parse and validate hotwords for the SeACo bias path.

Hotwords reach FunASR's own `generate_hotwords_list`, which treats its argument as a file path
when it ends in .txt and downloads it when it starts with http; only plain words are let through
(and the recognizer never lets the joined string start with "http"), so user text can never
trigger either. The count is capped by `hotwords.max_count` (why, and what happens past FunASR's
filter size of 50 entries: docs/hotwords.md).

Every face (API, UI boxes, live sessions, jobs) hands its raw text to `parse_hotwords`, so the
bounds below hold everywhere: the raw length is checked before any splitting, and the parse is
one pass with a set, so no input can make it slower than linear in that bounded length.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\s,，、;；]+")
_ALLOWED = re.compile(r"[\w'\-]+", re.UNICODE)
_SLACK_PER_WORD = 4  # room for separators, repeated spaces and a few duplicates per allowed word
_SLACK = 256


class HotwordError(ValueError):
    """The hotword list breaks a rule; the message says which word and which rule."""


def max_raw_chars(max_count: int, max_chars: int) -> int:
    """The longest hotword text accepted at all: generous for any list within the limits, and
    small enough that even a hostile text costs nothing to refuse."""
    return max_count * (max_chars + 1) * _SLACK_PER_WORD + _SLACK


def parse_hotwords(text: str | list[str] | None, max_count: int, max_chars: int) -> list[str]:
    """Split on spaces or commas (ASCII or Chinese), drop duplicates, enforce the limits."""
    if text is None:
        return []
    limit = max_raw_chars(max_count, max_chars)
    if isinstance(text, list):
        if len(text) > max_count * _SLACK_PER_WORD or sum(len(str(p)) for p in text) > limit:
            raise HotwordError(f"the hotword list is too long; the limit is {max_count} words "
                               "(hotwords.max_count in config.yaml)")
        parts = (word for word in (str(part).strip() for part in text) if word)
    else:
        if len(text) > limit:
            raise HotwordError(f"the hotword text has {len(text)} characters; the limit is {limit} "
                               f"({max_count} words of at most {max_chars} characters)")
        parts = (m.group(0) for m in _WORD.finditer(text))
    words: list[str] = []
    seen: set[str] = set()
    for word in parts:
        if word in seen:
            continue
        if not _ALLOWED.fullmatch(word):
            raise HotwordError(
                f"hotword '{word[:40]}' may only hold letters, digits, ' and - (no punctuation or paths)"
            )
        if len(word) > max_chars:
            raise HotwordError(f"hotword '{word[:40]}' has {len(word)} characters; the limit is {max_chars}")
        seen.add(word)
        words.append(word)
        if len(words) > max_count:
            raise HotwordError(
                f"more than {max_count} hotwords given; the limit is {max_count} "
                "(hotwords.max_count in config.yaml)"
            )
    return words
