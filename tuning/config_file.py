"""Write one top-level setting (`batch_size`, `precision`) into config.yaml, leaving every other
byte of the file as it was.

A YAML round trip (load, change, dump) would drop the file's comments, which are its documentation,
so the value is replaced textually on its own top-level line; the result is then parsed and compared
with the original settings before anything is written, so an unusual layout fails loudly instead
of corrupting the file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from asr.settings import SettingsError, coerce

log = logging.getLogger(__name__)

# `batch_size: 4`, `batch_size: "4"  # comment`; the key at column 0, i.e. top level.
_LINE = r"^{key}(?P<sep>[ \t]*:[ \t]*)(?P<value>[^\s#][^#]*?)?(?P<tail>[ \t]*(?:#.*)?)$"
WRITABLE = ("batch_size", "precision")
_BOM = "\ufeff"


class ConfigWriteError(ValueError):
    """The config file could not be updated safely; the message says why and where."""


@dataclass
class SaveResult:
    path: Path
    previous: str | None  # the old value as written in the file; None when the key was added
    created: bool  # the file did not exist before


def _replace(text: str, key: str, value: str) -> tuple[str, str | None]:
    pattern = re.compile(_LINE.format(key=re.escape(key)))
    lines = text.split("\n")
    previous: str | None = None
    for i, line in enumerate(lines):
        body, cr = (line[:-1], "\r") if line.endswith("\r") else (line, "")
        match = pattern.match(body)
        if not match:
            continue
        if match.group("value") is None:
            raise ConfigWriteError(f"{key} has no value on its own line; edit it by hand")
        previous = match.group("value")
        lines[i] = f"{key}{match.group('sep')}{value}{match.group('tail')}{cr}"
    if previous is not None:
        return "\n".join(lines), previous
    newline = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith("\n"):
        text += newline
    return text + f"{key}: {value}{newline}", None


def _parse(text: str, path: Path) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigWriteError(f"{path} is not valid YAML, so it was left alone: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigWriteError(f"{path} does not hold a mapping of settings, so it was left alone")
    return data


def write_batch_size(path: str | Path, size: int) -> SaveResult:
    """Set `batch_size: size` in the YAML file at `path` (created if missing), atomically."""
    if isinstance(size, bool) or int(size) != size:
        raise ConfigWriteError(f"batch size must be a whole number, got {size!r}")
    return write_setting(path, "batch_size", int(size))


def write_setting(path: str | Path, key: str, value: int | str) -> SaveResult:
    """Set top-level `key: value` in the YAML file at `path` (created if missing), atomically.

    The value is checked against config.yaml's own rules first; the file is rewritten only if the
    result parses to the same settings with just that key changed."""
    if key not in WRITABLE:
        raise ConfigWriteError(f"only {', '.join(WRITABLE)} can be saved this way, not {key}")
    try:
        value = coerce(key, value, f"the {key} to save")
    except SettingsError as exc:
        raise ConfigWriteError(str(exc)) from None
    target = Path(path).expanduser().resolve()  # a symlinked config is updated, not replaced
    created = not target.exists()
    raw = "" if created else target.read_bytes().decode("utf-8")
    bom = _BOM if raw.startswith(_BOM) else ""
    text = raw[len(bom):]
    before = _parse(text, target)
    stale = [old for old in ("fp16", "int8") if key == "precision" and before.get(old) is True]
    if stale:
        raise ConfigWriteError(f"{target} still has the deprecated '{stale[0]}: true'; remove that line, "
                               "then save the precision again")
    new_text, previous = _replace(text, key, str(value))
    expected = {**before, key: value}
    if _parse(new_text, target) != expected:
        raise ConfigWriteError(f"could not update {key} in {target} without changing other "
                               "settings; edit the file by hand")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".yaml.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write((bom + new_text).encode("utf-8"))
        if not created:
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("saved %s: %s to %s (was %s)", key, value, target, previous)
    return SaveResult(target, previous, created)
