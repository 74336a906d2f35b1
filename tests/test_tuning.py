"""The batch-size wizard: decision rules over recorded tables, and real runs on the tiny model.

End-to-end runs use the real engine on CPU (random:tiny), through the CLI in a subprocess, through
the Tuning tab's API endpoint on a real Gradio server, and with the engine's simulated memory
budget, which raises torch's own OutOfMemoryError past a number of padded frames.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from helpers import free_port, tiny_settings

from asr.audio import decode as audio_io
from asr.settings import PROJECT_ROOT
from tuning.config_file import ConfigWriteError, write_batch_size
from tuning.knee import Measurement, choose_golden, explain, find_knee, neighbours
from tuning.wizard import TABLE_COLUMNS, WizardCancelled, WizardError, cancel_wizard, run_wizard

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
    refine = [M(2, 0.7), M(4, 0.54)]
    golden = choose_golden(refine, 3.0, 85.0)
    text = explain(golden, BASE, knee, 3.0, runs_per_size=1, memory_note="memory rule: test", refine=refine)
    assert text.startswith("4: 46% less time per file than batch 1, 1.85x as fast (0.54 s against 1 s; "
                           "4: one run; batch 1: the baseline, one run)")
    # One run each: the gain over the runner-up is stated with its doubt.
    assert "4 was 23% faster than 2 in a single run each, which a busy machine can turn around" in text
    assert "8 was only 2.6% faster than 4 and used 91% of memory (limit 85%) (sweep, one run)" in text
    assert text.endswith("Memory rule: test")


def test_explanation_uses_one_batch_1_figure_and_says_how_sure_it_is():
    """The issue's text said 4.69x in one place and 4.0x in another for the same answer: batch 1's
    baseline run and its refine median. Every "x as fast" now uses one figure, batch 1's median
    when it was refined, and the runs' spread says whether the pick's lead is real."""
    baseline = M(1, 1.38)  # one noisy baseline run
    knee = find_knee(baseline, [M(2, 0.07), M(4, 0.066)], 3.0, None)
    overlapping = [M(1, t) for t in (0.25, 0.60, 0.92)] + [M(2, t) for t in (0.057, 0.07, 0.122)] + \
        [M(4, t) for t in (0.062, 0.0664, 0.125)]
    golden = choose_golden(overlapping, 3.0, None)
    text = explain(golden, baseline, knee, 3.0, runs_per_size=3, refine=overlapping)
    assert golden.size == 4
    assert re.findall(r"[0-9.]+x as fast", text) == ["9.04x as fast"]  # 0.60 / 0.0664, not 1.38 / 0.0664
    assert "batch 1: median of 3 runs, 0.25-0.92 s" in text
    assert "the runs of 4 and 2 overlap (4: median of 3 runs, 0.062-0.125 s; 2: median of 3 runs, " \
           "0.057-0.122 s), so the 5.1% between them is within the noise" in text
    clear = [M(1, t) for t in (0.60, 0.61, 0.62)] + [M(2, t) for t in (0.50, 0.51, 0.52)] + \
        [M(4, t) for t in (0.40, 0.41, 0.42)]
    text = explain(choose_golden(clear, 3.0, None), baseline, knee, 3.0, runs_per_size=3, refine=clear)
    assert "4 was faster than 2 in every run (4: median of 3 runs, 0.4-0.42 s; 2: median of 3 runs, " \
           "0.5-0.52 s)" in text


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


# ---- bounded and cancellable ----------------------------------------------------------------


def test_a_run_is_bounded_by_the_settings_ceilings(engine, wav):
    """copies, repeats, sizes and files each have a ceiling; past it the run is refused before
    any measuring (the settings say the same for config.yaml)."""
    for kwargs, message in (({"copies": 257}, "'tuning.copies' from the wizard is 257; it must be an "
                                              "integer >= 1 and <= 256"),
                            ({"repeats": 21}, "'tuning.repeats' from the wizard is 21"),
                            ({"repeats": 0}, "'tuning.repeats' from the wizard is 0"),
                            ({"sizes": list(range(2, 20))}, "at most 16 batch sizes")):
        with pytest.raises(WizardError, match=re.escape(message)):
            run_wizard(engine, [wav], **{"sizes": [2], **kwargs})
    with pytest.raises(WizardError, match="at most 256 files"):
        run_wizard(engine, [wav] * 257, sizes=[2])
    from asr.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="tuning.copies"):
        load_settings(PROJECT_ROOT / "tests" / "empty_config.yaml", environ={"SEACO_TUNING_COPIES": "1000"})


def test_a_cancelled_run_stops_and_frees_the_model(engine, wav):
    """Cancel during the sweep: the run raises WizardCancelled instead of finishing, the model
    serves another request at once, and a new run can start."""
    from asr.engine import Engine

    own = Engine(tiny_settings(), loaded=engine.loaded)
    in_sweep = threading.Event()

    def progress(_fraction: float, message: str) -> None:
        if message.startswith("sweep"):
            in_sweep.set()

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            run_wizard(own, [wav], sizes=[2, 4, 8], copies=40, repeats=5, progress=progress)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert in_sweep.wait(300)
    assert cancel_wizard()
    thread.join(300)
    assert not thread.is_alive() and isinstance(outcome[0], WizardCancelled)
    assert not cancel_wizard()  # nothing runs any more
    assert own.transcribe([wav])[0].ok  # the model is free
    stop_now = threading.Event()
    stop_now.set()
    with pytest.raises(WizardCancelled):  # and the one-run guard was released
        run_wizard(own, [wav], sizes=[2], copies=2, repeats=1, cancel=stop_now)


def test_ctrl_c_stops_the_cli_cleanly(tmp_path, wav):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEACO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning", str(wav), "--model", "random:tiny", "--device", "cpu",
         "--punctuation", "off", "--sizes", "2,4,8", "--copies", "60", "--repeats", "5",
         "--config", str(PROJECT_ROOT / "tests" / "empty_config.yaml")],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    seen = ""
    try:
        while "baseline" not in seen:  # the progress bar's text: measuring has begun
            char = proc.stderr.read(1)
            assert char, f"the wizard ended before measuring: {seen[-2000:]}"
            seen += char
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "cancelling" in err and "cancelled: no batch size was chosen" in err
    assert "recommended batch size" not in out


def test_the_tabs_cancel_button_stops_a_run_on_a_real_server(engine, wav, tmp_path, monkeypatch):
    """Through Gradio: a long run started, Cancel pressed (its own queue, not behind the run), the
    run answers "Cancelled" and the model is free; with nothing running Cancel says so."""
    import time

    import gradio as gr
    from gradio_client import Client, handle_file

    from asr.engine import Engine
    from ui.tuning_tab import CANCELLED, build_tuning_tab

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    tab_engine = Engine(tiny_settings(), loaded=engine.loaded)
    with gr.Blocks() as demo:
        build_tuning_tab(tab_engine, concurrency_id="tuning")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert client.predict(api_name="/cancel_tuning") == "Nothing is running."
        job = client.submit([handle_file(str(wav))], "2, 4, 8", 60, 5, 3.0, 85.0, api_name="/tune_batch_size")
        deadline = time.monotonic() + 300
        while not cancel_wizard_running():
            assert time.monotonic() < deadline and not job.done(), "the run never started"
            time.sleep(0.05)
        assert client.predict(api_name="/cancel_tuning") == "Cancelling the tuning run…"
        _table, _times, _memory, markdown, _chosen, _report = job.result(timeout=300)
        assert markdown == CANCELLED
        assert tab_engine.transcribe([wav])[0].ok
    finally:
        demo.close()


def cancel_wizard_running() -> bool:
    from tuning.wizard import WIZARD

    return WIZARD.busy


def test_the_plots_span_from_zero_so_a_flat_line_looks_flat(engine, wav):
    """The issue's memory plot spanned 0.004 MB, so run-to-run drift looked like a climb. Both
    plots now start at zero and end a little above the highest value, as the tab returns them."""
    import gradio as gr

    from asr.engine import Engine
    from ui.tuning_tab import PLOT_MEMORY, PLOT_TIME, axis_range, build_tuning_tab

    assert axis_range([1236.3, 1241.7, 1236.304]) == pytest.approx([0.0, 1241.7 * 1.15])
    assert axis_range([]) is None and axis_range([None]) is None
    tab_engine = Engine(tiny_settings(), loaded=engine.loaded)
    with gr.Blocks() as demo:
        build_tuning_tab(tab_engine)
    tune = next(f.fn for f in demo.fns.values() if f.api_name == "tune_batch_size")
    _table, times, memory, _markdown, _chosen, _report = tune([str(wav)], "2", 2, 1, 3.0, 85.0)
    for plot, column in ((times, PLOT_TIME), (memory, PLOT_MEMORY)):
        highest = max(plot.value["data"], key=lambda row: row[plot.value["columns"].index(column)])
        assert plot.y_lim[0] == 0 and plot.y_lim[1] > highest[plot.value["columns"].index(column)]


def test_following_the_default_is_for_every_user_and_the_tab_for_admins(engine):
    """The door (webui.is_admin_event) keeps the Tuning tab's events for admins; the sliders'
    refresh reads the default for any page, so it must not count as one of them."""
    import gradio as gr

    import webui
    from ui.batch_size_sync import follow_applied_batch_size
    from ui.tuning_tab import build_tuning_tab

    with gr.Blocks() as demo:
        slider = gr.Slider(1, 512, value=4, interactive=True)
        build_tuning_tab(engine)
        follow_applied_batch_size(engine, [slider])
    events = [(f.fn.__module__, f.api_name or f.fn.__name__, webui.is_admin_event(f))
              for f in demo.fns.values()]
    tab = [(name, admin) for module, name, admin in events if module == "ui.tuning_tab"]
    sync = [(name, admin) for module, name, admin in events if module == "ui.batch_size_sync"]
    assert len(tab) == 8 and all(admin for _, admin in tab), tab
    assert ("follow", False) in sync and not any(admin for _, admin in sync), sync
