"""`python -m tuning FILE...`: find the fastest safe batch size on this machine, from the shell.

Prints the table of every measured run and the recommendation with its reason; `--json OUT` saves
every run and the chosen value, `--save` writes it into the config file (comments kept).
`--check-precision` instead runs the files in fp32 and in `--candidate` (default: the fastest
reduced precision this machine has) and prints speed and token agreement per file;
`--save-precision P` then writes `precision: P` into the config file.
Ctrl+C stops a run cleanly (a second one stops at once).
Exit codes: 0 on success, 2 on usage, configuration or input errors, 130 when cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from asr.system.console import ProgressBar, add_engine_flags, engine_overrides, settings_for_command
from tuning.sizes import WizardError, sizes_from_text


def _sizes(text: str) -> list[int]:
    try:
        values = sizes_from_text(text)
    except WizardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected batch sizes, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuning",
        description="Batch-size tuning wizard: baseline at batch 1, sweep, refine around the knee.")
    parser.add_argument("files", nargs="+", help="audio file(s); one file is copied --copies times, "
                        "several files are used as they are")
    parser.add_argument("--sizes", type=_sizes, help="batch sizes to sweep, e.g. 2,4,6,8 "
                        "(default: tuning.sizes in the config)")
    parser.add_argument("--copies", type=_positive, help="copies of a single file per run (at most 256)")
    parser.add_argument("--repeats", type=_positive, help="runs per size in the refine step (at most 20)")
    parser.add_argument("--margin", type=float, help="percent a larger batch must save per file")
    parser.add_argument("--memory-limit", type=float, help="highest safe peak memory, percent of total")
    add_engine_flags(parser, batch_size=False)  # the batch size is what the wizard finds
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON to OUT ('-': stdout)")
    parser.add_argument("--save", action="store_true",
                        help="write the recommended batch_size into the config file, keeping its comments")
    parser.add_argument("--check-precision", action="store_true",
                        help="instead of the batch-size sweep: run the files in fp32 and in a reduced "
                             "precision and compare speed and tokens per file")
    parser.add_argument("--candidate", choices=("bf16", "fp16", "int8"),
                        help="the reduced precision to check (default: the fastest this machine has)")
    parser.add_argument("--save-precision", choices=("fp32", "bf16", "fp16", "int8"),
                        help="write this precision into the config file after the check")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, log warnings only")
    return parser


CANCELLED_EXIT = 130  # as a shell reports a program stopped by Ctrl+C


@contextlib.contextmanager
def _ctrl_c_cancels(cancel: Callable[[], bool]) -> Iterator[None]:
    """The first Ctrl+C asks the run to stop (it then releases the model and returns); a second
    one interrupts at once, as Ctrl+C normally does."""
    def first(_signum, _frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\ncancelling (Ctrl+C again to stop at once)...", file=sys.stderr, flush=True)
        cancel()

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return CANCELLED_EXIT


def _main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        parser.error(f"file not found: {', '.join(missing)}")
    settings = settings_for_command(args.config, engine_overrides(args), quiet=args.quiet)
    if settings is None:
        return 2

    # deliberate lazy imports: torch and FunASR load only once the arguments and settings are good
    from asr.engine import Engine
    from asr.models import ModelLoadError
    from tuning.config_file import ConfigWriteError, write_batch_size
    from tuning.wizard import WizardCancelled, cancel_wizard, run_wizard

    if args.check_precision or args.save_precision:
        return _precision(args, settings)
    try:
        engine = Engine(settings)
        with _ctrl_c_cancels(cancel_wizard):
            report = run_wizard(engine, args.files, sizes=args.sizes, copies=args.copies,
                                repeats=args.repeats, margin_pct=args.margin,
                                memory_limit_pct=args.memory_limit,
                                progress=None if args.quiet else ProgressBar())
    except WizardCancelled:
        print("\ncancelled: no batch size was chosen", file=sys.stderr)
        return CANCELLED_EXIT
    except (ModelLoadError, WizardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(args.json, report.to_dict(), [
        f"device: {report.device}", f"peak memory: {report.memory_source}",
        f"feature cache: {report.cache_policy}", "", report.format_table(), "",
        *(f"note: {note}" for note in report.notes),
        f"recommended batch size: {report.recommended}", f"why: {report.reason}"])
    if args.save:
        try:
            saved = write_batch_size(settings.config_path, report.recommended)
        except (ConfigWriteError, OSError) as exc:
            print(f"error: could not save batch_size: {exc}", file=sys.stderr)
            return 2
        print(f"saved batch_size: {report.recommended} to {saved.path}", file=sys.stderr)
    return 0


def _report(json_out: str | None, data: dict, lines: list[str]) -> None:
    """The report as JSON on stdout (`--json -`), else as text, also saved as JSON to a file."""
    if json_out == "-":
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    print("\n".join(lines))
    if json_out:
        Path(json_out).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {json_out}")


def _precision(args: argparse.Namespace, settings) -> int:
    """The precision check and/or saving a precision: `--check-precision`, `--save-precision`."""
    # deliberate lazy imports: torch and FunASR load only once the arguments and settings are good
    from asr.engine import Engine
    from asr.models import ModelLoadError
    from tuning.config_file import ConfigWriteError, write_setting
    from tuning.precision_check import (
        PrecisionCheckCancelled,
        PrecisionCheckError,
        cancel_precision_check,
        run_precision_check,
    )
    from tuning.wizard import aligned_table

    if args.check_precision:
        try:
            engine = Engine(settings)
            with _ctrl_c_cancels(cancel_precision_check):
                report = run_precision_check(
                    engine, args.files, args.candidate,
                    repeats=args.repeats or 1, progress=None if args.quiet else ProgressBar())
        except PrecisionCheckCancelled:
            print("\ncancelled", file=sys.stderr)
            return CANCELLED_EXIT
        except (ModelLoadError, PrecisionCheckError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _report(args.json, report.to_dict(), [
            aligned_table(report.columns(), report.table()), *(f"note: {note}" for note in report.notes),
            report.summary()])
    if args.save_precision:
        try:
            saved = write_setting(settings.config_path, "precision", args.save_precision)
        except (ConfigWriteError, OSError) as exc:
            print(f"error: could not save precision: {exc}", file=sys.stderr)
            return 2
        print(f"saved precision: {args.save_precision} to {saved.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
