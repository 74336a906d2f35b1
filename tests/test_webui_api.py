"""The real web app on a free localhost port, driven through gradio_client's public API.

Every api_name is called the way a user's script would call it. Expected texts come from the
engine itself (the random model's words mean nothing), never from literals.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import free_port, speechlike, tiny_settings

import launch
import webui
from asr.engine import Engine
from asr.settings import PROJECT_ROOT
from asr.system.console import settings_for_command
from asr.text import export
from ui.batch_tab import BATCH_HEADERS
from ui.common import RECOGNITION_QUEUE

MAX_FILES = 4
# Gradio's queue statistics use pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword")



@pytest.fixture(scope="module")
def served(tmp_path_factory, loaded_tiny, clip_dir):
    """(engine, url, allowed root, outside folder) for a running app; closed after the module."""
    base = tmp_path_factory.mktemp("webui")
    allowed = base / "allowed"
    outside = base / "outside"
    (allowed / "meetings" / "day2").mkdir(parents=True)
    outside.mkdir()
    for name, target in [("clip00.wav", "meetings/a.wav"), ("clip02.wav", "meetings/day2/b.wav"),
                         ("clip04.wav", "meetings/c.wav")]:
        shutil.copy(clip_dir / name, allowed / target)
    (allowed / "meetings" / "notes.txt").write_text("not audio")
    shutil.copy(clip_dir / "clip05.wav", outside / "secret.wav")
    os.symlink(outside, allowed / "escape")

    settings = tiny_settings(**{"batch.allowed_dirs": [str(allowed)], "batch.max_files": MAX_FILES,
                                "server.max_file_size_mb": 1})
    engine = Engine(settings, loaded=loaded_tiny)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(base / "gradio-tmp"))
        demo = webui.build_app(engine)
        port = free_port()
        _, url, _ = webui.launch_app(demo, settings, port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield {"engine": engine, "url": url, "allowed": allowed, "outside": outside, "demo": demo}
        finally:
            demo.close()


@pytest.fixture(scope="module")
def client(served):
    return Client(served["url"], verbose=False)


def test_documented_api_names_exist_and_internal_events_stay_private(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    ours = {"/transcribe_file", "/transcribe_batch", "/transcribe_folder", "/system_info", "/rename_speakers",
            "/hotword_lists", "/save_hotword_list", "/delete_hotword_list"}
    assert ours <= names
    # The tuning tab (tuning/ui.py) adds its own; the UI's helper events (clear, mic, timer) none.
    assert all(n in ours or "batch_size" in n or "precision" in n or "tuning" in n for n in names), names
    assert {"/check_precision", "/apply_precision", "/save_precision"} <= names


def test_recognition_events_run_side_by_side_and_the_wizard_alone(served):
    deps = {d.api_name: d for d in served["demo"].fns.values()}
    for name in ("transcribe_file", "transcribe_batch", "transcribe_folder"):
        assert deps[name].concurrency_limit == served["engine"].settings.server.ui_concurrency > 1
        assert deps[name].concurrency_id == RECOGNITION_QUEUE
    assert deps["tune_batch_size"].concurrency_limit == 1


def test_transcribe_file(client, served, reference_wavs):
    """By default every download format is made, so sentence times are on (subtitles need them)."""
    wav = reference_wavs[0]
    expected = served["engine"].transcribe([wav], timestamps=True)[0]
    assert all(s.words for s in expected.segments)
    text, confidence, duration, processing, speed, downloads, sentences = client.predict(
        handle_file(str(wav)), "", 2, api_name="/transcribe_file")
    assert text == expected.text and text
    assert confidence == pytest.approx(expected.confidence, abs=1e-3)
    assert duration == pytest.approx(soundfile.info(str(wav)).duration, abs=0.01)
    assert processing > 0 and speed > 0
    by_suffix = {Path(f).suffix: Path(f) for f in downloads}
    assert set(by_suffix) == {".txt", ".json", ".srt", ".vtt", ".tsv"}
    assert by_suffix[".txt"].read_text(encoding="utf-8") == expected.text + "\n"
    record = json.loads(by_suffix[".json"].read_text(encoding="utf-8"))
    assert record["text"] == expected.text and record["status"] == "ok"
    assert [row[2] for row in sentences["data"]] == [s.text for s in expected.segments]


def test_transcribe_file_with_sentence_times(client, served, reference_wavs):
    """The timestamps input gives sentence rows with times, and the SRT holds the same cues."""
    import srt

    wav = reference_wavs[1]
    expected = served["engine"].transcribe([wav], timestamps=True)[0]
    result = client.predict(handle_file(str(wav)), "", 1, True, api_name="/transcribe_file")
    rows, downloads = result[6]["data"], result[5]
    assert rows == [[export.clock(s.start_s), export.clock(s.end_s), s.text] for s in expected.segments]
    assert all(s.words for s in expected.segments)
    subtitles = next(Path(f) for f in downloads if f.endswith(".srt")).read_text(encoding="utf-8")
    cues = list(srt.parse(subtitles))
    assert [c.content for c in cues] == [s.text for s in expected.segments]
    starts = [round(c.start.total_seconds(), 3) for c in cues]
    assert starts == [round(s.start_s, 3) for s in expected.segments]


def test_transcribe_file_with_hotwords_and_a_bad_hotword(client, reference_wavs):
    text = client.predict(handle_file(str(reference_wavs[0])), "达摩院 魔搭", 1,
                          api_name="/transcribe_file")[0]
    assert text
    with pytest.raises(AppError, match="may only hold letters"):
        client.predict(handle_file(str(reference_wavs[0])), "../../etc/passwd.txt", 1,
                       api_name="/transcribe_file")


def test_transcribe_file_refuses_corrupt_audio_and_keeps_serving(client, tmp_path, reference_wavs):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF this is not really audio" * 50)
    with pytest.raises(AppError, match=r"corrupt\.wav: not a readable audio file"):
        client.predict(handle_file(str(bad)), "", 1, api_name="/transcribe_file")
    assert client.predict(handle_file(str(reference_wavs[0])), "", 1, api_name="/transcribe_file")[0]


def test_transcribe_batch_with_a_corrupt_file(client, served, clip_dir, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"\x00\x01garbage" * 300)
    good = [clip_dir / "clip01.wav", clip_dir / "clip03.wav"]
    expected = served["engine"].transcribe(good)
    table, summary, exports = client.predict(
        [handle_file(str(good[0])), handle_file(str(bad)), handle_file(str(good[1]))], "", 2,
        api_name="/transcribe_batch")
    rows = table["data"]
    assert table["headers"] == BATCH_HEADERS
    assert [r[0] for r in rows] == ["clip01.wav", "broken.mp3", "clip03.wav"]
    assert [rows[0][1], rows[2][1]] == [e.text for e in expected]
    assert rows[0][5] == rows[2][5] == "ok"
    assert rows[1][5].startswith("error: ") and "not a readable audio file" in rows[1][5]
    assert "3 file(s): 2 ok, 1 failed" in summary

    names = {Path(f).name: Path(f) for f in exports}
    assert set(names) == {"results.csv", "results.json", "transcripts.zip"}
    assert len(json.loads(names["results.json"].read_text(encoding="utf-8"))) == 3
    assert names["results.csv"].read_text(encoding="utf-8-sig").count("\n") == 4
    with zipfile.ZipFile(names["transcripts.zip"]) as archive:  # the default formats: txt and srt
        assert sorted(archive.namelist()) == ["01_clip01.wav.srt", "01_clip01.wav.txt",
                                              "02_broken.mp3.error.txt", "03_clip03.wav.srt",
                                              "03_clip03.wav.txt", "results.csv", "results.json"]


def test_batch_zip_holds_the_chosen_formats(client, clip_dir):
    files = [handle_file(str(clip_dir / n)) for n in ("clip01.wav", "clip02.wav")]
    _, _, exports = client.predict(files, "", 2, True, ["vtt", "tsv"], api_name="/transcribe_batch")
    archive_path = next(Path(f) for f in exports if f.endswith(".zip"))
    with zipfile.ZipFile(archive_path) as archive:
        assert sorted(archive.namelist()) == ["01_clip01.wav.tsv", "01_clip01.wav.vtt", "02_clip02.wav.tsv",
                                              "02_clip02.wav.vtt", "results.csv", "results.json"]
        assert archive.read("01_clip01.wav.vtt").decode("utf-8").startswith("WEBVTT")
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio checks the choices
        client.predict(files, "", 2, True, ["docx"], api_name="/transcribe_batch")


def test_uploads_over_max_file_size_are_refused(client, tmp_path, reference_wavs):
    big = tmp_path / "big.wav"
    soundfile.write(big, speechlike(40, seed=3), 16000, subtype="PCM_16")  # 1.2 MB > 1 MB cap
    # gradio_client checks the cap the server announces before it uploads anything.
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(handle_file(str(big)), "", 1, api_name="/transcribe_file")
    assert client.predict(handle_file(str(reference_wavs[0])), "", 1, api_name="/transcribe_file")[0]


def test_transcribe_batch_limits(client, clip_dir):
    files = [handle_file(str(p)) for p in sorted(clip_dir.glob("*.wav"))[:MAX_FILES + 1]]
    with pytest.raises(AppError, match=rf"{MAX_FILES + 1} files in one batch; the limit is {MAX_FILES}"):
        client.predict(files, "", 2, api_name="/transcribe_batch")
    with pytest.raises(AppError, match="Upload one or more audio files first"):  # English for the API
        client.predict([], "", 2, api_name="/transcribe_batch")
    # API callers get the config's bounds: Gradio's slider checks the range, the handler the rest.
    refusals = {0: "less than minimum value 1", 513: "greater than maximum value 512",
                2.5: "from this request is 2.5; it must be an integer >= 1 and <= 512"}
    for size, message in refusals.items():
        with pytest.raises(AppError, match=message):
            client.predict(files[:1], "", size, api_name="/transcribe_batch")


def test_transcribe_folder_inside_the_allowed_root(client, served):
    folder = served["allowed"] / "meetings"
    expected = {p.relative_to(folder).as_posix(): r.text for p, r in
                zip(sorted(folder.rglob("*.wav")), served["engine"].transcribe(sorted(folder.rglob("*.wav"))),
                    strict=True)}
    table, summary, _ = client.predict(str(folder), "", 4, api_name="/transcribe_folder")
    got = {row[0]: row[1] for row in table["data"]}
    assert got == expected
    assert set(got) == {"a.wav", "c.wav", "day2/b.wav"}
    assert "3 file(s): 3 ok, 0 failed" in summary
    # A relative path is looked up under the allowed root.
    table, _, _ = client.predict("meetings/day2", "", 4, api_name="/transcribe_folder")
    assert [row[0] for row in table["data"]] == ["b.wav"]


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "root"])
def test_transcribe_folder_refuses_escapes(client, served, where):
    path = {"outside": str(served["outside"]), "dotdot": f"{served['allowed']}/meetings/../../outside",
            "symlink": str(served["allowed"] / "escape"), "root": "/"}[where]
    with pytest.raises(AppError, match="outside the allowed folders"):
        client.predict(path, "", 4, api_name="/transcribe_folder")


def test_transcribe_folder_limit_and_missing(client, served, tmp_path):
    many = served["allowed"] / "many"
    many.mkdir(exist_ok=True)
    for i in range(MAX_FILES + 1):
        soundfile.write(many / f"s{i}.wav", speechlike(0.5, seed=i), 16000)
    with pytest.raises(AppError, match=rf"more than {MAX_FILES} audio files"):
        client.predict(str(many), "", 4, api_name="/transcribe_folder")
    with pytest.raises(AppError, match="folder not found"):
        client.predict(str(served["allowed"] / "nope"), "", 4, api_name="/transcribe_folder")


def test_system_info(client, served):
    import torch

    table, figures = client.predict(api_name="/system_info")
    assert figures["model"] == "random:tiny"
    assert figures["parameters"] == served["engine"].loaded.parameters
    assert figures["default_batch_size"] == served["engine"].default_batch_size
    assert figures["gpu"]["available"] == torch.cuda.is_available()
    assert figures["released_mb"] is not None
    assert "| Model | random:tiny |" in table
    assert "Released cached GPU memory" in table
    if not torch.cuda.is_available():
        assert figures["released_mb"] == 0.0
        assert "no NVIDIA GPU" in table
        # The engine's thread budget, not the Gradio worker thread's own torch count.
        engine = served["engine"]
        assert figures["torch_threads"] == engine.recognizer.threads
        assert figures["cpu_lanes"] == engine.recognizer.lanes
        assert figures["cpu_gemm"] == engine.loaded.cpu_gemm
        assert engine.recognizer.lanes == engine.recognizer.threads  # side by side by default
        recognizer = engine.recognizer
        assert (f"| CPU batches | a batch's files side by side (up to {recognizer.lanes}), sharing "
                f"the {recognizer.threads} threads; linear layers on {engine.loaded.cpu_gemm} |") in table
        assert figures["precision"] == "fp32" and "| Precision | fp32 (weights torch.float32) |" in table
        # The CPU as data (the engine's, through the one CPU seam), the text rendered from it.
        assert figures["cpu"] == engine.cpu.to_dict()
        assert f"| CPU matrix instructions | {engine.cpu.describe()} |" in table


class ProgressRecorder:
    """Stands in for gr.Progress outside a request: records what the handler reports."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc))


def test_batch_progress_advances_in_audio_seconds(served, clip_dir):
    """The handler reports the fraction of the batch's audio done, with the stage and file."""
    handler = next(d.fn for d in served["demo"].fns.values() if d.api_name == "transcribe_batch")
    files = [str(clip_dir / n) for n in ("clip00.wav", "clip01.wav", "clip02.wav")]
    recorder = ProgressRecorder()
    table, *_ = handler(files, "", 2, progress=recorder)
    assert len(table["data"]) == 3
    fractions = [c[0] for c in recorder.calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    total = sum(soundfile.info(f).duration for f in files)
    assert all(f"of {total:.1f} s of audio" in c[1] for c in recorder.calls)  # English: no page cookie
    assert recorder.calls[-1][1].startswith(f"done · {total:.1f} of {total:.1f} s of audio")
    assert {c[1].split(" · ")[0] for c in recorder.calls} <= {"decoding", "finding speech", "recognising",
                                                              "punctuating", "done"}


def _all_updates(job) -> list:
    """Every update the client received for a finished job, in order.

    gradio_client queues each server message of a job as a StatusUpdate (progress_data set on
    "progress" messages) and yields them all from `async for update in job`; Job.status() would
    only show the latest one, so a poll could miss updates.
    """
    import asyncio

    async def collect():
        return [update async for update in job]

    job.result(timeout=120)  # every update is queued before the job's future completes
    return asyncio.run(collect())


def test_batch_progress_reaches_an_api_client_in_audio_seconds(client, served, tmp_path):
    """A client of the running server sees the batch's progress as a fraction of its audio, with
    the stage and file, while a batch runs; not just the final table. Four ~30 s files at batch
    size 1: several updates, though Gradio may merge those closer than 10 ms."""
    files = []
    for i in range(MAX_FILES):
        files.append(tmp_path / f"long{i}.wav")
        soundfile.write(files[-1], speechlike(30 - i, seed=20 + i), 16000, subtype="PCM_16")
    assert max(f.stat().st_size for f in files) < 2**20  # the fixture's upload cap
    expected = served["engine"].transcribe(files, batch_size=1)
    job = client.submit([handle_file(str(f)) for f in files], "", 1, api_name="/transcribe_batch")
    updates = _all_updates(job)

    progress = [unit for u in updates if getattr(u, "progress_data", None) for unit in u.progress_data]
    assert progress, f"no progress message among {len(updates)} update(s)"
    fractions = [unit.progress for unit in progress]
    assert fractions == sorted(fractions), f"progress went back: {fractions}"
    assert any(0 < f < 1 for f in fractions), f"no intermediate progress in {fractions}"
    total = sum(r.duration_s for r in expected)
    for unit in progress:
        assert f"of {total:.1f} s of audio" in unit.desc, unit.desc
    named = {unit.desc.split("file ", 1)[1].split(" (")[0] for unit in progress if "file " in unit.desc}
    assert named and named <= {f.name for f in files}

    table, summary, _ = job.result()
    assert [row[0] for row in table["data"]] == [f.name for f in files]
    assert [row[1] for row in table["data"]] == [r.text for r in expected]
    assert f"{len(files)} file(s): {len(files)} ok, 0 failed" in summary and "batch size 1" in summary


def test_launch_flags_become_settings(monkeypatch):
    for name in [n for n in os.environ if n.startswith("SEACO_")]:
        monkeypatch.delenv(name)
    empty = str(PROJECT_ROOT / "tests" / "empty_config.yaml")
    settings = settings_for_command(empty, launch.overrides_from_args(launch.parse_args(
        ["--listen", "--port", "8123", "--batch-size", "6", "--model", "random:tiny", "--device", "cpu"])))
    assert (settings.server.host, settings.server.port, settings.batch_size) == ("0.0.0.0", 8123, 6)
    assert settings.model == "random:tiny" and settings.device == "cpu"
    default = settings_for_command(empty, launch.overrides_from_args(launch.parse_args([])))
    assert (default.server.host, default.server.port) == ("127.0.0.1", 7860)


@pytest.mark.parametrize("argv, message", [
    (["--port", "0"], "server.port"),
    (["--batch-size", "0"], "batch_size"),
    (["--config", "/nonexistent/config.yaml"], "config file not found"),
])
def test_launch_refuses_bad_settings_with_exit_2(argv, message, capsys):
    assert launch.main(argv) == 2
    assert message in capsys.readouterr().err


def test_out_of_memory_back_off_is_reported_in_the_summary(loaded_tiny, clip_dir):
    """simulate_oom_frames makes the engine raise torch's own OOM error for big padded batches."""
    settings = tiny_settings(simulate_oom_frames=300)
    demo = webui.build_app(Engine(settings, loaded=loaded_tiny))
    handler = next(d.fn for d in demo.fns.values() if d.api_name == "transcribe_batch")
    files = [str(clip_dir / n) for n in ("clip01.wav", "clip03.wav", "clip06.wav", "clip05.wav")]
    table, summary, *_ = handler(files, "", 4, progress=ProgressRecorder())
    assert [row[5] for row in table["data"]] == ["ok"] * 4
    assert "ran out of GPU memory" in summary and "choose a smaller batch size" in summary
