"""What travels to the GPU machine, in bytes: the repository's working tree (tracked files and
untracked ones git does not ignore) plus the kit folder, against the 64 MiB a session may carry."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import KIT_DIR, LIMIT_BYTES, ROOT

_SKIP = {".git", ".venv", ".cache", ".gpu-kit", "__pycache__", ".pytest_cache", ".ruff_cache",
         "test-artifacts", "bench-results"}
MIB = 2**20


class KitTooLarge(RuntimeError):
    """Repository and kit together exceed what a GPU session may carry."""


@dataclass
class KitSize:
    repo_bytes: int
    repo_files: int
    kit_bytes: int
    kit_files: int
    limit_bytes: int = LIMIT_BYTES
    kit_name: str = ".gpu-kit"

    @property
    def total_bytes(self) -> int:
        return self.repo_bytes + self.kit_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.limit_bytes

    def describe(self) -> str:
        return (f"repository working tree: {self.repo_bytes / MIB:.1f} MiB in {self.repo_files} files\n"
                f"kit ({self.kit_name}): {self.kit_bytes / MIB:.1f} MiB in {self.kit_files} files\n"
                f"total: {self.total_bytes / MIB:.1f} MiB of {self.limit_bytes / MIB:.0f} MiB")

    def to_dict(self) -> dict:
        return {"repo_bytes": self.repo_bytes, "repo_files": self.repo_files, "kit_bytes": self.kit_bytes,
                "kit_files": self.kit_files, "total_bytes": self.total_bytes,
                "limit_bytes": self.limit_bytes, "fits": self.fits}


def working_tree_files(root: Path = ROOT) -> list[Path]:
    """What a copy of the working tree holds: `git ls-files` of tracked and unignored untracked
    files; without git, every file outside the usual ignored folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True, timeout=60)
        names = sorted({n for n in out.stdout.decode("utf-8", "replace").split("\0") if n})
        if names:
            return [root / n for n in names if (root / n).is_file()]
    except (OSError, subprocess.SubprocessError):
        pass
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP]
        files += [Path(folder) / n for n in names]
    return files


def folder_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def measure(root: Path = ROOT, kit: Path = KIT_DIR, limit_bytes: int = LIMIT_BYTES) -> KitSize:
    repo = working_tree_files(root)
    kit_files = folder_files(kit)
    return KitSize(sum(p.stat().st_size for p in repo), len(repo),
                   sum(p.stat().st_size for p in kit_files), len(kit_files), limit_bytes,
                   kit.name if kit.parent == root else str(kit))


def check(size: KitSize) -> None:
    """Raise KitTooLarge, saying by how much and what is biggest, when the kit does not fit."""
    if size.fits:
        return
    over = (size.total_bytes - size.limit_bytes) / MIB
    raise KitTooLarge(f"repository + kit is {size.total_bytes / MIB:.1f} MiB, {over:.1f} MiB over the "
                      f"{size.limit_bytes / MIB:.0f} MiB a GPU session may carry\n{size.describe()}")
