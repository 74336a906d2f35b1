"""Cut the audio (and a video's picture) of chosen sentences out of the original recording.

FunClip's users check a transcript by ear and keep the parts they want; this does the cutting
for the UI's "export clip". The chosen sentences' spans are sorted, padded a little and merged
where they touch, then joined one after another into one clip:

- Audio is decoded with PyAV at the file's own sample rate and channels and written as 16-bit WAV:
  sample-exact cuts, playable everywhere, no second lossy encoding.
- Video is copied, not re-encoded: its packets are remuxed into a file of the same container.
  A copied stream can only start at a keyframe, so each span is widened to the keyframe at or
  before its start and to the next keyframe after its end (the `Clip` says where it really cut);
  the sound in the video is copied over the same widened range, so picture and sound stay together.
  Containers PyAV cannot write back, or streams without keyframe flags, raise ClipError.

Reads only the file it is given; the caller chooses where the clip is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import soundfile

log = logging.getLogger(__name__)

PAD_S = 0.05  # kept on each side of a sentence, so its first and last sounds are not clipped
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".webm": "webm", ".mkv": "matroska"}


class ClipError(ValueError):
    """The clip cannot be made; the message says why in plain words."""


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Clip:
    path: Path
    kind: str  # "audio" or "video"
    spans: list[Span] = field(default_factory=list)  # what was cut, in the source's time
    duration_s: float = 0.0


def merge_spans(spans: Iterable[tuple[float, float] | Span], pad_s: float = PAD_S,
                duration_s: float | None = None) -> list[Span]:
    """Spans sorted, padded by `pad_s`, kept inside [0, duration_s] and merged where they
    overlap or touch. Empty or reversed spans are dropped."""
    cleaned = []
    for span in spans:
        start, end = (span.start_s, span.end_s) if isinstance(span, Span) else span
        if end <= start:
            continue
        start, end = max(0.0, float(start) - pad_s), float(end) + pad_s
        if duration_s is not None:
            end = min(end, duration_s)
        if end > start:
            cleaned.append(Span(start, end))
    merged: list[Span] = []
    for span in sorted(cleaned, key=lambda s: s.start_s):
        if merged and span.start_s <= merged[-1].end_s:
            merged[-1] = Span(merged[-1].start_s, max(merged[-1].end_s, span.end_s))
        else:
            merged.append(span)
    return merged


def has_video(path: str | Path) -> bool:
    """Whether the file has a picture worth cutting (not just an album cover)."""
    try:
        with av.open(str(path)) as container:
            cover = av.stream.Disposition.attached_pic
            return any(not s.disposition & cover for s in container.streams.video)
    except (av.error.FFmpegError, OSError):
        return False


def cut_audio(source: str | Path, spans: Sequence[Span], target: str | Path) -> Clip:
    """The spans' sound, joined, as a 16-bit WAV at the source's own rate and channels."""
    if not spans:
        raise ClipError("choose at least one sentence to cut")
    target = Path(target)
    try:
        with av.open(str(source)) as container:
            if not container.streams.audio:
                raise ClipError("the file has no sound to cut")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            channels = stream.codec_context.channels or 1
            layout = "mono" if channels == 1 else "stereo" if channels == 2 else stream.layout.name
            resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
            written = 0
            with soundfile.SoundFile(str(target), "w", samplerate=rate, channels=channels,
                                     subtype="PCM_16", format="WAV") as out:
                bounds = [(round(s.start_s * rate), round(s.end_s * rate)) for s in spans]
                position = 0  # samples decoded so far: the timeline the spans are counted on
                for frame in container.decode(stream):
                    for converted in resampler.resample(frame):
                        written += _write_inside(out, converted, position, bounds, channels)
                        position += converted.samples
                    if position >= bounds[-1][1]:
                        break
                for converted in resampler.resample(None):
                    written += _write_inside(out, converted, position, bounds, channels)
                    position += converted.samples
    except av.error.FFmpegError as exc:
        target.unlink(missing_ok=True)
        raise ClipError(f"could not read the audio to cut ({exc})") from None
    if written == 0:
        target.unlink(missing_ok=True)
        raise ClipError("the chosen sentences lie outside the audio")
    return Clip(target, "audio", list(spans), written / rate)


def _write_inside(out: soundfile.SoundFile, frame: av.AudioFrame, position: int,
                  bounds: list[tuple[int, int]], channels: int) -> int:
    """Write the part of `frame` (starting at sample `position`) inside any of `bounds`."""
    data = frame.to_ndarray().reshape(-1, channels)
    count = 0
    for start, end in bounds:
        a, b = max(start, position), min(end, position + len(data))
        if a < b:
            out.write(data[a - position:b - position])
            count += b - a
    return count


def cut_video(source: str | Path, spans: Sequence[Span], target: str | Path) -> Clip:
    """The spans' picture and sound, joined, copied without re-encoding into `target` (the
    source's container). Spans widen to keyframes; see the module docstring."""
    if not spans:
        raise ClipError("choose at least one sentence to cut")
    source, target = Path(source), Path(target)
    container_format = VIDEO_CONTAINERS.get(source.suffix.lower())
    if container_format is None:
        raise ClipError(f"video clips are cut from {', '.join(sorted(VIDEO_CONTAINERS))} files, "
                        f"not {source.suffix or 'this kind of file'}")
    try:
        keyframes, video_end = _keyframes(source)
        ranges = _keyframe_ranges(spans, keyframes, video_end)
        _remux(source, target, container_format, ranges)
    except av.error.FFmpegError as exc:
        target.unlink(missing_ok=True)
        raise ClipError(f"could not copy the video ({exc})") from None
    return Clip(target, "video", ranges, sum(r.duration_s for r in ranges))


def _keyframes(source: Path) -> tuple[list[float], float]:
    """Keyframe times of the first video stream and where its last frame ends, from its packets
    alone (no decoding)."""
    with av.open(str(source)) as container:
        if not container.streams.video:
            raise ClipError("the file has no picture to cut")
        stream = container.streams.video[0]
        times, end = [], 0.0
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            end = max(end, t + float((packet.duration or 0) * packet.time_base))
            if packet.is_keyframe:
                times.append(t)
    if not times:
        raise ClipError("the video marks no keyframes, so it cannot be cut without re-encoding")
    return sorted(times), end


def _keyframe_ranges(spans: Sequence[Span], keyframes: list[float], end_s: float) -> list[Span]:
    """Each span widened to keyframes (its start to the one at or before it, its end to the
    first one after it, or the video's end), overlapping ones merged."""
    widened = []
    for span in spans:
        before = [t for t in keyframes if t <= span.start_s + 1e-6]
        after = [t for t in keyframes if t >= span.end_s - 1e-6 and t > span.start_s]
        start = before[-1] if before else keyframes[0]
        widened.append(Span(start, after[0] if after else end_s))
    return merge_spans(widened, pad_s=0.0)


def _remux(source: Path, target: Path, container_format: str, ranges: list[Span]) -> None:
    """Copy the packets of `ranges` (keyframe-aligned) one after another into `target`."""
    with av.open(str(source)) as inp, av.open(str(target), "w", format=container_format) as out:
        video = inp.streams.video[0]
        streams = [video] + ([inp.streams.audio[0]] if inp.streams.audio else [])
        outputs = {s.index: out.add_stream_from_template(s) for s in streams}
        offset = 0.0  # where the next range starts in the clip, seconds
        last_dts: dict[int, int] = {}
        for span in ranges:
            inp.seek(int(span.start_s / video.time_base), stream=video, backward=True, any_frame=False)
            finished: set[int] = set()
            shift = None  # seconds added to this range's times
            for packet in inp.demux(*streams):
                index = packet.stream.index
                if packet.pts is None or index in finished:
                    continue
                t = float(packet.pts * packet.time_base)
                if t >= span.end_s - 1e-6:
                    finished.add(index)
                    if len(finished) == len(streams):
                        break
                    continue
                if t < span.start_s - 1e-6:
                    continue  # before the range's keyframe (sound demuxed ahead of the picture)
                if shift is None:
                    # The decode delay (pts - dts) of B-frames would put the first dts before the
                    # previous range's last one: leave that much room.
                    delay = (packet.pts - packet.dts) * packet.time_base if packet.dts is not None else 0
                    shift = offset + max(0.0, float(delay)) - span.start_s
                _retime(packet, shift, last_dts)
                packet.stream = outputs[index]
                out.mux(packet)
            offset = span.end_s + (shift or 0.0)


def _retime(packet: av.Packet, shift_s: float, last_dts: dict[int, int]) -> None:
    """Move the packet by `shift_s`, keeping each stream's dts rising (muxers refuse anything
    else; Matroska leaves the first dts of a range unknown)."""
    base: Fraction = packet.time_base
    move = round(shift_s / base)
    index = packet.stream.index
    packet.pts += move
    dts = packet.pts if packet.dts is None and index not in last_dts else (
        last_dts[index] + 1 if packet.dts is None else packet.dts + move)
    if index in last_dts and dts <= last_dts[index]:
        dts = last_dts[index] + 1
    packet.dts = dts
    packet.pts = max(packet.pts, dts)
    last_dts[index] = dts
