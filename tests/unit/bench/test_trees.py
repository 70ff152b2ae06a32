"""Running a process from another checkout imports that checkout's package."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import trees


def fake_tree(root: Path) -> Path:
    (root / "hybridnet").mkdir(parents=True)
    (root / "hybridnet" / "__init__.py").write_text("")
    return root


def test_the_trees_package_wins_over_this_checkout_even_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trees.THIS_TREE)  # where `python -m` would find this checkout first
    tree = trees.Tree.at(fake_tree(tmp_path / "old"))
    printed = tree.run("-c", "import hybridnet; print(hybridnet.__file__)")
    assert Path(printed.strip()) == tmp_path / "old" / "hybridnet" / "__init__.py"


def test_a_directory_without_the_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(trees.TreeError, match="no hybridnet/ package"):
        trees.Tree.at(tmp_path)


def test_without_trees_this_checkout_runs_and_the_same_commit_twice_is_told_apart(
    tmp_path: Path,
) -> None:
    parser = argparse.ArgumentParser()
    trees.add_arguments(parser)
    (default,) = trees.from_arguments(parser.parse_args([]), parser)
    assert default.path == trees.THIS_TREE
    first, second = fake_tree(tmp_path / "a" / "x"), fake_tree(tmp_path / "b" / "x")
    chosen = trees.from_arguments(parser.parse_args(["--trees", str(first), str(second)]), parser)
    assert [t.path for t in chosen] == [first, second]
    assert len({t.label for t in chosen}) == 2
