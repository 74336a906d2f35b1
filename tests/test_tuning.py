"""The batch-size wizard: decision rules over recorded tables, and real runs on the tiny model.

End-to-end runs use the real engine on CPU (random:tiny), through the CLI in a subprocess, through
the Tuning tab's API endpoint on a real Gradio server, and with the engine's simulated memory
budget, which raises torch's own OutOfMemoryError past a number of padded frames.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import free_port, tiny_settings

from asr.audio import decode as audio_io
from asr.settings import PROJECT_ROOT
from tuning.config_file import ConfigWriteError, write_batch_size
from tuning.knee import Measurement, choose_golden, explain, find_knee, neighbours
from tuning.wizard import TABLE_COLUMNS, WizardError, run_wizard

M = Measurement


def _ok_sizes(report: dict) -> set[int]:
    runs = [report["runs"]["baseline"], *report["runs"]["sweep"], *report["runs"]["refine"]]
    return {r["batch_size"] for r in runs if r["status"] == "ok"}


def _check_report_structure(report: dict) -> None:
    runs = report["runs"]
    assert runs["baseline"]["batch_size"] == 1 and runs["baseline"]["status"] == "ok"
    assert runs["sweep"] and runs["refine"]
    for run in [runs["baseline"], *runs["sweep"], *runs["refine"]]:
        assert run["total_s"] > 0 and run["per_file_s"] > 0
        assert run["status"] in ("ok", "oom", "unformed", "error")
    assert report["columns"] == TABLE_COLUMNS
    assert len(report["table"]) == 1 + len(runs["sweep"]) + len(runs["refine"])
    assert report["recommended"] in _ok_sizes(report)
    assert str(report["recommended"]) in report["reason"]
    assert "use_cache=False" in report["cache_policy"]


# ---- the knee rule over recorded tables -----------------------------------------------------

BASE = M(1, 1.0, 10.0)


def test_knee_is_last_size_that_beats_the_margin():
    sweep = [M(2, 0.70, 20), M(4, 0.60, 30), M(6, 0.59, 40), M(8, 0.585, 50)]
    knee = find_knee(BASE, sweep, margin_pct=3.0, memory_limit_pct=85.0)
    assert knee.size == 4
    assert [r.batch_size for r in knee.rejected] == [6, 8]
    assert knee.rejected[0].why == "was only 1.7% faster than 4"
    assert not knee.stopped


def test_knee_passes_over_a_noisy_size_and_compares_with_the_last_taken():
    sweep = [M(2, 0.70, 20), M(4, 0.60, 30), M(6, 0.59, 40), M(8, 0.57, 50)]
    assert find_knee(BASE, sweep, 3.0, 85.0).size == 8  # 8 saves 5% against 4, the last taken


def test_knee_gain_of_exactly_the_margin_counts_and_a_tie_does_not():
    exact = find_knee(M(1, 0.7), [M(2, 0.679)], margin_pct=3.0, memory_limit_pct=None)
    assert exact.size == 2  # (0.7 - 0.679) / 0.7 is 3% up to float rounding
    tie = find_knee(BASE, [M(2, 0.5), M(4, 0.5)], 3.0, None)
    assert tie.size == 2 and tie.rejected[0].why == "was only 0.0% faster than 2"
    slower = find_knee(BASE, [M(2, 0.5), M(4, 0.6)], 3.0, None)
    assert slower.size == 2 and slower.rejected[0].why == "was 20% slower than 2"


def test_knee_stops_at_a_failure_even_if_a_larger_size_looks_faster():
    sweep = [M(2, 0.7), M(4, 0.6), M(6, 0.5, ok=False, status="oom"), M(8, 0.3)]
    knee = find_knee(BASE, sweep, 3.0, 85.0)
    assert knee.size == 4 and knee.stopped
    assert knee.first_unsafe.batch_size == 6 and knee.first_unsafe.why == "ran out of memory"
    assert 8 not in [r.batch_size for r in knee.rejected]


def test_knee_memory_rule_at_most_the_limit():
    at_limit = find_knee(BASE, [M(2, 0.7, 60), M(4, 0.6, 85.0)], 3.0, 85.0)
    assert at_limit.size == 4  # "at most 85%" includes 85%
    over = find_knee(BASE, [M(2, 0.7, 60), M(4, 0.6, 85.1), M(8, 0.4, 90)], 3.0, 85.0)
    assert over.size == 2 and over.stopped
    assert over.rejected[0].why == "used 85% of memory (limit 85%)"
    both = find_knee(BASE, [M(4, 0.54, 40), M(8, 0.526, 91)], 3.0, 85.0)
    assert both.size == 4
    assert both.rejected[0].why == "was only 2.6% faster than 4 and used 91% of memory (limit 85%)"
    skipped = find_knee(BASE, [M(2, 0.7, None), M(4, 0.6, None)], 3.0, 85.0)
    assert skipped.size == 4  # unknown memory: the rule cannot apply, time decides


def test_knee_stays_at_batch_1_when_batching_does_not_pay():
    knee = find_knee(BASE, [M(2, 0.99), M(4, 0.985)], 3.0, 85.0)
    assert knee.size == 1 and knee.chosen == BASE


def test_neighbours_of_the_knee():
    assert neighbours(4, [1, 2, 4, 6, 8]) == [2, 4, 6]
    assert neighbours(8, [1, 2, 4, 8]) == [4, 8]
    assert neighbours(1, [1, 2, 4]) == [1, 2]


def test_golden_is_fastest_median_with_ties_going_to_the_smaller_size():
    runs = [M(2, t) for t in (0.80, 0.70, 0.71)] + [M(4, t) for t in (0.60, 0.90, 0.61)] + \
        [M(6, t) for t in (0.60, 0.59, 0.60)]
    golden = choose_golden(runs, margin_pct=3.0, memory_limit_pct=85.0)
    assert golden.medians == {2: 0.71, 4: 0.61, 6: 0.60}
    assert golden.size == 4  # 6 is 1.6% faster than 4 by median: inside the margin
    assert golden.passed_over[0].batch_size == 6
    exact_tie = choose_golden([M(2, 0.5), M(4, 0.5)], 3.0, None)
    assert exact_tie.size == 2


def test_golden_excludes_sizes_that_failed_or_broke_the_memory_limit_in_refine():
    runs = [M(2, 0.7, 50), M(2, 0.7, 50), M(4, 0.5, 60), M(4, 0.5, ok=False, status="oom"),
            M(6, 0.4, 80), M(6, 0.4, 88)]
    golden = choose_golden(runs, 3.0, 85.0)
    assert golden.size == 2
    assert golden.unsafe == {4: "ran out of memory in 1 of 2 runs", 6: "used 88% of memory (limit 85%)"}
    everything_failed = choose_golden([M(4, 0.5, ok=False, status="oom")], 3.0, 85.0)
    assert everything_failed.size == 1 and not everything_failed.medians


def test_explanation_names_the_gain_and_why_the_next_size_lost():
    sweep = [M(2, 0.7, 40), M(4, 0.54, 50), M(8, 0.526, 91)]
    knee = find_knee(BASE, sweep, 3.0, 85.0)
    golden = choose_golden([M(2, 0.7), M(4, 0.54)], 3.0, 85.0)
    text = explain(golden, BASE, knee, 3.0, runs_per_size=1, memory_note="memory rule: test")
    assert text.startswith("4: 46% less time per file than batch 1 (1.85x as fast")
    assert "8 was only 2.6% faster than 4 and used 91% of memory (limit 85%)" in text
    assert text.endswith("Memory rule: test")


# ---- config.yaml keeps its comments ---------------------------------------------------------


def test_save_changes_only_the_batch_size_line(tmp_path):
    config = tmp_path / "config.yaml"
    shutil.copy(PROJECT_ROOT / "config.yaml", config)
    before = config.read_bytes().decode().split("\n")
    saved = write_batch_size(config, 12)
    after = config.read_bytes().decode().split("\n")
    assert len(after) == len(before)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1] == "batch_size: 12"
    assert saved.previous == changed[0][0].split(":")[1].strip()
    old = yaml.safe_load("\n".join(before))
    assert yaml.safe_load("\n".join(after)) == {**old, "batch_size": 12}


def test_save_keeps_inline_comment_crlf_and_bom_and_adds_a_missing_key(tmp_path):
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes("\ufeff# top\r\nbatch_size:   4   # files per call\r\nfp16: false\r\n".encode())
    write_batch_size(crlf, 6)
    expected = "\ufeff# top\r\nbatch_size:   6   # files per call\r\nfp16: false\r\n"
    assert crlf.read_bytes() == expected.encode()
    nested = tmp_path / "nested.yaml"
    nested.write_text("# only nested\ntuning:\n  batch_size_hint: 3\nfp16: false")
    write_batch_size(nested, 2)
    assert nested.read_text() == "# only nested\ntuning:\n  batch_size_hint: 3\nfp16: false\nbatch_size: 2\n"


def test_save_refuses_to_touch_a_broken_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("batch_size: 4\nfp16: [unclosed\n")
    with pytest.raises(ConfigWriteError, match="not valid YAML"):
        write_batch_size(broken, 8)
    assert broken.read_text() == "batch_size: 4\nfp16: [unclosed\n"


# ---- real runs on the tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def wav(reference_wavs) -> Path:
    return min(reference_wavs, key=lambda p: p.stat().st_size)


def test_cli_end_to_end_writes_json_and_saves(tmp_path, wav):
    config = tmp_path / "config.yaml"
    original = (PROJECT_ROOT / "config.yaml").read_text()
    assert original.count("\nbatch_size: 4\n") == 1
    config.write_text(original.replace("\nbatch_size: 4\n", "\nbatch_size: 99\n"))  # never recommended
    before = config.read_text().split("\n")
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEACO_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tuning", str(wav), "--model", "random:tiny", "--device", "cpu",
         "--punctuation", "off",
         "--sizes", "2,4", "--copies", "3", "--repeats", "2", "--config", str(config),
         "--json", str(out), "--save", "--quiet"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    _check_report_structure(report)
    assert [r["batch_size"] for r in report["runs"]["sweep"]] == [2, 4]
    assert all(r["files"] == 3 for r in report["runs"]["sweep"] + report["runs"]["refine"])
    assert report["memory_source"].startswith("CPU: process RSS")
    assert all(r["rss_peak_mb"] > 0 for r in report["runs"]["sweep"])
    assert f"recommended batch size: {report['recommended']}" in proc.stdout
    assert "time per file (s)" in proc.stdout  # the table header
    refine_sizes = {r["batch_size"] for r in report["runs"]["refine"]}
    assert report["knee"] in refine_sizes and len(report["runs"]["refine"]) == 2 * len(refine_sizes)
    after = config.read_text().split("\n")
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [
        ("batch_size: 99", f"batch_size: {report['recommended']}")]


def test_cli_usage_errors_exit_2(tmp_path, wav):
    missing = subprocess.run([sys.executable, "-m", "tuning", str(tmp_path / "nope.wav")],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "file not found" in missing.stderr
    bad = subprocess.run([sys.executable, "-m", "tuning", str(wav), "--sizes", "2,x"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--sizes" in bad.stderr


def _frames(engine, path: Path) -> int:
    decoded = audio_io.decode_bytes(audio_io.read_file(path), path.name)
    return int(engine.features(decoded.samples).shape[0])


def test_out_of_memory_sizes_are_recorded_and_never_recommended(engine, wav):
    from asr.engine import Engine

    frames = _frames(engine, wav)
    # Budget: two copies of the file fit in one padded batch, four do not.
    small = Engine(tiny_settings(simulate_oom_frames=3 * frames), loaded=engine.loaded)
    seen: list[tuple[float, str]] = []
    report = run_wizard(small, [wav], sizes=[2, 4, 8], copies=4, repeats=2,
                        progress=lambda f, m: seen.append((f, m)))
    sweep = {r.batch_size: r for r in report.sweep}
    assert sweep[2].status == "ok"
    assert sweep[4].status == "oom" and sweep[4].backoffs > 0
    assert 8 not in sweep  # larger than a failed size: not tried
    assert any("not tried: 4 ran out of memory" in note for note in report.notes)
    assert report.recommended in (1, 2)
    assert {r.batch_size for r in report.refine} <= {1, 2}
    assert "4 ran out of memory" in report.reason
    assert report.table()[2][-1] == "OOM"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_wizard_rejects_bad_input(engine, tmp_path, wav):
    with pytest.raises(WizardError, match="file not found"):
        run_wizard(engine, [tmp_path / "missing.wav"], sizes=[2])
    with pytest.raises(WizardError, match="above 1"):
        run_wizard(engine, [wav], sizes=[1])
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 100)
    with pytest.raises(WizardError, match="junk.wav"):
        run_wizard(engine, [junk], sizes=[2])


def test_ui_endpoint_tunes_applies_and_saves(engine, reference_wavs, tmp_path, monkeypatch):
    import gradio as gr
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from asr.engine import Engine
    from ui.tuning_tab import build_tuning_tab

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    config = tmp_path / "config.yaml"
    shutil.copy(PROJECT_ROOT / "config.yaml", config)
    before = config.read_text().split("\n")
    tab_engine = Engine(tiny_settings(), loaded=engine.loaded)
    tab_engine.settings.config_path = str(config)
    with gr.Blocks() as demo:
        with gr.Tab("Tuning"):
            build_tuning_tab(tab_engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        files = reference_wavs[:2]
        table, _times, _memory, markdown, chosen, report = client.predict(
            [handle_file(str(f)) for f in files], "2, 4", 3, 2, 3.0, 85.0, api_name="/tune_batch_size")
        _check_report_structure(report)
        assert report["workload_files"] == 2  # several files: the user's set, not copies
        assert all(r["files"] == 2 for r in report["runs"]["sweep"])
        assert chosen == report["recommended"]
        assert f"Recommended batch size: {chosen}" in markdown
        assert table["headers"] == TABLE_COLUMNS and len(table["data"]) == len(report["table"])

        with pytest.raises(AppError, match=r"must be an integer >= 1 and <= 512"):
            client.predict(1000, api_name="/apply_batch_size")
        applied = client.predict(7, api_name="/apply_batch_size")
        assert tab_engine.default_batch_size == 7 and "**7**" in applied
        assert config.read_text().split("\n") == before  # Apply does not write the file

        saved = client.predict(5, api_name="/save_batch_size")
        assert tab_engine.default_batch_size == 5 and "comments kept" in saved
        after = config.read_text().split("\n")
        assert [b for a, b in zip(before, after, strict=True) if a != b] == ["batch_size: 5"]
    finally:
        demo.close()


def test_an_unreadable_second_file_is_refused_up_front(engine, reference_wavs, tmp_path):
    junk = tmp_path / "notes.wav"
    junk.write_text("not audio " * 100)
    with pytest.raises(WizardError, match="notes.wav: not a readable audio file"):
        run_wizard(engine, [reference_wavs[0], junk], sizes=[2])


def test_a_size_that_never_formed_is_not_recommended(engine, reference_wavs):
    """Two copies cannot form a batch of 4: that size is recorded as unformed, never chosen."""
    report = run_wizard(engine, [reference_wavs[0]], sizes=[2, 4], copies=2, repeats=1)
    by_size = {r.batch_size: r for r in report.sweep}
    assert by_size[4].status == "unformed" and "no batch of 4 formed" in by_size[4].message
    assert report.recommended in (1, 2)


def test_save_refuses_a_size_the_server_would_refuse(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("# comment\nbatch_size: 4\n", encoding="utf-8")
    with pytest.raises(ConfigWriteError, match="<= 512"):
        write_batch_size(config, 1000)
    assert config.read_text(encoding="utf-8") == "# comment\nbatch_size: 4\n"


@pytest.mark.parametrize("text, sizes", [("2,4", [2, 4]), ("2, 4 6;8", [2, 4, 6, 8]), ("", [])])
def test_one_reading_of_typed_batch_sizes(text, sizes):
    """The tab, `python -m tuning --sizes` and the bench's --b-sizes all read sizes this way."""
    from benchmarks.bench import _sizes as bench_sizes
    from tuning.wizard import sizes_from_text

    assert sizes_from_text(text) == sizes
    if sizes:
        assert bench_sizes(text) == sizes


@pytest.mark.parametrize("text, message", [("2,x", "whole numbers"), ("0, 4", "at least 1")])
def test_typed_batch_sizes_are_refused_clearly(text, message):
    from tuning.wizard import WizardError, sizes_from_text

    with pytest.raises(WizardError, match=message):
        sizes_from_text(text)
