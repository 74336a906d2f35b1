"""The benchmark command: a real end-to-end run on random:tiny, and its building blocks.

The smoke run starts `python -m benchmarks.bench` as a user would, which itself starts a fresh worker
process per variant: one of each worker and each engine stage. FunASR's AutoModel file by file (A)
and its transcript pipeline with VAD, punctuation and CAM++ speakers (AS); this engine bare (C), with
VAD, punctuation and timestamps (CT), plus ITN (CTI) and plus speakers (CS). CH asks for fp16, which
a CPU cannot run: the skipped path, at no cost. No timing is asserted: only that it finishes,
reports every figure, and that the token ids, texts and speaker counts it compares are real ones.
Each worker loads torch and FunASR (10-30 s on a busy 2-core machine), so the variants that are one
of these with one setting changed are checked without a run: the ncpu = cores twins (AN, ATN, ASN)
and AT (AS without speakers) against the FunASR workers, CL (cpu_lanes 1) and CB (bf16) against C;
what those settings do to the engine is tested in tests/test_engine.py and tests/test_precision.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
from cpu_kinds import SIMULATED

from asr.settings import PROJECT_ROOT
from benchmarks import bench
from benchmarks import report as bench_report
from benchmarks import variants as bench_variants
from benchmarks.clips import clip_lengths, ensure_clips, prepare_real_files, synthesize
from benchmarks.onnx import OnnxUnavailable, check_exportable

SMOKE_VARIANTS = ("A", "C", "CH", "CT", "CTI", "AS", "CS")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    command = [sys.executable, "-m", "benchmarks.bench", "--model", "random:tiny", "--device", "cpu",
               "--files", "2", "--clip-seconds", "3-8", "--variants", ",".join(SMOKE_VARIANTS),
               "--repeats", "1", "--profile", "--json", str(out)]
    # Six fresh worker processes (CH is skipped on a CPU), each loading torch and FunASR.
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


def _funasr_speakers_importable() -> bool:
    """What FunASR's speaker path imports beyond FunASR itself (its ClusterBackend); FunASR's own
    requirements (scipy, umap-learn and so scikit-learn) bring both."""
    return all(importlib.util.find_spec(name) is not None for name in ("sklearn", "scipy"))


def test_smoke_run_writes_the_full_report(smoke):
    report, stdout = smoke
    for key in ("command", "model", "device", "versions", "clips", "settings", "variants", "ratios",
                "tokens", "profile"):
        assert key in report, key
    assert report["device"]["resolved"] == "cpu"
    assert report["versions"]["funasr"] and report["versions"]["torch"]
    assert report["clips"]["count"] == 2 and report["clips"]["source"] == "synthetic"
    assert set(report["variants"]) == set(SMOKE_VARIANTS)
    ran = ("A", "C", "CT", "CTI", "CS") + (("AS",) if _funasr_speakers_importable() else ())
    for name in ran:
        variant = report["variants"][name]
        assert variant["status"] == "ok", variant
        assert variant["speed_x_realtime"] > 0 and variant["rtf"] > 0
        assert variant["peak_rss_mb"] > 0
        assert len(variant["runs"]) == 1 and variant["runs"][0]["ok"]
        assert len(variant["texts"]) == 2 and all(variant["texts"])
    for name in ("A", "C"):
        assert len(report["variants"][name]["tokens"]) == 2 and all(report["variants"][name]["tokens"])
    # A runs FunASR at its own defaults (4 threads); C at the engine's (one per core).
    assert report["variants"]["A"]["threads"]["funasr_ncpu"] == 4
    assert report["variants"]["C"]["threads"]["torch_threads"] >= 1
    assert report["variants"]["C"]["threads"]["cpu_lanes"] >= 1  # the default: side by side
    ch = report["variants"]["CH"]  # fp16 is CUDA only: skipped with the engine's reason, no worker
    assert ch["status"] == "skipped" and "fp16 runs on CUDA only" in ch["reason"], ch
    assert "CH  this engine in fp16 (batch 1)" in stdout and f"skipped: {ch['reason']}" in stdout
    speakers = {"CS/AS"} if report["variants"]["AS"]["status"] == "ok" else set()
    assert set(report["ratios"]) == {"C/A", "CT/C", "CTI/CT", "CS/CT"} | speakers
    assert report["profile"]["C"]["stages"].keys() >= {"decode", "features", "wait", "encoder",
                                                        "predictor", "decoder", "postprocess"}


def test_each_variant_ran_in_its_own_worker_process(smoke):
    """One worker log per variant that ran, none for the skipped CH, and as many processes."""
    report, _ = smoke
    ran = [n for n in SMOKE_VARIANTS if report["variants"][n]["status"] == "ok"]
    logs = sorted(p.name for p in Path(report["run_dir"]).glob("*.log"))
    assert logs == sorted(f"{n}-r1.log" for n in ran)
    pids = [report["variants"][n]["runs"][0]["pid"] for n in ran]
    assert len(set(pids)) == len(ran)


def test_engine_tokens_match_funasr_for_every_file(smoke):
    """Token ids are the real ones both sides produced, so identical means identical decoding."""
    report, stdout = smoke
    pair = report["tokens"]["pairs"]["C vs A"]
    assert pair == {"identical": 2, "files": 2, "unknown": 0, "mismatched": []}
    assert report["variants"]["C"]["tokens"] == report["variants"]["A"]["tokens"]
    assert [row["C vs A"] for row in report["tokens"]["files"]] == [True, True]
    assert set(report["tokens"]["pairs"]) == {"C vs A", "CTI vs CT", "CS vs CT"}
    assert "C/A" in stdout and "C vs A 2/2" in stdout and "where C spends its time" in stdout


def test_smoke_run_reports_the_transcript_variants(smoke):
    """CT and FunASR's transcript pipeline (AS: AT plus speakers) ran with their extras, and the
    report has their ratios, targets and agreement; AT did not run, and its target says so."""
    report, stdout = smoke
    ct, a_s = report["variants"]["CT"], report["variants"]["AS"]
    extras = report["settings"]["extras"]
    assert (extras["punc_spec"], extras["vad_spec"]) == ("random:tiny", "random:tiny")
    settings = ct["engine"]["settings"]  # the engine's own summary of what it ran with
    for item in ("vad=silero", "timestamps=True", f"punctuation={extras['punc_dir']}"):
        assert item in settings, item
    assert all(n >= 1 for n in ct["sentences"])
    assert all(n >= 1 for n in ct["timed_words"])  # word times came back
    assert all(text[-1] in "。？" for text in ct["texts"])  # punctuated
    assert report["peer_ratios"]["C/A"] == {"peer": "A", "ratio": report["ratios"]["C/A"]}
    stages = report["profile"]["CT"]["stages"]
    assert all(stages[name]["s"] > 0 for name in ("vad", "timestamp", "punctuation"))
    rows = [(t["name"], t["against"], t["minimum"]) for t in report["targets"]]
    assert rows == [("CT/AT", "AT", 2.0), ("CT/C", "C", 0.75), ("CS/AS", "AS", 2.0), ("CS/CT", "CT", 0.8)]
    targets = {t["name"]: t for t in report["targets"]}
    assert (targets["CT/AT"]["value"], targets["CT/AT"]["passed"]) == (None, None)
    assert targets["CT/AT"]["why"] == "CT or AT did not run"
    assert targets["CT/C"]["value"] == report["ratios"]["CT/C"]
    assert isinstance(targets["CT/C"]["passed"], bool) and isinstance(targets["CS/CT"]["passed"], bool)
    texts = report["texts"]["pairs"]
    files = [row["file"] for row in report["tokens"]["files"]]
    assert texts["C vs A"]["agreement"] == 1.0  # identical tokens read as 100%: the measure is sound
    assert 0.0 <= texts["CT vs C"]["agreement"] <= 1.0 and texts["CT vs C"]["chars"] > 0
    for text in ("target CT/AT >= 2.00x (against AT): not measured  n/a (CT or AT did not run)",
                 "target CT/C >= 0.75x", "CT vs C", "where CT spends its time"):
        assert text in stdout, text
    if a_s["status"] != "ok":  # FunASR's speaker path cannot be imported here: see the speaker test
        assert set(texts) == {"CT vs C", "C vs A", "CS vs CT"}
        return
    assert report["peers"] == {"A": "A", "AS": "AS"}  # no AN/ASN ran: the defaults are peers
    assert a_s["models"] == {"vad": extras["vad_dir"], "punctuation": extras["punc_dir"],
                             "speakers": report["settings"]["speaker_model"]["spk_dir"]}
    # FunASR's defaults, passed on to its VAD, punctuation and speaker models.
    assert a_s["threads"]["funasr_ncpu"] == a_s["threads"]["vad_ncpu"] == a_s["threads"]["spk_ncpu"] == 4
    assert all(n >= 1 for n in a_s["sentences"])
    assert all(text[-1] in "。？" for text in a_s["texts"])  # FunASR punctuated too
    assert set(texts) == {"CT vs C", "C vs A", "CS vs AS", "CS vs CT"}
    assert 0.0 <= texts["CS vs AS"]["agreement"] <= 1.0 and texts["CS vs AS"]["chars"] > 0
    assert [row["file"] for row in texts["CS vs AS"]["per_file"]] == files
    assert "CS vs AS" in stdout


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
    cs, ct = report["variants"]["CS"], report["variants"]["CT"]
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
    assert all(isinstance(n, int) and n >= 1 for n in a_s["speakers_found"])
    assert [row["AS"] for row in found] == a_s["speakers_found"]
    assert report["peer_ratios"]["CS/AS"] == {"peer": "AS", "ratio": report["ratios"]["CS/AS"]}
    target = {t["name"]: t for t in report["targets"]}["CS/AS"]
    assert target["value"] == report["ratios"]["CS/AS"] and isinstance(target["passed"], bool)


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


@pytest.mark.parametrize("kind", sorted(SIMULATED))
def test_cl_and_cb_are_c_with_one_setting_and_cb_needs_bf16(kind):
    """CL (padded CPU batches) and CB (bf16) are C's job with one setting changed; CB is skipped
    with the precision check's reason on a CPU without bf16, and CL is a CPU variant only; their
    ratios and token pairs are wired against A and C. Without a run: what padding and bf16 do to
    the engine's tokens is tested in tests/test_engine.py and tests/test_precision.py."""
    import torch

    cpu = SIMULATED[kind]
    runner = bench.Bench(bench.parser().parse_args(["--variants", "A,C,CB,CL"]), [], cpu=cpu)
    runner.device, runner.model_dir, runner.clips, runner.warmup = "cpu", "m", [], []
    specs = {s.label: s for s in runner.specs()}
    can_bf16 = cpu.bf16 and torch.backends.mkldnn.is_available()
    assert list(specs) == ["A", "C", "CB", "CL"] if can_bf16 else ["A", "C", "CL"]
    c = runner._job(specs["C"])
    assert c["settings"] == {"vad": "energy", "punctuation": "off", "timestamps": False, "precision": "fp32"}
    assert runner._job(specs["CL"]) == {**c, "settings": {**c["settings"], "cpu_lanes": 1}}
    if can_bf16:
        assert runner._job(specs["CB"]) == {**c, "settings": {**c["settings"], "precision": "bf16"}}
        assert "CB" not in runner.skipped
    else:
        assert "bf16 needs AVX-512 BF16 or AMX" in runner.skipped["CB"]
    runner.device, runner.args.variants = "cuda", ["A", "C", "CL"]
    assert [s.label for s in runner.specs()] == ["A", "C"]  # GPU batches are always padded: no CL
    ok = {"status": "ok"}
    variants = {"A": {**ok, "speed_x_realtime": 10.0, "tokens": [[1, 2], [3]]},
                "C": {**ok, "speed_x_realtime": 20.0, "tokens": [[1, 2], [3]]},
                "CL": {**ok, "speed_x_realtime": 16.0, "tokens": [[1, 2], [3]]},
                "CB": {**ok, "speed_x_realtime": 25.0, "tokens": [[1, 2], [4]]}}
    assert bench_report.ratios(variants) == {"C/A": 2.0, "C/CL": 1.25, "CB/A": 2.5, "CB/C": 1.25,
                                             "CB/CL": 1.562, "CL/A": 1.6, "CL/C": 0.8}
    pairs = bench_report.compare_tokens(variants, ["a.wav", "b.wav"])["pairs"]
    assert set(pairs) == {"C vs A", "CB vs C", "CL vs A", "C vs CL"}
    assert (pairs["C vs CL"]["identical"], pairs["CB vs C"]["identical"]) == (2, 1)
    variants["CB"] = {"status": "skipped", "reason": "bf16 needs AVX-512 BF16 or AMX"}
    assert set(bench_report.ratios(variants)) == {"C/A", "C/CL", "CL/A", "CL/C"}


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
    at, a_s = runner._job(specs["AT"]), runner._job(specs["AS"])
    assert a_s == {**at, "variant": "AS", "spk_model_dir": "/s"}  # AT is AS without its speakers
    assert bench_variants.RUNNERS["AT"] is bench_variants.RUNNERS["AS"]  # one worker, AS runs it
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


def test_reading_batch_sizes_loads_neither_torch_nor_funasr():
    """--b-sizes is read in the parent, which loads no model: a fresh interpreter shows that
    parsing it imports neither torch nor FunASR (the tuning wizard's import cost ~10 s)."""
    code = ("import sys; from benchmarks import bench; "
            "args = bench.parser().parse_args(['--b-sizes', '2, 4;8']); "
            "print(args.b_sizes, [m for m in ('torch', 'funasr', 'tuning.wizard') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[2, 4, 8] []"
    with pytest.raises(SystemExit):  # a bad list is still a usage error
        bench.parser().parse_args(["--b-sizes", "two"])


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
