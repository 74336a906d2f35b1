"""Stage 2, where the speech is: voice-activity detection (Silero, FunASR's fsmn-vad, energy) and
the cutting of speech regions into model-sized segments."""
