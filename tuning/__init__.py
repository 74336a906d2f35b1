"""The three-step batch-size tuning wizard (baseline, sweep, refine) and its decision rules.

`run_wizard(engine, files)` measures; `tuning.knee` decides; `tuning.config_file` saves the answer
into config.yaml; `ui.tuning_tab` is the Gradio tab; `python -m tuning FILE...` is the CLI.
"""

from tuning.wizard import CACHE_POLICY, TABLE_COLUMNS, RunRecord, WizardError, WizardReport, run_wizard

__all__ = ["CACHE_POLICY", "TABLE_COLUMNS", "RunRecord", "WizardError", "WizardReport", "run_wizard"]
