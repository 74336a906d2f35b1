"""Diarization error rate on conversations built from real recordings of different speakers.

    python -m benchmarks.der [--speaker-model ge2e] [--vad oracle|silero] [--extra-voices]

Each conversation is a script of turns cut from the vendored recordings in tests/audio (three
Mandarin speakers; one recording split at a pause gives two turns of one speaker), with pauses
between turns. The reference is the known turn boundaries. `--extra-voices` adds English voices
that ship inside the installed Gradio package (two clips of one speaker among them), for more
speakers than tests/audio holds.

DER = (missed speech + false alarm + speaker confusion) / reference speech, scored on 10 ms
frames after the best one-to-one mapping of found to true speakers (Hungarian), with no collar
unless asked. The tests (tests/test_speakers.py) use the same builder and scorer.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TEST_AUDIO = ROOT / "tests" / "audio"
RATE = 16000
VOICES = {"A": "asr_example_zh.wav", "B": "funasr_llamacpp_sample.wav", "C": "mid_8s.wav"}


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    speaker: str


@dataclass
class Conversation:
    name: str
    samples: np.ndarray
    turns: list[Turn]

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(t.speaker for t in self.turns))

    @property
    def regions(self) -> list[tuple[float, float]]:
        """The true speech regions: the turns themselves (an oracle VAD)."""
        return [(t.start_s, t.end_s) for t in self.turns]


@dataclass
class DerScore:
    miss_s: float
    false_alarm_s: float
    confusion_s: float
    speech_s: float

    @property
    def der(self) -> float:
        return (self.miss_s + self.false_alarm_s + self.confusion_s) / self.speech_s if self.speech_s else 0.0


def load(path: Path) -> np.ndarray:
    import soundfile

    from asr.audio.decode import to_mono_16k

    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except Exception:  # noqa: BLE001 - mp3 through PyAV when libsndfile cannot
        import av

        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate = stream.rate
            samples = np.concatenate([frame.to_ndarray().mean(axis=0) for frame in container.decode(stream)])
    return to_mono_16k(samples, rate)


def split_at_pause(samples: np.ndarray, low: float = 0.4, high: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of a recording, cut at its quietest 50 ms between `low` and `high` of its length."""
    frame = RATE // 20
    first, last = int(len(samples) * low) // frame, int(len(samples) * high) // frame
    energy = [float(np.square(samples[i * frame:(i + 1) * frame]).mean()) for i in range(first, last)]
    cut = (first + int(np.argmin(energy))) * frame + frame // 2
    return samples[:cut], samples[cut:]


def build(name: str, script: Sequence[tuple[str, np.ndarray]], pauses: Sequence[float]) -> Conversation:
    """Turns (speaker, samples) joined with the given pauses of silence between them."""
    if len(pauses) != len(script) - 1:
        raise ValueError("one pause between each two turns")
    pieces, turns, at = [], [], 0
    for index, (speaker, samples) in enumerate(script):
        if index:
            gap = int(round(pauses[index - 1] * RATE))
            pieces.append(np.zeros(gap, dtype=np.float32))
            at += gap
        pieces.append(samples.astype(np.float32))
        turns.append(Turn(at / RATE, (at + len(samples)) / RATE, speaker))
        at += len(samples)
    return Conversation(name, np.concatenate(pieces), turns)


def voices(folder: Path = TEST_AUDIO) -> dict[str, np.ndarray]:
    return {speaker: load(folder / file) for speaker, file in VOICES.items()}


def conversations(v: dict[str, np.ndarray]) -> list[Conversation]:
    """The scripted conversations of the tests and this benchmark: turns of 2-10 s, pauses of
    0.2-1.5 s. A1/A2, B1/B2, C1/C2 are one recording split at a pause (one speaker each)."""
    a1, a2 = split_at_pause(v["A"])
    b1, b2 = split_at_pause(v["B"])
    c1, c2 = split_at_pause(v["C"])
    return [
        build("three speakers, six turns", [("A", a1), ("B", b1), ("C", c1), ("A", a2), ("B", b2), ("C", c2)],
              [0.6, 0.3, 1.2, 0.2, 0.9]),
        build("three speakers, whole recordings", [("C", v["C"]), ("A", v["A"]), ("B", v["B"])], [0.5, 1.5]),
        build("two speakers, back and forth", [("B", b1), ("C", c1), ("B", b2), ("C", c2)], [0.4, 0.8, 0.2]),
        build("two speakers under 15 s", [("A", v["A"]), ("B", v["B"])], [0.7]),
        build("one speaker, two turns", [("C", c1), ("C", c2)], [1.0]),
    ]


def extra_voices() -> dict[str, np.ndarray]:
    """English voices inside the installed Gradio package: two clips of one speaker (D) and one
    clip of another (E)."""
    import gradio

    folder = Path(gradio.__file__).parent / "media_assets" / "audio"
    return {"D1": load(folder / "cate_blanch.mp3"), "D2": load(folder / "cate_blanch_2.mp3"),
            "E": load(folder / "heath_ledger.mp3")}


def extra_conversations(v: dict[str, np.ndarray], x: dict[str, np.ndarray]) -> list[Conversation]:
    a1, a2 = split_at_pause(v["A"])
    c1, c2 = split_at_pause(v["C"])
    d1, d2 = split_at_pause(x["D1"])
    return [
        build("five speakers", [("A", a1), ("D", d1), ("C", c1), ("E", x["E"]), ("B", v["B"]), ("D", x["D2"]),
                                ("A", a2), ("C", c2)], [0.5, 0.3, 1.0, 0.6, 0.2, 0.8, 0.4]),
        build("one speaker in two recordings", [("D", d1), ("D", x["D2"]), ("D", d2)], [0.6, 0.9]),
    ]


def der(reference: Sequence[Turn], hypothesis: Sequence[tuple[float, float, str]], collar_s: float = 0.0,
        step_s: float = 0.01) -> DerScore:
    """Frame-level DER of `hypothesis` (start_s, end_s, label) against `reference`, after the
    mapping of labels to speakers that maximises agreement. `collar_s` around each reference
    boundary is not scored."""
    from scipy.optimize import linear_sum_assignment

    end = max([t.end_s for t in reference] + [h[1] for h in hypothesis] + [0.0])
    frames = int(np.ceil(end / step_s)) + 1
    true_names = list(dict.fromkeys(t.speaker for t in reference))
    hyp_names = list(dict.fromkeys(h[2] for h in hypothesis))
    truth = np.full(frames, -1)
    guess = np.full(frames, -1)
    scored = np.ones(frames, dtype=bool)
    for turn in reference:
        truth[_frame(turn.start_s, step_s):_frame(turn.end_s, step_s)] = true_names.index(turn.speaker)
        for edge in (turn.start_s, turn.end_s):
            scored[max(0, _frame(edge - collar_s, step_s)):_frame(edge + collar_s, step_s)] = False
    for start, stop, label in hypothesis:
        guess[_frame(start, step_s):_frame(stop, step_s)] = hyp_names.index(label)
    truth, guess = truth[scored], guess[scored]
    both = (truth >= 0) & (guess >= 0)
    agreement = np.zeros((max(1, len(true_names)), max(1, len(hyp_names))))
    np.add.at(agreement, (truth[both], guess[both]), 1)
    rows, cols = linear_sum_assignment(-agreement)
    matched = agreement[rows, cols].sum()
    return DerScore(miss_s=float(((truth >= 0) & (guess < 0)).sum() * step_s),
                    false_alarm_s=float(((truth < 0) & (guess >= 0)).sum() * step_s),
                    confusion_s=float((both.sum() - matched) * step_s),
                    speech_s=float((truth >= 0).sum() * step_s))


def _frame(seconds: float, step_s: float) -> int:
    return int(round(seconds / step_s))


def silero_regions(samples: np.ndarray) -> list[tuple[float, float]]:
    from asr.speech.vad import SileroVad

    return [(s / RATE, e / RATE) for s, e in SileroVad().detect(samples)]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def random_conversations(pool: dict[str, list[np.ndarray]], count: int, seed: int = 7) -> list[Conversation]:
    """`count` conversations of 1-5 speakers drawn with a fixed seed: each speaker's pieces
    (2-4 s, cut at pauses) in a random order, random pauses of 0.2-1.5 s."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        size = int(rng.integers(1, min(5, len(pool)) + 1))
        speakers = list(rng.choice(sorted(pool), size=size, replace=False))
        items = [(speaker, piece) for speaker in speakers for piece in pool[speaker]]
        order = rng.permutation(len(items))
        chosen = [items[i] for i in order[:int(rng.integers(min(len(items), 2), len(items) + 1))]]
        out.append(build(f"random {index}", chosen, list(rng.uniform(0.2, 1.5, size=len(chosen) - 1))))
    return out


def pieces(samples: np.ndarray, longest_s: float = 5.0) -> list[np.ndarray]:
    """A recording cut at pauses into pieces of at most about `longest_s` (each at least 1.8 s)."""
    if len(samples) <= longest_s * RATE:
        return [samples] if len(samples) >= 1.8 * RATE else []
    first, second = split_at_pause(samples)
    return pieces(first, longest_s) + pieces(second, longest_s)


def pyannote_sample(cache: Path) -> Conversation:
    """The 30 s two-speaker meeting excerpt that pyannote.audio 4.0.7 ships in its wheel (MIT),
    with its reference turns (short, overlapping ones included). pip fetches the wheel once."""
    import zipfile

    wheel = cache / "pyannote_audio-4.0.7-py3-none-any.whl"
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                        "pyannote.audio==4.0.7"], check=True, timeout=600)
    with zipfile.ZipFile(wheel) as archive:
        audio = archive.read("pyannote/audio/sample/sample.wav")
        rttm = archive.read("pyannote/audio/sample/sample.rttm").decode()
    import io

    import soundfile

    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    turns = []
    for line in rttm.splitlines():
        fields = line.split()
        start, duration = float(fields[3]), float(fields[4])
        turns.append(Turn(start, start + duration, fields[7]))
    return Conversation("pyannote meeting sample (overlaps)", samples, sorted(turns, key=lambda t: t.start_s))


def _union(turns: Sequence[Turn]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted((t.start_s, t.end_s) for t in turns):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _speed(encoder, convs: list[Conversation], seconds: float, threshold: float) -> int:
    from asr.text.speakers import SpeakerOptions, cluster, diarize, speech_windows

    script, pauses = [], []
    while sum(len(s) for _, s in script) / RATE < seconds:
        for conv in convs:
            for turn in conv.turns:
                script.append((turn.speaker, conv.samples[int(turn.start_s * RATE):int(turn.end_s * RATE)]))
                pauses.append(0.5)
    long = build("long", script, pauses[:len(script) - 1])
    windows = speech_windows(long.regions, len(long.samples))
    started = time.perf_counter()
    embeddings = encoder.embed_windows(long.samples, windows)
    embed_s = time.perf_counter() - started
    audio_s = len(long.samples) / RATE
    print(f"{encoder.name} ({encoder.fingerprint}): {audio_s:.0f} s of audio, {len(windows)} windows; "
          f"{cpu_name()}")
    print(f"embedding: {embed_s:.2f} s, {audio_s / embed_s:.0f}x real time")
    for count in (None, 3):
        started = time.perf_counter()
        labels, method = cluster(embeddings, SpeakerOptions(count=count, threshold=threshold))
        took = time.perf_counter() - started
        print(f"clustering ({method}, {len(set(labels))} speakers): {took:.2f} s")
    started = time.perf_counter()
    diarize(long.samples, long.regions, encoder, SpeakerOptions(threshold=threshold))
    took = time.perf_counter() - started
    print(f"whole diarize (auto): {took:.2f} s, {audio_s / took:.0f}x real time")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speaker-model", default="ge2e", help="ge2e (default), a CAM++ id or directory")
    parser.add_argument("--vad", choices=("oracle", "silero"), default="oracle",
                        help="speech regions: the true turns (default) or Silero's")
    parser.add_argument("--extra-voices", action="store_true", help="add two English speakers from Gradio")
    parser.add_argument("--random", type=int, default=0, metavar="N", help="add N random conversations")
    parser.add_argument("--pyannote-sample", action="store_true",
                        help="add pyannote.audio's 30 s meeting sample (pip downloads its wheel once)")
    parser.add_argument("--collar", type=float, default=0.0, help="seconds not scored around boundaries")
    parser.add_argument("--threshold", type=float, default=None,
                        help="auto threshold (default: the encoder's)")
    parser.add_argument("--spectral-min", type=int, default=None,
                        help="auto: windows from which spectral clustering is used (0: always; a large "
                             "number: never)")
    parser.add_argument("--quiet", action="store_true", help="totals only")
    parser.add_argument("--speed", type=float, default=0.0, metavar="SECONDS",
                        help="instead: time diarization of one conversation this long (the scripted ones "
                             "repeated), embedding and clustering apart")
    args = parser.parse_args(argv)

    import torch

    from asr.text.speaker_encoders import load_speaker_encoder
    from asr.text.speakers import SpeakerOptions, diarize

    encoder = load_speaker_encoder(args.speaker_model, "cpu", ROOT / ".cache")
    threshold = encoder.default_threshold if args.threshold is None else args.threshold
    v = voices()
    if args.speed:
        return _speed(encoder, conversations(v), args.speed, threshold)
    convs = conversations(v)
    extra = extra_voices() if args.extra_voices else {}
    if extra:
        convs += extra_conversations(v, extra)
    if args.random:
        pool = {speaker: pieces(samples) for speaker, samples in v.items()}
        if extra:
            pool["D"] = pieces(extra["D1"]) + pieces(extra["D2"])
            pool["E"] = pieces(extra["E"])
        convs += random_conversations(pool, args.random)
    if args.pyannote_sample:
        convs.append(pyannote_sample(ROOT / ".cache" / "bench" / "pyannote"))
    print(f"speaker model {args.speaker_model}, regions {args.vad}, collar {args.collar} s, "
          f"auto threshold {threshold}; {cpu_name()}, {torch.get_num_threads()} torch threads")
    # missed, false alarm, confusion, speech, right counts, seconds
    totals = {"auto": [0.0, 0.0, 0.0, 0.0, 0, 0.0], "N": [0.0, 0.0, 0.0, 0.0, 0, 0.0]}
    for conv in convs:
        regions = _union(conv.turns) if args.vad == "oracle" else silero_regions(conv.samples)
        row = [f"{conv.name:34s} {len(conv.samples) / RATE:5.1f} s, {len(conv.speakers)} true"]
        for mode, count in (("auto", None), ("N", len(conv.speakers))):
            options = SpeakerOptions(count=count, threshold=threshold)
            if args.spectral_min is not None:
                options = dataclasses.replace(options, spectral_min=args.spectral_min)
            started = time.perf_counter()
            result = diarize(conv.samples, regions, encoder, options)
            took = time.perf_counter() - started
            score = der(conv.turns, [(t.start_s, t.end_s, t.speaker) for t in result.turns], args.collar)
            total = totals[mode]
            total[0] += score.miss_s
            total[1] += score.false_alarm_s
            total[2] += score.confusion_s
            total[3] += score.speech_s
            total[4] += len(result.speakers) == len(conv.speakers)
            total[5] += took
            row.append(f"{mode}: {len(result.speakers)} found, DER {score.der:6.1%} "
                       f"({result.method}, {took:.2f} s)")
        if not args.quiet:
            print(" | ".join(row))
    audio_s = sum(len(c.samples) for c in convs) / RATE
    for mode, (miss, false_alarm, confusion, speech, right, took) in totals.items():
        print(f"{mode:4s}: DER {(miss + false_alarm + confusion) / speech:.1%} (missed {miss / speech:.1%}, "
              f"false alarm {false_alarm / speech:.1%}, confusion {confusion / speech:.1%}) over "
              f"{len(convs)} conversations ({speech:.1f} s of speech); count right in {right}/{len(convs)}; "
              f"{audio_s / took:.0f}x real time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
