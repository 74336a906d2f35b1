"""The fsmn VAD backend: FunASR's real FsmnVADStreaming with calibrated random weights on real audio.

The model is `random:tiny`, built once into the project's .cache/models. Its calibration makes
loud frames speech and quiet ones silence, so the regions must follow the vendored recordings
joined by silences of known length.
"""

from __future__ import annotations

import json
import resource
import shutil
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml
from helpers import tiny_settings

from asr.models import ModelLoadError, hub
from asr.models.loader import model_dir
from asr.models.random_weights.fsmn_vad import FSMN_VAD, GENERATOR_VERSION, REAL_CONFIG
from asr.recognition.model import SEACO_MODEL
from asr.speech.fsmn import CHUNK_SAMPLES, DEFAULT_FSMN_VAD, FsmnVad, load_fsmn_vad

RATE = 16000
FRAME = RATE // 100  # FunASR's VAD decides per 10 ms frame
GAPS_S = (1.5, 2.5)  # digital silence between the recordings
EDGE_S = 0.5  # silence at both ends
MAX_SPEECH_OUTSIDE_S = 0.3
SPEECH_DBFS = -45.0  # a 25 ms frame this loud is speech: the recordings' own noise floor is -55..-75


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    settings = tiny_settings()
    return settings.resolve_path(settings.cache_dir)


@pytest.fixture(scope="module")
def vad(cache_dir) -> FsmnVad:
    return load_fsmn_vad("random:tiny", "cpu", cache_dir)


class Joined:
    """Recordings joined by known silences; spans and gaps in samples."""

    def __init__(self, recordings: list[np.ndarray]) -> None:
        parts = [np.zeros(int(EDGE_S * RATE), np.float32)]
        self.spans: list[tuple[int, int]] = []
        self.gaps: list[tuple[int, int]] = []
        position = parts[0].size
        for i, recording in enumerate(recordings):
            self.spans.append((position, position + recording.size))
            parts.append(recording)
            position += recording.size
            if i < len(recordings) - 1:
                gap = np.zeros(int(GAPS_S[i] * RATE), np.float32)
                self.gaps.append((position, position + gap.size))
                parts.append(gap)
                position += gap.size
        tail = int(EDGE_S * RATE) + (-(position + int(EDGE_S * RATE))) % FRAME  # whole frames
        parts.append(np.zeros(tail, np.float32))
        self.samples = np.concatenate(parts)


@pytest.fixture(scope="module")
def joined(reference_wavs) -> Joined:
    assert len(reference_wavs) >= 3, "three vendored recordings are needed"
    recordings = []
    for path in reference_wavs[:3]:
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == RATE and samples.ndim == 1
        recordings.append(samples)
    return Joined(recordings)


@pytest.fixture(scope="module")
def joined_regions(vad, joined) -> list[tuple[int, int]]:
    return vad.detect(joined.samples)


def assert_well_formed(regions: list[tuple[int, int]], total: int) -> None:
    for start, end in regions:
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start < end <= total
    for (_, end), (start, _) in zip(regions, regions[1:], strict=False):
        assert end <= start, f"regions overlap: {regions}"


def speech_frames(samples: np.ndarray) -> np.ndarray:
    """Centres (sample index) of 25 ms frames, 10 ms apart, louder than SPEECH_DBFS."""
    count = (samples.size - 400) // FRAME + 1
    frames = samples[np.arange(count)[:, None] * FRAME + np.arange(400)]
    dbfs = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return np.flatnonzero(dbfs > SPEECH_DBFS) * FRAME + 200


def test_regions_are_sorted_disjoint_and_in_range(joined, joined_regions):
    assert joined_regions, "the calibrated model found no speech in real recordings"
    assert_well_formed(joined_regions, joined.samples.size)


def test_silences_of_a_second_or_more_separate_regions(joined, joined_regions):
    # Measured: the regions end within 3 ms of a recording's end and start inside the next
    # recording, so no region reaches more than a frame into the digital silence between them.
    for gap_start, gap_end in joined.gaps:
        assert gap_end - gap_start >= RATE
        for start, end in joined_regions:
            overlap = min(end, gap_end) - max(start, gap_start)
            assert overlap <= 0.2 * RATE, (
                f"region {start / RATE:.2f}-{end / RATE:.2f} s reaches "
                f"{overlap / RATE:.2f} s into the silence {gap_start / RATE:.2f}-{gap_end / RATE:.2f} s"
            )
    edges = [(0, int(EDGE_S * RATE)), (joined.samples.size - int(EDGE_S * RATE), joined.samples.size)]
    for start, end in joined_regions:
        assert not any(s <= start and end <= e for s, e in edges)


def test_regions_cover_each_recordings_speech(joined, joined_regions):
    covered = np.zeros(joined.samples.size, dtype=bool)
    for start, end in joined_regions:
        covered[start:end] = True
    for span_start, span_end in joined.spans:
        assert covered[span_start:span_end].any(), f"no region for {span_start / RATE:.2f} s"
        centres = span_start + speech_frames(joined.samples[span_start:span_end])
        assert centres.size > 2 * RATE // FRAME  # each recording has seconds of speech
        outside_s = np.count_nonzero(~covered[centres]) * FRAME / RATE
        # Measured: 0.0 s for each recording.
        assert outside_s <= MAX_SPEECH_OUTSIDE_S, f"{outside_s:.2f} s of speech outside the regions"


def test_regions_end_at_internal_pauses(joined, joined_regions):
    """funasr_llamacpp_sample.wav has a 1.4 s pause near the noise floor between two phrases:
    the 800 ms end-silence limit must split it, so the joined file gives four regions."""
    assert len(joined_regions) == 4


def test_pure_silence_gives_no_region(vad):
    rng = np.random.default_rng(7)
    assert vad.detect(np.zeros(5 * RATE, np.float32)) == []
    hiss = (rng.normal(0.0, 10 ** (-70 / 20), 5 * RATE)).astype(np.float32)  # -70 dBFS RMS
    assert vad.detect(hiss) == []


@pytest.mark.parametrize("length", [0, 1, 399])
def test_shorter_than_one_frame_gives_nothing(vad, length):
    assert vad.detect(np.full(length, 0.5, np.float32)) == []


@pytest.mark.parametrize("length", [400, 401, 1000, 2400, CHUNK_SAMPLES, 2 * CHUNK_SAMPLES])
def test_odd_lengths_run_through_funasr(vad, joined, length):
    """A few frames (less than FunASR's 5-frame LFR window) and whole multiples of the feed
    chunk, where the last streaming call gets no new samples."""
    samples = np.resize(joined.samples[int(EDGE_S * RATE):], length).astype(np.float32)
    assert_well_formed(vad.detect(samples), length)


def test_scale_is_floats_in_unit_range(vad, joined):
    """WavFrontendOnline scales its input to int16 range itself (kaldi fbank of x * 32768), so
    `detect` takes the engine's [-1, 1] floats unchanged and refuses int16-range input."""
    frontend = vad.frontend
    clip = joined.samples[joined.spans[0][0]:joined.spans[0][0] + RATE]
    cache: dict = {}
    with torch.inference_mode():
        frontend(torch.from_numpy(clip)[None], [clip.size], cache=cache, is_final=True)
        expected = kaldi.fbank(
            torch.from_numpy(clip)[None] * 32768, num_mel_bins=frontend.n_mels,
            frame_length=frontend.frame_length, frame_shift=frontend.frame_shift, dither=0.0,
            energy_floor=0.0, window_type=frontend.window, sample_frequency=frontend.fs,
        )
    assert torch.allclose(cache["fbanks"][0], expected, atol=1e-4)

    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        vad.detect(joined.samples * 32768)
    with pytest.raises(ValueError, match="float"):
        vad.detect((joined.samples * 32767).astype(np.int16))
    with pytest.raises(ValueError, match="mono"):
        vad.detect(np.stack([joined.samples, joined.samples]))
    # float64 and read-only input of the right scale is judged like float32.
    frozen = joined.samples.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = vad.detect(joined.samples)
        assert vad.detect(frozen) == expected
        assert vad.detect(joined.samples.astype(np.float64)) == expected


def test_chunked_feed_matches_one_whole_file_call(vad, joined):
    """`detect` feeds CHUNK_MS chunks through one streaming cache; FunASR's offline path (one
    inference call, as AutoModel runs a VAD model) must give the same regions."""
    samples = np.tile(joined.samples, 3)  # about 74 s: several feed chunks and two of FunASR's
    with torch.inference_mode():
        results, _ = vad.model.inference(
            [torch.from_numpy(samples)], key=["whole"], frontend=vad.frontend, cache={},
            max_end_silence_time=vad.max_end_silence_ms, dynamic_silence=False, device="cpu",
        )
    per_ms = RATE // 1000
    whole = [(start * per_ms, min(end * per_ms, samples.size)) for start, end in results[0]["value"]]
    assert vad.detect(samples) == whole


def test_long_input_in_bounded_time_and_memory(vad, joined, joined_regions):
    """Ten minutes of the joined file repeated: every copy gets the single file's regions (within
    a frame), no region crosses a copy boundary, and memory does not grow with the input.
    Measured on the shared 2-core dev box: 9-16 s wall, about 11 s of CPU, and +5-8 MB peak
    RSS for a 37 MB input; one hour took 61 s of CPU and +12 MB, where one whole-file call
    needed +356 MB."""
    period = joined.samples.size
    copies = int(np.ceil(600 * RATE / period))
    samples = np.tile(joined.samples, copies)
    vad.detect(joined.samples)  # warm up, so the peak below is the long call's own
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()  # CPU time: the wall clock of a shared machine says little
    regions = vad.detect(samples)
    cpu_s = time.process_time() - started
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert_well_formed(regions, samples.size)
    assert len(regions) == copies * len(joined_regions)
    for i, (start, end) in enumerate(regions):
        copy, index = divmod(i, len(joined_regions))
        want_start, want_end = joined_regions[index]
        assert abs(start - copy * period - want_start) <= FRAME
        assert abs(end - copy * period - want_end) <= FRAME
    assert growth_mb < 100, f"peak RSS grew {growth_mb:.0f} MB for a {samples.nbytes / 2**20:.0f} MB input"
    assert cpu_s < 90, f"ten minutes took {cpu_s:.0f} s of CPU"


def test_limits_from_load_options(cache_dir, joined, joined_regions):
    """max_single_segment_ms cuts long speech into touching regions, as FunASR's whole-file call
    does; a longer max_end_silence_ms bridges the 1.4 s pause inside a recording."""
    capped = load_fsmn_vad("random:tiny", "cpu", cache_dir, max_single_segment_ms=4000)
    loud = np.random.default_rng(3).normal(0.0, 0.1, 10 * RATE).astype(np.float32)
    regions = capped.detect(loud)
    assert_well_formed(regions, loud.size)
    assert len(regions) == 3
    assert regions[0][1] == regions[1][0] and regions[1][1] == regions[2][0]
    assert all(end - start <= 4010 * RATE // 1000 for start, end in regions)
    with torch.inference_mode():
        results, _ = capped.model.inference(
            [torch.from_numpy(loud)], key=["whole"], frontend=capped.frontend, cache={},
            max_end_silence_time=capped.max_end_silence_ms, dynamic_silence=False, device="cpu",
        )
    assert regions == [(start * 16, min(end * 16, loud.size)) for start, end in results[0]["value"]]

    patient = load_fsmn_vad("random:tiny", "cpu", cache_dir, max_end_silence_ms=2000)
    bridged = patient.detect(joined.samples)
    assert_well_formed(bridged, joined.samples.size)
    assert len(bridged) == len(joined_regions) - 1


def test_concurrent_calls_match_serial_ones(vad, joined):
    inputs = [joined.samples, joined.samples[: 9 * RATE], np.tile(joined.samples, 2)]
    serial = [vad.detect(x) for x in inputs]
    results: dict[int, list] = {}

    def run(i: int) -> None:
        results[i] = vad.detect(inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(inputs))] == serial


def test_generated_directory_has_modelscope_layout(vad, cache_dir):
    directory = cache_dir / "models" / f"random-fsmn-vad-tiny-v{GENERATOR_VERSION}"
    assert vad.directory == directory
    for name in ("config.yaml", "model.pt", "am.mvn", "configuration.json"):
        assert (directory / name).is_file()
    config = yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "FsmnVADStreaming" and config["frontend"] == "WavFrontendOnline"
    assert config["encoder_conf"] == REAL_CONFIG["encoder_conf"]
    assert config["encoder_conf"]["output_dim"] == 248 and config["frontend_conf"]["lfr_m"] == 5
    assert config["model_conf"]["max_end_silence_time"] == 800
    meta = json.loads((directory / "configuration.json").read_text(encoding="utf-8"))
    assert meta["file_path_metas"]["frontend_conf"]["cmvn_file"] == "am.mvn"
    assert 0.4e6 < vad.parameters < 0.45e6  # the real fsmn-vad's size
    assert vad.max_end_silence_ms == 800


def test_generation_is_atomic_and_done_once(tmp_path):
    directory = FSMN_VAD.ensure("random:tiny", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [directory.name]  # no staging left
    stamp = (directory / "model.pt").stat().st_mtime_ns
    assert FSMN_VAD.ensure("random:tiny", tmp_path) == directory
    assert (directory / "model.pt").stat().st_mtime_ns == stamp


def test_load_errors_are_clear(tmp_path, cache_dir, vad):
    with pytest.raises(ModelLoadError, match="size must be one of tiny, not 'large'"):
        load_fsmn_vad("random:large", "cpu", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="lacks config.yaml, model.pt"):
        load_fsmn_vad(str(tmp_path / "empty"), "cpu", tmp_path)
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_fsmn_vad("./no/such/vad", "cpu", tmp_path)

    # The ASR model given as the VAD: FunASR loads it, but it is the wrong class.
    asr_dir = model_dir("random:tiny", SEACO_MODEL, cache_dir)
    with pytest.raises(ModelLoadError, match="holds a SeacoParaformer.*FsmnVADStreaming"):
        load_fsmn_vad(str(asr_dir), "cpu", tmp_path)

    # The right model with the offline frontend.
    copy = tmp_path / "wrong-frontend"
    shutil.copytree(vad.directory, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text(encoding="utf-8"))
    config["frontend"] = "WavFrontend"
    (copy / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="needs FunASR's WavFrontendOnline.*gives WavFrontend"):
        load_fsmn_vad(str(copy), "cpu", tmp_path)

    # A corrupt checkpoint.
    broken = tmp_path / "broken"
    shutil.copytree(vad.directory, broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not load the fsmn VAD model"):
        load_fsmn_vad(str(broken), "cpu", tmp_path)


def test_uncached_hub_vad_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    # The discard port on loopback is closed: the same answer a machine without network gets.
    monkeypatch.setattr(hub, "MODELSCOPE_HOST", ("127.0.0.1", 9))
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="fsmn VAD model .*cannot be downloaded"):
        load_fsmn_vad(DEFAULT_FSMN_VAD, "cpu", tmp_path)
    assert time.monotonic() - started < 30


def test_gpu_request_still_runs_on_cpu(vad, cache_dir, joined, joined_regions):
    other = load_fsmn_vad("random:tiny", "cuda", cache_dir)
    assert other.device.type == "cpu"
    assert next(other.model.parameters()).device.type == "cpu"
    assert other.detect(joined.samples) == joined_regions
