"""Running hybridnet's processes from another checkout, so one bench run shows before and after.

A tree is a checkout of this repository (``git worktree add /tmp/old <commit>``). Its manager,
daemon and plugin run with this virtual environment's interpreter and dependencies but the
tree's ``hybridnet`` package: ``PYTHONPATH`` names the tree, and ``PYTHONSAFEPATH`` keeps the
current directory (this checkout, for ``python -m``) off ``sys.path``, so the tree's package is
the one imported, ahead of this checkout's editable install. ``PYTHONDONTWRITEBYTECODE`` keeps
the bench from writing ``__pycache__`` into checkouts that are not its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

THIS_TREE = Path(__file__).resolve().parents[1]


class TreeError(ValueError):
    """A --tree argument does not name a checkout of this repository."""


@dataclasses.dataclass(frozen=True)
class Tree:
    path: Path
    label: str

    @classmethod
    def at(cls, path: Path) -> Tree:
        path = path.resolve()
        if not (path / "hybridnet" / "__init__.py").is_file():
            raise TreeError(f"{path} has no hybridnet/ package: not a checkout of this repository")
        return cls(path, _describe(path))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = str(self.path)
        env["PYTHONSAFEPATH"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def python(self, *args: str) -> list[str]:
        """The command line running this interpreter with ``args`` on the tree's package."""
        return [sys.executable, *args]

    def module(self, module: str, *args: str) -> list[str]:
        """The command line running ``python -m module ARGS`` from this tree."""
        return self.python("-m", module, *args)

    def run(self, *args: str, timeout: float = 120) -> str:
        """Run ``python ARGS`` on the tree's package to completion; its stdout, or an error
        carrying its output."""
        done = subprocess.run(
            self.python(*args),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise TreeError(
                f"{self.label}: python {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout


def _describe(path: Path) -> str:
    """``name@abc1234`` (``+dirty`` with uncommitted changes to tracked files); only the
    directory's name when it is no git checkout (a ``git archive`` export, say)."""
    git = ["git", "-C", str(path)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not head:
        return path.name
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{path.name}@{head}{'+dirty' if dirty else ''}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="run the manager and daemon from this checkout (repeatable; default: this one)",
    )
    parser.add_argument(
        "--trees", nargs="+", type=Path, default=[], metavar="PATH", help="several --tree at once"
    )


def from_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Tree]:
    paths: Sequence[Path] = [*args.tree, *args.trees] or [THIS_TREE]
    try:
        trees = [Tree.at(p) for p in paths]
    except TreeError as exc:
        parser.error(str(exc))
    labels = [t.label for t in trees]
    if len(set(labels)) != len(labels):  # the same commit twice: tell them apart by path
        trees = [Tree(t.path, f"{t.label} ({t.path})") for t in trees]
    return trees
