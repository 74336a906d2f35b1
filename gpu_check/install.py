"""Install the kit's wheels on the GPU machine, offline, beside the interpreter's own torch.

Into a folder outside the repository (it must not travel back), put first on PYTHONPATH for every
step, with a `sitecustomize.py` that processes the folder's .pth files (setuptools' distutils shim
is one: Python 3.12 has no distutils, and FunASR imports it). Through `pip install --no-index
--no-deps --target` where the interpreter has pip, else by unpacking the wheels (a wheel is a zip).

torchaudio: the machine's own when it imports (it matches the machine's torch); else the kit's.
The kit's is built for one CUDA version and refuses to import beside a torch built for another;
the engine uses only its pure-Python parts (kaldi fbank, resampling), so then its compiled
extension is removed and it imports without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import ROOT

DEFAULT_SITE = Path(tempfile.gettempdir()) / "seaco-gpu-check-site"
TORCHAUDIO_CHECK = "import torchaudio, torchaudio.compliance.kaldi, torchaudio.functional"

SITECUSTOMIZE = '''"""Written by gpu_check: process this folder's .pth files (it is on PYTHONPATH,
where Python does not read them), then run the interpreter's own sitecustomize, if it has one."""
import os as _os
import site as _site
import sys as _sys

_here = _os.path.dirname(_os.path.abspath(__file__))
_site.addsitedir(_here)
for _entry in list(_sys.path):
    _candidate = _os.path.join(_entry or ".", "sitecustomize.py")
    if _os.path.abspath(_os.path.dirname(_candidate)) != _here and _os.path.isfile(_candidate):
        with open(_candidate, encoding="utf-8") as _file:
            _code = compile(_file.read(), _candidate, "exec")
        exec(_code, {"__name__": "sitecustomize", "__file__": _candidate})
        break
'''


def step_env(site: Path | None, base: dict | None = None) -> dict:
    """The environment every step runs in: the repository and the kit's folder importable."""
    env = dict(os.environ if base is None else base)
    parts = [str(ROOT)] + ([str(site)] if site else [])
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def imports(code: str, env: dict | None = None, python: str = sys.executable,
            timeout: int = 120) -> str | None:
    """None when `code` runs, else the last line of its error."""
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    if done.returncode == 0:
        return None
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def _supported_tags() -> set[str] | None:
    try:
        from pip._vendor.packaging.tags import sys_tags
    except ImportError:
        try:
            from packaging.tags import sys_tags
        except ImportError:
            return None
    return {str(t) for t in sys_tags()}


def compatible(wheel: Path, supported: set[str] | None = None) -> bool:
    """Whether this interpreter can use `wheel`, by its file name's tags."""
    parts = wheel.name[:-4].split("-")
    pythons, abis, platforms = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
    tags = {f"{p}-{a}-{pl}" for p in pythons for a in abis for pl in platforms}
    if supported is not None:
        return bool(tags & supported)
    here = f"cp{sys.version_info[0]}{sys.version_info[1]}"  # crude, without packaging.tags
    platform_ok = any(pl == "any" or pl.endswith("x86_64") for pl in platforms)
    python_ok = any(p in ("py3", "py2", here) for p in pythons) or "abi3" in abis
    return platform_ok and python_ok


def _unpack(wheel: Path, site: Path) -> None:
    """What pip does for our wheels: the archive into site, a .data folder's purelib/platlib too."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in site.glob("*.data"):
        for kind in ("purelib", "platlib"):
            folder = data / kind
            if folder.is_dir():
                for item in folder.iterdir():
                    target = site / item.name
                    if target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    shutil.move(str(item), str(target))
        shutil.rmtree(data)


def install(wheel_dir: Path, site: Path = DEFAULT_SITE, python: str = sys.executable,
            timeout: int = 180, log=print) -> dict:
    """Install every compatible wheel of `wheel_dir` into a fresh `site`; a report for the JSON."""
    report: dict = {"site": str(site), "python": python, "installed": [], "incompatible": [], "notes": []}
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no wheels in {wheel_dir}: run `python -m gpu_check prepare` first "
                                "and carry .gpu-kit")
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    supported = _supported_tags()
    chosen = []
    system_torchaudio = imports(TORCHAUDIO_CHECK, python=python) is None
    for wheel in wheels:
        if wheel.name.startswith("torchaudio-") and system_torchaudio:
            report["torchaudio"] = "the interpreter's own (it imports)"
            continue
        (chosen if compatible(wheel, supported) else report["incompatible"]).append(wheel)
    report["incompatible"] = [w.name for w in report["incompatible"]]
    if report["incompatible"]:
        report["notes"].append(f"{len(report['incompatible'])} wheels do not fit Python "
                               f"{sys.version_info[0]}.{sys.version_info[1]} here; the interpreter's own "
                               "packages stand in where it has them")
    has_pip = imports("import pip", python=python) is None
    if has_pip:
        log(f"installing {len(chosen)} wheels with pip into {site}")
        done = subprocess.run([python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
                               "--disable-pip-version-check", "--target", str(site), *map(str, chosen)],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-4:])
            raise RuntimeError(f"pip install failed: {tail}")
        report["method"] = "pip --target"
    else:
        log(f"no pip here: unpacking {len(chosen)} wheels into {site}")
        for wheel in chosen:
            _unpack(wheel, site)
        report["method"] = "unpacked (no pip)"
    report["installed"] = [w.name for w in chosen]
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    if "torchaudio" not in report:
        report["torchaudio"] = _settle_torchaudio(site, python, log)
    return report


def _settle_torchaudio(site: Path, python: str, log) -> str:
    """The kit's torchaudio as is when it imports beside this torch, else without its extension."""
    if not (site / "torchaudio").is_dir():
        return "none installed"
    error = imports(TORCHAUDIO_CHECK, env=step_env(site), python=python)
    if error is None:
        return "the kit's, with its C extension"
    libraries = list((site / "torchaudio" / "lib").glob("*.so"))
    for library in libraries:
        library.unlink()
    log(f"torchaudio from the kit failed to import ({error}); removed its {len(libraries)} compiled "
        "libraries (the engine uses only its pure-Python parts)")
    again = imports(TORCHAUDIO_CHECK, env=step_env(site), python=python)
    if again is not None:
        raise RuntimeError(f"torchaudio does not import even without its extension: {again}")
    return f"the kit's, without its C extension ({error})"
