"""python -m gpu_check prepare | run | size — see gpu_check/__init__.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import WHEEL_DIR


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpu_check", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="download the kit's wheels (development machine, network)")
    prep.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    prep.add_argument("--dest", type=Path, default=WHEEL_DIR, help=f"wheel folder (default {WHEEL_DIR})")
    prep.add_argument("--quick", action="store_true", help="resolve the pinned list only, download nothing")
    run = sub.add_parser("run", help="run the check (GPU machine; --dry-run: CPU, tiny, quick)")
    run.add_argument("out", type=Path, help="folder for summary.json, gpu-check.log and logs/")
    run.add_argument("--dry-run", action="store_true", help="the same plan on the CPU with the tiny model")
    run.add_argument("--deadline", type=float, help="seconds for everything (default 450; dry run 240)")
    run.add_argument("--install", choices=("always", "auto", "never"),
                     help="always (default), auto (only if missing; the dry run's), never")
    run.add_argument("--wheels", type=Path, default=WHEEL_DIR, help=f"wheel folder (default {WHEEL_DIR})")
    run.add_argument("--site", type=Path, help="install target (default: a folder in the temp dir)")
    run.add_argument("--steps", help="comma-separated subset of steps (default: all)")
    sub.add_parser("size", help="print what would travel: repository + kit, against 64 MiB")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "prepare":
        from .prepare import PrepareError, prepare
        from .size import KitTooLarge

        try:
            prepare(args.python_version, args.dest, quick=args.quick)
        except (PrepareError, KitTooLarge, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "size":
        from . import size

        measured = size.measure()
        print(measured.describe())
        return 0 if measured.fits else 1
    from .install import DEFAULT_SITE
    from .plan import make_plan
    from .runner import Runner

    plan = make_plan(args.dry_run, args.deadline)
    if args.install:
        plan.install = args.install
    only = [s.strip() for s in args.steps.split(",")] if args.steps else None
    return Runner(plan, args.out.resolve(), args.wheels, args.site or DEFAULT_SITE, only).run()


if __name__ == "__main__":
    sys.exit(main())
