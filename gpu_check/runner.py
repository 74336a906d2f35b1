"""Run the plan's steps, each with its own time limit, and keep OUT/summary.json current.

A step that fails, crashes or runs out of time is recorded and the next one runs; only a step
whose prerequisite failed is skipped (nothing can run without the installed packages). The JSON
is rewritten after every step, so a run cut short still leaves one.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import ROOT, WHEEL_DIR
from .install import DEFAULT_SITE, imports, install, step_env
from .plan import STEPS, Plan, Step
from .worker import write_json

SCHEMA = 1
# Whether the interpreter has the packages, without the seconds that importing funasr takes.
FIND_PACKAGES = ("import importlib.util, sys; missing = [m for m in ('funasr', 'torchaudio', 'soundfile', "
                 "'yaml', 'pytest', 'pynvml', 'silero_vad', 'omegaconf') "
                 "if importlib.util.find_spec(m) is None]; "
                 "sys.exit(('missing: ' + ', '.join(missing)) if missing else 0)")
GRACE_S = 10  # beyond its budget, before a worker is killed


class Runner:
    def __init__(self, plan: Plan, out: Path, wheels: Path = WHEEL_DIR, site: Path = DEFAULT_SITE,
                 only: list[str] | None = None, steps: tuple[Step, ...] = STEPS):
        self.plan, self.out, self.wheels, self.site = plan, out, wheels, site
        self.only = only
        self.steps = steps
        self.grace_s = GRACE_S
        self.started = time.monotonic()
        self.python = sys.executable
        self.env = step_env(None)
        self.results: list[dict] = []
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "steps").mkdir(parents=True, exist_ok=True)
        self.log_file = open(out / "gpu-check.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in run
        self.summary = {
            "schema": SCHEMA, "kit": "gpu_check", "dry_run": plan.dry_run,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"python": sys.version.split()[0], "executable": sys.executable,
                     "platform": platform.platform(), "cpus": os.cpu_count()},
            "plan": plan.to_dict(), "steps": self.results, "highlights": {},
        }

    def say(self, message: str) -> None:
        line = f"[gpu-check {time.strftime('%H:%M:%S')} +{self.elapsed():5.0f}s] {message}"
        print(line, file=sys.stderr, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def write(self) -> None:
        counts = {s: sum(1 for r in self.results if r["status"] == s) for s in ("pass", "fail", "skip")}
        self.summary.update(counts=counts, elapsed_s=round(self.elapsed(), 1),
                            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_json(self.out / "summary.json", self.summary)

    # ---- steps ---------------------------------------------------------------------------------

    def _budget(self, index: int, steps: list[Step]) -> float:
        later = sum(s.min_s for s in steps[index + 1:])
        left = self.plan.deadline_s - self.elapsed() - later
        return min(steps[index].cap_s, left)

    def run(self) -> int:
        steps = [s for s in self.steps if self.only is None or s.name in self.only]
        self.say(f"{'dry run (CPU, tiny)' if self.plan.dry_run else 'GPU check'}: {len(steps)} steps, "
                 f"deadline {self.plan.deadline_s:.0f} s; results in {self.out}")
        self.write()
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            for index, step in enumerate(steps):
                try:
                    self.results.append(self._one(step, self._budget(index, steps)))
                except KeyboardInterrupt:
                    self.results.append({"name": step.name, "what": step.what, "status": "fail",
                                         "reason": "interrupted (SIGTERM or SIGINT): the run was stopped",
                                         "seconds": 0.0, "data": {}})
                    break
                finally:
                    self.write()
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.say("done: " + ", ".join(f"{r['name']} {r['status']}" for r in self.results))
            self.write()
            self.log_file.close()
            print(self.report(), flush=True)
        return 0 if all(r["status"] != "fail" for r in self.results) else 1

    def report(self) -> str:
        """The summary in a few lines, for whoever reads the console."""
        kind = "dry run" if self.plan.dry_run else self.plan.device
        lines = [f"GPU check ({kind}): {self.summary['counts']} in {self.summary['elapsed_s']:.0f} s "
                 f"-> {self.out / 'summary.json'}"]
        for r in self.results:
            seconds = r.get("seconds", 0)
            lines.append(f"  {r['name']:<10} {r['status']:<5} {seconds:6.1f} s  {r['reason'][:150]}")
        lines.append("highlights: " + json.dumps(self.summary["highlights"], default=str))
        return "\n".join(lines)

    def _one(self, step: Step, budget: float) -> dict:
        entry = {"name": step.name, "what": step.what, "status": "skip", "reason": "", "seconds": 0.0,
                 "budget_s": round(budget, 1), "data": {}}
        failed_needs = [n for n in step.needs
                        if any(r["name"] == n and r["status"] == "fail" for r in self.results)]
        if failed_needs:
            entry["reason"] = f"needs {', '.join(failed_needs)}, which failed"
        elif budget < step.min_s:
            entry["reason"] = f"out of time: {budget:.0f} s left for it, needs {step.min_s:.0f} s"
        else:
            self.say(f"{step.name}: {step.what} (up to {budget:.0f} s)")
            started = time.monotonic()
            try:
                entry.update(self._install(budget) if step.module is None else self._worker(step, budget))
            except Exception as exc:  # noqa: BLE001 - a step's failure is recorded, the next one runs
                entry.update(status="fail", reason=f"{type(exc).__name__}: {exc}")
            entry["seconds"] = round(time.monotonic() - started, 1)
        highlights = entry["data"].pop("highlights", None) if isinstance(entry["data"], dict) else None
        if highlights:
            self.summary["highlights"][step.name] = highlights
        self.say(f"{step.name}: {entry['status'].upper()}"
                 + (f" ({entry['reason']})" if entry["reason"] else "") + f" in {entry['seconds']:.0f} s")
        return entry

    def _install(self, budget: float) -> dict:
        if self.plan.install == "never":
            return {"status": "skip", "reason": "--install never: the interpreter's own packages"}
        if self.plan.install == "auto":
            missing = imports(FIND_PACKAGES, env=self.env, python=self.python)
            if missing is None:
                return {"status": "skip", "reason": "this interpreter already has the packages"}
        report = install(self.wheels, self.site, self.python, timeout=int(budget), log=self.say)
        self.env = step_env(self.site)
        problem = imports("import asr.engine", env=self.env, python=self.python)
        status = "pass" if problem is None else "fail"
        return {"status": status, "reason": problem or "", "data": report}

    def _worker(self, step: Step, budget: float) -> dict:
        result_path = self.out / "steps" / f"{step.name}.json"
        log_path = self.out / "logs" / f"{step.name}.log"
        result_path.unlink(missing_ok=True)
        plan = {**self.plan.to_dict(), "budget_s": budget, "out": str(self.out)}
        command = [self.python, "-m", step.module, str(result_path), json.dumps(plan)]
        timed_out = False
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                code = process.wait(timeout=budget + self.grace_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                code = _stop(process)
            except BaseException:
                _stop(process)  # interrupted: take the worker and its children down too
                raise
        result = {}
        if result_path.is_file():
            try:
                result = json.loads(result_path.read_text(encoding="utf-8"))
            except ValueError:
                result = {}
        out = {"status": result.get("status", "fail"), "reason": result.get("reason", ""),
               "data": result.get("data", {}), "log": str(log_path.relative_to(self.out)), "exit_code": code}
        if timed_out:
            out.update(status="fail", timed_out=True,
                       reason=f"ran past its {budget:.0f} s (+{self.grace_s:g} s grace) and was stopped"
                       + (f"; {result['reason']}" if result.get("reason") else ""))
        elif not result:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            tail = [ln for ln in text.splitlines() if ln.strip()]
            out.update(status="fail", reason=f"no result (exit {code}): " + " | ".join(tail[-3:]))
        if result.get("traceback"):
            out["traceback"] = result["traceback"]
        return out


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen) -> int:
    """End a worker and everything it started (its own process group)."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            return process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()
