"""Everything dead runs left on the machine, in one list, and its removal.

:mod:`hybridnet.lab.netns` knows the namespaces and root-namespace links of a run, and
:mod:`hybridnet.lab.realnode` the real-cluster nodes' cgroup trees (``/<run prefix>-<node>``
in every hierarchy, with whatever still runs in them). A run that died leaves both, and both
are told from a live run's by the run's lock, so ``python -m hybridnet.lab leftovers`` and
``clean`` (and ``make test``'s last check) cover both here. Separate from netns, which
realnode builds on.
"""

from __future__ import annotations

from hybridnet.lab import netns, realnode


def leftovers() -> list[str]:
    """Namespaces and root-namespace links of dead runs (and any of ours without a run
    prefix), then the node cgroup trees of dead runs (``cgroup /<name>``)."""
    return netns.leftovers() + [f"cgroup /{name}" for name in realnode.stale_cgroups()]


def remove_leftovers() -> list[str]:
    """Remove what :func:`leftovers` lists of dead runs: the cgroup trees first (their
    processes are killed by PID, as the tree lists them, before their namespaces go), then
    the namespaces and lock files. Returns what was removed, named as leftovers() names it."""
    removed = [f"cgroup /{name}" for name in realnode.remove_stale_cgroups()]
    removed += [f"netns {name}" for name in netns.remove_stale_runs()]
    return removed
