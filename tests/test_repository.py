"""The repository stands alone: nothing tracked may reach for a path outside the checkout.

A stranger's clone has nothing beside it (no developer's folder next to the checkout, no home
folder), so a test
or module that reads such a path passes on the developer's machine and fails for everyone else.
This scans every tracked text file with three rules and fails naming file, line and rule:

- no literal path into the developers' folder beside the checkout (SIBLING below) or into a
  developer machine (`/work/...`, `/root/...`, `/home/...`);
- no Python expression that climbs above the repository root: `Path(__file__)` followed by more
  `.parent` steps than the module sits deep, or `.parent` of a name that holds the root;
- no relative path leaving the checkout (`"../x"`) in product code, scripts or config. Tests are
  exempt from this last rule only: they feed `..` to the folder checks as hostile input.

Each rule is also run on a snippet that breaks it, so the guard is known to be able to fail.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from asr.settings import PROJECT_ROOT

TEXT_SUFFIXES = {".py", ".sh", ".yaml", ".yml", ".toml", ".md", ".txt", ".tsv", ".cfg", ".ini", ""}
SKIP_DIRS = {".git", ".venv", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", "test-artifacts"}
ROOT_NAMES = re.compile(r"^(PROJECT_ROOT|REPO_ROOT|ROOT|REPOSITORY)$")
SIBLING = "sha" "red"  # the developers' folder beside the checkout, spelt so this file never names its path
OUTSIDE_LITERAL = re.compile(rf"\.\./{SIBLING}\b|(?<![\w.])/work/|(?<![\w.])/root/|(?<![\w.])/home/\w")
LEAVING = re.compile(r"""["'\s=(]\.\./""")


def tracked_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """`git ls-files` in a checkout; every file but caches and the venv in a plain copy."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
        names = [n for n in out.stdout.decode().split("\0") if n]
        if names:
            return [root / n for n in names]
    except (OSError, subprocess.CalledProcessError):
        pass
    return [p for p in root.rglob("*")
            if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(root).parts)]


def _climbs_out(tree: ast.AST, depth: int) -> list[int]:
    """Lines where `Path(__file__)...parent` climbs past the root (`depth` folders deep), or a
    root's parent."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr == "parent"):
            continue
        steps, inner = 0, node
        while isinstance(inner, (ast.Attribute, ast.Call)):
            if isinstance(inner, ast.Attribute):
                steps += inner.attr == "parent"
                inner = inner.value
            else:
                if _is_file_path(inner):
                    break
                inner = inner.func
        if isinstance(inner, ast.Call) and _is_file_path(inner) and steps > depth + 1:
            lines.append(node.lineno)
        elif isinstance(inner, ast.Name) and ROOT_NAMES.match(inner.id) and steps >= 1:
            lines.append(node.lineno)
    return sorted(set(lines))


def _is_file_path(call: ast.Call) -> bool:
    """`Path(__file__)` (any callable named like a path constructor applied to __file__)."""
    return (isinstance(call.func, (ast.Name, ast.Attribute)) and len(call.args) == 1
            and isinstance(call.args[0], ast.Name) and call.args[0].id == "__file__")


def violations(relative: str, text: str) -> list[str]:
    """Every way `text` (the file at `relative` in the checkout) reaches outside the checkout."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if OUTSIDE_LITERAL.search(line):
            found.append(f"{relative}:{number}: names a path outside the checkout: {line.strip()}")
        exempt = relative.startswith("tests/") or relative.endswith(".md")
        if not exempt and LEAVING.search(line):
            found.append(f"{relative}:{number}: relative path leaving the checkout: {line.strip()}")
    if relative.endswith(".py"):
        depth = relative.count("/")  # asr/x.py sits one level below the root
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return found
        for number in _climbs_out(tree, depth):
            found.append(f"{relative}:{number}: climbs above the repository root")
    return found


def test_no_tracked_file_refers_to_a_path_outside_the_repository():
    problems = []
    for path in tracked_files():
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        if relative == "tests/test_repository.py":
            continue  # its own patterns and bad examples
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        problems += violations(relative, text)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("relative, text", [
    ("tests/conftest.py", f'AUDIO = PROJECT_ROOT.parent / "{SIBLING}" / "audio"\n'),
    ("tests/conftest.py", f'AUDIO = Path("../{SIBLING}/audio")\n'),
    ("asr/model.py", 'CONFIG = Path(__file__).resolve().parent.parent.parent / "x.yaml"\n'),
    ("webui.py", 'HERE = Path(__file__).parent.parent\n'),
    ("run.sh", 'source ../env.sh\n'),
    ("config.yaml", 'dir: "../outside"\n'),
    ("README.md", "Put the audio in /work/data/audio first.\n"),
])
def test_the_guard_catches_each_kind_of_outside_path(relative, text):
    assert violations(relative, text), text


@pytest.mark.parametrize("relative, text", [
    ("asr/settings.py", "PROJECT_ROOT = Path(__file__).resolve().parent.parent\n"),
    ("tests/conftest.py", 'AUDIO = Path(__file__).resolve().parent / "audio"\n'),
    ("tests/test_folders.py", 'BAD = ["../secret", "{allowed}/../secret"]\n'),
])
def test_the_guard_leaves_paths_inside_the_repository_alone(relative, text):
    assert violations(relative, text) == []


def test_imports_point_down_the_layers_and_never_into_the_harness():
    """tools.import_graph: the engine never imports a face, the product never imports benchmarks/,
    and no module imports itself round a circle; an arrow added against that is caught."""
    from tools import import_graph

    edges = import_graph.graph()
    assert "benchmarks.report" in edges and "tuning.precision_check" in edges
    assert import_graph.arrows_up(edges) == [] and import_graph.circles(edges) == []
    edges["tuning.precision_check"].add("benchmarks.report")  # the arrow this test was written after
    assert import_graph.arrows_up(edges) == [("tuning.precision_check", "benchmarks.report")]
