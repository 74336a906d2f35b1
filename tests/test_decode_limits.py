"""Hostile inputs at the decoder: what one file may cost is bounded before and while it decodes.

Each case is a small file that takes the same path a large attack would (a limit of a few
seconds stands in for input.max_duration_s), decoded by the real decoder, with the process's
own peak memory (VmHWM) measured around it. Also: FFmpeg demuxers that open other files or URLs
(HLS playlists, concat lists) can read a local file when nothing stops them; the decoder's
container allow-list and refused protocols do.
"""

from __future__ import annotations

import http.server
import io
import math
import struct
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from audio_factory import write_audio
from helpers import REFERENCE_WAVS, speechlike
from peak_memory import peak_growth_mb, peak_growth_raising_mb

from asr.audio.decode import (
    TARGET_RATE,
    AudioError,
    DecodeLimits,
    decode_bytes,
    decode_samples,
    probe_seconds,
)
from asr.settings import InputSettings

SHORT = DecodeLimits(max_duration_s=2.0)
BOUND_MB = 100  # what any of these small hostile files may add to the process's peak


def flac_bytes(seconds: float, rate: int = 48000, channels: int = 2) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((int(seconds * rate), channels), dtype=np.float32), rate,
                    format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def with_flac_total_samples(data: bytes, total: int) -> bytes:
    """The FLAC with STREAMINFO's 36-bit total sample count replaced (0: unknown length)."""
    out = bytearray(data)
    info = 8  # "fLaC" + the metadata block header
    out[info + 13] = (out[info + 13] & 0xF0) | ((total >> 32) & 0x0F)
    out[info + 14:info + 18] = struct.pack(">I", total & 0xFFFFFFFF)
    return bytes(out)


def wav_bytes(seconds: float, rate: int, channels: int = 1, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.repeat(mono[:, None], channels, axis=1), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def webm_without_duration(path: Path, seconds: float, layout: str = "stereo") -> bytes:
    """Opus in WebM written in live mode: no duration anywhere in the header."""
    channels = av.AudioLayout(layout).nb_channels
    with av.open(str(path), "w", format="webm", options={"live": "1"}) as container:
        stream = container.add_stream("libopus", rate=48000, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.zeros((channels, int(48000 * seconds)), dtype=np.float32),
                                           format="fltp", layout=layout)
        frame.sample_rate = 48000
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=48000)
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def refused(data: bytes, limits: DecodeLimits, match: str) -> float:
    grown, exc = peak_growth_raising_mb(lambda: decode_bytes(data, "hostile", limits), AudioError)
    assert match in str(exc), str(exc)
    return grown


# ---- length ------------------------------------------------------------------------------------


def test_a_declared_length_past_the_limit_is_refused_before_decoding():
    """The 75-minute FLAC of the issue, in small: its header says 10 s against a 2 s limit."""
    data = flac_bytes(10.0)
    assert refused(data, SHORT, "its header declares 10 s") < BOUND_MB
    # A header claiming hours over a few seconds of audio is refused the same way, at once.
    claims_75_min = with_flac_total_samples(data, 75 * 60 * 48000)
    assert refused(claims_75_min, DecodeLimits(), "its header declares 4500 s") < BOUND_MB


def test_a_header_that_hides_the_length_stops_decoding_at_the_limit():
    """FLAC with an unknown total: decoded in blocks, stopped as soon as it passes 2 s."""
    data = with_flac_total_samples(flac_bytes(10.0), 0)
    assert refused(data, SHORT, "decoding stopped after") < BOUND_MB
    # The same file within a larger limit decodes completely: the limit, not the header, cut it.
    grown, decoded = peak_growth_mb(lambda: decode_bytes(data, "ok", DecodeLimits(max_duration_s=20)))
    assert decoded.duration_s == pytest.approx(10.0, abs=0.01) and grown < BOUND_MB


def test_ffmpeg_formats_without_a_declared_length_stop_at_the_limit_too(tmp_path):
    data = webm_without_duration(tmp_path / "live.webm", 6.0)
    assert refused(data, SHORT, "decoding stopped after") < BOUND_MB
    assert decode_bytes(data, "ok", DecodeLimits(max_duration_s=10)).duration_s == pytest.approx(6.0, abs=0.1)


def test_in_memory_samples_past_the_limit_are_refused_before_resampling():
    grown, exc = peak_growth_raising_mb(
        lambda: decode_samples(np.zeros((48000 * 5, 2), dtype=np.int16), 48000, "mic", SHORT), AudioError)
    assert "too long (5 s" in str(exc) and grown < BOUND_MB


# ---- channels and rates ---------------------------------------------------------------------


def test_too_many_channels_are_refused_on_the_header(tmp_path):
    assert refused(wav_bytes(0.5, 16000, channels=16), DecodeLimits(), "16 channels") < BOUND_MB
    six = webm_without_duration(tmp_path / "surround.webm", 1.0, layout="5.1")  # FFmpeg's path
    two = DecodeLimits(max_channels=2)
    assert refused(six, two, "6 channels; the limit input.max_channels is 2") < BOUND_MB
    assert decode_bytes(six, "ok", DecodeLimits(max_channels=6)).channels == 6


def test_a_rate_above_the_cap_is_refused_and_odd_rates_below_it_decode_in_bounded_memory():
    assert refused(wav_bytes(0.2, 400000), DecodeLimits(), "400000 Hz is above") < BOUND_MB
    lower_cap = DecodeLimits(max_sample_rate_hz=44100)
    assert refused(wav_bytes(0.2, 48000), lower_cap, "input.max_sample_rate_hz") < BOUND_MB
    # The 9.6 KB WAV at 48001 Hz cost +12 GB through torchaudio's dense kernel.
    for rate in (48001, 44101, 16001, 383999, 8001):
        data = wav_bytes(0.1, rate)
        grown, decoded = peak_growth_mb(lambda data=data: decode_bytes(data, "odd.wav"))
        assert len(decoded.samples) == math.ceil(int(0.1 * rate) * TARGET_RATE / rate), rate
        assert decoded.source_rate == rate and grown < BOUND_MB, (rate, grown)


def test_limits_follow_the_input_settings():
    settings = InputSettings(max_duration_s=12.5, max_channels=3, max_sample_rate_hz=96000)
    assert DecodeLimits.from_settings(settings) == DecodeLimits(12.5, 3, 96000)
    assert DecodeLimits.from_settings(InputSettings()) == DecodeLimits()  # same defaults


def test_legal_audio_still_decodes_exactly():
    """Blocks and resampling per block change nothing: a real recording at 16 kHz is bit exact,
    and at 44.1 kHz in stereo it equals the whole-signal conversion of its downmix."""
    path = REFERENCE_WAVS[0]
    samples, rate = soundfile.read(path, dtype="float32")
    assert rate == TARGET_RATE
    np.testing.assert_array_equal(decode_bytes(path.read_bytes(), path.name).samples, samples)
    source = speechlike(7.0, seed=5, rate=44100)  # longer than one decoding block
    stereo = np.stack([source, 0.5 * source], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, 44100, format="WAV", subtype="FLOAT")
    decoded = decode_bytes(buffer.getvalue(), "stereo.wav")
    whole = decode_samples(stereo, 44100, "whole").samples
    assert decoded.channels == 2 and decoded.samples.shape == whole.shape
    assert np.abs(decoded.samples - whole).max() < 1e-5


# ---- demuxers that open other files ----------------------------------------------------------


@pytest.fixture()
def local_recording(tmp_path, monkeypatch) -> Path:
    """A recording in the working folder, where a relative name in a list resolves."""
    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "private.m4a", speechlike(2.0, seed=9), 16000)
    return tmp_path / "private.m4a"


def test_a_concat_list_naming_a_local_file_reads_it_unless_refused(local_recording):
    """Confirmed: FFmpeg's concat demuxer, probed from the upload's bytes alone, opens a file
    named by a relative path. Our decoder refuses the list."""
    listing = b"ffconcat version 1.0\nfile 'private.m4a'\n"
    with av.open(io.BytesIO(listing)) as container:  # what plain PyAV does with the upload
        leaked = sum(frame.samples for frame in container.decode(container.streams.audio[0]))
    assert leaked > 16000  # it read the private recording
    with pytest.raises(AudioError, match="not a readable audio file"):
        decode_bytes(listing, "upload.wav")


def test_an_hls_playlist_naming_a_local_file_is_refused(local_recording):
    """An HLS playlist opened by name (an upload kept as playlist.m3u8) reads the segments it
    names; from bytes FFmpeg does not probe HLS. Both the decoder and the length probe, which
    opens the file by name, refuse it."""
    playlist = (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.0,\n"
                f"{local_recording}\n#EXT-X-ENDLIST\n")
    path = local_recording.parent / "playlist.m3u8"
    path.write_text(playlist, encoding="utf-8")
    with av.open(str(path)) as container:  # plain PyAV, by name: the local file is read
        assert container.format.name == "hls"
        assert sum(frame.samples for frame in container.decode(container.streams.audio[0])) > 16000
    with pytest.raises(AudioError):
        decode_bytes(path.read_bytes(), "playlist.m3u8")
    assert probe_seconds(path) is None


def test_no_list_or_playlist_reaches_the_network(tmp_path):
    """Lists naming a URL of a server on this machine: not one request arrives."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/segment.aac"
        lists = [f"ffconcat version 1.0\nfile '{url}'\n",
                 f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.0,\n{url}\n#EXT-X-ENDLIST\n"]
        for i, text in enumerate(lists):
            with pytest.raises(AudioError):
                decode_bytes(text.encode(), f"list{i}.wav")
            path = tmp_path / f"list{i}.m3u8"
            path.write_text(text, encoding="utf-8")
            assert probe_seconds(path) is None
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []
