"""Where the weights come from: FunASR models by hub id, local folder or `random:SIZE`, loaded
through one loader; the random-weight builds live in `random_weights`."""


class ModelLoadError(RuntimeError):
    """A model cannot be found or loaded; the message says how to fix it."""
