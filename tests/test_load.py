"""`python -m benchmarks.load`: the load command runs end to end on random:tiny, both modes reported.

The smoke tests drive real servers with the official `openai` client, as the command does; they
use tiny files, 2-3 clients and one round, so they check the plumbing and the report, not speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import free_port

import api
from benchmarks import load
from benchmarks.clips import Clip

EMPTY_CONFIG = str(Path(__file__).resolve().parent / "empty_config.yaml")
TINY_RUN = ["--model", "random:tiny", "--device", "cpu", "--config", EMPTY_CONFIG, "--vad", "energy",
            "--requests", "1", "--short-s", "1", "--long-s", "2-3", "--repeats", "1"]


def _report(tmp_path: Path, extra: list[str], capsys) -> tuple[int, dict, str]:
    out = tmp_path / "load.json"
    code = load.main([*TINY_RUN, *extra, "--json", str(out)])
    return code, json.loads(out.read_text(encoding="utf-8")), capsys.readouterr().out


def test_load_reports_both_modes_with_throughput_latency_and_batch_fill(tmp_path, capsys):
    code, report, table = _report(tmp_path, ["--clients", "3"], capsys)

    assert code == 0
    assert set(report["modes"]) == {"concurrent", "serial"}
    for mode in report["modes"].values():
        assert mode["errors"] == 0 and mode["requests"] == 3
        assert mode["throughput"] > 0 and len(mode["throughput_rounds"]) == 1
        assert 0 < mode["p50_s"] <= mode["p95_s"]
        assert 0 < mode["short_p50_s"] <= mode["short_p95_s"]
        assert mode["batch_fill"] >= 1.0 and mode["units"] >= mode["batches"] >= 1
    assert report["modes"]["serial"]["shared_batches"] == 0  # one client in a row shares nothing
    assert report["ratio_concurrent_over_serial"] > 0
    assert report["workload"]["short_requests"] == 2 and report["workload"]["long_requests"] == 1
    assert [r["mode"] for r in report["runs"]] == ["concurrent", "serial"]
    statuses = {t["name"]: t["status"] for t in report["targets"]}
    assert statuses["GPU: throughput"] == "not measured (no GPU)"
    assert statuses["CPU: no throughput loss"] in ("met", "missed")
    assert "| 3 clients at once, shared batching" in table and "not measured (no GPU)" in table


def test_load_against_a_running_server_says_batch_fill_is_unavailable(tmp_path, capsys, engine):
    port = free_port()
    server = api.serve(api.build_api(engine), "127.0.0.1", port)
    try:
        code, report, table = _report(tmp_path, ["--clients", "2", "--url", f"http://127.0.0.1:{port}"],
                                      capsys)
    finally:
        server.should_exit = True
        server.thread.join(10)

    assert code == 0
    for mode in report["modes"].values():
        assert mode["throughput"] > 0 and mode["p95_s"] > 0 and mode["batch_fill"] is None
    assert any("batch fill not available" in note for note in report["notes"])
    assert report["server"]["device"] == "cpu"


def test_load_refuses_a_server_that_does_not_answer(capsys):
    assert load.main([*TINY_RUN, "--url", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "no server answering" in capsys.readouterr().err


def _clip(name: str, seconds: float) -> Clip:
    return Clip(Path(name), seconds)


def test_every_client_alternates_short_and_long_files():
    jobs = load.build_jobs(4, 2, [_clip("s1", 5), _clip("s2", 5)], [_clip("l1", 40)])

    assert [j.short for j in jobs if j.client == 0] == [True, False]
    assert [j.short for j in jobs if j.client == 1] == [False, True]
    assert sum(j.short for j in jobs) == 4
    assert {j.clip.name for j in jobs if j.short} == {"s1", "s2"}  # distinct files, reused in turn


def _run(mode: str, number: int, wall_s: float, audio_s: float = 10.0) -> load.ModeRun:
    return load.ModeRun(mode, number, wall_s, [load.Sample(0, True, audio_s, 1.0)], None)


def test_ratio_pairs_modes_within_each_round():
    runs = [_run("concurrent", 1, 1.0), _run("serial", 1, 2.0), _run("serial", 2, 1.0),
            _run("concurrent", 2, 1.0)]

    assert load.paired_ratios(runs) == [2.0, 1.0]


@pytest.mark.parametrize(("device", "ratio", "cpu", "gpu"), [
    ("cpu", 0.97, "met", "not measured (no GPU)"),
    ("cpu", 0.80, "missed", "not measured (no GPU)"),
    ("cuda:0", 3.5, "not measured (a GPU run)", "met"),
    ("cuda:0", 1.2, "not measured (a GPU run)", "missed"),
])
def test_targets_follow_the_device(device, ratio, cpu, gpu):
    summaries = {m: load.summarize(m, m, [_run(m, 1, 1.0)]) for m in load.MODES}
    statuses = {t.name: t.status for t in load.targets(device, ratio, summaries, 5.0)}

    assert statuses["CPU: no throughput loss"] == cpu
    assert statuses["GPU: throughput"] == gpu
    assert statuses["p95 latency of 5 s files under load"] == "shown"
