"""What tests share besides fixtures: settings for the tiny model, test audio, ports, threads.

Imported by test modules (`from helpers import tiny_settings`); conftest.py holds the fixtures.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

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


def run_together(calls) -> list:
    """Each zero-argument call on its own thread, released at the same moment; their return
    values in order (the first error re-raised). For tests of concurrent requests."""
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


def write_conversation(folder: Path):
    """A conversation of real voices as a wav file: A, B, A again (the other half of A's
    recording), C, with pauses of 0.7-1.0 s. Returns (the benchmarks.der Conversation with its
    true turns, the file's path, the voices by letter)."""
    import soundfile

    from benchmarks.der import RATE, build, split_at_pause, voices

    v = voices()
    a1, a2 = split_at_pause(v["A"])
    talk = build("abac", [("A", a1), ("B", v["B"]), ("A", a2), ("C", v["C"])], [0.8, 1.0, 0.7])
    path = folder / "talk.wav"
    soundfile.write(path, talk.samples, RATE)
    return talk, path, v


@contextlib.contextmanager
def running_ui(engine, gradio_tmp: Path) -> Iterator[str]:
    """The web UI for `engine` served on a free local port, Gradio's files in `gradio_tmp`; yields
    its URL and closes it on leaving."""
    import webui  # the faces are imported only by the tests that serve them

    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_tmp)
    try:
        demo = webui.build_app(engine)
        _, url, _ = webui.launch_app(demo, engine.settings, port=free_port(), prevent_thread_lock=True,
                                     quiet=True)
        try:
            yield url
        finally:
            demo.close()
    finally:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before
