"""What one hostile or odd input costs the decoder: peak memory and time, per file.

    python -m benchmarks.decode_memory [--old PATH_TO_AN_OLDER_decode.py]

Each file is decoded once in this process with its peak resident set (VmHWM) reset just before
(writing 5 to /proc/self/clear_refs), so the figure is that decode's own growth. `--old` runs the
same files through another copy of asr/audio/decode.py (e.g. `git show REV:asr/audio/decode.py >
old.py`) for a comparison; cases known to need gigabytes there are skipped unless `--all`.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import re
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from asr.audio import decode as current

# Cases the decoder before bounded decoding needed gigabytes for (the figures:
# +12,462 MB for the 48001 Hz WAV, +5,771 MB for the 75-minute FLAC).
HUGE_BEFORE = ("48001", "383999", "75 min")


def _status_mb(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1)) / 1024


def measure(decode, data: bytes) -> tuple[float, float, str]:
    Path("/proc/self/clear_refs").write_text("5")
    start = _status_mb("VmRSS")
    started = time.perf_counter()
    try:
        outcome = f"ok, {decode(data, 'input').duration_s:.1f} s of audio"
    except Exception as exc:  # noqa: BLE001 - a refusal is a result here
        outcome = f"refused: {exc}"
    return _status_mb("VmHWM") - start, time.perf_counter() - started, outcome


def wav(seconds: float, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros((int(seconds * rate), channels), np.float32), rate, format="WAV",
                    subtype="PCM_16")
    return out.getvalue()


def flac_silence(minutes: int, rate: int = 48000, channels: int = 2) -> bytes:
    out = io.BytesIO()
    with soundfile.SoundFile(out, "w", rate, channels, format="FLAC", subtype="PCM_16") as handle:
        minute = np.zeros((rate * 60, channels), np.int16)
        for _ in range(minutes):
            handle.write(minute)
    return out.getvalue()


def without_length(flac: bytes) -> bytes:
    """STREAMINFO's total sample count set to 0 (unknown): only decoding can find the length."""
    data = bytearray(flac)
    data[21] &= 0xF0
    data[22:26] = b"\0\0\0\0"
    return bytes(data)


def cases() -> dict[str, bytes]:
    long_flac = flac_silence(75)
    return {
        "WAV 0.1 s at 48001 Hz": wav(0.1, 48001),
        "WAV 0.1 s at 16001 Hz": wav(0.1, 16001),
        "WAV 0.1 s at 383999 Hz": wav(0.1, 383999),
        "FLAC 75 min silence, 2 ch, 48 kHz": long_flac,
        "the same, header length removed": without_length(long_flac),
        "FLAC 10 min silence, 2 ch, 48 kHz": flac_silence(10),
        "WAV 1 s, 16 channels": wav(1.0, 16000, 16),
    }


def _load(path: str):
    spec = importlib.util.spec_from_file_location("older_decode", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["older_decode"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_memory", description=__doc__)
    parser.add_argument("--old", help="another decode.py to compare with")
    parser.add_argument("--all", action="store_true", help="with --old, also the cases that needed GBs")
    args = parser.parse_args(argv)
    decoders = [("now", current.decode_bytes)]
    if args.old:
        decoders.append(("old", _load(args.old).decode_bytes))
    for name, data in cases().items():
        for label, decode in decoders:
            if label == "old" and not args.all and any(word in name for word in HUGE_BEFORE):
                print(f"{name:36s} {len(data) / 1024:8.1f} KB  {label}: skipped (gigabytes; --all runs it)")
                continue
            grown, seconds, outcome = measure(decode, data)
            print(f"{name:36s} {len(data) / 1024:8.1f} KB  {label}: +{grown:7.1f} MB peak, {seconds:6.2f} s, "
                  f"{outcome[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
