"""Speaker encoders: a stretch of 16 kHz speech in, a unit-length voice vector out.

Two backends, chosen by the `speaker_model` setting:

- CAM++ (FunASR's `CAMPPlus`, 192-d), the default `iic/speech_campplus_sv_zh-cn_16k-common`,
  trained on about 200k Chinese speakers. It loads through FunASR from the ModelScope cache, a
  local directory in the ModelScope layout, or `random:tiny|large` (asr/random_models/campplus.py)
  for tests and benchmarks. Its features are FunASR's own: 80-band Kaldi fbank, mean-normalised
  per window.
- GE2E (`ge2e`), the speaker encoder that Resemblyzer 0.1.4 ships in its PyPI wheel (Apache-2.0):
  a 3-layer LSTM and a ReLU projection over 40 power-mel bands. The network is rebuilt here and
  its state dict loaded, so Resemblyzer itself is never imported: its import pulls in webrtcvad,
  which has no wheel and needs a compiler. Its weights are not in the repository; see
  `ge2e_weights` for where they come from.

Both give L2-normalised embeddings, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from asr.models import ModelLoadError
from asr.models.funasr import import_funasr
from asr.models.loader import ModelKind, build_funasr_model, resolve_device
from asr.models.random_weights.base import swap_in
from asr.models.random_weights.campplus import CAMPPLUS

log = logging.getLogger(__name__)

RATE = 16000
DEFAULT_SPEAKER_MODEL = "iic/speech_campplus_sv_zh-cn_16k-common"
CAMPPLUS_ALIASES = ("cam++", "campplus")  # FunASR's short name for the default model
GE2E_SPEC = "ge2e"

# Where the GE2E weights come from: Resemblyzer's wheel on PyPI, pinned by version and hash.
RESEMBLYZER_VERSION = "0.1.4"
RESEMBLYZER_WHEEL = f"Resemblyzer-{RESEMBLYZER_VERSION}-py3-none-any.whl"
RESEMBLYZER_WHEEL_SHA256 = "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"
GE2E_WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
_WHEEL_MEMBERS = {"resemblyzer/pretrained.pt": "pretrained.pt",
                  f"Resemblyzer-{RESEMBLYZER_VERSION}.dist-info/LICENSE": "LICENSE"}

# GE2E's front end, as Resemblyzer trained it (its hparams.py): 40 mel bands of 16 kHz audio,
# 25 ms windows every 10 ms, a power (not log) spectrogram, input raised to -30 dBFS when quieter.
GE2E_MELS = 40
GE2E_N_FFT = RATE * 25 // 1000
GE2E_HOP = RATE * 10 // 1000
GE2E_TARGET_DBFS = -30.0

BATCH_WINDOWS = 64  # windows per network call: bounds activation memory on long audio


class SpeakerEncoder:
    """What diarization needs from a backend: embeddings of windows of one recording."""

    name: str = ""
    fingerprint: str = ""  # changes whenever the embeddings could change (job fingerprint)
    dim: int = 0
    # `auto`'s threshold for this encoder: the mean cosine similarity of windows at or above which
    # two clusters are one voice (see docs/speakers.md for how each was chosen)
    default_threshold: float = 0.5

    def prepare(self, samples: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """The recording as this encoder wants it (GE2E levels the volume); spans are the speech
        that will be embedded, so silence does not weigh in."""
        return samples

    def embed_batch(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) of equal length -> (batch, dim), not yet normalised."""
        raise NotImplementedError

    def embed_windows(self, samples: np.ndarray, windows: Sequence[tuple[int, int]]) -> np.ndarray:
        """One unit-length embedding per [start, end) sample window, as (len(windows), dim)
        float32. Windows of equal length run together in batches of BATCH_WINDOWS, so the cost
        and memory per window do not grow with the recording."""
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        if not len(windows):
            return out
        audio = self.prepare(np.asarray(samples, dtype=np.float32), windows)
        by_length: dict[int, list[int]] = {}
        for index, (start, end) in enumerate(windows):
            by_length.setdefault(end - start, []).append(index)
        with torch.inference_mode():
            for _, indices in sorted(by_length.items()):
                for first in range(0, len(indices), BATCH_WINDOWS):
                    chunk = indices[first:first + BATCH_WINDOWS]
                    batch = torch.from_numpy(np.stack([audio[windows[i][0]:windows[i][1]] for i in chunk]))
                    out[chunk] = self.embed_batch(batch).float().cpu().numpy()
        return normalize(out)

    def embed_clip(self, samples: np.ndarray, window_s: float = 1.5, shift_s: float = 0.75) -> np.ndarray:
        """One embedding for a whole clip of one voice (a named reference): the normalised mean
        of its windows' embeddings, as GE2E builds an utterance embedding."""
        size, shift = int(window_s * RATE), int(shift_s * RATE)
        total = len(samples)
        if total == 0:
            raise ValueError("a reference clip holds no audio")
        windows = [(max(0, min(start, total - size)), min(total, start + size))
                   for start in range(0, max(1, total - size + shift), shift)]
        windows = sorted(set(windows))
        return normalize(self.embed_windows(samples, windows).mean(axis=0, keepdims=True))[0]


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# GE2E (Resemblyzer's weights)


class Ge2eNetwork(torch.nn.Module):
    """The GE2E speaker encoder's network: the names match Resemblyzer's state dict."""

    def __init__(self, mels: int = GE2E_MELS, hidden: int = 256, layers: int = 3, embedding: int = 256):
        super().__init__()
        self.lstm = torch.nn.LSTM(mels, hidden, layers, batch_first=True)
        self.linear = torch.nn.Linear(hidden, embedding)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(batch, frames, mels) power mel -> (batch, embedding), unit length."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


def ge2e_mel_filters() -> torch.Tensor:
    """(mels, n_fft // 2 + 1) Slaney-style mel filters, the ones librosa.filters.mel gives for
    GE2E's parameters (librosa's defaults: Slaney scale, area normalisation)."""
    import torchaudio.functional

    filters = torchaudio.functional.melscale_fbanks(
        n_freqs=GE2E_N_FFT // 2 + 1, f_min=0.0, f_max=RATE / 2, n_mels=GE2E_MELS, sample_rate=RATE,
        norm="slaney", mel_scale="slaney")
    return filters.T.contiguous()


def ge2e_mel(audio: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """(batch, samples) -> (batch, frames, mels): the power mel spectrogram Resemblyzer trained
    on (librosa.feature.melspectrogram: centred frames with reflected edges as librosa padded
    when the model was trained, periodic Hann window, |STFT|^2, mel filters)."""
    spec = torch.stft(audio, n_fft=GE2E_N_FFT, hop_length=GE2E_HOP, window=torch.hann_window(GE2E_N_FFT),
                      center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
    return torch.matmul(filters, power).transpose(1, 2)


def level_gain(samples: np.ndarray, spans: Sequence[tuple[int, int]], target_dbfs: float) -> float:
    """The gain that raises the speech in `spans` to `target_dbfs` RMS (never lowers it), as
    Resemblyzer's preprocessing does for a whole utterance."""
    if not len(spans):
        return 1.0
    energy = sum(float(np.square(samples[s:e], dtype=np.float64).sum()) for s, e in spans)
    count = sum(e - s for s, e in spans)
    rms = np.sqrt(energy / max(1, count))
    if rms <= 0:
        return 1.0
    change_db = target_dbfs - 20 * np.log10(rms)
    return float(10 ** (change_db / 20)) if change_db > 0 else 1.0


class Ge2eEncoder(SpeakerEncoder):
    """Resemblyzer's GE2E encoder on windows of speech; thread-safe (no state kept per call)."""

    name = "ge2e"
    dim = 256
    default_threshold = 0.55  # chosen on real voices: docs/speakers.md

    def __init__(self, weights: Path, device: torch.device = torch.device("cpu")):
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state", checkpoint)
        network = Ge2eNetwork()
        # The checkpoint also holds GE2E's training-only similarity scale and bias.
        network.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
        self.network = network.eval().to(device)
        self.device = device
        self.filters = ge2e_mel_filters().to(device)
        self.weights = weights
        self.fingerprint = f"ge2e/resemblyzer-{RESEMBLYZER_VERSION}/{_sha256(weights)[:12]}"

    def prepare(self, samples: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        gain = level_gain(samples, spans, GE2E_TARGET_DBFS)
        return samples * np.float32(gain) if gain != 1.0 else samples

    def embed_batch(self, audio: torch.Tensor) -> torch.Tensor:
        audio = audio.to(self.device)
        return self.network(ge2e_mel(audio, self.filters))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_fetch_lock = threading.Lock()


def ge2e_weights(cache_dir: Path, explicit: str = "") -> Path:
    """The path of Resemblyzer's `pretrained.pt`, found or fetched once.

    In order: an explicit file (`ge2e:/path/pretrained.pt`); an installed `resemblyzer` package
    (located without importing it); the copy in `cache_dir/ge2e-resemblyzer-0.1.4`; else pip
    downloads the pinned wheel (through the user's own pip configuration: index, mirror, proxy)
    and only `pretrained.pt` and the licence are kept from it. The wheel's and the weights' SHA-256
    are checked, so a different file is never used silently."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / "pretrained.pt"
        if not path.is_file():
            raise ModelLoadError(f"GE2E weights {path} do not exist")
        return path
    spec = importlib.util.find_spec("resemblyzer")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "pretrained.pt"
            if candidate.is_file() and _sha256(candidate) == GE2E_WEIGHTS_SHA256:
                return candidate
    target = cache_dir / f"ge2e-resemblyzer-{RESEMBLYZER_VERSION}"
    with _fetch_lock:
        if (target / "pretrained.pt").is_file():
            return target / "pretrained.pt"
        log.info("fetching the GE2E speaker encoder (resemblyzer %s wheel, 15 MB) from PyPI with pip "
                 "(first use only)", RESEMBLYZER_VERSION)
        swap_in(target, _fill_from_wheel, lambda d: (d / "pretrained.pt").is_file())
    return target / "pretrained.pt"


def _fill_from_wheel(staging: Path) -> None:
    with tempfile.TemporaryDirectory(dir=staging.parent) as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "-d", download,
                   f"resemblyzer=={RESEMBLYZER_VERSION}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"})
        wheel = Path(download) / RESEMBLYZER_WHEEL
        if done.returncode != 0 or not wheel.is_file():
            raise ModelLoadError(
                f"pip could not download resemblyzer=={RESEMBLYZER_VERSION} for the GE2E speaker "
                f"encoder: {(done.stderr or done.stdout).strip()[-500:]}. Install it "
                f"(`pip install --no-deps resemblyzer=={RESEMBLYZER_VERSION}`), or set speaker_model "
                "to ge2e:/path/to/pretrained.pt or to a CAM++ model directory.")
        if _sha256(wheel) != RESEMBLYZER_WHEEL_SHA256:
            raise ModelLoadError(f"the downloaded {RESEMBLYZER_WHEEL} does not have the expected SHA-256")
        with zipfile.ZipFile(wheel) as archive:
            for member, name in _WHEEL_MEMBERS.items():
                (staging / name).write_bytes(archive.read(member))
    if _sha256(staging / "pretrained.pt") != GE2E_WEIGHTS_SHA256:
        raise ModelLoadError("the GE2E weights in the resemblyzer wheel do not have the expected SHA-256")


# ---------------------------------------------------------------------------------------------
# CAM++ (FunASR)


class CamppEncoder(SpeakerEncoder):
    """FunASR's CAM++ on windows of speech. Calls are serialised: BatchNorm in eval mode holds
    no state, but one model on one device should not run two batches at once."""

    name = "campplus"
    # FunASR joins CAM++ clusters whose centroids are 0.78 alike; with 1.5 s windows about 0.6
    # alike within a voice, that is a mean pairwise similarity near 0.45. Not measured here (no
    # real CAM++ weights on the development machines): see docs/speakers.md.
    default_threshold = 0.45

    def __init__(self, spec: str, directory: Path, model: torch.nn.Module, device: torch.device):
        from funasr.models.campplus.utils import extract_feature

        self.spec = spec
        self.directory = directory
        self.model = model.eval()
        self.device = device
        self._features = extract_feature
        self._lock = threading.Lock()
        with torch.inference_mode():
            # FunASR's front end always gives 80 fbank bins; the output size is the model's own.
            probe = self.model(torch.zeros(1, 150, 80, device=device))
        self.dim = int(probe.shape[-1])
        weights = sorted(p for p in directory.iterdir() if p.suffix in (".pt", ".bin"))
        digest = hashlib.sha256("".join(_sha256(p) for p in weights).encode()).hexdigest()
        self.fingerprint = f"campplus/{digest[:12]}"  # the weights, wherever they were found

    def embed_batch(self, audio: torch.Tensor) -> torch.Tensor:
        # FunASR's own front end for CAM++: Kaldi fbank (80 bins), minus its mean, per window.
        features, _, _ = self._features(list(audio))
        with self._lock:
            return self.model(features.to(self.device, torch.float32))


CAMPPLUS_MODEL = ModelKind(
    label="speaker model", class_names=("CAMPPlus",), random_build=CAMPPLUS,
    advice=("Set speaker_model to a local CAM++ directory, to ge2e for the GE2E encoder whose weights "
            "come from PyPI, or to random:tiny to exercise the code path."))


def load_campplus(spec: str, device: str | torch.device, cache_dir: Path) -> CamppEncoder:
    """CAM++ from `random:SIZE`, a hub id (`cam++` is FunASR's alias for the default) or a local
    directory in the ModelScope layout."""
    if spec.strip().lower() in CAMPPLUS_ALIASES:
        spec = DEFAULT_SPEAKER_MODEL
    target = resolve_device(device)
    with contextlib.redirect_stdout(io.StringIO()):
        import_funasr()
        from funasr.models.campplus import model as _campplus  # noqa: F401  (registers CAMPPlus)
    local = Path(spec).expanduser()
    if local.is_dir() and not (local / "model.pt").is_file():
        # The real CAM++ folder names its weights (campplus_cn_common.bin) in configuration.json,
        # which the shared resolver, knowing only model.pt, would refuse.
        model, directory = _build_local(local.resolve(), target), local.resolve()
    else:
        built = build_funasr_model(spec, CAMPPLUS_MODEL, target, cache_dir)
        model, directory = built.model, built.directory
    return CamppEncoder(spec, directory, model, target)


def _build_local(directory: Path, device: torch.device) -> torch.nn.Module:
    if not (directory / "config.yaml").is_file() or not (directory / "configuration.json").is_file():
        raise ModelLoadError(f"speaker model directory {directory} lacks config.yaml or configuration.json")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model, _ = import_funasr().AutoModel.build_model(
                model=str(directory), device=str(device), ncpu=torch.get_num_threads(),
                disable_update=True, disable_log=True)
    except Exception as exc:  # noqa: BLE001 - FunASR raises many types on a bad directory
        raise ModelLoadError(f"FunASR could not load the speaker model in {directory}: {exc}") from exc
    if type(model).__name__ != "CAMPPlus":
        raise ModelLoadError(f"{directory} holds a {type(model).__name__}, but the speaker model must be "
                             f"a CAMPPlus model such as {DEFAULT_SPEAKER_MODEL}")
    return model.eval()


# ---------------------------------------------------------------------------------------------


def load_speaker_encoder(spec: str, device: str | torch.device, cache_dir: Path) -> SpeakerEncoder:
    """`speaker_model`: a CAM++ hub id (default), `cam++`, a local CAM++ directory,
    `random:tiny|large` (random CAM++), `ge2e` or `ge2e:/path/to/pretrained.pt`.
    `cache_dir` is the project's cache (random and GE2E models go to its models/)."""
    started = time.perf_counter()
    target = resolve_device(device)
    text = spec.strip()
    if text.lower() == GE2E_SPEC or text.lower().startswith(GE2E_SPEC + ":"):
        explicit = text[len(GE2E_SPEC) + 1:] if ":" in text else ""
        encoder: SpeakerEncoder = Ge2eEncoder(ge2e_weights(cache_dir / "models", explicit), target)
    else:
        encoder = load_campplus(text, target, cache_dir)
    log.info("speaker encoder %s ready (%s, %d-d) in %.1f s", spec, encoder.name, encoder.dim,
             time.perf_counter() - started)
    return encoder
