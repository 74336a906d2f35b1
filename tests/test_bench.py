"""The benchmark command: a real end-to-end run on random:tiny, and its building blocks.

The smoke run starts `python -m benchmarks.bench` as a user would, which itself starts a fresh worker
process per variant (FunASR's AutoModel for A and, with its VAD and punctuation, AT; this engine
for C, CL and, with VAD, punctuation and timestamps, CT). No timing is asserted: only that it
finishes, reports every figure, and that the token ids and texts it compares are real ones. The
ncpu = cores twins (AN, ATN) differ from A and AT only in one argument, checked without a run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile

from asr.settings import PROJECT_ROOT
from asr.system.cpu import detect_cpu
from benchmarks import bench
from benchmarks import report as bench_report
from benchmarks import variants as bench_variants
from benchmarks.clips import clip_lengths, ensure_clips, prepare_real_files, synthesize
from benchmarks.onnx import OnnxUnavailable, check_exportable


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    command = [sys.executable, "-m", "benchmarks.bench", "--model", "random:tiny", "--device", "cpu",
               "--files", "2", "--clip-seconds", "3-8", "--variants", "A,C,CL,CB,CT,AT", "--repeats", "1",
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
    assert set(report["variants"]) == {"A", "C", "CL", "CB", "CT", "AT"}
    for name in ("A", "C", "CL", "CT", "AT"):
        variant = report["variants"][name]
        assert variant["status"] == "ok", variant
        assert variant["speed_x_realtime"] > 0 and variant["rtf"] > 0
        assert variant["peak_rss_mb"] > 0
        assert len(variant["runs"]) == 1 and variant["runs"][0]["ok"]
        assert len(variant["texts"]) == 2 and all(variant["texts"])
    for name in ("A", "C", "CL"):
        assert len(report["variants"][name]["tokens"]) == 2 and all(report["variants"][name]["tokens"])
    # A runs FunASR at its own defaults (4 threads); C at the engine's (one per core).
    assert report["variants"]["A"]["threads"]["funasr_ncpu"] == 4
    assert report["variants"]["C"]["threads"]["torch_threads"] >= 1
    bf16 = {"CB/A", "CB/C", "CB/CL"} if report["variants"]["CB"]["status"] == "ok" else set()
    assert set(report["ratios"]) == {"C/A", "C/CL", "CL/A", "CL/C", "CT/AT", "CT/C"} | bf16
    assert report["variants"]["C"]["threads"]["cpu_lanes"] >= 1  # the default: side by side
    assert report["variants"]["CL"]["threads"]["cpu_lanes"] == 1  # padded
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


def test_smoke_run_reports_the_transcript_variants(smoke):
    """CT and AT ran with their extras, and the report has their ratios, targets and agreement."""
    report, stdout = smoke
    ct, at = report["variants"]["CT"], report["variants"]["AT"]
    extras = report["settings"]["extras"]
    assert (extras["punc_spec"], extras["vad_spec"]) == ("random:tiny", "random:tiny")
    settings = ct["engine"]["settings"]  # the engine's own summary of what it ran with
    for item in ("vad=silero", "timestamps=True", f"punctuation={extras['punc_dir']}"):
        assert item in settings, item
    assert at["models"]["punctuation"] == extras["punc_dir"]
    assert at["models"]["vad"] == extras["vad_dir"]
    assert at["threads"]["funasr_ncpu"] == at["threads"]["vad_ncpu"] == 4  # FunASR's defaults
    assert all(n >= 1 for n in at["sentences"]) and all(n >= 1 for n in ct["sentences"])
    assert all(n >= 1 for n in ct["timed_words"])  # word times came back
    assert all(text[-1] in "。？" for text in ct["texts"] + at["texts"])  # both punctuated
    assert report["peers"] == {"A": "A", "AT": "AT"}  # no AN/ATN ran: the defaults are the peers
    assert report["peer_ratios"]["CT/AT"] == {"peer": "AT", "ratio": report["ratios"]["CT/AT"]}
    assert [(t["name"], t["against"], t["minimum"]) for t in report["targets"]] == [
        ("CT/AT", "AT", 2.0), ("CT/C", "C", 0.75)]
    assert all(isinstance(t["passed"], bool) for t in report["targets"])
    texts = report["texts"]["pairs"]
    assert set(texts) == {"CT vs AT", "CT vs C", "C vs AT", "C vs A"}
    assert 0.0 <= texts["CT vs AT"]["agreement"] <= 1.0 and texts["CT vs AT"]["chars"] > 0
    files = [row["file"] for row in report["tokens"]["files"]]
    assert [row["file"] for row in texts["CT vs AT"]["per_file"]] == files
    assert texts["C vs A"]["agreement"] == 1.0  # identical tokens read as 100%: the measure is sound
    stages = report["profile"]["CT"]["stages"]
    assert all(stages[name]["s"] > 0 for name in ("vad", "timestamp", "punctuation"))
    for text in ("target CT/AT >= 2.00x (against AT)", "target CT/C >= 0.75x", "CT vs AT",
                 "where CT spends its time"):
        assert text in stdout, text


def test_bf16_runs_where_the_cpu_has_it_and_is_skipped_with_the_reason_elsewhere(smoke):
    report, stdout = smoke
    cb = report["variants"]["CB"]
    if detect_cpu().bf16:
        assert cb["status"] == "ok", cb
        assert cb["engine"]["precision"] == "bf16"
        assert report["variants"]["C"]["engine"]["precision"] == "fp32"
        pair = report["tokens"]["pairs"]["CB vs C"]
        assert pair["files"] == 2 and pair["identical"] + len(pair["mismatched"]) == 2
        assert "CB vs C" in stdout
    else:
        assert cb["status"] == "skipped" and "bf16 needs AVX-512 BF16 or AMX" in cb["reason"]


def test_peers_are_the_faster_funasr_setting_and_targets_use_them():
    ok = {"status": "ok"}
    variants = {"A": {**ok, "speed_x_realtime": 10.0}, "AN": {**ok, "speed_x_realtime": 12.5},
                "AT": {**ok, "speed_x_realtime": 8.0}, "ATN": {"status": "failed", "reason": "x"},
                "C": {**ok, "speed_x_realtime": 25.0}, "CT": {**ok, "speed_x_realtime": 20.0}}
    assert bench_report.peers(variants) == {"A": "AN", "AT": "AT"}
    assert bench_report.peer_ratios(variants) == {"C/A": {"peer": "AN", "ratio": 2.0},
                                                  "CT/AT": {"peer": "AT", "ratio": 2.5}}
    rows = {t["name"]: t for t in bench_report.targets(variants, "cpu")}
    assert (rows["CT/AT"]["value"], rows["CT/AT"]["passed"]) == (2.5, True)
    assert (rows["CT/C"]["value"], rows["CT/C"]["passed"]) == (0.8, True)
    variants["AT"]["speed_x_realtime"] = 16.0
    assert bench_report.targets(variants, "cpu")[0]["passed"] is False  # 1.25 < 2
    assert all(t["passed"] is None for t in bench_report.targets(variants, "cuda"))  # CPU targets


def test_text_agreement_is_one_minus_cer_without_punctuation():
    assert bench_report.plain_text("今天，天气 好。 Hello world?") == "今天天气好Helloworld"
    assert bench_report.edit_distance("kitten", "sitting") == 3
    variants = {"CT": {"status": "ok", "texts": ["今天，天气好。", "一二三四", None]},
                "AT": {"status": "ok", "texts": ["今天天气 好？", "一二五四五", "x"]}}
    pairs = bench_report.compare_texts(variants, ["a.wav", "b.wav", "c.wav"])["pairs"]
    assert list(pairs) == ["CT vs AT"]
    pair = pairs["CT vs AT"]
    assert [row.get("agreement") for row in pair["per_file"]] == [1.0, 0.6, None]  # b: 2 edits / 5
    assert (pair["chars"], pair["unknown"], pair["agreement"]) == (10, 1, 0.8)


def test_ncpu_twins_run_funasr_with_one_thread_per_core(monkeypatch):
    """AN and ATN are A and AT with AutoModel(ncpu=cores) and nothing else changed."""
    monkeypatch.setattr("asr.system.threads.default_cpu_threads", lambda: 2)
    runner = bench.Bench(bench.parser().parse_args(["--variants", "A,AN,AT,ATN,CT"]), [])
    runner.device, runner.model_dir, runner.clips, runner.warmup = "cpu", "m", [], []
    runner.extras = {"punc_dir": "/p", "vad_dir": "/v"}
    specs = {s.label: s for s in runner.specs()}
    assert list(specs) == ["A", "AN", "AT", "ATN", "CT"]
    assert (specs["A"].ncpu, specs["AN"].ncpu, specs["AT"].ncpu, specs["ATN"].ncpu) == (None, 2, None, 2)
    job = runner._job(specs["ATN"])
    assert (job["variant"], job["ncpu"], job["vad_model_dir"], job["punc_model_dir"]) == ("AT", 2, "/v", "/p")
    assert runner._job(specs["CT"])["settings"] == {"vad": "silero", "punctuation": "/p", "timestamps": True,
                                                    "precision": "fp32"}
    seen = []
    fake = types.SimpleNamespace(AutoModel=lambda **kwargs: seen.append(kwargs))
    monkeypatch.setitem(sys.modules, "funasr", fake)
    bench_variants._funasr_model({"model_dir": "m", "device": "cpu", "ncpu": 2}, vad_model="/v")
    bench_variants._funasr_model({"model_dir": "m", "device": "cpu", "ncpu": None})
    assert seen == [{"model": "m", "device": "cpu", "disable_update": True, "vad_model": "/v", "ncpu": 2},
                    {"model": "m", "device": "cpu", "disable_update": True}]
    monkeypatch.setattr("asr.system.threads.default_cpu_threads", lambda: 4)  # 4 cores: AN would repeat A
    runner.skipped.clear()
    assert [s.label for s in runner.specs()] == ["A", "AT", "CT"]
    assert set(runner.skipped) == {"AN", "ATN"}


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
