"""`python -m asr job INPUT... --output DIR`: recognise an archive on a Ray cluster, resumably.

The command line only: parsing, exit codes and messages. Nothing here imports Ray until a job
runs (asr.jobs.driver), so `python -m asr --help` and `transcribe` never pay for it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asr.jobs.actor import FAULT_ENV, engine_start_error
from asr.jobs.driver import DEFAULT_CPU_THREADS_PER_ACTOR, JobOptions, JobSetupError, run_job
from asr.jobs.store import JobBusy
from asr.recognition.hotwords import HotwordError
from asr.system.console import add_engine_flags, engine_overrides, settings_for_command
from asr.text.export import parse_formats

RAY_MISSING = ("the job command needs Ray, an optional extra: .venv/bin/pip install -e '.[distributed]' "
               "or bash run.sh install distributed")


def add_parser(sub) -> argparse.ArgumentParser:
    """The `job` subcommand, beside `transcribe` (no Ray import here)."""
    job = sub.add_parser(
        "job", help="recognise an archive on a Ray cluster: resumable, one JSON line per input",
        description="Recognise files, folders (their audio files, recursively) or lists of paths "
                    "(.txt/.lst/.list, one path a line) with Ray Data; a rerun with the same "
                    "--output skips what is done.")
    job.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders, or list files")
    job.add_argument("--output", type=Path, required=True,
                     help="folder for results.jsonl, summary.json, parts/ and transcripts/")
    add_engine_flags(job)
    job.add_argument("--hotwords", help="hotwords separated by spaces or commas")
    job.add_argument("--format", help="also write one file per input into DIR/transcripts: txt, json, "
                                      "srt, vtt, tsv (comma-separated) or all; srt/vtt switch timestamps on")
    job.add_argument("--address", help="Ray cluster to join ('auto': the one `ray start` runs here); "
                                       "default: start a local one")
    job.add_argument("--actors", type=int,
                     help="recognition actors (default: one per GPU, else cores / --threads-per-actor)")
    job.add_argument("--threads-per-actor", type=int,
                     help=f"CPU threads per CPU actor (default: cpu_threads if set, else "
                          f"{DEFAULT_CPU_THREADS_PER_ACTOR})")
    job.add_argument("--files-per-call", type=int,
                     help="files an actor recognises in one engine call (default: 4 on CPU actors, "
                          "16 on GPU actors)")
    job.add_argument("--quiet", action="store_true", help="no progress, warnings only")
    return job




def main(args: argparse.Namespace) -> int:
    """Run the parsed `job` command. Exit 0: every input succeeded; 1: any failed; 2: usage,
    configuration, a busy output folder, or Ray missing."""
    try:
        formats = parse_formats(args.format) if args.format else []
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in ("actors", "threads_per_actor", "files_per_call"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        import ray  # noqa: F401 - deliberate: only to say clearly that the optional extra is missing
    except ImportError:
        print(f"error: {RAY_MISSING}", file=sys.stderr)
        return 2
    overrides = engine_overrides(args)
    if {"srt", "vtt"} & set(formats) and overrides.get("timestamps") is None:
        overrides["timestamps"] = True  # as `transcribe`: subtitles want sentence-sized cues
    settings = settings_for_command(args.config, overrides, quiet=args.quiet)
    if settings is None:
        return 2
    try:
        summary = run_job(args.inputs, args.output, settings, JobOptions(
            hotwords=args.hotwords, formats=formats, address=args.address, actors=args.actors,
            threads_per_actor=args.threads_per_actor, files_per_call=args.files_per_call,
            batch_size=args.batch_size, quiet=args.quiet, fault=os.environ.get(FAULT_ENV) or None))
    except (JobBusy, HotwordError, JobSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"error: cannot join the Ray cluster ({exc}); start one with `ray start --head`, or leave "
              "out --address to run on this machine", file=sys.stderr)
        return 2
    except Exception as exc:
        cause = engine_start_error(exc)
        if cause is None:
            raise
        print(f"error: the recognition actors could not start their engine: {cause}", file=sys.stderr)
        return 2
    print(summary.text())
    return 0 if summary.failed == 0 else 1
