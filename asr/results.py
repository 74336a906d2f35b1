"""Plain result records shared by the engine, the UI, the CLI, the wizard and exports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


def join_text(left: str, right: str) -> str:
    """Join two pieces of transcript: Chinese needs no separator; a space keeps Latin words of
    adjacent segments apart."""
    if left and right and left[-1].isascii() and left[-1].isalnum() and right[0].isascii():
        return f"{left} {right}"
    return left + right


@dataclass
class Word:
    """A word with its time in the recording: a Chinese character or a Latin word."""

    start_s: float
    end_s: float
    text: str  # always the recogniser's own token text (number normalisation never touches words)
    speaker: str | None = None  # S1, S2, ... (or a given name) when speakers were asked for


@dataclass
class Segment:
    """A stretch of a transcript with its place in the recording, in faster-whisper's style.

    With punctuation and timestamps these are sentences cut to subtitle size; without, the speech
    segments the model heard. `words` is filled only when timestamps were asked for; `speaker`
    only when speakers were; `raw_text` only when numbers were normalised (ITN), holding the
    text before that, so nothing the recogniser said is lost."""

    start_s: float
    end_s: float
    text: str
    confidence: float = 0.0
    words: list[Word] | None = None
    speaker: str | None = None
    raw_text: str | None = None


@dataclass
class Result:
    """One input's outcome. `error` is None on success, else a message meant for the user."""

    file: str
    text: str = ""
    confidence: float = 0.0
    duration_s: float = 0.0
    decode_s: float = 0.0
    features_s: float = 0.0
    model_s: float = 0.0
    batch_size: int = 0  # the size of the batch this file actually ran in
    backed_off: bool = False  # True when a CUDA out-of-memory forced a smaller batch
    cache_hit: bool = False
    token_ids: list[int] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # the file succeeded, but the user should know
    segments: list[Segment] = field(default_factory=list)
    raw_text: str | None = None  # the text before number normalisation (ITN); None when it was off
    speakers: list[str] | None = None  # the file's speakers in order of first appearance, when asked

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def processing_s(self) -> float:
        return self.decode_s + self.features_s + self.model_s

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio (lower is faster)."""
        return self.processing_s / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self, with_tokens: bool = False) -> dict:
        """Plain data; fields of features that were off (speakers, ITN's raw text, words) are left
        out rather than null, so a result with them off reads as it always did."""
        data = asdict(self)
        if not with_tokens:
            data.pop("token_ids")
        for key in ("raw_text", "speakers"):
            if data[key] is None:
                del data[key]
        for segment in data["segments"]:
            segment["start_s"], segment["end_s"] = round(segment["start_s"], 3), round(segment["end_s"], 3)
            for key in ("speaker", "raw_text"):
                if segment[key] is None:
                    del segment[key]
            if segment["words"] is None:
                del segment["words"]
            else:
                for word in segment["words"]:
                    word["start_s"], word["end_s"] = round(word["start_s"], 3), round(word["end_s"], 3)
                    if word["speaker"] is None:
                        del word["speaker"]
        data["processing_s"] = round(self.processing_s, 4)
        data["rtf"] = round(self.rtf, 5)
        for key in ("duration_s", "decode_s", "features_s", "model_s"):
            data[key] = round(data[key], 4)
        return data


@dataclass
class RunStats:
    """What one transcribe call did, for logs, the wizard and the benchmark's --profile."""

    files: int = 0
    failed: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    wait_s: float = 0.0  # time the model stood idle waiting for prepared input
    decode_s: float = 0.0
    features_s: float = 0.0
    encoder_s: float = 0.0
    predictor_s: float = 0.0
    decoder_s: float = 0.0
    timestamp_s: float = 0.0
    postprocess_s: float = 0.0
    vad_s: float = 0.0
    punctuation_s: float = 0.0
    batches: int = 0
    backoffs: int = 0
    requested_batch_size: int = 0
    cache_hits: int = 0
    preload: bool = False
    peak_queued_mb: float = 0.0

    @property
    def speed(self) -> float:
        """Seconds of audio per second of wall time (x real time)."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        data = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        data["speed_x_realtime"] = round(self.speed, 2)
        return data


@dataclass
class Transcription:
    results: list[Result]
    stats: RunStats
