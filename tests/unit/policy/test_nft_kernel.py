"""What the renderer writes, handed to the real ``nft`` and kernel: inside a network namespace
made for the test (``unshare --net``, with a user namespace when not root), so the root
namespace's packet filter is never read or changed.

* ``nft -c -f`` (check mode) accepts every truth-table case's full script;
* walking through all cases one after the other with :func:`update_script` leaves, after every
  step, exactly the table the full script of that step builds from scratch.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hybridnet.policy.render import DEFAULT_TABLE, Ruleset, full_script, ruleset, update_script
from tests.unit.policy.cluster import compile_lab, policy
from tests.unit.policy.test_truth_table import CASES

CHILD = """
import json, subprocess, sys
listings = []
for path in sys.argv[2:]:
    done = subprocess.run(["nft", "-f", path], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"nft -f {path}: {done.stderr}")
    listed = subprocess.run(
        ["nft", "-j", "list", "table", "inet", sys.argv[1]],
        capture_output=True, text=True, check=True,
    )
    listings.append(json.loads(listed.stdout)["nftables"])
print(json.dumps(listings))
"""


def _namespace_prefix() -> list[str]:
    if os.geteuid() == 0:
        return ["unshare", "--net", "--"]
    return ["unshare", "--map-root-user", "--net", "--"]


@pytest.fixture(scope="module")
def isolated() -> list[str]:
    """The command prefix that runs a program in a fresh network namespace."""
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("needs nft and unshare (nftables, util-linux)")
    probe = subprocess.run(
        [*_namespace_prefix(), "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot run nft in a new network namespace here: {probe.stderr.strip()}")
    return _namespace_prefix()


def _rulesets() -> list[Ruleset]:
    return [
        ruleset(compile_lab([policy(ns, name, spec) for ns, name, spec in case.policies]))
        for case in CASES
    ]


def _apply_in_namespace(isolated: list[str], scripts: Sequence[str], tmp: Path) -> list[Any]:
    paths = []
    for index, script in enumerate(scripts):
        path = tmp / f"step{index:02d}.nft"
        path.write_text(script)
        paths.append(str(path))
    done = subprocess.run(
        [*isolated, sys.executable, "-c", CHILD, DEFAULT_TABLE, *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listings: list[Any] = json.loads(done.stdout)
    return listings


def _normalised(listing: list[dict[str, Any]]) -> dict[str, Any]:
    """Objects by kind and name, handles dropped, set elements sorted, rules in chain order."""
    found: dict[str, Any] = {}
    for item in listing:
        ((kind, body),) = item.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind == "rule":
            found.setdefault(f"rules {body['chain']}", []).append(body["expr"])
            continue
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        found[f"{kind} {body.get('name', '')}"] = body
    return found


def test_check_mode_accepts_every_full_script(isolated: list[str], tmp_path: Path) -> None:
    for index, rules in enumerate(_rulesets()):
        path = tmp_path / f"case{index:02d}.nft"
        path.write_text(full_script(rules))
        done = subprocess.run(
            [*isolated, "nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{CASES[index].name}: {done.stderr}"


def test_updates_leave_what_the_full_script_builds(isolated: list[str], tmp_path: Path) -> None:
    steps = _rulesets()
    steps += list(reversed(steps))  # and back: everything added is removed again
    updates = [full_script(steps[0])]
    updates += [update_script(old, new) or "\n" for old, new in itertools.pairwise(steps)]
    fulls = [full_script(step) for step in steps]
    (tmp_path / "updates").mkdir()
    (tmp_path / "fulls").mkdir()
    by_update = _apply_in_namespace(isolated, updates, tmp_path / "updates")
    from_scratch = _apply_in_namespace(isolated, fulls, tmp_path / "fulls")
    assert len(by_update) == len(from_scratch) == len(steps)
    for index, (updated, built) in enumerate(zip(by_update, from_scratch, strict=True)):
        case = CASES[index if index < len(CASES) else 2 * len(CASES) - 1 - index]
        assert _normalised(updated) == _normalised(built), f"step {index}: {case.name}"
