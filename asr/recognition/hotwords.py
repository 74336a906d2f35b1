"""Parse and validate hotwords for the SeACo bias path.

Hotwords reach FunASR's own `generate_hotwords_list`, which treats its argument as a file path
when it ends in .txt and downloads it when it starts with http; only plain words are let through
(and the recognizer never lets the joined string start with "http"), so user text can never
trigger either. The count is capped below 50: with 50 words plus FunASR's trailing <s> entry its
SeACo filter picks the hotword subset from batch row 0 for every file in the batch.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s,，、;；]+")
_ALLOWED = re.compile(r"^[\w'\-]+$", re.UNICODE)


class HotwordError(ValueError):
    """The hotword list breaks a rule; the message says which word and which rule."""


def parse_hotwords(text: str | list[str] | None, max_count: int, max_chars: int) -> list[str]:
    """Split on spaces or commas (ASCII or Chinese), drop duplicates, enforce the limits."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else _SEPARATORS.split(text)
    words: list[str] = []
    for part in parts:
        word = part.strip()
        if not word or word in words:
            continue
        if not _ALLOWED.match(word):
            raise HotwordError(
                f"hotword '{word}' may only hold letters, digits, ' and - (no punctuation or paths)"
            )
        if len(word) > max_chars:
            raise HotwordError(f"hotword '{word}' has {len(word)} characters; the limit is {max_chars}")
        words.append(word)
    if len(words) > max_count:
        raise HotwordError(
            f"{len(words)} hotwords given; the limit is {max_count} (hotwords.max_count in config.yaml)"
        )
    return words
