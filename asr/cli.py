"""`python -m asr` (installed as `seaco-asr`): the engine's command line.

    transcribe FILE...   headless recognition with the same engine as the UI
    normalize TEXT...    the number-writing rules (ITN) on your own sentences, no model needed
    job INPUT...         an archive on a Ray cluster, resumably (asr.jobs)
    memory-model         fit the memory model of a model on this device

Exit codes: 0 when every file succeeded, 1 when any failed, 2 on usage or configuration errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from asr.jobs import command as job_command
from asr.recognition.hotword_lists import NamedLists, read_word_file
from asr.recognition.hotwords import parse_hotwords
from asr.system.console import ProgressBar, add_engine_flags, engine_overrides, settings_for_command
from asr.text import normalize_cli
from asr.text.export import FORMATS, file_names, parse_formats, render

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m asr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("transcribe", help="recognise audio files")
    run.add_argument("files", nargs="+", help="audio files (wav, flac, mp3, ogg, m4a, aac, webm, ...)")
    add_engine_flags(run)
    run.add_argument("--hotwords", help="hotwords separated by spaces or commas")
    run.add_argument("--hotwords-file", type=Path,
                     help="more hotwords from a UTF-8 file, one a line (# comments)")
    run.add_argument("--hotword-list", help="a named hotword list (saved from the web UI in hotwords.yaml)")
    run.add_argument("--json", action="store_true", help="print a JSON list of results")
    run.add_argument("--format", help="write one file per input in these formats: txt, json, srt, vtt, "
                                      "tsv (comma-separated) or all; srt/vtt switch timestamps on")
    run.add_argument("--output-dir", type=Path,
                     help="folder for --format files (default: the current folder; with no --format: all)")
    run.add_argument("--quiet", action="store_true", help="log warnings only")
    normalize_cli.add_parser(sub)
    job_command.add_parser(sub)  # imports no Ray: a job loads it when it runs
    _add_memory_model_parser(sub)
    return parser


def _add_memory_model_parser(sub) -> argparse.ArgumentParser:
    """`python -m asr memory-model`: measure a model's peaks, fit, check held-out runs, save."""
    parser = sub.add_parser("memory-model", help="fit the memory model of a model on this device",
                            description="Measure one batch's peak memory on a grid of batch sizes and "
                                        "lengths, fit the memory model, check held-out runs, and save it "
                                        "(--save: where the engine looks for it).")
    parser.add_argument("--model", default="random:tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"),
                        help="int8 quantises the weights first; bf16/fp16 need the hardware")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--frames", default="100,250,500,1000")
    parser.add_argument("--check", default="3:700", help="held-out runs BATCH:FRAMES,... to predict")
    parser.add_argument("--out", help="save the fitted model here (JSON)")
    parser.add_argument("--save", action="store_true",
                        help="save it where the engine looks for it (cache_dir/memory/...)")
    return parser


def request_hotwords(settings, typed: str | None, word_file: Path | None = None,
                     list_name: str | None = None) -> list[str] | None:
    """Typed words, a word file's and a named list's, as one checked list (the limit holds for
    the union); None when none was given."""
    hw = settings.hotwords
    if typed is None and word_file is None and not list_name:
        return None
    words = parse_hotwords(typed, hw.max_count, hw.max_chars)
    if word_file is not None:
        words += read_word_file(word_file, hw.max_count, hw.max_chars)
    if list_name:
        words += NamedLists(settings.resolve_path(hw.lists_file), hw.max_count, hw.max_chars).get(list_name)
    return parse_hotwords(words, hw.max_count, hw.max_chars)


def _wanted_formats(args: argparse.Namespace) -> list[str]:
    if args.format is None:
        return list(FORMATS) if args.output_dir is not None else []
    return parse_formats(args.format)


def _write_files(results, formats: list[str], folder: Path, min_s: float = 0.0) -> None:
    """One file per input and format, named after the input (a.wav -> a.srt); a failed input
    writes nothing (its error is printed and in the exit code)."""
    folder.mkdir(parents=True, exist_ok=True)
    for result, stem in zip(results, file_names(results), strict=True):
        if result.ok:
            for fmt in formats:
                (folder / f"{stem}.{fmt}").write_text(render(result, fmt, min_s), encoding="utf-8")
    log.info("wrote %s for %d file(s) to %s", ", ".join(formats), sum(r.ok for r in results), folder)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "job":
        return job_command.main(args)
    if args.command == "normalize":
        return normalize_cli.run(args)
    if args.command == "memory-model":
        # deliberate lazy import: torch and the model load only for this command
        from asr.recognition import memory_model

        return memory_model.run(args)
    try:
        formats = _wanted_formats(args)
    except ValueError as exc:
        parser.error(str(exc))
    overrides = engine_overrides(args)
    if {"srt", "vtt"} & set(formats) and overrides.get("timestamps") is None:
        overrides["timestamps"] = True  # subtitles want sentence-sized cues, not whole segments
    settings = settings_for_command(args.config, overrides, quiet=args.quiet)
    if settings is None:
        return 2

    # deliberate lazy imports: torch and FunASR load only once the arguments and settings are good
    from asr.engine import Engine
    from asr.models import ModelLoadError
    from asr.recognition.hotwords import HotwordError

    try:
        hotwords = request_hotwords(settings, args.hotwords, args.hotwords_file, args.hotword_list)
        engine = Engine(settings)
        results = engine.transcribe(args.files, batch_size=args.batch_size,
                                    hotwords=hotwords,
                                    progress=None if args.quiet else ProgressBar().files)
    except (ModelLoadError, HotwordError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if formats:
        _write_files(results, formats, args.output_dir or Path.cwd(), settings.subtitles.min_s)
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
