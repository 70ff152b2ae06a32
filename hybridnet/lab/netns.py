"""Network namespaces of ours: create, connect by veth, delete, and tell ours from the rest.

Rules the lab keeps so that it can never cut off the machine:

* the root namespace is never changed: every link is created directly inside a namespace of
  ours (``ip link add ... netns A type veth peer ... netns B``);
* every namespace carries the run's prefix (``hnt`` + six hex digits); a lock file held for the
  life of the run tells a live run from the leftovers of a crashed one, which the next run
  removes (see :func:`remove_stale_runs`);
* only ``ip`` from iproute2 touches the kernel, so the lab shares no code (and no bugs) with
  hybridnet's own netlink layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from hybridnet.lab.processes import Process, run

PREFIX_ROOT = "hnt"
"""Every namespace the lab creates starts with this, then six hex digits naming the run."""

RUN_PREFIX_PATTERN = re.compile(rf"^({PREFIX_ROOT}[0-9a-f]{{6}})-")
LOCK_DIR = Path(os.environ.get("HYBRIDNET_TESTBED_LOCK_DIR", "/run/hybridnet-testbed"))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` with the given arguments (use ``-n NS`` to act inside a namespace)."""
    return run(["ip", *args], check=check)


# --------------------------------------------------------------------------- namespaces


@dataclasses.dataclass
class Namespace:
    """A network namespace of ours; ``lo`` is up from the start."""

    name: str
    processes: list[Process] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        """The bind-mount path a CNI runtime passes as ``CNI_NETNS``."""
        return f"/run/netns/{self.name}"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return ip("-n", self.name, *args, check=check)

    def exec(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run(args, netns=self.name, **kwargs)

    def spawn(self, args: Sequence[str], env: dict[str, str] | None = None) -> Process:
        """Start a long-lived process inside the namespace; it is stopped with the namespace."""
        process = Process(args, netns=self.name, env=env)
        self.processes.append(process)
        return process

    def sysctl(self, key: str, value: str) -> None:
        self.exec(["sysctl", "-q", "-w", f"{key}={value}"])

    def addresses(self, ifname: str) -> list[str]:
        """The global addresses on ``ifname``, in CIDR form."""
        out = self.ip("-j", "addr", "show", "dev", ifname).stdout
        return [
            f"{a['local']}/{a['prefixlen']}"
            for link in json.loads(out)
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        ]

    def links(self) -> list[str]:
        return [link["ifname"] for link in json.loads(self.ip("-j", "link", "show").stdout)]

    def delete(self) -> None:
        """Stop our processes in it, then remove it; tolerates a namespace already gone."""
        for process in self.processes:
            process.stop()
        self.processes.clear()
        delete_namespace(self.name)


def create_namespace(name: str) -> Namespace:
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    return Namespace(name)


def delete_namespace(name: str) -> None:
    """Kill what still runs inside ``name`` (it is ours), then delete it; absent is fine."""
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "delete", name, check=False)


def list_namespaces() -> list[str]:
    out = ip("-j", "netns", "list").stdout.strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


def root_links() -> list[str]:
    """Names of the links in the root namespace (read only)."""
    return [link["ifname"] for link in json.loads(ip("-j", "link", "show").stdout)]


def connect(a: Namespace, a_ifname: str, b: Namespace, b_ifname: str) -> None:
    """A veth pair created directly between two namespaces: never visible in the root one."""
    spec = f"link add {a_ifname} netns {a.name} type veth peer name {b_ifname} netns {b.name}"
    ip(*spec.split())
    a.ip("link", "set", a_ifname, "up")
    b.ip("link", "set", b_ifname, "up")


# --------------------------------------------------------------------------- runs and leftovers


class TestbedRun:
    """One run of the bed: its name prefix and the lock that marks it alive."""

    __test__ = False

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix or f"{PREFIX_ROOT}{secrets.token_hex(3)}"
        if not RUN_PREFIX_PATTERN.match(self.prefix + "-"):
            raise ValueError(f"run prefix {self.prefix!r} must be {PREFIX_ROOT} + 6 hex digits")
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self.lock_path = LOCK_DIR / f"{self.prefix}.lock"
        self._lock: IO[str] | None = self.lock_path.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._counter = 0

    def name(self, role: str) -> str:
        """A namespace name unique within the run, e.g. ``hnt1a2b3c-node1``."""
        return f"{self.prefix}-{role}"

    def unique(self, role: str) -> str:
        self._counter += 1
        return self.name(f"{role}{self._counter}")

    def namespaces(self) -> list[str]:
        return [n for n in list_namespaces() if n.startswith(self.prefix + "-")]

    def lock_fileno(self) -> int:
        """The descriptor holding the run's lock: a child given it (``pass_fds``) keeps the
        run alive after this process exits (``python -m hybridnet.lab cluster up``)."""
        if self._lock is None:
            raise ValueError(f"run {self.prefix} is closed")
        return self._lock.fileno()

    def close(self) -> None:
        """Remove every namespace of this run and release its lock."""
        for name in self.namespaces():
            delete_namespace(name)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
            self.lock_path.unlink(missing_ok=True)


def _run_is_alive(prefix: str) -> bool:
    lock_path = LOCK_DIR / f"{prefix}.lock"
    if not lock_path.exists():
        return False
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def remove_stale_runs() -> list[str]:
    """Delete namespaces (and lock files) left by runs that are no longer alive.

    A run holds an exclusive flock on its lock file for as long as it lives; the kernel drops
    the lock when the process dies however it dies, so a lock we can take is a dead run.
    Returns the namespaces removed.
    """
    removed = []
    for name in list_namespaces():
        match = RUN_PREFIX_PATTERN.match(name)
        if match and not _run_is_alive(match.group(1)):
            delete_namespace(name)
            removed.append(name)
    if LOCK_DIR.is_dir():
        for lock_path in LOCK_DIR.glob(f"{PREFIX_ROOT}*.lock"):
            if not _run_is_alive(lock_path.stem):
                lock_path.unlink(missing_ok=True)
    return removed


def leftovers() -> list[str]:
    """What runs that are no longer alive left on the machine: namespaces and root-namespace
    links (with the real-cluster nodes' cgroup trees: :func:`hybridnet.lab.sweep.leftovers`,
    the package's ``leftovers``). A run still alive (another checkout's tests, a benchmark)
    holds its lock and owns what it has, so it is not counted; a name without a run prefix
    is always counted."""

    def left(name: str) -> bool:
        match = RUN_PREFIX_PATTERN.match(name)
        return name.startswith(PREFIX_ROOT) and not (match and _run_is_alive(match.group(1)))

    found = [f"netns {n}" for n in list_namespaces() if left(n)]
    found += [f"link {n}" for n in root_links() if left(n)]
    return found


@contextlib.contextmanager
def testbed_run() -> Iterator[TestbedRun]:
    """A run for scripts outside pytest (bench, demo): cleans stale runs, removes its own."""
    remove_stale_runs()
    bed = TestbedRun()
    try:
        yield bed
    finally:
        bed.close()
