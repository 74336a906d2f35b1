"""Shared fixtures: one random:tiny model and one Engine per test session, real audio files.

The tiny model is generated into the project's .cache on first use (seconds) and reused after.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.settings import PROJECT_ROOT, Settings, load_settings

TEST_AUDIO = Path(__file__).resolve().parent / "audio"  # vendored real recordings; see its README
REFERENCE_WAVS = sorted(TEST_AUDIO.glob("*.wav"))


def tiny_settings(**overrides) -> Settings:
    """Settings for tests: random:tiny on CPU, the project's config.yaml ignored.

    Whole files cut at quiet points (vad: energy) and no punctuation, unless a test asks: most
    tests are about batching and must see the pieces they made; the transcript tests ask."""
    base = {"model": "random:tiny", "device": "cpu", "batch_size": 4, "cpu_threads": 2,
            "preload_audio": False, "feature_cache.enable": False, "vad": "energy",
            "punctuation": "off"}
    base.update(overrides)
    return load_settings(PROJECT_ROOT / "tests" / "empty_config.yaml", environ={}, overrides=base)


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


def run_together(calls) -> list:
    """Each zero-argument call on its own thread, released at the same moment; their return
    values in order (the first error re-raised). For tests of concurrent requests."""
    import threading

    results: list = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(index, call) -> None:
        start.wait()
        try:
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def free_port() -> int:
    """A localhost port nobody listens on now, for a test's own Gradio server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def speechlike(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """Deterministic noise bursts shaped like syllables: enough to drive the model's real paths."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2.5, 5.0) * t + rng.uniform(0, 6.28))
    tone = np.sin(2 * np.pi * rng.uniform(120, 260) * t) * 0.3
    signal = (tone + rng.normal(0, 0.2, n)) * envelope * 0.3
    return signal.astype(np.float32)


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
