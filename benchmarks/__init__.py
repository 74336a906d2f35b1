"""The harness: speed, load, job and pipeline benchmarks against FunASR's own runs. Run from a
checkout (`python -m benchmarks.bench`); not installed, and nothing in the product imports it."""
