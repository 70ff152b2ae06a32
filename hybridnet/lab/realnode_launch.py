"""``python -m hybridnet.lab.realnode_launch CGROUP_DIR... -- ARGV``: join cgroups, then exec.

A real node's containerd must run inside the node's cgroup tree from its first instruction:
the runc shims it starts daemonize out of its process group, and the node's teardown finds
them (and the containers under them) by that tree alone. Moving containerd after it started
would race with its first shim, so this launcher writes its own PID into each ``cgroup.procs``
and then replaces itself with ``ARGV`` (same PID: the joined cgroups carry over).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: realnode_launch CGROUP_DIR... -- ARGV", file=sys.stderr)
        return 2
    split = args.index("--")
    cgroups, command = args[:split], args[split + 1 :]
    if not command:
        print("realnode_launch: nothing to run after --", file=sys.stderr)
        return 2
    pid = str(os.getpid())
    for directory in cgroups:
        (Path(directory) / "cgroup.procs").write_text(pid)
    try:
        os.execvp(command[0], command)  # noqa: S606  (an argv list, no shell)
    except OSError as exc:
        print(f"realnode_launch: cannot run {command[0]}: {exc}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main())
