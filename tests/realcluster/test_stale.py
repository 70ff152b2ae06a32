"""What a crashed real-cluster run leaves is found by its dead lock and removed; a live run's
is left alone."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hack.realcluster.cluster import LOCK_FILE, STATE_FILE, TEMP_PREFIX, remove_stale_clusters
from hybridnet.lab.netns import PREFIX_ROOT, TestbedRun
from hybridnet.lab.processes import Process
from hybridnet.lab.realnode import (
    cgroup_hierarchies,
    cgroup_pids,
    kill_cgroup_trees,
    make_cgroup,
    remove_stale_cgroups,
    stale_cgroups,
)

pytestmark = pytest.mark.root


def _tree_with_a_process(name: str) -> Process:
    """A node-like cgroup tree ``/name/containers`` in every hierarchy, with a sleeper in it
    (joined before it runs, as containerd is)."""
    for hierarchy in cgroup_hierarchies():
        make_cgroup(hierarchy / name)
        make_cgroup(hierarchy / name / "containers")
    cgroups = [str(h / name / "containers") for h in cgroup_hierarchies()]
    launcher = [sys.executable, "-m", "hybridnet.lab.realnode_launch", *cgroups, "--"]
    sleeper = Process([*launcher, "sleep", "600"])
    root = cgroup_hierarchies()[0] / name
    # The launcher joins, then execs: wait for its PID to show in the tree (a positive signal;
    # the bound is only reached when the launcher failed, and then its output says why).
    deadline = time.monotonic() + 30
    while sleeper.pid not in cgroup_pids(root):
        assert sleeper.poll() is None and time.monotonic() < deadline, sleeper.read_remaining()
        time.sleep(0.01)
    return sleeper


def test_a_dead_runs_node_tree_is_emptied_and_removed_and_a_live_runs_is_not() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups)")
    dead = f"{PREFIX_ROOT}{secrets.token_hex(3)}-node1"  # no lock file: its run is not alive
    live_run = TestbedRun()
    live = f"{live_run.prefix}-node1"
    dead_sleeper = _tree_with_a_process(dead)
    live_sleeper = _tree_with_a_process(live)
    try:
        assert dead in stale_cgroups()
        assert live not in stale_cgroups()
        assert dead in remove_stale_cgroups()
        assert dead_sleeper.stop() == -signal.SIGKILL  # ended by the cleanup
        assert [h / dead for h in cgroup_hierarchies() if (h / dead).exists()] == []
        assert live_sleeper.poll() is None  # the live run's process runs on
    finally:
        dead_sleeper.stop()
        kill_cgroup_trees(live)
        live_sleeper.stop()
        live_run.close()
    assert [h / live for h in cgroup_hierarchies() if (h / live).exists()] == []


def _lab(command: str) -> subprocess.CompletedProcess[str]:
    """``python -m hybridnet.lab COMMAND``, as ``make test`` and ``make clean-testbed`` run it."""
    return subprocess.run(
        [sys.executable, "-m", "hybridnet.lab", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_lab_commands_list_and_clean_a_dead_runs_node_tree_not_a_live_runs() -> None:
    """``leftovers`` (``make test``'s last check) names a dead run's node cgroup tree and
    exits 1; ``clean`` kills what runs in it and removes it; a live run's tree is neither
    listed nor touched."""
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups)")
    dead = f"{PREFIX_ROOT}{secrets.token_hex(3)}-node1"  # no lock file: its run is not alive
    live_run = TestbedRun()
    live = f"{live_run.prefix}-node1"
    dead_sleeper = _tree_with_a_process(dead)
    live_sleeper = _tree_with_a_process(live)
    try:
        listed = _lab("leftovers")
        assert f"cgroup /{dead}" in listed.stdout.splitlines(), listed
        assert f"cgroup /{live}" not in listed.stdout.splitlines()
        assert listed.returncode == 1
        cleaned = _lab("clean")
        assert cleaned.returncode == 0, cleaned
        assert f"removed cgroup /{dead}" in cleaned.stdout.splitlines()
        assert dead_sleeper.stop() == -signal.SIGKILL  # ended by the clean-up
        assert [h / dead for h in cgroup_hierarchies() if (h / dead).exists()] == []
        assert live_sleeper.poll() is None
        assert f"cgroup /{dead}" not in _lab("leftovers").stdout.splitlines()
    finally:
        dead_sleeper.stop()
        kill_cgroup_trees(dead)
        kill_cgroup_trees(live)
        live_sleeper.stop()
        live_run.close()


def _recorded_sleeper(work_dir: Path) -> Process:
    """A process recorded in ``work_dir``'s state the way a cluster records its scheduler."""
    process = Process([sys.executable, "-c", "import time; time.sleep(600)", str(work_dir)])
    state = {"processes": {"kube-scheduler": {"pid": process.pid, "binary": sys.executable}}}
    (work_dir / STATE_FILE).write_text(json.dumps(state))
    return process


def test_a_dead_clusters_components_are_stopped_and_a_live_clusters_are_not() -> None:
    dead_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    live_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    import fcntl  # noqa: PLC0415

    with (live_dir / LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        dead = _recorded_sleeper(dead_dir)
        live = _recorded_sleeper(live_dir)
        try:
            removed = remove_stale_clusters()
            assert dead_dir in removed
            assert live_dir not in removed
            assert not dead_dir.exists()
            assert dead.stop() == -signal.SIGTERM  # ended by the cleanup's signal
            assert live.poll() is None
        finally:
            dead.stop()
            live.stop()
    for directory in (dead_dir, live_dir):
        if directory.exists():
            for entry in directory.iterdir():
                entry.unlink()
            directory.rmdir()
