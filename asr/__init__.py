"""Shared SeACo-Paraformer recognition engine: one Engine for every tab, the CLI and the wizard."""

from asr.results import Result, RunStats, Transcription
from asr.settings import Settings, SettingsError, load_settings

__all__ = ["Engine", "Result", "RunStats", "Settings", "SettingsError", "Transcription", "load_settings"]


def __getattr__(name: str):
    if name == "Engine":
        # deliberate lazy import: the engine pulls in torch and FunASR; `import asr` stays cheap
        from asr.engine import Engine

        return Engine
    raise AttributeError(name)
