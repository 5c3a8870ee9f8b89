"""The code measurement covers the coprocessor package and the verifier modules it imports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coprocessor.measurement import REPO_ROOT, VERIFIER_MODULES, code_measurement, compute_measurement, measured_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the measured code (without caches) to modify."""
    shutil.copytree(REPO_ROOT / "coprocessor", tmp_path / "coprocessor", ignore=shutil.ignore_patterns("__pycache__"))
    for rel in VERIFIER_MODULES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    return tmp_path


def test_measurement_is_32_bytes_cached_and_matches_the_definition() -> None:
    value = code_measurement()
    assert len(value) == 32
    assert code_measurement() is value
    assert compute_measurement() == value


def test_measured_files_are_the_package_and_verifier_modules() -> None:
    files = measured_files()
    assert files == sorted(files)
    assert "coprocessor/executor.py" in files and "coprocessor/jobs/http_json.py" in files
    assert set(VERIFIER_MODULES) <= set(files)
    assert not any("__pycache__" in f or not f.endswith(".py") for f in files)
    assert "verifier/gatekeeper.py" not in files


def test_copy_measures_the_same(tree: Path) -> None:
    assert compute_measurement(tree) == code_measurement()


@pytest.mark.parametrize("rel", ["coprocessor/executor.py", "coprocessor/jobs/echo.py", "verifier/protocol.py"])
def test_changing_a_byte_changes_the_measurement(tree: Path, rel: str) -> None:
    before = compute_measurement(tree)
    path = tree / rel
    path.write_bytes(path.read_bytes() + b"\n# changed\n")
    assert compute_measurement(tree) != before


def test_adding_or_renaming_a_file_changes_the_measurement(tree: Path) -> None:
    before = compute_measurement(tree)
    (tree / "coprocessor" / "jobs" / "extra.py").write_text("")
    added = compute_measurement(tree)
    assert added != before
    (tree / "coprocessor" / "jobs" / "extra.py").rename(tree / "coprocessor" / "jobs" / "other.py")
    assert compute_measurement(tree) not in (before, added)


def test_cache_files_do_not_count(tree: Path) -> None:
    before = compute_measurement(tree)
    (tree / "coprocessor" / "__pycache__").mkdir(exist_ok=True)
    (tree / "coprocessor" / "__pycache__" / "x.py").write_text("junk")
    (tree / "coprocessor" / "notes.txt").write_text("junk")
    assert compute_measurement(tree) == before


def test_missing_measured_file_is_an_error(tree: Path) -> None:
    (tree / "verifier" / "hexutil.py").unlink()
    with pytest.raises(FileNotFoundError):
        compute_measurement(tree)


def test_paths_are_part_of_the_measurement(tmp_path: Path) -> None:
    def measure(name: str) -> bytes:
        root = tmp_path / name
        (root / "coprocessor").mkdir(parents=True)
        (root / "coprocessor" / name).write_text("same contents")
        return compute_measurement(root, extra=())

    assert measure("a.py") != measure("b.py")
