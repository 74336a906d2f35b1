"""Clips of chosen sentences (asr.text.clips): sample-exact audio, video copied at keyframes.

Videos are made here with PyAV (H.264 with B-frames + AAC in MP4, VP9 + Opus in WebM), each
frame a flat grey whose level encodes the frame's number, so the frames of a clip can be checked
one by one against the source's.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile

from asr.text import clips
from asr.text.clips import ClipError, Span

FPS = 25
GOP = 12  # a keyframe every 0.48 s


def _level(index: int) -> int:
    return 20 + (index * 3) % 200


def _make_video(path, vcodec: str, acodec: str, seconds: float = 6.0, rate: int = 48000) -> np.ndarray:
    """A test video; returns its sound (mono float32 at `rate`) as written."""
    t = np.arange(int(seconds * rate)) / rate
    sound = (0.3 * np.sin(2 * np.pi * (220 + 60 * t) * t)).astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=FPS)
        video.width, video.height, video.pix_fmt, video.gop_size = 64, 48, "yuv420p", GOP
        if vcodec == "libx264":
            video.codec_context.options = {"bf": "2", "sc_threshold": "0"}
        audio = out.add_stream(acodec, rate=rate)
        audio.layout = "mono"
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), _level(i), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        size = audio.codec_context.frame_size or 1024
        for k in range(0, len(sound), size):
            frame = av.AudioFrame.from_ndarray(sound[k:k + size].reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, k
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    return sound


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {suffix: (folder / f"talk.{suffix}", _make_video(folder / f"talk.{suffix}", v, a))
            for suffix, v, a in [("mp4", "libx264", "aac"), ("webm", "libvpx-vp9", "libopus")]}


def test_spans_are_sorted_padded_merged_and_kept_inside_the_audio():
    merged = clips.merge_spans([(4.0, 5.0), (1.0, 2.0), (1.9, 3.0), (6.0, 6.0), (9.5, 12.0)], pad_s=0.1,
                               duration_s=10.0)
    assert merged == [Span(0.9, 3.1), Span(3.9, 5.1), Span(9.4, 10.0)]
    assert clips.merge_spans([(0.02, 0.5)], pad_s=0.05)[0].start_s == 0.0


def test_audio_clip_is_the_source_samples_of_the_chosen_spans(reference_wavs, tmp_path):
    wav = reference_wavs[0]
    source, rate = soundfile.read(wav, dtype="int16")
    spans = [Span(0.5, 1.25), Span(2.0, 2.5)]
    clip = clips.cut_audio(wav, spans, tmp_path / "clip.wav")
    cut, cut_rate = soundfile.read(clip.path, dtype="int16")
    assert cut_rate == rate and clip.kind == "audio"
    expected = np.concatenate([source[round(s.start_s * rate):round(s.end_s * rate)] for s in spans])
    assert np.array_equal(cut, expected)
    assert clip.duration_s == pytest.approx(1.25)


def test_audio_clip_keeps_the_rate_and_channels(tmp_path):
    rate = 44100
    stereo = np.stack([np.sin(np.arange(rate * 3) / 30), np.cos(np.arange(rate * 3) / 50)], axis=1) * 0.4
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo.astype(np.float32), rate, subtype="PCM_16")
    clip = clips.cut_audio(path, [Span(1.0, 2.0)], tmp_path / "clip.wav")
    cut, cut_rate = soundfile.read(clip.path, dtype="float32")
    assert cut_rate == rate and cut.shape == (rate, 2)
    original, _ = soundfile.read(path, dtype="float32")
    assert np.allclose(cut, original[rate:2 * rate], atol=1 / 32767)


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_video_clip_is_copied_from_keyframe_to_keyframe(videos, tmp_path, suffix):
    path, _ = videos[suffix]
    assert clips.has_video(path)
    spans = clips.merge_spans([(1.0, 1.6), (4.1, 4.5)], pad_s=0.0)
    clip = clips.cut_video(path, spans, tmp_path / f"clip.{suffix}")
    assert clip.kind == "video" and clip.path.suffix == f".{suffix}"
    keyframes = [i / FPS for i in range(0, 150, GOP)]
    for wanted, cut in zip(spans, clip.spans, strict=True):
        assert any(cut.start_s == pytest.approx(k) for k in keyframes)  # started at a keyframe
        assert cut.start_s <= wanted.start_s and cut.end_s >= wanted.end_s  # covers the choice
        assert cut.start_s > wanted.start_s - GOP / FPS - 1e-6  # by at most one group of pictures
    expected = [_level(i) for cut in clip.spans
                for i in range(round(cut.start_s * FPS), round(cut.end_s * FPS))]
    with av.open(str(clip.path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        sound = sum(f.samples for f in av.open(str(clip.path)).decode(audio=0))
    levels = [int(round(float(f.mean()))) for f in frames]
    assert len(levels) == len(expected)
    assert np.abs(np.array(levels) - np.array(expected)).max() <= 3, (levels, expected)
    assert sound / 48000 == pytest.approx(clip.duration_s, abs=0.1)  # the sound came along


def test_audio_of_a_video_is_cut_at_the_sentence_times(videos, tmp_path):
    path, written = videos["mp4"]
    clip = clips.cut_audio(path, [Span(2.0, 3.0)], tmp_path / "talk.wav")
    cut, rate = soundfile.read(clip.path, dtype="float32")
    assert rate == 48000 and len(cut) == 48000
    with av.open(str(path)) as container:  # the decoded sound, as the engine counts time
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert np.corrcoef(cut, decoded[2 * rate:3 * rate])[0, 1] > 0.99


def test_what_cannot_be_cut_says_why(videos, reference_wavs, tmp_path):
    with pytest.raises(ClipError, match="at least one"):
        clips.cut_audio(reference_wavs[0], [], tmp_path / "a.wav")
    with pytest.raises(ClipError, match="no picture"):
        clips.cut_video(_renamed(reference_wavs[0], tmp_path), [Span(0, 1)], tmp_path / "b.mp4")
    with pytest.raises(ClipError, match="cut from"):
        clips.cut_video(reference_wavs[0], [Span(0, 1)], tmp_path / "b.wav")
    with pytest.raises(ClipError, match="outside"):
        clips.cut_audio(reference_wavs[0], [Span(500.0, 501.0)], tmp_path / "c.wav")
    assert not clips.has_video(reference_wavs[0])
    assert not (tmp_path / "c.wav").exists()


def _renamed(wav, folder):
    """A sound-only file named .mp4 (as users upload them): it has no picture to cut."""
    target = folder / "sound-only.mp4"
    with av.open(str(wav)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for frame in inp.decode(audio=0):
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return target
