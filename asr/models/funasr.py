"""Import FunASR quietly: its import-time banners go to stdout, which must stay clean for `--json`,
and its per-load chatter goes to the root logger."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings


class _FunasrChatterFilter(logging.Filter):
    """FunASR logs on the root logger: per-load INFO lines and a 'trust_remote_code: False'
    warning on every load. Keep its real warnings and errors, drop the chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "funasr" not in record.pathname.replace("\\", "/").split("/"):
            return True
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and "trust_remote_code" not in str(record.msg)


_chatter_filter = _FunasrChatterFilter()


def import_funasr():
    """The funasr module, imported with its banners kept out of our output; importing it (and
    its SeACo model module) registers the model classes the loaders and builders look up."""
    root = logging.getLogger()
    if _chatter_filter not in root.filters:
        root.addFilter(_chatter_filter)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # pydub (pulled in by FunASR) warns about ffmpeg, which this project does not use.
        warnings.filterwarnings("ignore", message="Couldn't find ffmpeg", category=RuntimeWarning)
        import funasr  # deliberate lazy import: heavy, and wrapped to silence its banners
        from funasr.models.seaco_paraformer import model  # noqa: F401
    return funasr
