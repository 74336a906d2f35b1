"""Make real audio files in every format the product promises, with PyAV and soundfile."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile

# extension -> (container format for PyAV, codec) ; None means written by soundfile
FORMATS: dict[str, tuple[str, str] | None] = {
    "wav": None,
    "flac": None,
    "ogg": None,
    "mp3": None,
    "m4a": ("mp4", "aac"),
    "aac": ("adts", "aac"),
    "mp4": ("mp4", "aac"),
    "webm": ("webm", "libopus"),
    "opus": ("ogg", "libopus"),
}


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write float samples, shape (n,) or (n, channels), in the format named by the extension."""
    ext = path.suffix.lstrip(".")
    spec = FORMATS[ext]
    if spec is None:
        subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[ext]
        soundfile.write(path, samples, rate, subtype=subtype)
        return path
    container_format, codec = spec
    frames = samples if samples.ndim == 2 else samples[:, None]
    layout = "mono" if frames.shape[1] == 1 else "stereo"
    out_rate = 48000 if codec == "libopus" else rate
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=out_rate, layout=layout)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_rate)
        planar = np.ascontiguousarray(frames.T.astype(np.float32))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
