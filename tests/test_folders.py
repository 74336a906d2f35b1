"""Server-folder confinement and batch limits, on a real directory tree with real symlinks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from asr.audio.folders import (
    FolderError,
    allowed_roots,
    check_batch_limits,
    check_paths_limits,
    list_audio_files,
    resolve_folder,
)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """allowed/ (with audio, a sub folder, non-audio, and links out) beside a secret/ folder."""
    allowed = tmp_path / "allowed"
    secret = tmp_path / "secret"
    (allowed / "sub" / "deeper").mkdir(parents=True)
    secret.mkdir()
    (allowed / "one.wav").write_bytes(b"x" * 1000)
    (allowed / "sub" / "two.MP3").write_bytes(b"x" * 2000)
    (allowed / "sub" / "deeper" / "three.m4a").write_bytes(b"x" * 3000)
    (allowed / "notes.txt").write_text("not audio")
    (secret / "private.wav").write_bytes(b"x" * 500)
    os.symlink(secret, allowed / "link-to-secret")  # a directory link out
    os.symlink(secret / "private.wav", allowed / "sub" / "leak.wav")  # a file link out
    os.symlink(allowed / "one.wav", allowed / "sub" / "alias.wav")  # a file link that stays in
    return {"root": tmp_path, "allowed": allowed, "secret": secret}


def test_folder_inside_root_is_listed_recursively(tree):
    roots = allowed_roots([tree["allowed"]])
    folder = resolve_folder(str(tree["allowed"]), roots)
    listing = list_audio_files(folder, roots, max_files=10, max_total_mb=1)
    names = [listing.relative_name(p) for p in listing.files]
    assert names == ["one.wav", "sub/alias.wav", "sub/two.MP3", "sub/deeper/three.m4a"]
    assert listing.total_bytes == 1000 + 1000 + 2000 + 3000
    assert listing.skipped_outside == [str(tree["allowed"] / "sub" / "leak.wav")]


def test_relative_path_is_looked_up_under_the_roots(tree):
    roots = allowed_roots([tree["allowed"]])
    assert resolve_folder("sub", roots) == (tree["allowed"] / "sub").resolve()
    assert resolve_folder("  sub/deeper ", roots) == (tree["allowed"] / "sub" / "deeper").resolve()


@pytest.mark.parametrize("given", [
    "{secret}", "{allowed}/../secret", "{allowed}/link-to-secret", "link-to-secret", "../secret", "/",
    "{allowed}/sub/../../secret",
])
def test_escapes_are_refused(tree, given):
    roots = allowed_roots([tree["allowed"]])
    text = given.format(**{k: str(v) for k, v in tree.items()})
    with pytest.raises(FolderError, match="outside the allowed folders"):
        resolve_folder(text, roots)


def test_dotdot_that_stays_inside_is_fine(tree):
    roots = allowed_roots([tree["allowed"]])
    assert resolve_folder(f"{tree['allowed']}/sub/../sub", roots) == (tree["allowed"] / "sub").resolve()


def test_missing_file_empty_and_disabled(tree):
    roots = allowed_roots([tree["allowed"]])
    with pytest.raises(FolderError, match="folder not found"):
        resolve_folder(str(tree["allowed"] / "nope"), roots)
    with pytest.raises(FolderError, match="is a file"):
        resolve_folder(str(tree["allowed"] / "one.wav"), roots)
    with pytest.raises(FolderError, match="enter a server folder"):
        resolve_folder("  ", roots)
    with pytest.raises(FolderError, match="folder input is disabled"):
        resolve_folder(str(tree["allowed"]), [])
    (tree["allowed"] / "empty").mkdir()
    with pytest.raises(FolderError, match="no audio files found"):
        list_audio_files(tree["allowed"] / "empty", roots, 10, 10)


def test_relative_roots_are_relative_to_base(tree):
    roots = allowed_roots(["allowed"], base=tree["root"])
    assert roots == [tree["allowed"].resolve()]


def test_file_limit(tree):
    roots = allowed_roots([tree["allowed"]])
    with pytest.raises(FolderError, match=r"more than 3 audio files.*batch\.max_files"):
        list_audio_files(tree["allowed"], roots, max_files=3, max_total_mb=100)


def test_size_limit(tree):
    big = tree["allowed"] / "big"
    big.mkdir()
    (big / "a.wav").write_bytes(b"\0" * (2 * 2**20 + 1))
    roots = allowed_roots([tree["allowed"]])
    with pytest.raises(FolderError, match=r"2\.0 MB.*limit is 2 MB \(batch\.max_total_mb"):
        list_audio_files(big, roots, max_files=10, max_total_mb=2)


def test_upload_limits(tree):
    files = [tree["allowed"] / "one.wav", tree["allowed"] / "sub" / "two.MP3"]
    check_paths_limits(files, max_files=2, max_total_mb=1)
    with pytest.raises(FolderError, match=r"2 files in one batch; the limit is 1"):
        check_paths_limits(files, max_files=1, max_total_mb=1)
    with pytest.raises(FolderError, match="batch.max_total_mb"):
        check_batch_limits(1, 5 * 2**20, max_files=1, max_total_mb=4)


def test_a_fifo_named_like_audio_is_skipped(tmp_path):
    """Reading a FIFO blocks forever; the listing must never hand one to the engine."""
    import os

    from asr.audio.folders import list_audio_files

    root = tmp_path / "root"
    root.mkdir()
    (root / "real.wav").write_bytes(b"RIFF")
    os.mkfifo(root / "pipe.wav")
    listing = list_audio_files(root, [root], max_files=10, max_total_mb=10)
    assert [p.name for p in listing.files] == ["real.wav"]


@pytest.fixture
def audio_tree(tmp_path: Path, clip_dir: Path) -> dict[str, Path]:
    """allowed/ with three real clips (one in a sub folder) beside outside/ with a secret one."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(clip_dir / "clip00.wav", allowed / "a.wav")
    shutil.copy(clip_dir / "clip01.wav", allowed / "b.wav")
    shutil.copy(clip_dir / "clip02.wav", allowed / "sub" / "c.wav")
    shutil.copy(clip_dir / "clip05.wav", outside / "secret.wav")
    shutil.copy(clip_dir / "clip05.wav", outside / "c.wav")
    return {"allowed": allowed, "outside": outside}


def test_a_link_swapped_in_after_listing_reads_nothing_outside(engine, audio_tree):
    """Between listing and reading, b.wav becomes a link out and sub/ a link to an outside folder:
    both fail alone with a clear error; a.wav, untouched, is recognised as usual."""
    allowed, outside = audio_tree["allowed"], audio_tree["outside"]
    roots = allowed_roots([allowed])
    listing = list_audio_files(resolve_folder(str(allowed), roots), roots, max_files=10, max_total_mb=10)
    assert [listing.relative_name(p) for p in listing.files] == ["a.wav", "b.wav", "sub/c.wav"]
    (allowed / "b.wav").unlink()
    os.symlink(outside / "secret.wav", allowed / "b.wav")  # the file itself swapped
    shutil.rmtree(allowed / "sub")
    os.symlink(outside, allowed / "sub")  # a folder on the path swapped
    results = engine.transcribe(listing.files, confine_to=roots)
    assert results[0].ok and results[0].token_ids == engine.transcribe([allowed / "a.wav"])[0].token_ids
    for swapped in results[1:]:
        assert not swapped.ok and "now leads outside the allowed folders" in swapped.error
        assert not swapped.token_ids


def test_a_fifo_swapped_in_after_listing_fails_without_blocking(engine, audio_tree):
    allowed = audio_tree["allowed"]
    roots = allowed_roots([allowed])
    listing = list_audio_files(allowed, roots, max_files=10, max_total_mb=10)
    (allowed / "a.wav").unlink()
    os.mkfifo(allowed / "a.wav")  # nobody ever writes to it: a blocking open would hang here
    results = engine.transcribe(listing.files, confine_to=roots)
    assert "not a regular file" in results[0].error
    assert all(r.ok for r in results[1:])


def test_a_link_inside_the_roots_is_still_read(engine, audio_tree):
    allowed = audio_tree["allowed"]
    roots = allowed_roots([allowed])
    os.symlink(allowed / "a.wav", allowed / "sub" / "alias.wav")
    listing = list_audio_files(allowed, roots, max_files=10, max_total_mb=10)
    results = engine.transcribe(listing.files, confine_to=roots)
    assert all(r.ok for r in results) and len(results) == 4
