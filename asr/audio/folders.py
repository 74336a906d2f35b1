"""Server folders for the batch tab: confined to `batch.allowed_dirs`, searched for audio files.

A folder path typed into a web page is untrusted input. It is resolved to its real location
(following every symlink and `..`) and accepted only when that lies inside one of the allowed
roots; files found inside are checked the same way, so a symlink planted in an allowed folder
cannot read audio from elsewhere. Listing and reading are apart in time, so each file is checked
again when it is opened, on what was actually opened (`read_confined`): a link swapped in after
the listing cannot lead the read outside the roots either. The batch limits (`batch.max_files`,
`batch.max_total_mb`) are enforced here for folders and for uploads alike, before any decoding
starts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.audio.decode import AUDIO_EXTENSIONS, AudioError

_MB = 2**20


class FolderError(ValueError):
    """The folder or the batch cannot be used; the message says why and which setting applies."""


@dataclass
class FolderListing:
    """What a folder holds: audio files (real paths, sorted) and what was left out and why."""

    folder: Path
    files: list[Path]
    total_bytes: int
    skipped_outside: list[str] = field(default_factory=list)  # symlinks leading out of the roots

    def relative_name(self, path: Path) -> str:
        """Name to show for a file: its path below the chosen folder, with forward slashes."""
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return path.name


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def allowed_roots(allowed_dirs: Sequence[str | Path], base: Path | None = None) -> list[Path]:
    """Real paths of the configured roots; relative entries are relative to `base` (the project)."""
    roots = []
    for entry in allowed_dirs:
        path = Path(entry).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        roots.append(path.resolve())
    return roots


def resolve_folder(text: str, roots: Sequence[Path]) -> Path:
    """The real folder `text` names, if it lies inside one of `roots`; FolderError otherwise.

    A relative path is looked up under each root in turn.
    """
    raw = (text or "").strip()
    if not roots:
        raise FolderError("folder input is disabled: no server folders are allowed "
                          "(list them under batch.allowed_dirs in config.yaml)")
    if not raw:
        raise FolderError("enter a server folder path")
    if "\x00" in raw:
        raise FolderError("the folder path contains a NUL character")
    allowed = ", ".join(str(r) for r in roots)
    given = Path(raw).expanduser()
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops end up here
            raise FolderError(f"cannot resolve folder {raw}: {exc}") from None
        if not any(_inside(real, root) for root in roots):
            continue
        if not real.exists():
            raise FolderError(f"folder not found: {raw}")
        if not real.is_dir():
            raise FolderError(f"{raw} is a file, not a folder")
        return real
    raise FolderError(f"folder {raw} is outside the allowed folders ({allowed}); "
                      "only folders listed in batch.allowed_dirs may be read")


def check_batch_limits(count: int, total_bytes: int, max_files: int, max_total_mb: int) -> None:
    """Refuse a batch over `batch.max_files` files or `batch.max_total_mb` megabytes."""
    if count > max_files:
        raise FolderError(f"{count} files in one batch; the limit is {max_files} "
                          "(batch.max_files in config.yaml)")
    if total_bytes > max_total_mb * _MB:
        raise FolderError(f"the batch holds {total_bytes / _MB:.1f} MB of audio; the limit is "
                          f"{max_total_mb} MB (batch.max_total_mb in config.yaml)")


def check_paths_limits(paths: Sequence[str | Path], max_files: int, max_total_mb: int) -> None:
    """check_batch_limits for files already on disk (uploads)."""
    total = 0
    for path in paths:
        try:
            total += Path(path).stat().st_size
        except OSError:
            pass  # a vanished upload fails alone later, with the engine's message
    check_batch_limits(len(paths), total, max_files, max_total_mb)


def list_audio_files(folder: Path, roots: Sequence[Path], max_files: int,
                     max_total_mb: int) -> FolderListing:
    """Audio files under `folder` (recursively, by extension), within the batch limits.

    Directory symlinks are not followed (no loops, no escapes); file symlinks are kept only when
    their target lies inside an allowed root. Stops walking once the file limit is exceeded, so a
    huge tree is refused quickly.
    """
    files: list[Path] = []
    skipped: list[str] = []
    total = 0
    for directory, subdirs, names in os.walk(folder, followlinks=False):
        subdirs.sort()
        for name in sorted(names):
            if not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            path = Path(directory) / name
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                skipped.append(str(path))  # a dangling or looping link
                continue
            if not any(_inside(real, root) for root in roots):
                skipped.append(str(path))
                continue
            if not real.is_file():  # a FIFO or device named *.wav would block the reader forever
                continue
            files.append(path)
            total += real.stat().st_size
            if len(files) > max_files:
                raise FolderError(f"{folder} holds more than {max_files} audio files; the limit is "
                                  f"{max_files} (batch.max_files in config.yaml)")
    if not files:
        kinds = " ".join(AUDIO_EXTENSIONS)
        raise FolderError(f"no audio files found in {folder} (looked for {kinds})")
    check_batch_limits(len(files), total, max_files, max_total_mb)
    return FolderListing(folder, files, total, skipped)


def read_confined(path: str | Path, roots: Sequence[Path]) -> bytes:
    """The bytes of a listed file, read only if what is opened *now* lies inside `roots`.

    The check is made on the open file itself (its path as the kernel sees it), not on the name
    before opening, so there is no gap between check and use for a swapped link to slip through,
    whichever component of the path was swapped. O_NONBLOCK keeps a FIFO swapped in from
    blocking the read; it is then refused as not a regular file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise AudioError(f"file not found: {path} (removed after the folder was listed?)") from None
    except OSError as exc:
        raise AudioError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        real = _opened_path(fd)
        if real is None or not any(_inside(real, root) for root in roots):
            raise AudioError(f"{Path(path).name} now leads outside the allowed folders; it was not "
                             "read (a link changed after the folder was listed)")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AudioError(f"{Path(path).name} is not a regular file; it was not read")
        try:
            return handle.read()
        except OSError as exc:
            raise AudioError(f"cannot read {path}: {exc.strerror or exc}") from None


def _opened_path(fd: int) -> Path | None:
    """Where an open file really is (Linux's /proc); None when that cannot be told."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None
