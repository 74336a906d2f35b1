"""The shared engine on a real FunASR SeacoParaformer (random:tiny weights) and real audio."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile
import torch
from helpers import speechlike, tiny_settings

from asr.engine import Engine
from asr.recognition.hotwords import HotwordError
from asr.recognition.precision import PrecisionUnavailable, check_precision
from asr.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def mixed_files(clip_dir, reference_wavs):
    return sorted(clip_dir.glob("*.wav")) + list(reference_wavs)


def padded(engine: Engine, **overrides) -> Engine:
    """An engine sharing `engine`'s model that pads CPU batches as a GPU does (cpu_lanes=1)."""
    return Engine(tiny_settings(cpu_lanes=1, **overrides), loaded=engine.loaded)


@pytest.fixture(scope="module")
def padded_engine(engine):
    """Padding limit lifted so that batches of very different lengths really form."""
    return padded(engine, padding_limit_pct=1000)


@pytest.mark.parametrize("mode", ["padded", "side by side"])
def test_batching_never_changes_tokens(engine, padded_engine, mixed_files, mode):
    """A file alone and inside any batch gives the same tokens (fp32), padded or side by side."""
    batched = (padded_engine if mode == "padded"
               else Engine(tiny_settings(padding_limit_pct=1000, cpu_lanes=2), loaded=engine.loaded))
    assert batched.recognizer.lanes == (1 if mode == "padded" else 2)
    alone = {p.name: engine.transcribe([p], batch_size=1)[0] for p in mixed_files}
    assert all(r.ok and r.token_ids for r in alone.values())
    shuffled = list(mixed_files)
    random.Random(7).shuffle(shuffled)
    for size in range(2, 9):
        for order in (mixed_files, shuffled):
            results = batched.transcribe(order, batch_size=size)
            assert max(r.batch_size for r in results) == size
            for path, result in zip(order, results, strict=True):
                assert result.token_ids == alone[path.name].token_ids, (path.name, size)
                assert result.text == alone[path.name].text


def test_batched_padding_does_change_funasr_predictor_output(engine, mixed_files):
    """Why the engine runs the predictor per file: FunASR's own batched predictor leaks padding."""
    feats = [engine.features(np.asarray(soundfile.read(p, dtype="float32")[0])) for p in mixed_files[:6]]
    model = engine.loaded.model
    with torch.inference_mode():
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        lengths = torch.tensor([f.shape[0] for f in feats])
        enc, enc_lens = model.encode(padded, lengths)
        batched_alphas = model.calc_predictor(enc, enc_lens)[2]
        differs = 0
        for row in range(len(feats)):
            n = int(enc_lens[row])
            alone_alphas = model.calc_predictor(enc[row:row + 1, :n], enc_lens[row:row + 1])[2]
            differs += not torch.equal(alone_alphas[0, :n], batched_alphas[row, :n])
    assert differs > 0


def test_padding_limit_closes_batches_early(engine, clip_dir):
    """Sorted longest first, a 1.2 s clip never rides along padded to 11.8 s."""
    files = sorted(clip_dir.glob("*.wav"))
    strict = padded(engine, padding_limit_pct=10)
    run = strict.run(files, batch_size=8)
    assert run.stats.batches > 1
    assert all(r.batch_size < 8 for r in run.results)
    loose = padded(engine, padding_limit_pct=1000).run(files, batch_size=8)
    assert loose.stats.batches == 1
    assert [r.token_ids for r in run.results] == [r.token_ids for r in loose.results]


def test_results_keep_input_order_and_names(engine, clip_dir):
    files = sorted(clip_dir.glob("*.wav"), key=lambda p: p.stat().st_size)  # shortest first
    results = engine.transcribe(files, batch_size=3)
    assert [r.file for r in results] == [p.name for p in files]
    durations = [r.duration_s for r in results]
    assert durations == sorted(durations)


def test_bad_inputs_fail_alone(engine, tmp_path, reference_wavs):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all " * 20)
    good = reference_wavs[0].read_bytes()
    (tmp_path / "truncated.wav").write_bytes(good[:30])
    soundfile.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    soundfile.write(tmp_path / "long.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    inputs = [reference_wavs[0], tmp_path / "empty.wav", tmp_path / "text.wav",
              tmp_path / "missing.wav", tmp_path / "truncated.wav", tmp_path / "zero.wav",
              reference_wavs[1]]
    results = engine.transcribe(inputs, batch_size=4)
    by_name = {r.file: r for r in results}
    assert by_name[reference_wavs[0].name].ok and by_name[reference_wavs[1].name].ok
    assert "empty" in by_name["empty.wav"].error
    assert "not a readable audio file" in by_name["text.wav"].error
    assert "not found" in by_name["missing.wav"].error
    assert by_name["truncated.wav"].error
    assert "zero length" in by_name["zero.wav"].error
    alone = engine.transcribe([reference_wavs[0]], batch_size=1)[0]
    assert by_name[reference_wavs[0].name].token_ids == alone.token_ids

    strict = Engine(tiny_settings(**{"input.max_duration_s": 2.0}), loaded=engine.loaded)
    [too_long] = strict.transcribe([tmp_path / "long.wav"])
    assert "too long" in too_long.error and "input.max_duration_s" in too_long.error


def test_in_memory_inputs_and_long_audio_segments(engine):
    long_audio = speechlike(70.0, seed=11)  # over the 60 s segment limit: two segments
    short_audio = speechlike(4.0, seed=12)
    results = engine.transcribe([(long_audio, 16000), (short_audio, 16000)], batch_size=2)
    assert [r.file for r in results] == ["input-1", "input-2"]
    assert all(r.ok for r in results)
    assert results[0].duration_s == pytest.approx(70.0, abs=0.01)
    alone = engine.transcribe([(short_audio, 16000)], batch_size=1)[0]
    assert results[1].token_ids == alone.token_ids


def test_result_fields_and_timings(engine, reference_wavs):
    result = engine.transcribe([reference_wavs[0]])[0]
    assert 0.0 < result.confidence <= 1.0
    assert result.duration_s == pytest.approx(5.547, abs=0.01)
    assert result.decode_s > 0 and result.features_s > 0 and result.model_s > 0
    assert result.processing_s == pytest.approx(result.decode_s + result.features_s + result.model_s)
    assert result.rtf == pytest.approx(result.processing_s / result.duration_s)
    data = result.to_dict()
    for key in ("file", "text", "confidence", "duration_s", "processing_s", "error", "rtf", "batch_size"):
        assert key in data


def test_hotwords_take_the_seaco_path(engine, reference_wavs, monkeypatch):
    vocab = engine.loaded.tokenizer.token_list
    word = "".join(vocab[10:13])  # characters the random vocabulary knows
    hotword_ids = engine.recognizer.hotword_list([word, vocab[20]])
    assert hotword_ids[0] == [10, 11, 12] and hotword_ids[-1] == [engine.loaded.model.sos]
    # A recording spy on the real model object: which hotword list reached the SeACo decoder?
    model = engine.loaded.model
    seen: list = []
    real_decode = model._seaco_decode_with_ASF

    def spy(*args, **kwargs):
        seen.append(kwargs.get("hw_list"))
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(model, "_seaco_decode_with_ASF", spy)
    plain = engine.transcribe(reference_wavs, batch_size=2)
    assert seen and all(hw is None for hw in seen)
    seen.clear()
    biased = engine.transcribe(reference_wavs, hotwords=f"{word}, {vocab[20]}", batch_size=2)
    assert seen and all(hw == hotword_ids for hw in seen)
    assert all(r.ok for r in biased)
    assert [len(r.token_ids) for r in biased] == [len(r.token_ids) for r in plain]
    alone = engine.transcribe([reference_wavs[0]], hotwords=f"{word} {vocab[20]}", batch_size=1)[0]
    assert alone.token_ids == biased[0].token_ids


def test_a_hotword_starting_with_http_is_just_a_word(engine, reference_wavs):
    """FunASR treats a hotword string starting with "http" as a URL to download; ours never does."""
    [result] = engine.transcribe(reference_wavs[:1], hotwords="httpd 服务")
    assert result.ok


def test_hotword_limits_are_clear(engine, reference_wavs):
    with pytest.raises(HotwordError, match="limit is 10"):
        engine.transcribe(reference_wavs[:1], hotwords=" ".join(f"词{i}" for i in range(11)))
    with pytest.raises(HotwordError, match="no punctuation or paths"):
        engine.transcribe(reference_wavs[:1], hotwords="http://example.com/words.txt")
    with pytest.raises(HotwordError, match="characters"):
        engine.transcribe(reference_wavs[:1], hotwords="长" * 21)


def test_a_precision_the_machine_lacks_is_refused_at_start_with_the_reason(engine):
    """Never a silent fall back: the engine does not start, and the message says why."""
    with pytest.raises(PrecisionUnavailable, match="fp16 runs on CUDA only"):
        Engine(tiny_settings(precision="fp16"), loaded=engine.loaded)
    # Every CPU kind's bf16 answer is in tests/test_cpu.py, under each simulated CPU.
    with pytest.raises(PrecisionUnavailable, match="int8 is a CPU mode"):
        check_precision("int8", torch.device("cuda"))


def test_the_command_line_refuses_a_missing_precision_before_loading(tmp_path):
    """The CLI exits with the reason (status 1 or 2), not a traceback, and loads no weights."""
    audio = tmp_path / "a.wav"
    soundfile.write(audio, np.zeros(16000, dtype=np.float32), 16000)
    done = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--model", "random:tiny",
                           "--device", "cpu", "--precision", "fp16", str(audio)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "fp16 runs on CUDA only" in done.stderr and "Traceback" not in done.stderr


def test_out_of_memory_backs_off_and_loses_nothing(engine, clip_dir):
    files = sorted(clip_dir.glob("*.wav"))
    expected = {r.file: r.token_ids for r in engine.transcribe(files, batch_size=1)}
    # Budget: about two of the longest clips; a batch of 8 must back off twice.
    budget = 2 * max(engine.features.frames_per_second * r for r in [11.8]) + 5
    tight = padded(engine, simulate_oom_frames=int(budget), padding_limit_pct=1000)
    run = tight.run(files, batch_size=8)
    assert run.stats.backoffs >= 2
    assert all(r.ok for r in run.results)
    assert any(r.backed_off for r in run.results)
    longest = max(run.results, key=lambda r: r.duration_s)
    assert longest.batch_size <= 2 and longest.backed_off
    assert {r.file: r.token_ids for r in run.results} == expected


def _speech_pause_speech(reference_wavs, pause_s: float = 1.0) -> tuple[np.ndarray, float, float]:
    """Two real recordings with a silence between: (samples, pause start s, pause end s)."""
    first, second = (soundfile.read(p, dtype="float32")[0] for p in reference_wavs[:2])
    silence = np.zeros(int(pause_s * 16000), dtype=np.float32)
    return np.concatenate([first, silence, second]), len(first) / 16000, (len(first) + len(silence)) / 16000


def test_out_of_memory_alone_halves_the_piece_at_a_quiet_point(engine, reference_wavs):
    """A piece too big for memory even alone is cut at its pause and recognised in two halves;
    the halves' tokens, in order, are the file's tokens: nothing lost, nothing doubled."""
    samples, pause_from, pause_to = _speech_pause_speech(reference_wavs)
    feats = engine.features(samples)
    budget = Engine(tiny_settings(simulate_oom_frames=int(feats.shape[0] * 0.7)), loaded=engine.loaded)
    run = budget.run([(samples, 16000)])
    result = run.results[0]
    assert result.ok and result.backed_off and run.stats.backoffs == 1
    assert any("cut at quiet points" in w for w in result.warnings)

    from asr.speech.segment import quiet_split_frame

    cut = quiet_split_frame(feats, floor=int(2.0 * engine.features.frames_per_second))
    assert pause_from <= cut / engine.features.frames_per_second <= pause_to
    halves = [engine.recognizer.recognize([half], None)[0] for half in (feats[:cut], feats[cut:])]
    assert result.token_ids == [t for half in halves for t in half.token_ids]


def test_out_of_memory_splits_stop_at_the_floor(engine, clip_dir):
    """Below OOM_SPLIT_FLOOR_S a piece is not cut again: that file fails with a clear message;
    files that fit are untouched."""
    from asr.recognition.batcher import OOM_SPLIT_FLOOR_S

    files = sorted(clip_dir.glob("*.wav"))
    frames_per_s = engine.features.frames_per_second
    budget_frames = int(0.8 * OOM_SPLIT_FLOOR_S * frames_per_s)  # fits ~1.6 s: under the floor
    tiny_budget = Engine(tiny_settings(simulate_oom_frames=budget_frames), loaded=engine.loaded)
    results = tiny_budget.transcribe(files, batch_size=4)
    alone = {p.name: engine.transcribe([p])[0] for p in files}
    failed = [r for r in results if not r.ok]
    assert failed and len(failed) < len(results)
    assert all("cannot be cut below 2 s" in r.error for r in failed)
    for r in results:
        if r.ok:
            assert r.duration_s * frames_per_s <= budget_frames + 1
            assert r.token_ids == alone[r.file].token_ids and not r.warnings


def test_fast_predictor_is_bit_identical_to_funasr_calc_predictor(engine):
    """The engine skips the predictor's timestamp head; the token branch must not change at all."""
    model = engine.loaded.model
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for frames in (5, 37, 180):
            encoder_out = torch.randn(1, frames, model.encoder.output_size(), generator=generator)
            lengths = torch.tensor([frames])
            ours = engine.recognizer.predict(encoder_out, lengths)
            funasr = model.calc_predictor(encoder_out, lengths)
            for mine, theirs in zip(ours, funasr, strict=True):
                assert torch.equal(mine, theirs)


def test_batches_group_similar_lengths(engine):
    """Three 12 s and three 3 s inputs, interleaved, make exactly two batches of three."""
    inputs = [(speechlike(seconds, seed=30 + i), 16000) for i, seconds in enumerate([12, 3, 12, 3, 3, 12])]
    run = padded(engine, padding_limit_pct=10).run(inputs, batch_size=3)
    assert run.stats.batches == 2
    assert [r.batch_size for r in run.results] == [3] * 6


def test_skipping_full_masks_is_bit_identical(engine, reference_wavs):
    """The encoder's mask shortcut for unpadded input changes no value, alone or in a padded batch."""
    from asr.recognition.recognizer import skip_full_attention_masks

    model = engine.loaded.model
    assert engine.recognizer.masks_skipped == len(model.encoder.encoders) + len(model.encoder.encoders0)
    feats = [engine.features(np.asarray(soundfile.read(p, dtype="float32")[0])) for p in reference_wavs]
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lengths = torch.tensor([f.shape[0] for f in feats])
    patched_modules = [m for m in model.encoder.modules() if "forward_attention" in vars(m)]
    with torch.inference_mode():
        fast_alone = model.encode(feats[0][None], lengths[:1])[0]
        fast_batch = model.encode(padded, lengths)[0]
        for module in patched_modules:
            del module.forward_attention, module.forward_fsmn
        try:
            plain_alone = model.encode(feats[0][None], lengths[:1])[0]
            plain_batch = model.encode(padded, lengths)[0]
        finally:
            skip_full_attention_masks(model.encoder)
    assert torch.equal(fast_alone, plain_alone)
    assert torch.equal(fast_batch, plain_batch)


def test_int8_mode_runs_on_a_quantised_copy(engine, reference_wavs):
    """Opt-in int8: linear layers become dynamic-int8 in a copy; the shared fp32 model is untouched."""
    int8_engine = Engine(tiny_settings(precision="int8"), loaded=engine.loaded)
    assert int8_engine.int8
    assert type(int8_engine.recognizer.model.encoder.encoders[0].feed_forward.w_1).__name__ == "Linear"
    assert "quantized" in type(int8_engine.recognizer.model.encoder.encoders[0].feed_forward.w_1).__module__
    assert type(engine.loaded.model.encoder.encoders[0].feed_forward.w_1) is torch.nn.Linear
    # The copy's attention runs its own (quantised) output layer, not the fp32 original's.
    attention = int8_engine.recognizer.model.encoder.encoders[0].self_attn
    assert attention.forward_attention.__self__ is attention
    assert "quantized" in type(attention.linear_out).__module__
    results = int8_engine.transcribe(reference_wavs, batch_size=2)
    assert all(r.ok and r.token_ids for r in results)


def test_precision_switches_between_batches_and_back(engine, reference_wavs):
    """The Tuning tab's apply: bf16 or int8 from the next batch, then fp32 gives fp32's tokens again."""
    own = Engine(tiny_settings(), loaded=engine.loaded)
    fp32 = [r.token_ids for r in own.transcribe(reference_wavs)]
    modes = ["int8"] + (["bf16"] if own.cpu.bf16 else [])
    for mode in modes:
        own.set_precision(mode)
        assert own.recognizer.precision == own.precision == own.settings.precision == mode
        assert all(r.ok and r.token_ids for r in own.transcribe(reference_wavs))
    own.set_precision("fp32")
    assert own.recognizer.model is engine.loaded.model
    assert [r.token_ids for r in own.transcribe(reference_wavs)] == fp32
    with pytest.raises(PrecisionUnavailable, match="CUDA only"):
        own.set_precision("fp16")
    assert own.precision == "fp32"
    assert own.with_precision("int8") is own.with_precision("int8") and own.with_precision("fp32") is own


def test_a_model_failure_fails_only_that_input(engine, clip_dir):
    """Any non-OOM error inside the model retries the batch one by one; only the culprit fails."""
    files = sorted(clip_dir.glob("*.wav"))[:4]
    expected = engine.transcribe(files, batch_size=1)
    broken = Engine(tiny_settings(padding_limit_pct=1000), loaded=engine.loaded)
    culprit_frames = engine.features(np.asarray(soundfile.read(files[2], dtype="float32")[0])).shape[0]
    real_recognize = broken.recognizer.recognize

    def recognize(feats, hotwords, timings=None, timestamps=False):
        if any(f.shape[0] == culprit_frames for f in feats):
            raise RuntimeError("simulated kernel failure")
        return real_recognize(feats, hotwords, timings, timestamps)

    broken.recognizer.recognize = recognize
    results = broken.transcribe(files, batch_size=4)
    assert "recognition failed: RuntimeError: simulated kernel failure" in results[2].error
    for i in (0, 1, 3):
        assert results[i].ok and results[i].token_ids == expected[i].token_ids


def test_cublas_allocation_failures_back_off_like_oom(engine, clip_dir):
    """cuBLAS/cuDNN report allocation failures as a plain RuntimeError: still an OOM back-off."""
    files = sorted(clip_dir.glob("*.wav"))[:4]
    expected = engine.transcribe(files, batch_size=1)
    flaky = Engine(tiny_settings(padding_limit_pct=1000), loaded=engine.loaded)
    real_recognize = flaky.recognizer.recognize

    def recognize(feats, hotwords, timings=None, timestamps=False):
        if len(feats) > 2:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return real_recognize(feats, hotwords, timings, timestamps)

    flaky.recognizer.recognize = recognize
    run = flaky.run(files, batch_size=4)
    assert run.stats.backoffs == 1
    assert all(r.ok and r.backed_off for r in run.results)
    assert [r.token_ids for r in run.results] == [r.token_ids for r in expected]


def test_default_batch_size_keeps_config_bounds(engine):
    other = Engine(tiny_settings(), loaded=engine.loaded)
    with pytest.raises(ValueError, match="<= 512"):
        other.set_default_batch_size(1000)
    other.set_default_batch_size(16)
    assert other.default_batch_size == other.settings.batch_size == 16


def test_a_failure_inside_a_lane_fails_only_that_input(engine, clip_dir, monkeypatch):
    """A side-by-side batch stops its lanes on an error; the one-by-one retry isolates the culprit."""
    files = sorted(clip_dir.glob("*.wav"))[:4]
    expected = engine.transcribe(files, batch_size=1)
    culprit_frames = engine.features(np.asarray(soundfile.read(files[2], dtype="float32")[0])).shape[0]
    model = engine.loaded.model
    real_encode = model.encode
    threads_seen = []

    def encode(speech, lengths):
        threads_seen.append(threading.current_thread().name)
        if speech.shape[1] == culprit_frames:
            raise RuntimeError("simulated kernel failure")
        return real_encode(speech, lengths)

    monkeypatch.setattr(model, "encode", encode)
    wide = Engine(tiny_settings(padding_limit_pct=1000, cpu_lanes=2), loaded=engine.loaded)
    results = wide.transcribe(files, batch_size=4)
    assert any(name.startswith("asr-lane") for name in threads_seen)
    assert "recognition failed: RuntimeError: simulated kernel failure" in results[2].error
    for i in (0, 1, 3):
        assert results[i].ok and results[i].token_ids == expected[i].token_ids


def test_lanes_split_the_threads_and_give_them_back(engine, clip_dir, monkeypatch):
    """2 threads, 2 lanes: each lane runs on 1; the caller and threads torch meets later get 2 again."""
    wide = Engine(tiny_settings(padding_limit_pct=1000, cpu_lanes=2), loaded=engine.loaded)
    assert wide.recognizer.threads == 2 and wide.recognizer.lanes == 2
    model = engine.loaded.model
    real_encode = model.encode
    seen = []

    def encode(speech, lengths):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return real_encode(speech, lengths)

    monkeypatch.setattr(model, "encode", encode)
    files = sorted(clip_dir.glob("*.wav"))
    run = wide.run(files[:4], batch_size=4)
    assert run.stats.batches == 1 and all(r.ok for r in run.results)
    assert sorted(seen) == sorted([(name, 1) for name, _ in seen]) and len(seen) == 4
    assert {name for name, _ in seen} <= {f"asr-lane_{n}" for n in range(2)}
    assert torch.get_num_threads() == 2
    fresh = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert fresh == [2]
    seen.clear()
    wide.transcribe(files[:1])
    assert seen == [("asr-batcher", 2)]  # a lone file keeps every thread (on the model's thread)


def test_linear_layers_run_on_onednn_and_agree_with_torch(engine, reference_wavs):
    """cpu_gemm=onednn: every linear goes through oneDNN; torch's own kernels give the same values."""
    from asr.recognition.cpu_kernels import onednn_linear_works, uses_onednn
    from asr.recognition.model import load_model

    assert onednn_linear_works(), "this torch build should ship oneDNN on x86"
    cache_dir = engine.settings.resolve_path(engine.settings.cache_dir)
    onednn = Engine(tiny_settings(cpu_gemm="onednn"),
                    loaded=load_model("random:tiny", "cpu", cache_dir, 2, cpu_gemm="onednn"))
    assert onednn.loaded.cpu_gemm == "onednn" and uses_onednn(onednn.loaded.model)
    feats = engine.features(np.asarray(soundfile.read(reference_wavs[0], dtype="float32")[0]))
    with torch.profiler.profile(acc_events=True) as prof:  # sees this thread: call the model here
        onednn.recognizer.recognize([feats], None)
    ops = {event.name for event in prof.events()}
    assert "mkldnn::_linear_pointwise" in ops
    assert "aten::addmm" not in ops and "aten::linear" not in ops

    plain = load_model("random:tiny", "cpu", cache_dir, 2, cpu_gemm="torch")
    assert plain.cpu_gemm == "torch" and not uses_onednn(plain.model)
    feats = feats[None]
    lengths = torch.tensor([feats.shape[1]])
    with torch.inference_mode():
        fast = onednn.loaded.model.encode(feats, lengths)[0]
        slow = plain.model.encode(feats, lengths)[0]
    assert torch.allclose(fast, slow, atol=1e-4)


def test_int8_batches_side_by_side_leave_tokens_alone(engine, mixed_files):
    """Dynamic int8 scales activations per tensor; side by side (the CPU default), no batch mate
    shares a tensor."""
    assert engine.recognizer.lanes == 2
    int8_engine = Engine(tiny_settings(precision="int8", padding_limit_pct=1000), loaded=engine.loaded)
    assert int8_engine.recognizer.lanes == 2
    alone = [r.token_ids for r in (int8_engine.transcribe([p], batch_size=1)[0] for p in mixed_files)]
    for size in (2, 3, 5):
        results = int8_engine.transcribe(mixed_files, batch_size=size)
        assert max(r.batch_size for r in results) == size
        assert [r.token_ids for r in results] == alone, size


def test_lanes_share_out_every_thread(engine, clip_dir, monkeypatch):
    """3 threads over a batch of 2: the lanes run on 2 and 1 threads, none left idle."""
    three = Engine(tiny_settings(cpu_threads=3, cpu_lanes=3, padding_limit_pct=1000), loaded=engine.loaded)
    assert (three.recognizer.threads, three.recognizer.lanes) == (3, 3)
    model = engine.loaded.model
    real_encode = model.encode
    counts = []
    both_lanes = threading.Barrier(2, timeout=30)  # else a quick lane could take both files

    def encode(speech, lengths):
        counts.append(torch.get_num_threads())
        both_lanes.wait()
        return real_encode(speech, lengths)

    monkeypatch.setattr(model, "encode", encode)
    three.run(sorted(clip_dir.glob("*.wav"))[:2], batch_size=2)
    assert sorted(counts) == [1, 2]
    torch.set_num_threads(2)  # the session's count, for the tests that follow


def _two_fresh_threads(set_count) -> dict[int, int]:
    """Thread 0 sets 2 threads, then thread 1 sets 1; each then reads its own count."""
    counts: dict[int, int] = {}
    first_set = threading.Event()
    both_set = threading.Barrier(2, timeout=30)

    def run(number: int, want: int) -> None:
        if number == 1:
            first_set.wait(30)
        set_count(want)
        first_set.set()
        both_set.wait()
        counts[number] = torch.get_num_threads()

    threads = [threading.Thread(target=run, args=(n, w)) for n, w in ((0, 2), (1, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    torch.set_num_threads(2)  # the session's count, for the tests that follow
    return counts


def test_a_fresh_lane_keeps_the_thread_count_it_set():
    """torch sets a new thread's count lazily, on its first op, from whatever count any thread set
    last: plain set_num_threads in a fresh lane can be undone that way. set_thread_count sticks."""
    from asr.system.threads import set_thread_count

    assert _two_fresh_threads(torch.set_num_threads) == {0: 1, 1: 1}  # torch's trap, still there
    assert _two_fresh_threads(set_thread_count) == {0: 2, 1: 1}


def test_lanes_keep_their_share_after_another_side_by_side_engine(engine, clip_dir, monkeypatch):
    """The order that failed on an Intel CI machine: a 2-lane engine first, then 2 + 1 lanes."""
    files = sorted(clip_dir.glob("*.wav"))
    Engine(tiny_settings(padding_limit_pct=1000, cpu_lanes=2), loaded=engine.loaded).run(files[:4],
                                                                                          batch_size=4)
    three = Engine(tiny_settings(cpu_threads=3, cpu_lanes=3, padding_limit_pct=1000), loaded=engine.loaded)
    model = engine.loaded.model
    real_encode = model.encode
    counts = []
    both_lanes = threading.Barrier(2, timeout=30)

    def encode(speech, lengths):
        both_lanes.wait()  # both lanes have set their counts before either reads its own
        counts.append(torch.get_num_threads())
        return real_encode(speech, lengths)

    monkeypatch.setattr(model, "encode", encode)
    three.run(files[:2], batch_size=2)
    assert sorted(counts) == [1, 2]
    torch.set_num_threads(2)


def test_onednn_unavailable_falls_back_to_torch_kernels(engine, monkeypatch, caplog):
    import asr.recognition.model

    monkeypatch.setattr(asr.recognition.model, "onednn_linear_works", lambda: False)
    cache_dir = engine.settings.resolve_path(engine.settings.cache_dir)
    with caplog.at_level(logging.WARNING, logger="asr.recognition.model"):
        loaded = asr.recognition.model.load_model("random:tiny", "cpu", cache_dir, 2, cpu_gemm="onednn")
    assert loaded.cpu_gemm == "torch"
    assert "cannot run oneDNN linears" in caplog.text
    with caplog.at_level(logging.WARNING, logger="asr.engine"):
        Engine(tiny_settings(cpu_gemm="onednn"), loaded=loaded)
    assert "loaded with torch kernels" in caplog.text


def test_onednn_linear_hands_back_to_torch_where_it_cannot_serve():
    """Training (gradients), other dtypes and empty inputs go to torch's own linear, unchanged."""
    from asr.recognition.cpu_kernels import use_onednn_linears, uses_onednn

    layer = torch.nn.Sequential(torch.nn.Linear(16, 8))
    assert use_onednn_linears(layer) == 1 and use_onednn_linears(layer) == 0  # idempotent
    assert uses_onednn(layer)
    x = torch.randn(5, 16)
    with torch.enable_grad():
        out = layer(x)
    assert out.grad_fn is not None  # torch's linear: differentiable
    assert torch.equal(out, torch.nn.functional.linear(x, layer[0].weight, layer[0].bias))
    with torch.inference_mode():
        assert layer(torch.randn(0, 16)).shape == (0, 8)
        bf16 = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
        assert bf16.dtype == torch.bfloat16
        assert torch.equal(bf16, torch.nn.functional.linear(x.to(torch.bfloat16), layer[0].weight,
                                                            layer[0].bias))
