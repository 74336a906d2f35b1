"""`python -m asr normalize "TEXT"...`: check the number-writing rules (ITN) on your own sentences,
without audio or a model. `-` reads standard input, one line in, one line out.

Exit codes: 0 when every text was normalised, 1 when ITN could not run (the texts are printed as
given and the reason goes to standard error), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from asr.text.numbers import ChineseITN, default_itn

DESCRIPTION = ("write numbers, dates and amounts in Chinese text as people write them "
               "(inverse text normalisation)")


def add_parser(sub) -> argparse.ArgumentParser:
    """The `normalize` subcommand, beside `transcribe` (loads no model)."""
    parser = sub.add_parser("normalize", help=DESCRIPTION, description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="+", metavar="TEXT",
                        help="texts to normalise; '-' reads standard input, one text per line")
    parser.add_argument("--stats", action="store_true",
                        help="print to standard error how many texts were normalised and the "
                             "milliseconds per text (grammar loading counted apart)")


def _texts(arguments: list[str]) -> Iterator[str]:
    for text in arguments:
        if text == "-":
            for line in sys.stdin:
                yield line.rstrip("\r\n")
        else:
            yield text


def run(args: argparse.Namespace, itn: ChineseITN | None = None) -> int:
    """Run the parsed `normalize` command."""
    itn = itn or default_itn()
    started = time.perf_counter()
    error = itn.load()
    load_s = time.perf_counter() - started
    warnings: set[str] = set()
    count, busy_s = 0, 0.0
    for text in _texts(args.texts):
        started = time.perf_counter()
        result = itn.normalize(text)
        busy_s += time.perf_counter() - started
        count += 1
        if result.warning:
            warnings.add(result.warning)
        print(result.text, flush=True)
    messages = [f"inverse text normalisation unavailable: {error}"] if error else sorted(warnings)
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
    if args.stats and count:
        print(f"{count} texts, {busy_s / count * 1000:.2f} ms per text "
              f"(grammar load {load_s * 1000:.0f} ms)", file=sys.stderr)
    return 1 if error or warnings else 0

