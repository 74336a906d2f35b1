"""Typed settings from config.yaml, environment and CLI, in that order of rising precedence.

Every key has one dotted name (`feature_cache.max_size_mb`), one environment variable (`SEACO_`
plus the dotted name upper-cased with `_`: `SEACO_FEATURE_CACHE_MAX_SIZE_MB`) and is validated at
start: an unknown key or a bad value stops the program with a message naming the key and what it
allows, instead of surfacing as a strange failure in the middle of a batch. The prefix keeps a
user's unrelated variables (`LOG_LEVEL=warn` for another program, `MODEL`, `DEVICE`) out of our
settings; `PRELOAD_AUDIO` is also read unprefixed, as the product has always documented it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import yaml

log = logging.getLogger(__name__)

DEFAULT_MODEL = "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
DEFAULT_VAD_MODEL = "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch"
DEFAULT_PUNCTUATION = "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch"
DEFAULT_SPEAKER_MODEL = "iic/speech_campplus_sv_zh-cn_16k-common"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"


class SettingsError(ValueError):
    """A configuration problem a user must fix; the message names the key."""


def _choice(*values: str, **extra: Any) -> dict:
    return {"choices": values, **extra}


def _at_least(minimum: float, **extra: Any) -> dict:
    return {"min": minimum, **extra}


# Whether a setting changes what a transcript says. Every leaf setting declares it, in its own
# metadata or through its section's RESULTS (a test holds every key to that), so the batch job's
# fingerprint and anything else that must know read it from here instead of a hand-kept list.
# "only_when": (other key, value) limits it to when another setting has that value; "unless":
# (other key, value) to when it has any other value.
CHANGES_RESULTS = {"results": True}
NO_RESULTS = {"results": False}


@dataclass
class FeatureCacheSettings:
    RESULTS: ClassVar[bool] = False  # a hit is the same features, keyed by bytes and frontend
    enable: bool = False
    max_size_mb: int = field(default=512, metadata=_at_least(1))
    dir: str = ""
    max_disk_mb: int = field(default=2048, metadata=_at_least(1))


@dataclass
class HotwordSettings:
    RESULTS: ClassVar[bool] = False  # limits on what a request may ask; the words themselves count
    # 10 by default (docs/hotwords.md); up to 200 for long domain lists: past 49 each file is
    # biased by the 50 words that match its own audio best (FunASR's filter, run per file).
    max_count: int = field(default=10, metadata={"min": 1, "max": 200})
    max_chars: int = field(default=20, metadata=_at_least(1))
    lists_file: str = "hotwords.yaml"  # named lists per domain, beside config.yaml


@dataclass
class InputSettings:
    RESULTS: ClassVar[bool] = True  # which inputs are accepted and how they are cut
    max_duration_s: float = field(default=3600.0, metadata=_at_least(0.1))
    min_duration_s: float = field(default=0.05, metadata=_at_least(0.0))
    segment_s: float = field(default=60.0, metadata={"min": 5.0, "max": 600.0})
    vad_merge_gap_s: float = field(default=0.5, metadata={"min": 0.0, "max": 10.0})
    # Checked on the header before decoding and on every decoded block (asr/audio/decode.py).
    max_channels: int = field(default=8, metadata={"min": 1, "max": 255})
    max_sample_rate_hz: int = field(default=384000, metadata={"min": 8000, "max": 768000})


@dataclass
class SubtitleSettings:
    RESULTS: ClassVar[bool] = True  # where sentences are cut
    max_s: float = field(default=8.0, metadata={"min": 1.0, "max": 60.0})
    max_chars: int = field(default=42, metadata={"min": 4, "max": 500})
    pause_s: float = field(default=1.0, metadata={"min": 0.1, "max": 30.0})
    # Shortest time a cue stays on screen (Netflix's guide: 5/6 s); shorter ones join a neighbour
    # or are held longer. 0: off.
    min_s: float = field(default=0.83, metadata={"min": 0.0, "max": 10.0})


@dataclass
class BatchingSettings:
    RESULTS: ClassVar[bool] = False  # batching never changes a file's tokens (tested)
    max_wait_ms: float = field(default=10.0, metadata={"min": 0.0, "max": 10000.0})
    max_queued_s: float = field(default=3600.0, metadata=_at_least(1.0))


@dataclass
class BatchSettings:
    RESULTS: ClassVar[bool] = False
    allowed_dirs: list[str] = field(default_factory=list)
    max_files: int = field(default=500, metadata=_at_least(1))
    max_total_mb: int = field(default=4096, metadata=_at_least(1))


@dataclass
class ServerSettings:
    RESULTS: ClassVar[bool] = False
    host: str = "127.0.0.1"
    port: int = field(default=7860, metadata={"min": 1, "max": 65535})
    max_file_size_mb: int = field(default=500, metadata=_at_least(1))
    api: bool = True
    api_keys: list[str] = field(default_factory=list, metadata={"secret": True})
    ui_auth: list[str] = field(default_factory=list, metadata={"secret": True})
    # UI logins (names from ui_auth) that may change settings: apply/save, the wizard, precision.
    admins: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    ui_concurrency: int = field(default=8, metadata={"min": 1, "max": 256})
    max_uploads: int = field(default=8, metadata={"min": 1, "max": 1024})  # bodies received at once
    upload_idle_s: float = field(default=60.0, metadata={"min": 0.1, "max": 3600.0})
    upload_ttl_s: int = field(default=14400, metadata={"min": 60})  # Gradio's uploads and downloads


@dataclass
class PreloadSettings:
    RESULTS: ClassVar[bool] = False
    workers: int = field(default=2, metadata=_at_least(1))
    queue_items: int = field(default=16, metadata=_at_least(1))
    queue_mb: int = field(default=256, metadata=_at_least(1))


@dataclass
class TuningSettings:
    RESULTS: ClassVar[bool] = False
    sizes: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    copies: int = field(default=5, metadata={"min": 1, "max": 256})  # also the most files per run
    repeats: int = field(default=3, metadata={"min": 1, "max": 20})
    margin_pct: float = field(default=3.0, metadata={"min": 0.0, "max": 100.0})
    memory_limit_pct: float = field(default=85.0, metadata={"min": 1.0, "max": 100.0})


@dataclass
class SpeakerSettings:
    RESULTS: ClassVar[bool] = True  # who said what is part of the transcript
    # off (default), auto (the count is found), or a known count N
    count: str = field(default="off", metadata={"speaker_count": True})
    max: int = field(default=8, metadata={"min": 1, "max": 64})  # the most `auto` may find
    # auto: clusters at least this alike (mean cosine) are one speaker; 0 takes the encoder's own
    threshold: float = field(default=0.0, metadata={"min": -1.0, "max": 1.0})


@dataclass
class RealtimeSettings:
    RESULTS: ClassVar[bool] = False  # the live tab only; files and jobs never use these
    update_interval_s: float = field(default=1.0, metadata={"min": 0.2, "max": 10.0})
    pause_s: float = field(default=0.6, metadata={"min": 0.1, "max": 5.0})
    max_segment_s: float = field(default=20.0, metadata={"min": 2.0, "max": 60.0})
    # Audio waiting for recognition beyond this is dropped (oldest first) and shown as dropped.
    max_backlog_s: float = field(default=60.0, metadata={"min": 1.0, "max": 600.0})
    # Live recordings open at once on the server (each holds a worker thread and up to a backlog).
    max_sessions: int = field(default=16, metadata={"min": 1, "max": 1024})


@dataclass
class Settings:
    model: str = field(default=DEFAULT_MODEL, metadata=CHANGES_RESULTS)
    cache_dir: str = field(default=".cache", metadata=NO_RESULTS)
    device: str = field(default="auto", metadata=_choice("auto", "cuda", "cpu", results=False))
    # Batching never changes a file's tokens in fp32 (tested); that is the product's promise.
    batch_size: int = field(default=4, metadata={"min": 1, "max": 512, "results": False})
    precision: str = field(default="fp32", metadata=_choice("fp32", "bf16", "fp16", "int8", results=True))
    # Kernels and threads change float rounding, never a token in the tests: not result-changing.
    attention: str = field(default="auto", metadata=_choice("auto", "fused", "funasr", results=False))
    # Deprecated switches, read as `precision` (see DEPRECATED_PRECISION_KEYS); always False here.
    fp16: bool = field(default=False, metadata={"deprecated": True, "results": False})
    int8: bool = field(default=False, metadata={"deprecated": True, "results": False})
    padding_limit_pct: float = field(default=10.0, metadata={"min": 0.0, "max": 1000.0, "results": False})
    cpu_threads: int = field(default=0, metadata=_at_least(0, results=False))
    cpu_lanes: int = field(default=0, metadata=_at_least(0, results=False))
    cpu_gemm: str = field(default="auto", metadata=_choice("auto", "onednn", "torch", results=False))
    preload_audio: bool = field(default=False, metadata=NO_RESULTS)
    vad: str = field(default="silero", metadata=_choice("silero", "fsmn", "energy", "off", results=True))
    vad_model: str = field(default=DEFAULT_VAD_MODEL,
                           metadata={"results": True, "only_when": ("vad", "fsmn")})
    punctuation: str = field(default=DEFAULT_PUNCTUATION, metadata=CHANGES_RESULTS)
    timestamps: bool = field(default=False, metadata=CHANGES_RESULTS)
    itn: bool = field(default=False, metadata=CHANGES_RESULTS)  # numbers, dates, amounts as digits
    speaker_model: str = field(default=DEFAULT_SPEAKER_MODEL,
                               metadata={"results": True, "unless": ("speakers.count", "off")})
    simulate_oom_frames: int = field(default=0, metadata=_at_least(0, results=True))
    log_level: str = field(default="INFO", metadata=_choice("DEBUG", "INFO", "WARNING", "ERROR",
                                                            results=False))
    preload: PreloadSettings = field(default_factory=PreloadSettings)
    feature_cache: FeatureCacheSettings = field(default_factory=FeatureCacheSettings)
    hotwords: HotwordSettings = field(default_factory=HotwordSettings)
    input: InputSettings = field(default_factory=InputSettings)
    subtitles: SubtitleSettings = field(default_factory=SubtitleSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    speakers: SpeakerSettings = field(default_factory=SpeakerSettings)
    config_path: str = field(default="", metadata={"internal": True})

    def resolve_path(self, value: str) -> Path:
        """Relative paths in config.yaml mean relative to the project, not to the working dir."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    def flat(self) -> dict[str, Any]:
        return dict(_flatten(dataclasses.asdict(self)))

    def summary(self) -> str:
        keys = ("model", "device", "batch_size", "precision", "preload_audio", "feature_cache.enable",
                "cpu_threads", "cpu_lanes", "cpu_gemm", "vad", "punctuation", "timestamps")
        flat = self.flat()
        return ", ".join(f"{key}={flat[key]}" for key in keys)


def _flatten(tree: Mapping[str, Any], prefix: str = ""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _schema(cls: type = Settings, prefix: str = "") -> dict[str, tuple[type, dict]]:
    """Dotted key -> (python type, metadata) for every leaf setting."""
    hints = get_type_hints(cls)
    out: dict[str, tuple[type, dict]] = {}
    for f in fields(cls):
        if f.metadata.get("internal"):
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_schema(hint, f"{prefix}{f.name}."))
        else:
            meta = dict(f.metadata)
            if "results" not in meta and hasattr(cls, "RESULTS"):
                meta["results"] = cls.RESULTS
            out[f"{prefix}{f.name}"] = (hint, meta)
    return out


def result_settings(settings: Settings) -> dict[str, Any]:
    """The settings that change what a transcript says, by dotted key (from the schema's marks).
    A key marked `only_when` counts only while the other setting has that value."""
    flat = settings.flat()
    chosen = {}
    for key, (_hint, meta) in SCHEMA.items():
        if not meta.get("results"):
            continue
        condition = meta.get("only_when")
        if condition and flat[condition[0]] != condition[1]:
            continue
        exception = meta.get("unless")
        if exception and flat[exception[0]] == exception[1]:
            continue
        chosen[key] = flat[key]
    return chosen


SCHEMA = _schema()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# The old on/off switches for what is now one `precision` setting: `fp16: true` reads as
# `precision: fp16`, `false` as "not fp16" (fp32 if precision was fp16). Each source (config file,
# environment, command line) is applied in turn, so a later source still wins; within one source
# a switch that contradicts `precision` is an error rather than a guess.
DEPRECATED_PRECISION_KEYS = {"fp16": "fp16", "int8": "int8"}

ENV_PREFIX = "SEACO_"
ENV_ALIASES = {"preload_audio": "PRELOAD_AUDIO"}  # unprefixed names kept for compatibility


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


def _from_environment(key: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, value) for `key`: the prefixed name wins over an alias; empty means unset."""
    for name in (env_name(key), ENV_ALIASES.get(key)):
        if name and environ.get(name, "") != "":
            return name, environ[name]
    return None


def _describe(hint: Any, meta: dict) -> str:
    if meta.get("speaker_count"):
        return "off, auto, or a whole number of speakers (1 or more)"
    if "choices" in meta:
        return "one of " + ", ".join(meta["choices"])
    if hint is bool:
        return "true or false"
    if hint in (int, float):
        kind = "an integer" if hint is int else "a finite number"
        bounds = []
        if "min" in meta:
            bounds.append(f">= {meta['min']}")
        if "max" in meta:
            bounds.append(f"<= {meta['max']}")
        return kind + (" " + " and ".join(bounds) if bounds else "")
    if hint == list[str]:
        return "a list of strings"
    if hint == list[int]:
        return "a list of positive integers"
    return "a string"


def coerce(key: str, value: Any, source: str) -> Any:
    """Convert and validate one value; raise SettingsError naming key, source and what is allowed."""
    if key not in SCHEMA:
        close = [k for k in SCHEMA if k.split(".")[-1] == key.split(".")[-1]]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SettingsError(f"unknown setting '{key}' in {source}{hint}")
    hint, meta = SCHEMA[key]
    allowed = _describe(hint, meta)
    shown = "(hidden)" if meta.get("secret") else repr(value)  # keys and passwords never reach a log
    bad = SettingsError(f"setting '{key}' from {source} is {shown}; it must be {allowed}")
    try:
        if hint is bool:
            if isinstance(value, bool):
                result: Any = value
            elif str(value).strip().lower() in _TRUE:
                result = True
            elif str(value).strip().lower() in _FALSE:
                result = False
            else:
                raise bad
        elif hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise bad
            result = int(str(value).strip()) if isinstance(value, str) else int(value)
        elif hint is float:
            if isinstance(value, bool):
                raise bad
            result = float(value)
            if not math.isfinite(result):
                raise bad
        elif hint == list[str]:
            if isinstance(value, str) and value.lstrip().startswith("["):
                # A JSON list: the one environment form that keeps a "," inside an item (a password).
                result = json.loads(value)
                if not isinstance(result, list) or not all(isinstance(v, str) for v in result):
                    raise bad
            elif isinstance(value, str):
                result = [part.strip() for part in value.split(",") if part.strip()]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                result = list(value)
            elif value is None:
                result = []
            else:
                raise bad
        elif hint == list[int]:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not items:
                raise bad
            result = []
            for item in items:
                if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
                    raise bad
                number = int(str(item).strip()) if isinstance(item, str) else int(item)
                if number < 1:
                    raise bad
                result.append(number)
        else:
            if value is None or isinstance(value, (dict, list)):
                raise bad
            # YAML reads `off`/`on` (and no/yes) as booleans: `punctuation: off` means "off".
            result = ("on" if value else "off") if isinstance(value, bool) else str(value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise bad from None
    if meta.get("speaker_count"):
        result = normalize_speaker_count(result, bad)
    if "choices" in meta:
        normalised = result.upper() if key == "log_level" else result.lower()
        if normalised not in meta["choices"]:
            raise bad
        result = normalised
    if "min" in meta and result < meta["min"]:
        raise bad
    if "max" in meta and result > meta["max"]:
        raise bad
    return result


def normalize_speaker_count(value: Any, bad: Exception | None = None) -> str:
    """`speakers.count` as "off", "auto" or a whole number's digits ("2"); YAML's off/false and
    numbers are accepted. Raises `bad` (or ValueError) for anything else."""
    text = str(value).strip().lower()
    if value is False or text in ("off", "false", "no", "none", "0"):
        return "off"
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return str(int(text))
    raise bad or ValueError(f"speakers must be off, auto or a whole number of speakers, not {value!r}")


def _set(settings: Settings, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    target: Any = settings
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of settings")
    flat: dict[str, Any] = {}
    for key, value in _flatten(data):
        flat[key] = value
    # A mapping given where a leaf is expected, or vice versa, still gets a named error.
    for key, value in data.items():
        if isinstance(value, dict) and key in SCHEMA:
            raise SettingsError(f"setting '{key}' in {path} must be a single value, not a mapping")
    return flat


def load_settings(
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings: config.yaml, then environment variables, then explicit (CLI) overrides."""
    environ = os.environ if environ is None else environ
    path = Path(config_path) if config_path else DEFAULT_CONFIG_PATH
    settings = Settings(config_path=str(path))
    if config_path or path.exists():
        _apply_source(settings, [(key, value, str(path)) for key, value in read_config_file(path).items()],
                      str(path))
    from_environment = []
    for key in SCHEMA:
        found = _from_environment(key, environ)
        if found is not None:
            name, value = found
            from_environment.append((key, value, f"environment variable {name}"))
    _apply_source(settings, from_environment, "the environment")
    _apply_source(settings, [(key, value, "the command line") for key, value in (overrides or {}).items()
                             if value is not None], "the command line")
    return settings


def _apply_source(settings: Settings, items: list[tuple[str, Any, str]], source: str) -> None:
    """Set one source's values, reading the deprecated precision switches as `precision`."""
    switches: dict[str, tuple[bool, str]] = {}
    for key, value, origin in items:
        coerced = coerce(key, value, origin)
        if key in DEPRECATED_PRECISION_KEYS:
            switches[key] = (coerced, origin)
        else:
            _set(settings, key, coerced)
    given = {key: value for key, value, _ in items}
    on = [key for key, (value, _) in switches.items() if value]
    if len(on) > 1:
        raise SettingsError(f"{' and '.join(on)} are both on in {source}; set one `precision` instead")
    for key, (value, origin) in switches.items():
        mode = DEPRECATED_PRECISION_KEYS[key]
        if "precision" in given and (settings.precision == mode) != value:
            raise SettingsError(f"'{key}: {str(value).lower()}' and 'precision: {settings.precision}' "
                                f"disagree in {source}; '{key}' is deprecated: keep only 'precision'")
        log.warning("setting '%s' (%s) is deprecated: use 'precision: %s' (SEACO_PRECISION, --precision)",
                    key, origin, mode if value else "fp32")
        if value:
            settings.precision = mode
        elif settings.precision == mode:
            settings.precision = "fp32"
