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


def test_formats_go_to_the_output_dir_one_file_per_input(reference_wavs, tmp_path, loaded_tiny):
    """--format all writes txt/json/srt/vtt/tsv per input; srt turns timestamps on, so the
    cues are the JSON's sentence segments with their word times."""
    import srt

    out = tmp_path / "out"
    proc = run_cli("transcribe", *map(str, reference_wavs[:2]), "--model", "random:tiny", "--device", "cpu",
                   "--vad", "silero", "--punctuation", "random:tiny", "--format", "all",
                   "--output-dir", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    for wav in reference_wavs[:2]:
        assert sorted(p.name for p in out.glob(f"{wav.stem}.*")) == sorted(
            f"{wav.stem}.{ext}" for ext in ("txt", "json", "srt", "vtt", "tsv"))
        data = json.loads((out / f"{wav.stem}.json").read_text(encoding="utf-8"))
        segments = data["segments"]
        assert segments and all(s["words"] for s in segments)  # timestamps were switched on
        cues = list(srt.parse((out / f"{wav.stem}.srt").read_text(encoding="utf-8")))
        assert [c.content for c in cues] == [s["text"] for s in segments]
        assert [round(c.start.total_seconds(), 3) for c in cues] == [s["start_s"] for s in segments]
        assert (out / f"{wav.stem}.txt").read_text(encoding="utf-8") == data["text"] + "\n"


def test_unknown_format_is_a_usage_error(reference_wavs):
    proc = run_cli("transcribe", str(reference_wavs[0]), "--format", "docx")
    assert proc.returncode == 2 and "choose from txt, json, srt, vtt, tsv" in proc.stderr


def test_speakers_and_numbers_from_the_command_line(tmp_path, loaded_tiny):
    """--speakers, --speaker-model and --itn reach the engine: the JSON carries speakers and raw
    text, the subtitles "S1: " and a speaker column; a bad count is a usage error."""
    import soundfile

    from benchmarks.der import RATE, build, voices

    v = voices()
    talk = build("ab", [("A", v["A"]), ("B", v["B"])], [1.0])
    path = tmp_path / "talk.wav"
    soundfile.write(path, talk.samples, RATE)
    out = tmp_path / "out"
    proc = run_cli("transcribe", str(path), "--model", "random:tiny", "--vad", "silero", "--speakers", "2",
                   "--speaker-model", "ge2e", "--itn", "--json", "--format", "srt,tsv",
                   "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["speakers"] == ["S1", "S2"] and result["raw_text"] is not None
    assert {s["speaker"] for s in result["segments"]} == {"S1", "S2"}
    assert (out / "talk.srt").read_text(encoding="utf-8").split("\n")[2].startswith("S1: ")
    assert (out / "talk.tsv").read_text(encoding="utf-8").startswith("start\tend\tspeaker\ttext")
    bad = run_cli("transcribe", str(path), "--model", "random:tiny", "--speakers", "many")
    assert bad.returncode == 2 and "speakers.count" in bad.stderr


def test_hotwords_from_the_command_line_change_the_text(reference_wavs, tmp_path):
    """The planted model writes a hotword only when the hotword reached it (asr/models/
    random_weights/hotword.py): with --hotwords each piece starts with it, without none holds it."""
    args = ("transcribe", str(reference_wavs[0]), "--model", "random:hotword", "--json")
    plain = json.loads(run_cli(*args).stdout)[0]
    biased = json.loads(run_cli(*args, "--hotwords", "保修").stdout)[0]
    assert "保" not in plain["text"] and "修" not in plain["text"]
    assert biased["text"].startswith("保修") and biased["text"].count("保修") == len(biased["segments"])
