"""Step `gpu_tests`: `pytest -m gpu tests/test_gpu.py`, each test's outcome and figures recorded.

pytest's output is read as it comes, so the tests that finished are in the result even when the
step runs out of time; the figures each test measured come from GPU_CHECK_FIGURES.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from .worker import deadline, main

OUTCOME = re.compile(r"^tests/test_gpu\.py::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)")


def _junit_details(path: Path) -> dict[str, str]:
    """test name -> the skip reason or the first line of the failure, from pytest's JUnit XML."""
    details: dict[str, str] = {}
    if not path.is_file():
        return details
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                message = (child.get("message") or child.text or "").strip().splitlines()
                details[case.get("name", "?")] = (message[0] if message else child.tag)[:400]
    return details


def run_tests(plan: dict, save) -> dict:
    out = Path(plan["out"])
    figures, junit = out / "gpu-figures.json", out / "gpu-tests.xml"
    for path in (figures, junit):
        path.unlink(missing_ok=True)
    env = dict(os.environ, GPU_CHECK_DEVICE=plan["device"], GPU_CHECK_MODEL=plan["model"],
               GPU_CHECK_QUICK="1" if plan["quick_tests"] else "0", GPU_CHECK_FIGURES=str(figures))
    command = [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-v", "-rA", "-p",
               "no:cacheprovider", f"--junitxml={junit}", "--color=no"]
    until = deadline(plan)
    tests: dict[str, str] = {}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    timed_out = False
    for line in process.stdout:
        sys.stdout.write(line)
        match = OUTCOME.match(line)
        if match:
            tests[match.group(1)] = match.group(2).lower()
            save({"tests": tests})
        if time.monotonic() > until:
            timed_out = True
            process.kill()
            break
    code = process.wait()
    details = _junit_details(junit)
    rows = [{"test": name, "outcome": outcome, "detail": details.get(name, "")}
            for name, outcome in tests.items()]
    figures_data = json.loads(figures.read_text(encoding="utf-8")) if figures.is_file() else {}
    counts = {k: sum(1 for r in rows if r["outcome"] == k) for k in ("passed", "failed", "skipped", "error")}
    data = {"exit_code": code, "tests": rows, "counts": counts, "figures": figures_data,
            "highlights": {**counts, **_highlights(figures_data)}}
    if timed_out:
        return {"status": "fail", "reason": "out of time before every test ran", "data": data}
    if counts["failed"] or counts["error"] or code not in (0, 5):
        reason = f"{counts['failed']} failed, {counts['error']} errors (exit {code})"
        return {"status": "fail", "reason": reason, "data": data}
    if not counts["passed"]:
        reason = "every test skipped: " + (rows[0]["detail"] if rows else "none ran")
        return {"status": "skip", "reason": reason, "data": data}
    return {"status": "pass", "data": data}


def _highlights(figures: dict) -> dict:
    out = {}
    for key in ("precision_fp16", "precision_bf16"):
        if key in figures:
            out[f"{key}_identical_share"] = figures[key].get("identical_share")
            out[f"{key}_token_agreement"] = figures[key].get("mean_token_agreement")
    if "padding_invariance_fp32" in figures:
        out["padding_mismatches_fp32"] = len(figures["padding_invariance_fp32"].get("mismatches", []))
    if "real_oom_backoff" in figures:
        out["oom_backoffs"] = figures["real_oom_backoff"].get("backoffs")
    if "wizard" in figures:
        out["wizard_recommended"] = figures["wizard"].get("recommended")
    return out


if __name__ == "__main__":
    raise SystemExit(main(run_tests))
