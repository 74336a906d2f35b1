"""Precision on real parts: a bf16 engine on this CPU, the wizard's precision check through its
Gradio endpoint, and saving the chosen precision into a config file."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from helpers import free_port, tiny_settings

from asr.engine import Engine
from asr.settings import PROJECT_ROOT, load_settings
from asr.system.cpu import detect_cpu
from asr.text.distance import edit_distance
from tuning.config_file import ConfigWriteError, write_setting
from tuning.precision_check import PrecisionCheckError, fastest_reduced_precision, run_precision_check

CPU_BF16 = detect_cpu().bf16
CANDIDATE = "bf16" if CPU_BF16 else "int8"


def test_the_fastest_reduced_precision_follows_the_cpus_instructions():
    assert fastest_reduced_precision(torch.device("cpu")) == CANDIDATE


@pytest.mark.skipif(not CPU_BF16, reason="this CPU has neither AVX-512 BF16 nor AMX")
def test_bf16_runs_in_bf16_and_keeps_the_scores_in_fp32(engine, reference_wavs):
    """Autocast reaches the encoder's matrices; CIF, the timestamp head and the log-softmax the
    tokens are picked from stay fp32. Tokens are close to fp32's on real speech."""
    bf16 = engine.with_precision("bf16")
    recognizer = bf16.recognizer
    feats = [bf16.features(_samples(path)) for path in reference_wavs]
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(_module, _args, output) -> None:
            seen.setdefault(name, (output[0] if isinstance(output, tuple) else output).dtype)
        return hook

    hooks = [recognizer.model.encoder.register_forward_hook(record("encoder")),
             recognizer.model.predictor.cif_output.register_forward_hook(record("cif"))]
    try:
        log_probs, _counts = recognizer.log_probs(feats[:1], None)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"encoder": torch.bfloat16, "cif": torch.float32}
    assert log_probs.dtype == torch.float32
    # Attention runs fused (memory linear in length) under bf16; fp32 keeps FunASR's own path.
    assert recognizer.fused_layers == len(recognizer.model.encoder.encoders) + len(
        getattr(recognizer.model.encoder, "encoders0", []))
    assert _fused_kernel_ran(recognizer, feats[:2]) and not _fused_kernel_ran(engine.recognizer, feats[:2])
    fp32 = [r.token_ids for r in engine.transcribe(reference_wavs)]
    results = bf16.transcribe(reference_wavs, timestamps=True)
    assert all(r.ok and r.segments and r.segments[0].words for r in results)
    edits = sum(edit_distance(a, r.token_ids) for a, r in zip(fp32, results, strict=True))
    assert edits <= 0.5 * sum(map(len, fp32))  # a random model's flat scores flip some, not most


def test_the_precision_check_compares_each_file_in_both_precisions(engine, reference_wavs):
    report = run_precision_check(engine, reference_wavs[:2], repeats=1)
    assert (report.reference, report.candidate) == ("fp32", CANDIDATE)
    reduced = engine.with_precision(CANDIDATE)
    for check, path in zip(report.files, reference_wavs[:2], strict=True):
        expected = engine.transcribe([path])[0].token_ids
        other = reduced.transcribe([path])[0].token_ids
        assert check.reference_tokens == len(expected)
        assert check.token_edits == edit_distance(expected, other)
        assert check.identical == (expected == other)
        assert check.reference_s > 0 and check.candidate_s > 0 and check.error is None
    total = sum(c.reference_tokens for c in report.files)
    assert report.agreement == pytest.approx(1 - sum(c.token_edits for c in report.files) / total)
    assert report.table()[0][0] == reference_wavs[0].name and len(report.columns()) == len(report.table()[0])
    assert f"{CANDIDATE} against fp32" in report.summary()
    with pytest.raises(PrecisionCheckError, match="CUDA only"):
        run_precision_check(engine, reference_wavs[:1], "fp16")
    with pytest.raises(PrecisionCheckError, match="file not found"):
        run_precision_check(engine, [reference_wavs[0].with_name("missing.wav")])


def test_a_cancelled_precision_check_stops_and_frees_the_model(engine, reference_wavs):
    """Cancelled after its first run: it raises instead of reporting, the model serves other
    requests, and the next check may start; its repeats have the wizard's ceiling."""
    import threading

    from tuning.precision_check import CHECK, PrecisionCheckCancelled, cancel_precision_check

    started = threading.Event()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            run_precision_check(engine, reference_wavs * 4, repeats=5, progress=lambda *_: started.set())
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(300)
    assert cancel_precision_check()
    thread.join(300)
    assert not thread.is_alive() and isinstance(outcome[0], PrecisionCheckCancelled)
    assert not CHECK.busy and not cancel_precision_check()
    assert engine.transcribe(reference_wavs[:1])[0].ok
    with pytest.raises(PrecisionCheckError, match="'tuning.repeats' from the precision check is 21"):
        run_precision_check(engine, reference_wavs[:1], repeats=21)


def test_saving_a_precision_keeps_the_rest_of_the_file(tmp_path):
    config = tmp_path / "config.yaml"
    shutil.copy(PROJECT_ROOT / "config.yaml", config)
    before = config.read_text().split("\n")
    write_setting(config, "precision", "int8")
    after = config.read_text().split("\n")
    assert [b for a, b in zip(before, after, strict=True) if a != b] == ["precision: int8"]
    assert load_settings(config, environ={}).precision == "int8"
    with pytest.raises(ConfigWriteError, match="one of fp32, bf16, fp16, int8"):
        write_setting(config, "precision", "fp8")
    old = tmp_path / "old.yaml"
    old.write_text("fp16: true\n")
    with pytest.raises(ConfigWriteError, match="deprecated 'fp16: true'"):
        write_setting(old, "precision", "bf16")
    assert old.read_text() == "fp16: true\n"


def test_the_tuning_tab_checks_applies_and_saves_a_precision(engine, reference_wavs, tmp_path, monkeypatch):
    import gradio as gr
    from gradio_client import Client, handle_file

    from ui.tuning_tab import build_tuning_tab

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    config = tmp_path / "config.yaml"
    shutil.copy(PROJECT_ROOT / "config.yaml", config)
    tab_engine = Engine(tiny_settings(), loaded=engine.loaded)
    tab_engine.settings.config_path = str(config)
    with gr.Blocks() as demo:
        build_tuning_tab(tab_engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        summary, table = client.predict([handle_file(str(f)) for f in reference_wavs[:2]],
                                        api_name="/check_precision")
        assert f"{CANDIDATE} against fp32" in summary
        assert [row[0] for row in table["data"]] == [f.name for f in reference_wavs[:2]]
        applied = client.predict(CANDIDATE, api_name="/apply_precision")
        assert tab_engine.precision == tab_engine.recognizer.precision == CANDIDATE
        assert f"**{CANDIDATE}**" in applied and "precision: fp32" in config.read_text()
        assert all(r.ok for r in tab_engine.transcribe(reference_wavs[:1]))
        saved = client.predict("fp32", api_name="/save_precision")
        assert tab_engine.precision == "fp32" and "comments kept" in saved
        assert load_settings(config, environ={}).precision == "fp32"
    finally:
        demo.close()


def test_the_cli_check_prints_the_table_and_saves(tmp_path, reference_wavs):
    config = tmp_path / "config.yaml"
    config.write_text("model: random:tiny\ndevice: cpu\npunctuation: 'off'\nvad: energy\n")
    done = subprocess.run([sys.executable, "-m", "tuning", "--config", str(config), "--check-precision",
                           "--save-precision", CANDIDATE, "--quiet", str(reference_wavs[0])],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert reference_wavs[0].name in done.stdout and f"{CANDIDATE} against fp32" in done.stdout
    assert load_settings(config, environ={}).precision == CANDIDATE


def _fused_kernel_ran(recognizer, feats) -> bool:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        recognizer.log_probs(feats, None)
    return any("scaled_dot_product" in event.name for event in profile.events())


def _samples(path):
    from asr.audio import decode as audio_io

    return audio_io.decode_bytes(audio_io.read_file(path), path.name).samples


def test_the_attention_setting_chooses_the_kernel_per_engine_on_one_shared_model(engine, reference_wavs):
    """`attention: fused` runs the fused kernel in fp32 too (the long-file memory saver), with the
    same tokens on real speech; `funasr` keeps FunASR's path even under bf16; engines sharing
    one model each keep their own choice."""
    fused = Engine(tiny_settings(attention="fused"), loaded=engine.loaded)
    feats = [fused.features(_samples(path)) for path in reference_wavs]
    assert _fused_kernel_ran(fused.recognizer, feats[:2])
    assert not _fused_kernel_ran(engine.recognizer, feats[:2])
    assert ([r.token_ids for r in fused.transcribe(reference_wavs, batch_size=3)]
            == [r.token_ids for r in engine.transcribe(reference_wavs, batch_size=1)])
    if CPU_BF16:
        exact = Engine(tiny_settings(attention="funasr", precision="bf16"), loaded=engine.loaded)
        assert not _fused_kernel_ran(exact.recognizer, feats[:2])
        assert _fused_kernel_ran(engine.with_precision("bf16").recognizer, feats[:2])
