"""Stage 1, from bytes to features: read (confined to allowed folders), decode to 16 kHz mono,
extract fbank features (cached), and prepare ahead of the model (PRELOAD_AUDIO)."""
