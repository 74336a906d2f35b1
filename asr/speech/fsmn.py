"""FunASR's fsmn-vad as a speech-region detector (the `vad: fsmn` backend).

Parity with FunASR users: the regions come from `iic/speech_fsmn_vad_zh-cn-16k-common-pytorch`
run through FunASR's own FsmnVADStreaming.inference, WavFrontendOnline and VAD state machine;
nothing here re-implements the network or its decisions.

Offline detection feeds the recording in 10 s chunks through one streaming cache (the model's
own `inference` with `cache=`, is_final on the last chunk). FunASR's offline call does the same
internally with 60 s chunks, and the regions are identical (checked up to one hour), but one call
copies the whole input first (torch.cat with the cache's leftover samples) and then holds 60 s
of fbank, LFR and score tensors at a time; 10 s chunks hold a sixth of that for a little more CPU
time (figures in docs/benchmarks.md). The state machine drops the scores and samples it has
decided on, so nothing else grows with the input's length.

Sample scale: WavFrontendOnline multiplies its input by 32768 before kaldi fbank, always (its
`upsacle_samples` option is stored but ignored), and FunASR's loaders hand it floats in [-1, 1]
(wav files via torchaudio/soundfile as float32). So the engine's decoded float32 samples go in
unchanged; int16-range input would be scaled twice and read as deafening noise.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

from asr.models import ModelLoadError
from asr.models.funasr import import_funasr
from asr.models.loader import ModelKind, build_funasr_model
from asr.models.random_weights.fsmn_vad import FSMN_VAD
from asr.system.threads import thread_count

log = logging.getLogger(__name__)

DEFAULT_FSMN_VAD = "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch"
FSMN_VAD_MODEL = ModelKind(
    label="fsmn VAD model", class_names=("FsmnVADStreaming",), random_build=FSMN_VAD,
    advice=("Set --vad silero (its model ships with the app), or point vad_model in config.yaml at "
            "a local fsmn-vad directory or random:tiny."))
SAMPLE_RATE = 16000
CHUNK_MS = 10000  # feed size; FunASR's own offline call uses 60000 and gives the same regions
CHUNK_SAMPLES = CHUNK_MS * SAMPLE_RATE // 1000
# Floats this far beyond [-1, 1] are int16-range samples, which the frontend would scale again.
_MAX_ABS_SAMPLE = 2.0


class FsmnVad:
    """Speech regions of 16 kHz mono float32 audio, by a loaded FsmnVADStreaming model.

    Thread safety: `detect` holds a per-instance lock. FsmnVADStreaming keeps per-call state in
    the model object itself (ComputeScores rewrites `vad_opts.nn_eval_block_size` on every chunk,
    init_cache rewrites `vad_opts.max_end_silence_time`), so two overlapping calls on one model
    would cut each other's frames. The VAD is a small fraction of recognition time, so
    serialising it costs little; build a second instance for true parallelism.
    """

    def __init__(self, model: torch.nn.Module, frontend: torch.nn.Module, *, spec: str,
                 directory: Path, max_end_silence_ms: int, load_s: float = 0.0) -> None:
        self.model = model
        self.frontend = frontend
        self.spec = spec
        self.directory = directory
        self.max_end_silence_ms = max_end_silence_ms
        self.load_s = load_s
        self.parameters = sum(p.numel() for p in model.parameters())
        self.device = torch.device("cpu")
        self.name = "fsmn"  # what the engine and its feature-cache key know a detector by
        self.fingerprint = f"fsmn/{directory}/{max_end_silence_ms}"
        self._frame_samples = int(frontend.frame_length * frontend.fs / 1000)
        self._lock = threading.Lock()

    def detect(self, samples: np.ndarray) -> list[tuple[int, int]]:
        """Speech regions as sorted, non-overlapping (start_sample, end_sample) within the input.
        Speech longer than the model's max_single_segment_time (60 s) comes back as regions that
        touch (one's end is the next one's start).

        `samples` are 16 kHz mono floats in [-1, 1]. Input shorter than one 25 ms analysis frame
        has no frame to judge and gives no region.
        """
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"fsmn VAD needs mono samples (1-D), got shape {samples.shape}")
        total = samples.shape[0]
        if total < self._frame_samples:
            return []
        regions_ms: list[list[int]] = []
        with self._lock, torch.inference_mode(), thread_count(1):  # small ops: one thread is faster
            cache: dict = {}
            for begin in range(0, total, CHUNK_SAMPLES):
                chunk = _as_float32(samples[begin:begin + CHUNK_SAMPLES], begin)
                is_final = begin + CHUNK_SAMPLES >= total
                results, _ = self.model.inference(
                    [torch.from_numpy(chunk)], key=["vad"], frontend=self.frontend, cache=cache,
                    is_final=is_final, is_streaming_input=False, chunk_size=CHUNK_MS,
                    # An explicit silence limit: without one FunASR 1.4 uses its dynamic schedule,
                    # which allows 2 s of silence at first and, once a minute of speech has gone
                    # by, cuts at 0.1-0.2 s pauses, counting speech in whole feed chunks.
                    max_end_silence_time=self.max_end_silence_ms, dynamic_silence=False,
                    device="cpu", fs=SAMPLE_RATE, data_type="sound",
                )
                regions_ms.extend(results[0]["value"])
        return _to_sample_regions(regions_ms, total)


def _as_float32(chunk: np.ndarray, offset: int) -> np.ndarray:
    """A checked float32 copy of one feed chunk. Copying 10 s costs nothing next to the model,
    and it lets read-only input (a memory map, np.frombuffer) reach torch without a warning."""
    if not np.issubdtype(chunk.dtype, np.floating):
        raise ValueError(f"fsmn VAD needs float samples in [-1, 1], got {chunk.dtype}")
    chunk = np.array(chunk, dtype=np.float32)
    peak = float(np.abs(chunk).max()) if chunk.size else 0.0
    if not np.isfinite(peak) or peak > _MAX_ABS_SAMPLE:
        raise ValueError(
            f"fsmn VAD needs float samples in [-1, 1]; found {peak:g} near sample {offset} "
            "(int16-range audio must be divided by 32768 first)"
        )
    return chunk


def _to_sample_regions(regions_ms: list[list[int]], total: int) -> list[tuple[int, int]]:
    """FunASR's [start_ms, end_ms] pairs as clipped, sorted sample ranges, overlaps merged.

    Regions that only touch stay apart: FunASR cuts speech longer than max_single_segment_time
    into back-to-back regions, and those cut points are what the limit is for."""
    per_ms = SAMPLE_RATE // 1000
    spans = sorted(
        (max(0, int(start) * per_ms), min(total, int(end) * per_ms))
        for start, end in regions_ms
        if start >= 0 and end >= 0
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if end <= start:
            continue
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def load_fsmn_vad(spec: str, device: str | torch.device, cache_dir: Path, *,
                  max_end_silence_ms: int | None = None,
                  max_single_segment_ms: int | None = None) -> FsmnVad:
    """Load an fsmn-vad model: a ModelScope id, a local directory, or `random:tiny`.

    It always runs on the CPU, whatever `device` says: the network is 0.4 M parameters and the
    work is FunASR's per-frame Python state machine, which reads one score per 10 ms frame with
    `.item()`; on a GPU each of those is a device sync. `max_end_silence_ms` (silence that ends a
    region) and `max_single_segment_ms` (longest region) default to the model's config.yaml.
    """
    import_funasr()  # quietly, before its submodules
    # deliberate lazy imports: funasr is heavy, and only the fsmn backend needs these classes
    from funasr.frontends.wav_frontend import WavFrontendOnline
    from funasr.models.fsmn_vad_streaming.model import FsmnVADStreaming

    started = time.perf_counter()
    built = build_funasr_model(spec, FSMN_VAD_MODEL, torch.device("cpu"), cache_dir)
    model, kwargs, directory = built.model, built.kwargs, built.directory
    assert isinstance(model, FsmnVADStreaming)
    frontend = kwargs.get("frontend")
    if not isinstance(frontend, WavFrontendOnline):
        raise ModelLoadError(
            f"{directory}: the fsmn VAD needs FunASR's WavFrontendOnline frontend, "
            f"but its config.yaml gives {type(frontend).__name__}"
        )
    if frontend.fs != SAMPLE_RATE:
        raise ModelLoadError(f"{directory}: the fsmn VAD model expects {frontend.fs} Hz, not {SAMPLE_RATE}")
    if max_single_segment_ms is not None:
        model.vad_opts.max_single_segment_time = int(max_single_segment_ms)
    silence_ms = int(max_end_silence_ms if max_end_silence_ms is not None
                     else model.vad_opts.max_end_silence_time)
    vad = FsmnVad(model, frontend, spec=spec, directory=Path(directory), max_end_silence_ms=silence_ms,
                  load_s=time.perf_counter() - started)
    note = "" if str(device) in ("cpu", "auto") else f" ({device} asked for; the VAD stays on the CPU)"
    log.info("fsmn VAD ready: %s, %.2f M parameters, cpu%s, end silence %d ms, %.1f s",
             spec, vad.parameters / 1e6, note, silence_ms, vad.load_s)
    return vad
