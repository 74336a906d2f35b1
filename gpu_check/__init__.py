"""A GPU check kit: everything a bare GPU machine (torch preinstalled, no network) needs to run the
project's CUDA tests, its memory measurements and its benchmark in one command.

On the development machine (network to PyPI):

    .venv/bin/python -m gpu_check prepare        # wheels into .gpu-kit/wheels, size checked

On the GPU machine (carry `.gpu-kit` along with the repository):

    bash gpu_check/run.sh OUT                     # OUT/summary.json, OUT/gpu-check.log, OUT/logs/

and anywhere, to keep the script runnable (CPU, tiny model, under a minute on an idle machine):

    bash gpu_check/run.sh --dry-run OUT

This package's top level (prepare, install, the step runner) uses the standard library only: it
runs before anything is installed. The step workers (`probe`, `memory`, `bench_step`,
`tests_step`) run in subprocesses that see the installed wheels.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT_DIR = ROOT / ".gpu-kit"
WHEEL_DIR = KIT_DIR / "wheels"
MANIFEST = KIT_DIR / "manifest.json"
LIMIT_BYTES = 64 * 2**20  # what a GPU session may carry: repository and kit together
