"""The benchmark command: a real end-to-end run on random:tiny, and its building blocks.

The smoke run starts `python -m benchmarks.bench` as a user would, which itself starts a fresh worker
process per variant (FunASR's AutoModel for A and, with its VAD and punctuation, AT, and with
CAM++ speakers too, AS; this engine for C, CL and, with VAD, punctuation and timestamps, CT, plus
ITN (CTI) or speakers (CS)). No timing is asserted: only that it finishes, reports every figure,
and that the token ids, texts and speaker counts it compares are real ones. The ncpu = cores twins
(AN, ATN, ASN) differ from A, AT and AS only in one argument, checked without a run.
"""

from __future__ import annotations

import importlib.util
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
               "--files", "2", "--clip-seconds", "3-8", "--variants", "A,C,CL,CB,CT,AT,CTI,AS,CS",
               "--repeats", "1", "--profile", "--json", str(out)]
    # Nine fresh worker processes, each loading torch and FunASR: minutes on a busy 2-core machine.
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
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
    assert set(report["variants"]) == {"A", "C", "CL", "CB", "CT", "AT", "CTI", "AS", "CS"}
    ran = ("A", "C", "CL", "CT", "AT", "CTI", "CS") + (("AS",) if _funasr_speakers_importable() else ())
    for name in ran:
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
    speakers = {"CS/AS", "AS/AT"} if report["variants"]["AS"]["status"] == "ok" else set()
    expected = {"C/A", "C/CL", "CL/A", "CL/C", "CT/AT", "CT/C", "CTI/CT", "CS/CT"}
    assert set(report["ratios"]) == expected | bf16 | speakers
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
    assert report["peers"] == {"A": "A", "AT": "AT", "AS": "AS"}  # no AN/ATN/ASN ran: the defaults are peers
    assert report["peer_ratios"]["CT/AT"] == {"peer": "AT", "ratio": report["ratios"]["CT/AT"]}
    assert [(t["name"], t["against"], t["minimum"]) for t in report["targets"]] == [
        ("CT/AT", "AT", 2.0), ("CT/C", "C", 0.75), ("CS/AS", "AS", 2.0), ("CS/CT", "CT", 0.8)]
    assert all(isinstance(t["passed"], bool) for t in report["targets"])
    texts = report["texts"]["pairs"]
    assert set(texts) == {"CT vs AT", "CT vs C", "C vs AT", "C vs A", "CS vs AS", "CS vs CT", "AS vs AT"}
    assert 0.0 <= texts["CT vs AT"]["agreement"] <= 1.0 and texts["CT vs AT"]["chars"] > 0
    files = [row["file"] for row in report["tokens"]["files"]]
    assert [row["file"] for row in texts["CT vs AT"]["per_file"]] == files
    assert texts["C vs A"]["agreement"] == 1.0  # identical tokens read as 100%: the measure is sound
    stages = report["profile"]["CT"]["stages"]
    assert all(stages[name]["s"] > 0 for name in ("vad", "timestamp", "punctuation"))
    for text in ("target CT/AT >= 2.00x (against AT)", "target CT/C >= 0.75x", "CT vs AT",
                 "where CT spends its time"):
        assert text in stdout, text


def _funasr_speakers_importable() -> bool:
    """What FunASR's speaker path imports beyond FunASR itself (its ClusterBackend)."""
    return all(importlib.util.find_spec(name) is not None for name in ("sklearn", "scipy"))


def test_smoke_run_reports_the_itn_cost(smoke):
    """CTI is CT plus ITN: same tokens, same sentences, raw text = CT's text, and ITN's own call
    timed once per file inside the timed pass, over CTI's sentences."""
    report, stdout = smoke
    cti, ct = report["variants"]["CTI"], report["variants"]["CT"]
    assert cti["engine"]["itn"] is True and ct["engine"]["itn"] is False
    assert cti["engine"]["settings"] == ct["engine"]["settings"]  # nothing else differs
    assert report["tokens"]["pairs"]["CTI vs CT"]["identical"] == 2
    assert cti["sentences"] == ct["sentences"]  # ITN rewrites texts after the cut, never the cut
    assert cti["raw_texts"] == ct["texts"]
    timer = cti["stage_s_runs"][0]["itn"]
    assert timer["found"] and timer["calls"] == 2 and timer["s"] > 0  # the engine's ITN ran per file
    itn = report["itn"]
    assert (itn["sentences"], itn["files"], itn["raw_equals_ct"]) == (sum(ct["sentences"]), 2, 2)
    assert itn["ms_per_sentence"] == round(1000 * timer["s"] / itn["sentences"], 3)
    assert itn["speed_ratio"] == report["ratios"]["CTI/CT"]
    assert isinstance(itn["text_stages_ms_per_sentence"], float)
    assert report["profile"]["CTI"]["within"]["itn"]["inside"] == "punctuation"
    for text in ("ITN (CTI against CT):", "ms per sentence", "speed CTI/CT", "where CTI spends its time"):
        assert text in stdout, text


def test_smoke_run_reports_the_speaker_variants(smoke):
    """CS is CT plus speakers with the same CAM++ directory FunASR's AS loads; both report a
    speaker count per file, the targets are printed, and speakers never move tokens or text."""
    report, stdout = smoke
    cs, ct, at = report["variants"]["CS"], report["variants"]["CT"], report["variants"]["AT"]
    spk = report["settings"]["speaker_model"]
    assert spk["spk_spec"] == "random:tiny" and spk["spk_dir"].endswith("random-campplus-tiny-v1")
    assert (cs["engine"]["speakers"], cs["engine"]["speaker_model"]) == ("auto", spk["spk_dir"])
    assert cs["engine"]["settings"] == ct["engine"]["settings"]
    assert report["tokens"]["pairs"]["CS vs CT"]["identical"] == 2
    assert report["texts"]["pairs"]["CS vs CT"]["agreement"] == 1.0  # labels and cuts only
    assert all(n >= 1 for n in cs["speakers_found"]) and len(cs["speakers_found"]) == 2
    timer = cs["stage_s_runs"][0]["speakers"]
    assert timer["found"] and timer["calls"] == 2 and timer["s"] > 0  # diarized once per file
    assert report["speakers"]["cs_diarize"]["files"] == 2
    assert report["profile"]["CS"]["within"]["speakers"]["inside"] == "vad"
    found = report["speakers"]["files"]
    assert [row["file"] for row in found] == [row["file"] for row in report["tokens"]["files"]]
    assert [row["CS"] for row in found] == cs["speakers_found"]
    for text in ("target CS/AS >= 2.00x (against AS)", "target CS/CT >= 0.80x (against CT)",
                 "speakers found per file", "CS diarization:", "where CS spends its time"):
        assert text in stdout, text
    target = {t["name"]: t for t in report["targets"]}["CS/CT"]
    assert target["value"] == report["ratios"]["CS/CT"] and isinstance(target["passed"], bool)
    a_s = report["variants"]["AS"]
    if not _funasr_speakers_importable():
        assert a_s["status"] == "unavailable" and "speaker path" in a_s["reason"]
        return
    assert a_s["status"] == "ok", a_s
    assert a_s["models"] == {**at["models"], "speakers": spk["spk_dir"]}
    assert a_s["threads"]["spk_ncpu"] == 4  # FunASR's default, passed on to its speaker model
    assert all(isinstance(n, int) and n >= 1 for n in a_s["speakers_found"])
    assert [row["AS"] for row in found] == a_s["speakers_found"]
    assert report["texts"]["pairs"]["AS vs AT"]["agreement"] == 1.0
    assert report["peer_ratios"]["CS/AS"] == {"peer": "AS", "ratio": report["ratios"]["CS/AS"]}


def test_itn_cost_and_speaker_counts_from_the_runs():
    """The arithmetic of the ITN and speaker summaries, on runs written by hand."""
    def stats(wall, text_s):
        return {"wall_s": wall, "punctuation_s": text_s}

    cti = {"status": "ok", "speed_x_realtime": 9.0, "sentences": [3, 5], "texts": ["2024年", "一些"],
           "raw_texts": ["二零二四年", "一些"], "wall_s_median": 2.0,
           "stats_runs": [stats(2.0, 0.30), stats(1.0, 0.20), stats(3.0, 0.50)],
           "stage_s_runs": [{"itn": {"s": 0.04, "calls": 2, "found": True}},
                            {"itn": {"s": 0.01, "calls": 2, "found": True}},
                            {"itn": {"s": 0.09, "calls": 2, "found": True}}]}
    ct = {"status": "ok", "speed_x_realtime": 10.0, "texts": ["二零二四年", "一些"],
          "stats_runs": [stats(1.0, 0.10), stats(2.0, 0.14), stats(3.0, 0.30)]}
    itn = bench_report.itn_cost({"CTI": cti, "CT": ct})
    # The median run (wall 2.0) holds 0.04 s of ITN over 8 sentences; the text stages' medians
    # differ by 0.30 - 0.14 s.
    assert itn == {"sentences": 8, "files": 2, "changed_files": 1, "measured_s": 0.04, "ms_per_sentence": 5.0,
                   "speed_ratio": 0.9, "text_stages_ms_per_sentence": 20.0, "raw_equals_ct": 2}
    cti["stage_s_runs"] = [{"itn": {"s": 0.0, "calls": 0, "found": False}}] * 3
    assert bench_report.itn_cost({"CTI": cti})["ms_per_sentence"] is None
    assert "not timed" in bench_report.itn_cost({"CTI": cti})["why"]
    assert bench_report.itn_cost({"CT": ct}) is None
    cs = {"status": "ok", "speakers_found": [2, 1], "speakers_stable_across_repeats": True,
          "wall_s_median": 4.0, "stats_runs": [stats(4.0, 0.1)],
          "stage_s_runs": [{"speakers": {"s": 1.0, "calls": 2, "found": True}}]}
    asn = {"status": "ok", "speakers_found": [1, None], "speakers_stable_across_repeats": True}
    counts = bench_report.speaker_counts({"CS": cs, "ASN": asn, "AS": {"status": "failed"}}, ["a", "b"])
    assert counts["variants"] == ["CS", "ASN"]
    assert counts["files"] == [{"file": "a", "CS": 2, "ASN": 1}, {"file": "b", "CS": 1, "ASN": None}]
    assert counts["cs_diarize"] == {"s": 1.0, "files": 2, "share_of_wall": 0.25}
    assert bench_report.speaker_counts({"CT": ct}, ["a", "b"]) == {}


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
                "C": {**ok, "speed_x_realtime": 25.0}, "CT": {**ok, "speed_x_realtime": 20.0},
                "AS": {**ok, "speed_x_realtime": 4.0}, "ASN": {**ok, "speed_x_realtime": 5.0},
                "CS": {**ok, "speed_x_realtime": 15.0}}
    assert bench_report.peers(variants) == {"A": "AN", "AT": "AT", "AS": "ASN"}
    assert bench_report.peer_ratios(variants) == {"C/A": {"peer": "AN", "ratio": 2.0},
                                                  "CT/AT": {"peer": "AT", "ratio": 2.5},
                                                  "CS/AS": {"peer": "ASN", "ratio": 3.0}}
    rows = {t["name"]: t for t in bench_report.targets(variants, "cpu")}
    assert (rows["CT/AT"]["value"], rows["CT/AT"]["passed"]) == (2.5, True)
    assert (rows["CT/C"]["value"], rows["CT/C"]["passed"]) == (0.8, True)
    assert (rows["CS/AS"]["against"], rows["CS/AS"]["value"], rows["CS/AS"]["passed"]) == ("ASN", 3.0, True)
    assert (rows["CS/CT"]["value"], rows["CS/CT"]["passed"]) == (0.75, False)  # speakers cost 25% > 20%
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
    """AN, ATN and ASN are A, AT and AS with AutoModel(ncpu=cores) and nothing else changed; CTI
    and CS are CT plus one setting each."""
    monkeypatch.setattr("asr.system.threads.default_cpu_threads", lambda: 2)
    runner = bench.Bench(bench.parser().parse_args(["--variants", "A,AN,AT,ATN,CT,CTI,AS,ASN,CS"]), [])
    runner.device, runner.model_dir, runner.clips, runner.warmup = "cpu", "m", [], []
    runner.extras = {"punc_dir": "/p", "vad_dir": "/v"}
    runner.speaker = {"spk_spec": "random:large", "spk_dir": "/s"}
    specs = {s.label: s for s in runner.specs()}
    assert list(specs) == ["A", "AN", "AT", "ATN", "CT", "CTI", "AS", "ASN", "CS"]
    assert (specs["A"].ncpu, specs["AN"].ncpu, specs["AT"].ncpu, specs["ATN"].ncpu) == (None, 2, None, 2)
    assert (specs["AS"].ncpu, specs["ASN"].ncpu) == (None, 2)
    job = runner._job(specs["ATN"])
    assert (job["variant"], job["ncpu"], job["vad_model_dir"], job["punc_model_dir"]) == ("AT", 2, "/v", "/p")
    assert "spk_model_dir" not in job
    transcript = {"vad": "silero", "punctuation": "/p", "timestamps": True, "precision": "fp32"}
    assert runner._job(specs["CT"])["settings"] == transcript
    assert runner._job(specs["CTI"])["settings"] == {**transcript, "itn": True}
    assert runner._job(specs["CS"])["settings"] == {**transcript, "speakers.count": "auto",
                                                    "speaker_model": "/s"}
    job = runner._job(specs["ASN"])
    assert (job["variant"], job["ncpu"], job["spk_model_dir"]) == ("AS", 2, "/s")
    assert (job["vad_model_dir"], job["punc_model_dir"]) == ("/v", "/p")
    assert runner._job(specs["AS"])["ncpu"] is None
    seen = []
    fake = types.SimpleNamespace(AutoModel=lambda **kwargs: seen.append(kwargs))
    monkeypatch.setitem(sys.modules, "funasr", fake)
    bench_variants._funasr_model({"model_dir": "m", "device": "cpu", "ncpu": 2}, vad_model="/v")
    bench_variants._funasr_model({"model_dir": "m", "device": "cpu", "ncpu": None})
    assert seen == [{"model": "m", "device": "cpu", "disable_update": True, "vad_model": "/v", "ncpu": 2},
                    {"model": "m", "device": "cpu", "disable_update": True}]
    monkeypatch.setattr("asr.system.threads.default_cpu_threads", lambda: 4)  # 4 cores: AN would repeat A
    runner.skipped.clear()
    assert [s.label for s in runner.specs()] == ["A", "AT", "CT", "CTI", "AS", "CS"]
    assert set(runner.skipped) == {"AN", "ATN", "ASN"}
    runner.speaker, runner.speaker_reason = None, "no CAM++ here"  # CS and AS say why, CT still runs
    assert [s.label for s in runner.specs()] == ["A", "AT", "CT", "CTI"]
    runner.raw = {}
    assert runner._transcript_variants()["CS"] == {"status": "unavailable", "reason": "no CAM++ here"}


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
