"""The benchmark command: a real end-to-end run on random:tiny, and its building blocks.

The smoke run starts `python -m tuning.bench` as a user would, which itself starts a fresh worker
process per variant (FunASR's AutoModel for A, this engine for C). No timing is asserted: only
that it finishes, reports every figure, and that the token ids it compares are real ones.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from asr.settings import PROJECT_ROOT
from tuning import bench_report
from tuning.bench_clips import clip_lengths, ensure_clips, prepare_real_files, synthesize
from tuning.bench_onnx import OnnxUnavailable, check_exportable


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    command = [sys.executable, "-m", "tuning.bench", "--model", "random:tiny", "--device", "cpu",
               "--files", "2", "--clip-seconds", "3-8", "--variants", "A,C,CL", "--repeats", "1",
               "--profile", "--json", str(out)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


def test_smoke_run_writes_the_full_report(smoke):
    report, _ = smoke
    for key in ("command", "model", "device", "versions", "clips", "settings", "variants", "ratios",
                "tokens", "profile"):
        assert key in report, key
    assert report["device"]["resolved"] == "cpu"
    assert report["versions"]["funasr"] and report["versions"]["torch"]
    assert report["clips"]["count"] == 2 and report["clips"]["source"] == "synthetic"
    assert set(report["variants"]) == {"A", "C", "CL"}
    for name in ("A", "C", "CL"):
        variant = report["variants"][name]
        assert variant["status"] == "ok", variant
        assert variant["speed_x_realtime"] > 0 and variant["rtf"] > 0
        assert variant["peak_rss_mb"] > 0
        assert len(variant["runs"]) == 1 and variant["runs"][0]["ok"]
        assert len(variant["tokens"]) == 2 and all(variant["tokens"])
    # A runs FunASR at its own defaults (4 threads); C at the engine's (one per core).
    assert report["variants"]["A"]["threads"]["funasr_ncpu"] == 4
    assert report["variants"]["C"]["threads"]["torch_threads"] >= 1
    assert set(report["ratios"]) == {"C/A", "C/CL", "CL/A"}
    assert report["variants"]["C"]["threads"]["cpu_lanes"] == 1  # fp32 default: padded
    assert report["variants"]["CL"]["threads"]["cpu_lanes"] >= 1
    assert report["profile"]["C"]["stages"].keys() >= {"decode", "features", "wait", "encoder",
                                                        "predictor", "decoder", "postprocess"}


def test_engine_tokens_match_funasr_for_every_file(smoke):
    """Token ids are the real ones both sides produced, so identical means identical decoding."""
    report, stdout = smoke
    pair = report["tokens"]["pairs"]["C vs A"]
    assert pair == {"identical": 2, "files": 2, "unknown": 0, "mismatched": []}
    assert report["variants"]["C"]["tokens"] == report["variants"]["A"]["tokens"]
    assert [row["C vs A"] for row in report["tokens"]["files"]] == [True, True]
    # Padded (C) or side by side (CL), batching leaves the tokens alone.
    assert report["tokens"]["pairs"]["C vs CL"]["identical"] == 2
    assert "C/A" in stdout and "C vs A 2/2" in stdout and "where C spends its time" in stdout


def test_clip_set_is_deterministic_mixed_and_speech_level(tmp_path):
    lengths = clip_lengths(12)
    assert len(lengths) == 12 and min(lengths) == 3.0 and max(lengths) == 60.0
    assert lengths != sorted(lengths)  # mixed order, as a user's folder would be
    assert all(60.0 <= s <= 300.0 for s in clip_lengths(20, long=True))
    first = ensure_clips(tmp_path, 2, seconds=(2.0, 4.0))
    again = ensure_clips(tmp_path, 2, seconds=(2.0, 4.0))
    assert [c.path for c in first] == [c.path for c in again]
    samples, rate = soundfile.read(first[0].path, dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    assert np.array_equal(samples, soundfile.read(again[0].path, dtype="float32")[0])
    audio = synthesize(6.0, seed=3)
    assert np.array_equal(audio, synthesize(6.0, seed=3))
    level_db = 20 * np.log10(np.sqrt(np.mean(audio**2)))
    assert -30 < level_db < -18  # conversational speech level, not full-scale noise
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
    assert spectrum[freqs < 1000].sum() > 5 * spectrum[freqs > 4000].sum()  # energy where speech has it


def test_real_files_become_cached_16k_wav_copies(tmp_path, reference_wavs):
    clips = prepare_real_files([str(p) for p in reference_wavs[:2]], tmp_path)
    assert len(clips) == 2
    for clip, source in zip(clips, reference_wavs[:2], strict=True):
        info = soundfile.info(str(clip.path))
        assert info.samplerate == 16000 and info.channels == 1
        assert clip.duration_s == pytest.approx(soundfile.info(str(source)).duration, abs=0.01)


def test_onnx_export_refuses_a_model_funasr_cannot_export(loaded_tiny):
    with pytest.raises(OnnxUnavailable, match="512 wide"):
        check_exportable(loaded_tiny.directory)


def test_token_comparison_reports_mismatch_and_unknown():
    variants = {
        "A": {"status": "ok", "speed_x_realtime": 5.0, "tokens": [[1, 2, 3], [4, 5], None]},
        "C": {"status": "ok", "speed_x_realtime": 10.0, "tokens": [[1, 2, 3], [4, 6], [7]]},
        "O": {"status": "unavailable", "reason": "offline"},
    }
    result = bench_report.compare_tokens(variants, ["a.wav", "b.wav", "c.wav"])
    assert list(result["pairs"]) == ["C vs A"]  # O did not run: no pair with it
    pair = result["pairs"]["C vs A"]
    assert (pair["identical"], pair["unknown"]) == (1, 1)
    assert pair["mismatched"][0]["file"] == "b.wav" and pair["mismatched"][0]["agreement"] == 0.5
    assert [row["C vs A"] for row in result["files"]] == [True, False, None]
    assert bench_report.ratios(variants) == {"C/A": 2.0}
