"""Shared fixtures: one random:tiny model and one Engine per test session, real audio files.

The tiny model is generated into the project's .cache on first use (seconds) and reused after.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import soundfile
from helpers import REFERENCE_WAVS, TEST_AUDIO, run_together, speechlike, tiny_settings  # noqa: F401

# run_together is re-exported for test modules written before helpers.py; new ones import helpers.


@pytest.fixture(scope="session")
def engine():
    """The session's shared Engine. Tests must not change its settings; build their own instead."""
    from asr.engine import Engine

    return Engine(tiny_settings())


@pytest.fixture(scope="session")
def loaded_tiny(engine):
    """The loaded tiny model, for tests that need another Engine without reloading weights."""
    return engine.loaded


@pytest.fixture(scope="session")
def reference_wavs() -> list[Path]:
    if not REFERENCE_WAVS:
        pytest.fail(f"no reference audio in {TEST_AUDIO}: the repository's test recordings are missing")
    return REFERENCE_WAVS


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A folder of synthetic wav clips of mixed lengths (1-12 s), made once per session."""
    folder = tmp_path_factory.mktemp("clips")
    for i, seconds in enumerate([1.2, 7.5, 3.3, 11.8, 2.0, 5.6, 9.1, 4.4]):
        soundfile.write(folder / f"clip{i:02d}.wav", speechlike(seconds, seed=i), 16000)
    return folder


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium for browser tests; under CI a missing browser fails instead of skipping."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `bash run.sh test` installs it when run as root")
        pytest.skip("chromium is not installed")
    return path


# `pytest -m quick` (README: the quick loop): every part of the product once, in under three
# minutes on 2 cores; the full suite adds the slow end-to-end runs (CLI and job subprocesses,
# the bench, the GPU kit's dry run, browser tests, the API under load).
QUICK_MODULES = {
    "test_settings", "test_folders", "test_model", "test_repository", "test_audio", "test_punctuation",
    "test_container_files", "test_numbers", "test_attention", "test_pipeline", "test_batcher",
    "test_speakers", "test_hotword_model", "test_vad_fsmn", "test_memory_model", "test_cache",
    "test_transcripts", "test_cpu", "test_text_stages", "test_export", "test_engine",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.path.stem in QUICK_MODULES:
            item.add_marker(pytest.mark.quick)
