#!/usr/bin/env bash
# The GPU check in one command: bash gpu_check/run.sh [--dry-run] OUT [more `python -m gpu_check run` options]
#
# On a GPU machine (torch preinstalled, no network, .gpu-kit carried along): installs the kit's
# wheels offline, then runs the CUDA tests, the memory measurements and the benchmark within
# about 7.5 minutes, writing OUT/summary.json, OUT/gpu-check.log and OUT/logs/. --dry-run runs the
# same plan on the CPU with the tiny model. The interpreter: $PYTHON, else the first of
# .venv/bin/python, python3.12, python3, python that imports torch.
set -u
cd "$(dirname "$0")/.." || exit 2

out=""
skip_next=0
for arg in "$@"; do
    if [ "$skip_next" = 1 ]; then skip_next=0; continue; fi
    case "$arg" in
        --deadline|--install|--wheels|--site|--steps) skip_next=1 ;;
        -*) ;;
        *) [ -z "$out" ] && out="$arg" ;;
    esac
done
if [ -z "$out" ]; then
    echo "usage: bash gpu_check/run.sh [--dry-run] OUT" >&2
    exit 2
fi
mkdir -p "$out"

py="${PYTHON:-}"
if [ -z "$py" ]; then
    for candidate in .venv/bin/python python3.12 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
            py="$candidate"
            break
        fi
    done
fi
if [ -z "$py" ]; then
    echo "no Python that imports torch was found (set PYTHON=...)" >&2
    printf '{"schema": 1, "kit": "gpu_check", "steps": [], "counts": {"pass": 0, "fail": 1, "skip": 0},\n "error": "no Python that imports torch was found"}\n' > "$out/summary.json"
    exit 1
fi

"$py" -m gpu_check run "$@"
status=$?
if [ ! -f "$out/summary.json" ]; then
    printf '{"schema": 1, "kit": "gpu_check", "steps": [], "counts": {"pass": 0, "fail": 1, "skip": 0},\n "error": "the runner exited %s before writing a summary"}\n' "$status" > "$out/summary.json"
fi
exit $status
