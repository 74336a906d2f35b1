"""The frame every step worker runs in: `python -m gpu_check.NAME RESULT_JSON PLAN_JSON`.

The worker's function gets the plan (a dict, with `budget_s`: the seconds it should finish in)
and a `save(partial)` callback; it returns {"status": pass|fail|skip, "reason": ..., "data": ...}.
Partial results saved along the way survive a step that runs out of time. Any exception becomes a
failed result with its traceback tail, never a lost one.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

Result = dict
Save = Callable[[dict], None]


def write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(function: Callable[[dict, Save], Result]) -> int:
    result_path, plan = Path(sys.argv[1]), json.loads(sys.argv[2])
    started = time.monotonic()

    def save(partial: dict) -> None:
        write_json(result_path, {"status": "fail", "reason": "unfinished (partial result)", "partial": True,
                                 "data": partial})

    try:
        result = function(plan, save)
    except Exception as exc:  # noqa: BLE001 - a step's failure is its result, never a lost one
        traceback.print_exc()
        tail = traceback.format_exc().strip().splitlines()[-6:]
        result = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}", "traceback": tail}
    result.setdefault("data", {})
    result["worker_s"] = round(time.monotonic() - started, 2)
    write_json(result_path, result)
    return 0 if result["status"] in ("pass", "skip") else 1


def deadline(plan: dict, reserve_s: float = 5.0) -> float:
    """The monotonic time by which the worker should be done."""
    return time.monotonic() + max(1.0, float(plan.get("budget_s", 60)) - reserve_s)
