"""What a control plane records about itself, and the cleanup after an owner that died.

Each control plane's work directory holds a state file naming its PIDs and a lock held for the
life of the owner. A later start ends the processes of an owner that died without stopping them
(after checking that the PID still runs our binary with our work directory in its arguments)
and removes its directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

TEMP_PREFIX = "hybridnet-cp-"
"""Work directories made by :class:`ControlPlane` itself: ``$TMPDIR/hybridnet-cp-XXXX``."""
STATE_FILE = "controlplane.json"
LOCK_FILE = "controlplane.lock"


def process_argv(pid: int) -> list[str] | None:
    """The command line of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rpartition(")")[2].split()[0] == "Z":
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, binary: str, work_dir: Path) -> bool:
    """True when ``pid`` still runs ``binary`` with an argument inside ``work_dir``.

    Guards against a recycled PID: a recorded PID is only ever signalled when it checks out.
    """
    argv = process_argv(pid)
    if not argv:
        return False
    return argv[0] == binary and any(str(work_dir) in arg for arg in argv[1:])


def stop_recorded(work_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop the processes named in ``work_dir``'s state file; return what was stopped."""
    try:
        state = json.loads((work_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return []
    stopped = []
    processes: dict[str, Any] = state.get("processes", {})
    # kube-apiserver first: without etcd its graceful shutdown waits on etcd until it times out.
    for name in sorted(processes, key=lambda n: n != "kube-apiserver"):
        pid, binary = int(processes[name]["pid"]), str(processes[name]["binary"])
        if not is_ours(pid, binary, work_dir):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_ours(pid, binary, work_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_ours(pid, binary, work_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped.append(f"{name} (pid {pid})")
    return stopped


def _lock_is_free(lock_path: Path) -> bool:
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def remove_stale_control_planes(grace: float = 60.0) -> list[Path]:
    """Stop and remove control planes in ``$TMPDIR/hybridnet-cp-*`` whose owner has died.

    The owner holds an exclusive flock on the lock file while it lives; the kernel drops it
    however the owner dies. Detached control planes (``python -m hack.controlplane up``) are
    skipped. Directories without a lock file younger than ``grace`` seconds are being set up.
    """
    removed = []
    for work_dir in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        lock_path = work_dir / LOCK_FILE
        try:
            if not lock_path.exists():
                if time.time() - work_dir.stat().st_mtime < grace:
                    continue
            elif not _lock_is_free(lock_path):
                continue
            state_path = work_dir / STATE_FILE
            if state_path.exists() and json.loads(state_path.read_text()).get("detached"):
                continue
        except (OSError, ValueError):
            continue
        stop_recorded(work_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        removed.append(work_dir)
    return removed
