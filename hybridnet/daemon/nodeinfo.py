"""Publishing this node's NodeInfo: its VTEP (address, MAC, the VTEP interface's other
addresses) for the other nodes' datapaths, and the problems its own datapath found.

Written only when it differs from what the store holds, so a steady node (or a restarted
daemon on an unchanged node) writes nothing. The informer's copy can lag behind our own last
write; until it catches up, that write is what the store holds. A NodeInfo deleted under a
running daemon (the manager deletes a deleted Node's) is created again.
"""

from __future__ import annotations

import copy
import ipaddress
import logging

from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import NodeInfo, NodeInfoSpec, NodeProblem, VTEPInfo
from hybridnet.daemon.datapath.reconcile import ReconcileResult
from hybridnet.ipamstore.ipinstances import now
from hybridnet.logs import fields
from hybridnet.store.errors import AlreadyExists
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)


def desired_spec(result: ReconcileResult, vtep_interface: str | None) -> NodeInfoSpec:
    vtep = result.desired.vtep
    if vtep is None:
        return NodeInfoSpec(vtep_info=None)
    link = result.host.links.get(vtep_interface or "")
    others = [] if link is None else [str(ipaddress.ip_interface(a).ip) for a in link.addresses]
    local_ips = [vtep.address, *(a for a in others if a != vtep.address)]
    return NodeInfoSpec(vtep_info=VTEPInfo(ip=vtep.address, mac=vtep.mac, local_ips=local_ips))


def desired_problems(result: ReconcileResult) -> list[NodeProblem]:
    found = [NodeProblem(str(p.code), p.subject, p.message) for p in result.problems]
    found += [NodeProblem("ApplyFailed", f.subject, str(f)) for f in result.failures]
    return found


class NodeInfoPublisher:
    def __init__(self, store: Store, node_name: str):
        self.store = store
        self.node_name = node_name
        self._written: NodeInfo | None = None
        self._replaced: str | None = None
        """The resource version our last write replaced (None: it created the object)."""

    def publish(
        self, cached: NodeInfo | None, spec: NodeInfoSpec, problems: list[NodeProblem]
    ) -> NodeInfo | None:
        """Make the stored NodeInfo say ``spec`` and ``problems``; the object written, or
        None when nothing needed writing. Raises StoreError (the next reconcile retries)."""
        current = self._current(cached)
        wrote = None
        if current is None:
            fresh = NodeInfo(ObjectMeta(name=self.node_name), spec=copy.deepcopy(spec))
            try:
                current = wrote = self._remember(None, self.store.create(fresh))
            except AlreadyExists:
                # Ours from before a restart, not in the informer's cache yet: its event
                # wakes the worker, which then compares with it (no get: reads are the cache's).
                self.forget_write()
                return None
            log.info("nodeinfo created", extra=fields(node=self.node_name, spec=_text(spec)))
        if current.spec != spec:
            updated = copy.deepcopy(current)
            updated.spec = copy.deepcopy(spec)
            current = wrote = self._remember(current, self.store.update(updated))
            log.info("nodeinfo updated", extra=fields(node=self.node_name, spec=_text(spec)))
        if current.status.problems != problems:
            updated = copy.deepcopy(current)
            updated.status.problems = list(problems)
            updated.status.update_timestamp = now()
            wrote = self._remember(current, self.store.update_status(updated))
        return wrote

    def _current(self, cached: NodeInfo | None) -> NodeInfo | None:
        written = self._written
        if written is None:
            return cached
        behind = (
            cached is None
            if self._replaced is None
            else (cached is not None and cached.metadata.resource_version == self._replaced)
        )
        if behind:
            return written
        # Caught up: from now on the cache is the truth (a NodeInfo deleted later is gone).
        self.forget_write()
        return cached

    def _remember(self, before: NodeInfo | None, after: NodeInfo) -> NodeInfo:
        self._replaced = before.metadata.resource_version if before is not None else None
        self._written = after
        return after

    def forget_write(self) -> None:
        """After a failed write (a conflict): trust the informer's copy again."""
        self._written = self._replaced = None


def _text(spec: NodeInfoSpec) -> str:
    info = spec.vtep_info
    return "no VTEP" if info is None else f"VTEP {info.ip} {info.mac} local {info.local_ips}"
