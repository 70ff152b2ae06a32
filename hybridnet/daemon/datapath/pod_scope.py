"""Which of the node's pending operations concern one pod: CNI CHECK reports those.

CHECK asks whether a pod's networking is as it should be. Its own attachment is checked by
hybridnet.daemon.attachment; what the pod also relies on is node-wide (its subnet's table and
rule, the VXLAN device and its FDB entries for an overlay pod, the VLAN sub-interface for an
underlay pod). The reconciler's own diff says what of that is missing or wrong: an operation
concerns the pod when it is a route or rule in one of the pod's tables, or an object on a
device those tables route out of. Pure.
"""

from __future__ import annotations

from hybridnet.daemon.datapath.config import RoutingNumbers
from hybridnet.daemon.datapath.desired import DesiredState
from hybridnet.daemon.datapath.model import KernelObject, Link, Route, Rule
from hybridnet.daemon.datapath.plan import Operation, Plan


def concerning(
    desired: DesiredState,
    drift: Plan,
    subnets: set[str],
    numbers: RoutingNumbers,
    overlay: bool,
) -> tuple[Operation, ...]:
    """The operations of ``drift`` that a pod of ``subnets`` (overlay or not) relies on."""
    tables = {desired.subnet_tables[name] for name in subnets if name in desired.subnet_tables}
    if overlay:
        tables.add(numbers.overlay_table)
    devices = {
        obj.oif
        for obj in desired.objects
        if isinstance(obj, Route) and obj.table in tables and obj.oif is not None
    }
    tables.add(numbers.local_pod_table)  # its rule; its routes are the pods' own veths

    def relevant(target: KernelObject) -> bool:
        if isinstance(target, Route | Rule) and target.table in tables:
            return True
        names = set(target.links) | ({target.name} if isinstance(target, Link) else set())
        return bool(names & devices)

    return tuple(op for op in drift.operations if relevant(op.target))
