"""`python -m asr job`: the resumable Ray Data batch job, on a real local Ray cluster.

One Ray instance (2 CPUs) serves the module. Every job costs seconds of worker starts (each
actor imports torch and FunASR; a restarted one again), so the tests that only read a job's
output share one, on 20 files (bad ones included): the command, killed midway, then run again,
with an actor dying mid-batch in the second run. Its records are held to
`asr transcribe --json`'s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from audio_factory import write_audio
from helpers import speechlike, tiny_settings

from asr.jobs.driver import JobSummary, result_from_record, settings_fingerprint
from asr.jobs.inputs import list_inputs
from asr.jobs.store import JobBusy, JobStore, read_results
from asr.settings import PROJECT_ROOT

# Ray Data copies its context with every deprecated option read once: its noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

# Fields that measure time or the batch a file happened to ride in: they differ between runs.
TIMING = {"decode_s", "features_s", "model_s", "processing_s", "rtf", "batch_size", "cache_hit"}
JOB_ONLY = {"path", "sha256", "settings", "run"}
FLAGS = ["--model", "random:tiny", "--device", "cpu", "--batch-size", "4", "--vad", "energy",
         "--punctuation", "off", "--timestamps",
         "--config", str(PROJECT_ROOT / "tests" / "empty_config.yaml")]


def job_settings(**overrides):
    return tiny_settings(**{"timestamps": True, **overrides})


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING | JOB_ONLY}


def clean_env(**extra: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(PROJECT_ROOT)),
           "SEACO_CPU_THREADS": "2", "RAY_USAGE_STATS_ENABLED": "0"}
    if os.environ.get("RAY_AUTH_MODE"):  # a local ray.init turned token auth on: joiners need it
        env["RAY_AUTH_MODE"] = os.environ["RAY_AUTH_MODE"]
    env.update(extra)
    return env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asr", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env=clean_env(**env))


def part_records(output: Path) -> list[dict]:
    return [json.loads(line) for part in sorted((output / "parts").glob("*/part-*.jsonl"))
            for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- without Ray ---------------------------------------------------------------------------

def test_base_app_never_imports_ray_and_job_says_what_is_missing(tmp_path):
    """The app's modules import no Ray; without Ray the job command says how to get it, exit 2."""
    script = ("import sys\n"
              "import launch, webui, api, asr.engine, asr.cli\n"
              "assert 'ray' not in sys.modules, 'the base app imported ray'\n"
              "sys.modules['ray'] = None  # as if the distributed extra were not installed\n"
              "from asr.cli import main\n"
              f"sys.exit(main(['job', 'a.wav', '--output', {str(tmp_path / 'out')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300, env=clean_env())
    assert proc.returncode == 2, proc.stderr
    assert "needs Ray" in proc.stderr and "pip install -e '.[distributed]'" in proc.stderr
    assert "bash run.sh install distributed" in proc.stderr


def test_job_usage_errors_exit_two(tmp_path):
    assert run_cli("job", "a.wav").returncode == 2  # no --output
    bad = run_cli("job", "a.wav", "--output", str(tmp_path), "--actors", "0")
    assert bad.returncode == 2 and "--actors must be at least 1" in bad.stderr
    fmt = run_cli("job", "a.wav", "--output", str(tmp_path), "--format", "docx")
    assert fmt.returncode == 2 and "choose from txt" in fmt.stderr


def test_inputs_from_files_folders_and_lists(tmp_path):
    folder = tmp_path / "archive"
    (folder / "day1").mkdir(parents=True)
    for name in ("day1/a.wav", "day1/a.mp3", "b.flac", "notes.pdf"):
        (folder / name).write_bytes(b"x")
    listing = tmp_path / "more.txt"
    listing.write_text(f"# a comment\n\narchive/b.flac\n{tmp_path / 'elsewhere.wav'}\nrel/c.wav\n",
                       encoding="utf-8")
    found = list_inputs([str(folder), str(listing), str(folder / "day1" / "a.wav"),
                         str(tmp_path / "gone.m4a")])
    assert found.paths == [str(folder / "b.flac"), str(folder / "day1" / "a.mp3"),
                           str(folder / "day1" / "a.wav"), str(tmp_path / "elsewhere.wav"),
                           str(tmp_path / "rel" / "c.wav"),
                           str(tmp_path / "gone.m4a")]  # the pdf is no audio; duplicates once
    assert found.labels == ["archive/b", "archive/day1/a", "archive/day1/a-2", "elsewhere", "rel/c", "gone"]


def test_fingerprint_follows_the_settings_that_change_results():
    base, covered = settings_fingerprint(job_settings(), [])
    assert covered["model"] == "random:tiny" and "input.segment_s" in covered
    assert settings_fingerprint(job_settings(batch_size=8, cpu_threads=1), [])[0] == base  # batching: same
    for changed in ({"timestamps": False}, {"vad": "silero"}, {"precision": "int8"},
                    {"input.segment_s": 30.0}, {"punctuation": "random:tiny"}):
        assert settings_fingerprint(job_settings(**changed), [])[0] != base, changed
    assert settings_fingerprint(job_settings(), ["达摩院"])[0] != base


def test_every_setting_says_whether_it_changes_results_and_the_fingerprint_follows():
    """No hand-kept list: each setting declares in the schema whether it changes a transcript,
    and changing any one moves the fingerprint exactly when it does. A new setting that forgets
    to declare it fails here."""
    from asr.settings import SCHEMA

    undeclared = [key for key, (_, meta) in SCHEMA.items() if not isinstance(meta.get("results"), bool)]
    assert not undeclared, f"settings that do not say whether they change results: {undeclared}"
    for key, (hint, meta) in SCHEMA.items():
        if meta.get("deprecated"):
            continue
        base_overrides = {}
        condition = meta.get("only_when")
        if condition:
            base_overrides[condition[0]] = condition[1]
        exception = meta.get("unless")
        if exception:
            base_overrides[exception[0]] = _another_value(exception[1], *SCHEMA[exception[0]])
        base = job_settings(**base_overrides)
        value = _another_value(base.flat()[key], hint, meta)
        changed = job_settings(**base_overrides, **{key: value})
        moved = settings_fingerprint(changed, [])[0] != settings_fingerprint(base, [])[0]
        assert moved == meta["results"], (key, value, meta["results"])


def _another_value(current, hint, meta):
    """A valid value for a setting other than `current`."""
    if meta.get("speaker_count"):
        return "2" if current == "auto" else "auto"
    if "choices" in meta:
        return next(c for c in meta["choices"] if c != current)
    if hint is bool:
        return not current
    if hint in (int, float):
        step = 1 if hint is int else 0.5
        candidate = current + step
        if "max" in meta and candidate > meta["max"]:
            candidate = current - step
        return hint(candidate)
    if hint == list[int]:
        return [*current, 3]
    if hint == list[str]:
        return [*current, "x:y"]
    return f"{current}-other"


def test_store_assembles_one_record_per_input_and_locks(tmp_path):
    """Duplicate parts (a batch written twice under another name) still give one line per input;
    a record serves every input with the same bytes; this run's errors, not older ones, count."""
    with JobStore(tmp_path, "fp") as store:
        ok = {"file": "a.wav", "path": "/x/a.wav", "sha256": "s1", "settings": "fp", "error": None,
              "text": "A", "duration_s": 2.0, "segments": []}
        old_error = {"file": "b.wav", "path": "/x/b.wav", "sha256": "s2", "settings": "fp",
                     "error": "old", "run": "r0", "segments": []}
        new_error = dict(old_error, error="new", run="r1")
        store.write_part([json.dumps(ok)], ["a"])
        store.write_part([json.dumps(ok), json.dumps(old_error)], ["a", "b0"])
        store.write_part([json.dumps(new_error)], ["b1"])
        store.write_part([json.dumps(ok)], ["a"])  # the same identities: replaced, not added
        assert len(store.part_files()) == 3
        assert set(store.done()) == {"s1:fp"}
        with pytest.raises(JobBusy), JobStore(tmp_path, "fp"):
            pass
        summary = store.assemble(["/x/a.wav", "/x/b.wav", "/y/copy-of-a.wav"],
                                 {"/x/a.wav": "s1:fp", "/y/copy-of-a.wav": "s1:fp"}, "r1")
    records = read_results(tmp_path)
    assert [(r["path"], r["file"], r["error"]) for r in records] == [
        ("/x/a.wav", "a.wav", None), ("/x/b.wav", "b.wav", "new"),
        ("/y/copy-of-a.wav", "copy-of-a.wav", None)]
    assert (summary.ok, summary.failed, summary.audio_s, summary.missing) == (2, 1, 4.0, [])
    assert not list(tmp_path.glob(".*.scratch")) and not list((tmp_path / "parts" / "fp").glob(".*"))


# ---- on a local Ray cluster ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module (its start costs seconds), shut down at the end."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed; `bash run.sh test` installs the distributed extra")
        pytest.skip("Ray is not installed (pip install -e '.[distributed]')")
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def job_inputs(reference_wavs, clip_dir, tmp_path_factory) -> list[str]:
    """20 inputs: real recordings, synthetic clips, five formats, and four bad ones (a truncated
    m4a, an empty file, text named .mp3, a path that does not exist)."""
    folder = tmp_path_factory.mktemp("job-inputs")
    made = []
    for i, ext in enumerate(("flac", "mp3", "m4a", "ogg", "webm")):
        samples = speechlike(2.0 + i, seed=40 + i)
        if ext == "m4a":
            samples = np.stack([samples, samples * 0.5], axis=1)  # stereo
        made.append(write_audio(folder / f"fmt{i}.{ext}", samples, 44100 if ext == "flac" else 16000))
    whole = (folder / "fmt2.m4a").read_bytes()
    (folder / "truncated.m4a").write_bytes(whole[: len(whole) // 3])
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("not audio at all\n" * 20, encoding="utf-8")
    bad = [folder / "truncated.m4a", folder / "empty.wav", folder / "notes.mp3", folder / "missing.wav"]
    files = [*reference_wavs, *sorted(clip_dir.glob("*.wav")), *made, *bad]
    assert len(files) == 20
    return [str(p) for p in files]


@dataclass
class SharedJob:
    summary: JobSummary  # the second run's
    records: list[dict]  # its results.jsonl
    output: Path
    run: str  # the second run's id (job.json)
    marker: Path  # the exit-once seam's marker: exists once an actor process exited
    killed: list[dict]  # the part records on disk when the command was killed
    results_when_killed: bool  # whether results.jsonl existed then


def kill_once_a_part_is_written(inputs: list[str], output: Path, ray_address: str) -> list[dict]:
    """Run the job command (a real subprocess), SIGKILL it with its process group as soon as a
    part file is on disk; the records written. Each actor call sleeps a second first (the fault
    seam), two files a call: the rest of the job is seconds of calls away when the kill comes,
    and the driver writes a second part no sooner than 5 s (PART_FLUSH_S) after the first.

    One actor of two threads: it reserves all but a read task's share of the two CPUs, so one
    read worker starts in this new Ray job, not four (each imports torch: seconds of CPU)."""
    command = [sys.executable, "-m", "asr", "job", *inputs, "--output", str(output), *FLAGS,
               "--address", ray_address, "--actors", "1", "--threads-per-actor", "2",
               "--files-per-call", "2", "--quiet"]
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=clean_env(ASR_JOB_FAULT="delay:1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while not list((output / "parts").glob("*/part-*.jsonl")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    return part_records(output)


@pytest.fixture(scope="module")
def baseline(ray_address, job_inputs, tmp_path_factory) -> SharedJob:
    """The module's job, as an archive job goes wrong: the command is killed (SIGKILL) once its
    first part is written, then run again (in this process, two actors, with per-file formats),
    and in that second run one actor dies: the fault seam exits its process after it recognised
    a batch and before it returned it (Ray restarts the actor and retries the batch)."""
    from asr.jobs.driver import run_job

    output = tmp_path_factory.mktemp("job-baseline")
    killed = kill_once_a_part_is_written(job_inputs, output, ray_address)
    results_when_killed = (output / "results.jsonl").exists()
    marker = output.parent / f"{output.name}-died"
    summary = run_job(job_inputs, output, job_settings(), formats=("txt", "srt"), threads_per_actor=1,
                      files_per_call=3, quiet=True, fault=f"exit-once:{marker}")
    run = json.loads((output / "job.json").read_text(encoding="utf-8"))["run"]
    return SharedJob(summary, read_results(output), output, run, marker, killed, results_when_killed)


@pytest.mark.ray
def test_job_records_equal_transcribe_json(baseline, job_inputs):
    """The records, from the killed command's parts and the second run's, equal what
    `asr transcribe --json` prints for the same files: the JSON of its Engine's results (asr/cli.py),
    made here in-process with the same settings (the command's JSON contract: tests/test_cli.py)."""
    from asr.engine import Engine

    summary, records, output = baseline.summary, baseline.records, baseline.output
    counts = (summary.inputs, summary.recognised + summary.skipped, summary.ok, summary.failed)
    assert counts == (20, 20, 16, 4)
    assert summary.actors == 2 and summary.audio_s > 60
    assert [r["path"] for r in records] == job_inputs
    results = Engine(job_settings()).transcribe(job_inputs, batch_size=4)
    assert sum(not r.ok for r in results) == 4  # the bad files fail there too
    expected = [r.to_dict() for r in results]
    for got, want in zip(records, expected, strict=True):
        assert comparable(got) == comparable(want), want["file"]
        assert set(got) == set(want) | JOB_ONLY
    assert all(r["segments"] and r["segments"][0]["words"] for r in records if r["error"] is None)
    errors = {r["file"]: r["error"] for r in records if r["error"]}
    assert set(errors) == {"truncated.m4a", "empty.wav", "notes.mp3", "missing.wav"}
    assert "empty" in errors["empty.wav"] and "not found" in errors["missing.wav"]
    assert {r["path"] for r in part_records(output)} == set(job_inputs)  # the store holds every input
    # Per-file formats: one of each per successful input, none for a failed one.
    transcripts = output / "transcripts"
    first = records[0]
    stem = Path(first["file"]).stem
    assert (transcripts / f"{stem}.txt").read_text(encoding="utf-8") == first["text"] + "\n"
    assert "-->" in (transcripts / f"{stem}.srt").read_text(encoding="utf-8")
    assert len(list(transcripts.glob("*.srt"))) == 16 and not list(transcripts.glob("empty.*"))
    assert result_from_record(first).to_dict()["segments"] == first["segments"]
    summary_file = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary_file["ok"] == 16 and summary_file["audio_hours"] > 0


@pytest.mark.ray
def test_an_actor_that_dies_mid_batch_loses_and_doubles_nothing(baseline, job_inputs):
    """The second run lost an actor mid-batch (above, its records equal transcribe's): every input
    it had to do was still recognised once, and the store holds no second record of it."""
    assert baseline.marker.exists()  # an actor process really exited
    summary = baseline.summary
    assert (summary.ok, summary.failed, summary.missing) == (16, 4, [])
    assert sorted(r["path"] for r in baseline.records) == sorted(job_inputs)
    done_before = {r["path"] for r in baseline.killed if r["error"] is None}
    this_run = [r["path"] for r in part_records(baseline.output) if r["run"] == baseline.run]
    assert len(this_run) == summary.recognised
    assert sorted(this_run) == sorted(p for p in job_inputs if p not in done_before)  # each once


def test_read_stage_keys_on_bytes_and_skips_what_is_done(reference_wavs, tmp_path):
    """A read task (called directly): the key is the bytes' hash with the settings; a done key
    is skipped without decoding, changed bytes are not done, a bad file is an error row."""
    from asr.jobs.actor import read_batch
    from asr.jobs.store import content_hash

    changed = tmp_path / "changed.wav"
    samples, rate = soundfile.read(reference_wavs[0])
    soundfile.write(changed, samples * 0.5, rate)
    paths = [str(reference_wavs[0]), str(changed), str(tmp_path / "missing.wav")]
    done = frozenset({f"{content_hash(reference_wavs[0].read_bytes())}:fp"})
    out = read_batch({"path": np.array(paths, dtype=object), "index": np.arange(3)}, done, "fp")
    assert list(out["skip"]) == [True, False, False]
    assert out["sha256"][1] == content_hash(changed.read_bytes()) and out["error"][1] == ""
    assert len(out["samples"][0]) == 0 and len(out["samples"][1]) == 4 * len(samples)
    assert out["error"][2].startswith("file not found")


@pytest.mark.ray
def test_an_input_that_kills_every_worker_is_given_up_and_the_job_finishes(ray_address, tmp_path):
    """A file whose reading kills the read task's worker each time, and one whose recognition
    kills the actor each time (real process exits, through the fault seam): Ray would retry them
    forever; after max_attempts deaths each gets an error record, and the other files are done.
    (One actor, one file a call and one attempt keep it short: each death costs a worker restart,
    an actor's with a model load. Batches and the counting are tested without Ray below.)"""
    from asr.jobs.driver import run_job

    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(("a.wav", "reads.wav", "b.wav", "model.wav")):
        soundfile.write(folder / name, speechlike(1.5 + 0.1 * i, seed=60 + i), 16000)
    output = tmp_path / "out"
    summary = run_job([str(folder)], output, job_settings(), actors=1, threads_per_actor=1, files_per_call=1,
                      quiet=True, fault="kill-reading:reads.wav,kill-recognising:model.wav", max_attempts=1)
    records = {r["file"]: r for r in read_results(output)}
    assert set(records) == {"a.wav", "reads.wav", "b.wav", "model.wav"}
    for name in ("reads.wav", "model.wav"):
        error = records[name]["error"] or ""
        assert "stopped the worker process that handled it once" in error, (name, error)
        assert "given up after 1 attempt(s)" in error
    assert records["a.wav"]["error"] is None and records["b.wav"]["error"] is None
    assert (summary.recognised, summary.ok, summary.failed) == (4, 2, 2)


def test_the_ledger_blames_only_the_input_a_worker_died_on():
    """The counting the stages do, without Ray: a start that never finished is a death; a batch's
    death makes its files suspects, to be run one at a time, where only the killer's deaths count."""
    from asr.jobs.attempts import AttemptLedger, Attempts

    ledger = AttemptLedger()
    keys = ["a", "poison", "b"]
    ledger.begin_batch(keys)  # a batch of three; its worker dies
    assert ledger.suspects(keys) == [True, True, True]
    for key in ("a", "poison"):  # retried one at a time: "a" finishes, the worker dies on "poison"
        assert ledger.begin(key) == 0
        if key == "a":
            ledger.finish([key])
    assert ledger.begin("poison") == 1  # its own death: it ran alone
    assert ledger.begin("b") == 0  # the batch's death is not counted against it
    attempts = Attempts(None, max_attempts=3)
    assert attempts.gave_up(2) is None and "3 times" in attempts.gave_up(3)
    assert "once" in Attempts(None, max_attempts=1).gave_up(1)


@pytest.mark.ray
def test_an_engine_that_cannot_start_is_a_usage_error(ray_address, reference_wavs, tmp_path):
    """A model that will not load stops the job with its reason (exit 2), as in transcribe; so
    does device cuda on a cluster without a GPU, before any actor starts."""
    from asr.jobs.driver import JobSetupError, run_job

    proc = run_cli("job", str(reference_wavs[0]), "--output", str(tmp_path / "a"), *FLAGS,
                   "--model", str(tmp_path / "no-model"), "--address", ray_address, "--quiet")
    assert proc.returncode == 2
    assert "could not start their engine: ModelLoadError" in proc.stderr and "no-model" in proc.stderr
    with pytest.raises(JobSetupError, match="no GPU"):
        run_job([str(reference_wavs[0])], tmp_path / "b", job_settings(device="cuda"), quiet=True)


@pytest.mark.ray
def test_a_killed_job_resumes_without_redoing_or_doubling(baseline, job_inputs):
    """The command killed (SIGKILL) midway, then run again (the module's job): what was written
    is skipped, not redone (its records are the killed run's), the rest recognised, every input
    once. The command's flags and the settings of the second run (in-process) agree, or nothing
    would have been skipped."""
    written, summary, records = baseline.killed, baseline.summary, baseline.records
    assert 1 <= len(written) < 20 and not baseline.results_when_killed
    done_before = {r["path"] for r in written if r["error"] is None}
    assert done_before
    assert summary.skipped == len(done_before) and summary.recognised == 20 - len(done_before)
    assert {r["path"] for r in records if r["run"] != baseline.run} == done_before  # not redone
    succeeded = sorted(r["path"] for r in records if r["error"] is None)
    assert sorted(r["path"] for r in part_records(baseline.output) if r["error"] is None) == succeeded


@pytest.mark.ray
def test_a_job_delivers_hotwords_speakers_and_numbers(ray_address, baseline, reference_wavs, tmp_path):
    """The job face, through the command line on the module's Ray, into a copy of the module
    job's output folder: hotwords reach the planted model (each record's text starts with the
    hotword, which it could not write otherwise), speakers and numbers are in its records, and
    all three are in its settings fingerprint. The first input is done there under other
    settings: a changed setting redoes it. A missing input makes the command exit 1."""
    from helpers import write_conversation

    output = tmp_path / "out"
    shutil.copytree(baseline.output, output)
    _, talk, _ = write_conversation(tmp_path)
    inputs = [str(reference_wavs[0]), str(talk), str(tmp_path / "missing.wav")]
    assert inputs[0] in {r["path"] for r in baseline.records if r["error"] is None}
    proc = run_cli("job", *inputs, "--output", str(output), "--model", "random:hotword", "--hotwords", "保修",
                   "--speakers", "auto", "--speaker-model", "ge2e", "--itn", "--device", "cpu",
                   "--vad", "silero", "--punctuation", "off", "--address", ray_address,
                   "--threads-per-actor", "2", "--quiet", "--config", FLAGS[-1])
    assert proc.returncode == 1, proc.stderr
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert (summary["skipped"], summary["recognised"], summary["ok"], summary["failed"]) == (0, 3, 2, 1)
    record, spoken, missing = read_results(output)  # only this run's inputs
    assert [r["path"] for r in (record, spoken, missing)] == inputs and "not found" in missing["error"]
    assert record["segments"] and record["text"].startswith("保修") and spoken["text"].startswith("保修")
    assert spoken["speakers"] and all(s.get("speaker") for s in spoken["segments"])
    assert record["raw_text"] is not None and spoken["raw_text"] is not None
    job = json.loads((output / "job.json").read_text(encoding="utf-8"))
    assert job["settings"]["speakers.count"] == "auto" and job["settings"]["itn"] is True
    assert job["settings"]["hotwords"] == ["保修"]
