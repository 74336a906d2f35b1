"""`python -m asr transcribe`: JSON contract and exit codes, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from asr.settings import PROJECT_ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asr", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(PROJECT_ROOT),
                                                       # the default model cannot be downloaded here
                                                       "SEACO_PUNCTUATION": "off"})


def test_json_output_and_exit_zero(reference_wavs, loaded_tiny):
    proc = run_cli("transcribe", *map(str, reference_wavs), "--model", "random:tiny", "--device", "cpu",
                   "--batch-size", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)  # stdout holds nothing but the JSON
    assert [r["file"] for r in results] == [p.name for p in reference_wavs]
    for r in results:
        assert {"file", "text", "confidence", "duration_s", "processing_s", "error"} <= r.keys()
        assert r["error"] is None and r["text"]


def test_any_failure_exits_one(reference_wavs, tmp_path, loaded_tiny):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"\x00\x01garbage" * 50)
    proc = run_cli("transcribe", str(reference_wavs[0]), str(bad), "--model", "random:tiny", "--json")
    assert proc.returncode == 1
    results = json.loads(proc.stdout)
    assert results[0]["error"] is None
    assert "not a readable audio file" in results[1]["error"]


def test_usage_errors_exit_two(reference_wavs, loaded_tiny):
    assert run_cli("transcribe").returncode == 2  # no files
    bad_size = run_cli("transcribe", str(reference_wavs[0]), "--batch-size", "0", "--model", "random:tiny")
    assert bad_size.returncode == 2 and "batch_size" in bad_size.stderr
    bad_device = run_cli("transcribe", str(reference_wavs[0]), "--device", "tpu")
    assert bad_device.returncode == 2 and "one of auto, cuda, cpu" in bad_device.stderr
    too_many = run_cli("transcribe", str(reference_wavs[0]), "--model", "random:tiny",
                       "--hotwords", " ".join(f"w{i}" for i in range(12)))
    assert too_many.returncode == 2 and "limit is 10" in too_many.stderr
