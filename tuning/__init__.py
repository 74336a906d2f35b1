"""The three-step batch-size tuning wizard (baseline, sweep, refine) and its decision rules.

`run_wizard(engine, files)` measures; `tuning.knee` decides; `tuning.config_file` saves the answer
into config.yaml; `ui.tuning_tab` is the Gradio tab; `python -m tuning FILE...` is the CLI.
"""

from typing import Any

__all__ = ["CACHE_POLICY", "TABLE_COLUMNS", "RunRecord", "WizardError", "WizardReport", "run_wizard"]


def __getattr__(name: str) -> Any:
    """The wizard's names, loaded on first use: `python -m tuning --help` need not load torch."""
    if name in __all__:
        from tuning import wizard  # noqa: PLC0415 - lazy on purpose (see the docstring)

        return getattr(wizard, name)
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
