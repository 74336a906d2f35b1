"""`python -m gpu_check prepare`: download the kit's wheels for the GPU machine's Python.

Binary wheels for CPython 3.12 on manylinux x86-64 (2_28, then the older 2_27/2_17/2014 tags),
pure-Python `py3-none-any` wheels, and for the few packages that publish only an sdist a wheel
built here (it must come out pure Python, or the kit would not install there). Everything with
--no-deps: the list in pins.py is the whole set. `--quick` resolves the list against the index
without downloading (seconds), which is what the CPU test runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import MANIFEST, WHEEL_DIR, size
from .pins import EXCLUDED, SDIST_ONLY, Pin, canonical, pins

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")


class PrepareError(RuntimeError):
    """The kit could not be built; the message says which package and why."""


def _pip(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _target(python_version: str) -> list[str]:
    digits = python_version.replace(".", "")
    options = ["--python-version", python_version, "--implementation", "cp", "--abi", f"cp{digits}",
               "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def _fail(what: str, done: subprocess.CompletedProcess) -> PrepareError:
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
    return PrepareError(f"{what} failed:\n  " + "\n  ".join(lines[-8:]))


def wheel_name(path: Path) -> tuple[str, str]:
    """(canonical name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def download(chosen: list[Pin], dest: Path, python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    binary = [p for p in chosen if p.name not in SDIST_ONLY]
    done = _pip(["download", "--no-deps", "--only-binary=:all:", *_target(python_version), "-d", str(dest),
                 *[p.spec for p in binary]])
    if done.returncode != 0:  # find which one: one at a time
        for pin in binary:
            one = _pip(["download", "--no-deps", "--only-binary=:all:", *_target(python_version),
                        "-d", str(dest), pin.spec])
            if one.returncode != 0:
                raise _fail(f"downloading a wheel of {pin.spec} for Python {python_version}", one)
    for pin in chosen:
        if pin.name in SDIST_ONLY:
            built = _pip(["wheel", "--no-deps", "--no-binary=:all:", "-w", str(dest), pin.spec])
            if built.returncode != 0:
                raise _fail(f"building a wheel of {pin.spec}", built)


def collect(chosen: list[Pin], dest: Path) -> list[dict]:
    """One wheel per pin, pure where it was built here; stale wheels of other versions removed."""
    wanted = {canonical(p.name): p for p in chosen}
    files: list[dict] = []
    for path in sorted(dest.glob("*.whl")):
        name, version = wheel_name(path)
        pin = wanted.get(name)
        if pin is None or pin.version != version:
            path.unlink()  # left from an older pin list
            continue
        if pin.name in SDIST_ONLY and not path.name.endswith("-none-any.whl"):
            raise PrepareError(f"{path.name}: built from its sdist but not pure Python")
        files.append({"name": pin.name, "version": version, "file": path.name, "bytes": path.stat().st_size,
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "why": pin.why})
    found = {canonical(f["name"]) for f in files}
    missing = [p.spec for p in chosen if canonical(p.name) not in found]
    if missing:
        raise PrepareError(f"no wheel in {dest} for {', '.join(missing)}")
    return files


def resolve_only(chosen: list[Pin], python_version: str) -> dict:
    """Resolve every pin against the index without downloading the wheels (the quick mode)."""
    binary = [p for p in chosen if p.name not in SDIST_ONLY]
    with tempfile.TemporaryDirectory(prefix="gpu-kit-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        done = _pip(["install", "--dry-run", "--ignore-installed", "--no-deps", "--only-binary=:all:",
                     *_target(python_version), "--target", str(Path(scratch) / "t"), "--report", str(report),
                     "--quiet", *[p.spec for p in binary]], timeout=300)
        if done.returncode != 0:
            raise _fail(f"resolving the kit's wheels for Python {python_version}", done)
        items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
        resolved = {canonical(i["metadata"]["name"]): i["download_info"]["url"].rsplit("/", 1)[-1]
                    for i in items}
        for pin in chosen:
            if pin.name in SDIST_ONLY:
                sdist = _pip(["download", "--no-deps", "--no-binary=:all:",
                              "-d", scratch, pin.spec], timeout=300)
                if sdist.returncode != 0:
                    raise _fail(f"resolving the sdist of {pin.spec}", sdist)
                resolved[canonical(pin.name)] = f"{pin.name}-{pin.version} (sdist, built into a wheel)"
    missing = [p.spec for p in chosen if canonical(p.name) not in resolved]
    if missing:
        raise PrepareError(f"the resolver left out {', '.join(missing)}")
    return resolved


def prepare(python_version: str = "3.12", dest: Path = WHEEL_DIR, quick: bool = False,
            out=print) -> dict:
    """Build (or with `quick`, resolve) the kit; returns the manifest. Raises PrepareError, or
    size.KitTooLarge when repository + kit exceed what a GPU session may carry."""
    chosen = pins()
    if quick:
        resolved = resolve_only(chosen, python_version)
        for name, file in sorted(resolved.items()):
            out(f"  {name}: {file}")
        out(f"resolved {len(resolved)} pinned distributions for CPython {python_version} "
            f"manylinux x86-64 (quick: nothing downloaded)")
        return {"python_version": python_version, "resolved": resolved}
    out(f"downloading {len(chosen)} wheels for CPython {python_version} manylinux x86-64 into {dest}")
    download(chosen, dest, python_version)
    files = collect(chosen, dest)
    manifest = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "python_version": python_version, "platforms": list(PLATFORMS), "wheels": files,
                "excluded": EXCLUDED}
    (dest.parent / MANIFEST.name).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    for f in sorted(files, key=lambda f: -f["bytes"]):
        out(f"  {f['bytes'] / size.MIB:6.2f} MiB  {f['file']}")
    wheel_bytes = sum(f["bytes"] for f in files)
    measured = size.measure(kit=dest.parent)
    out(f"{len(files)} wheels, {wheel_bytes / size.MIB:.1f} MiB")
    out(measured.describe())
    manifest["size"] = measured.to_dict()
    size.check(measured)
    out("fits: carry `.gpu-kit` and run `bash gpu_check/run.sh OUT` on the GPU machine")
    return manifest
