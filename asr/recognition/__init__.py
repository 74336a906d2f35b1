"""Stage 3, segments to tokens: the batcher every request shares, the SeACo-Paraformer model and
its variants (precision, attention kernels, CPU kernels), hotwords and the memory model."""
