"""Random-weight builds of every model the product uses, from FunASR's real classes in the
ModelScope layout, so tests and benchmarks run the real code paths without a download."""
