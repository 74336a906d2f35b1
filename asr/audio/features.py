"""Fbank + LFR + CMVN through the model's own FunASR frontend, outside the model call.

Computing features ourselves (instead of inside `AutoModel.generate`) is what lets the engine
batch across files, prepare audio on CPU threads while the GPU works, and cache features.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch


class FeatureExtractor:
    """Thread-safe wrapper: the WavFrontend holds no per-call state, only its config and CMVN."""

    def __init__(self, frontend: torch.nn.Module):
        self.frontend = frontend
        self.fingerprint = frontend_fingerprint(frontend)

    @property
    def frames_per_second(self) -> float:
        return 1000.0 / (self.frontend.frame_shift * self.frontend.lfr_n)

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        """16 kHz float32 samples in [-1, 1] -> (frames, feat_dim) float32 features."""
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, :]
        with torch.inference_mode():
            feats, lengths = self.frontend(waveform, torch.tensor([waveform.shape[1]]))
        return feats[0, : int(lengths[0])].contiguous().clone()


def frontend_fingerprint(frontend: torch.nn.Module) -> str:
    """Everything that changes the features: a different model must never reuse stale ones."""
    fields = {
        name: getattr(frontend, name, None)
        for name in ("fs", "window", "n_mels", "frame_length", "frame_shift", "lfr_m", "lfr_n",
                     "dither", "snip_edges", "upsacle_samples")
    }
    cmvn_file = getattr(frontend, "cmvn_file", None)
    fields["cmvn_md5"] = (
        hashlib.md5(Path(cmvn_file).read_bytes()).hexdigest() if cmvn_file else None
    )
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.md5(blob).hexdigest()[:16]
