"""`python -m asr transcribe FILE...`: headless recognition with the same engine as the UI.

Exit codes: 0 when every file succeeded, 1 when any failed, 2 on usage or configuration errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .console import ProgressBar, add_engine_flags, engine_overrides, settings_for_command

log = logging.getLogger("asr.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m asr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("transcribe", help="recognise audio files")
    run.add_argument("files", nargs="+", help="audio files (wav, flac, mp3, ogg, m4a, aac, webm, ...)")
    add_engine_flags(run)
    run.add_argument("--hotwords", help="hotwords separated by spaces or commas")
    run.add_argument("--json", action="store_true", help="print a JSON list of results")
    run.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings_for_command(args.config, engine_overrides(args), quiet=args.quiet)
    if settings is None:
        return 2

    from .engine import Engine
    from .hotwords import HotwordError
    from .model import ModelLoadError

    try:
        engine = Engine(settings)
        results = engine.transcribe(args.files, batch_size=args.batch_size,
                                    hotwords=args.hotwords,
                                    progress=None if args.quiet else ProgressBar().files)
    except (ModelLoadError, HotwordError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            if r.ok:
                print(f"{r.file}\t{r.text}\t(confidence {r.confidence:.2f}, {r.duration_s:.1f} s audio, "
                      f"{r.processing_s:.2f} s)")
            else:
                print(f"{r.file}\tERROR: {r.error}")
    return 0 if all(r.ok for r in results) else 1
