"""The node's datapath inside the daemon: the reconcile worker fed by the daemon's informers,
and what follows each reconcile (NodeInfo, Events, the log, metrics).

Problems (bad input, a missing interface) are reported three ways when they appear: on the
NodeInfo's status (for as long as they last), as a Warning Event on the Node, and in the log.
The reconciler leaves out only what depends on the bad input, so everything else keeps being
served.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from hybridnet.api import constants
from hybridnet.api.resources import Network, NodeInfo, NodeProblem
from hybridnet.daemon.cache import NodeCache
from hybridnet.daemon.datapath import pod_scope
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.desired import DesiredState
from hybridnet.daemon.datapath.errors import DatapathError
from hybridnet.daemon.datapath.model import VxlanLink
from hybridnet.daemon.datapath.plan import Action, Operation, Plan
from hybridnet.daemon.datapath.policy_table import PolicyTable, about_interface
from hybridnet.daemon.datapath.reconcile import Reconciler, ReconcileResult
from hybridnet.daemon.datapath.view import NodeView
from hybridnet.daemon.datapath_metrics import DatapathMetrics
from hybridnet.daemon.events import NodeEvents
from hybridnet.daemon.nodeinfo import NodeInfoPublisher, desired_problems, desired_spec
from hybridnet.daemon.policy_metrics import PolicyMetrics
from hybridnet.daemon.policy_report import PolicyReport
from hybridnet.daemon.worker import DEFAULT_RESYNC_PERIOD, ReconcileWorker
from hybridnet.logs import fields
from hybridnet.policy.model import Direction
from hybridnet.policy.render import BASE_CHAIN, Ruleset
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)


class NotCompared(Exception):
    """The datapath cannot be compared with the kernel now (the message says why)."""


class NodeDatapath:
    def __init__(
        self,
        store: Store,
        cache: NodeCache,
        config: NodeConfig,
        registry: CollectorRegistry | None = None,
        resync_period: float = DEFAULT_RESYNC_PERIOD,
        *,
        requires_node: bool = False,
    ):
        self.cache = cache
        self.requires_node = requires_node
        """Publish the NodeInfo only while this node's Node exists (Kubernetes, where a node
        without one has left the cluster; the embedded store needs no Node objects)."""
        self.config = config
        self.node_name = cache.node_name
        self.publisher = NodeInfoPublisher(store, self.node_name)
        self.events = NodeEvents(store, self.node_name)
        self.metrics = DatapathMetrics(registry, self.node_name) if registry is not None else None
        policy_metrics = (
            PolicyMetrics(registry, self.node_name, config.policy_table)
            if registry is not None
            else None
        )
        self.policy = PolicyReport(self.node_name, self.events, policy_metrics)
        self.worker = ReconcileWorker(Reconciler(config), self._view, self._after, resync_period)
        self._reported: set[tuple[str, str, str]] = set()
        self._registered = True
        """Whether this node's Node existed at the last reconcile (logged when it changes)."""
        cache.on_change = self.worker.wake

    def start(self) -> NodeDatapath:
        self.worker.start()
        self.worker.wake()  # a first run as soon as the informers have listed
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.worker.stop(timeout)

    def wake(self) -> None:
        self.worker.wake()

    def wait_for_pod(self, instances: set[str], timeout: float) -> bool:
        """Wait until a reconcile has included the IPInstances named ``instances`` (and so
        built what their pod needs of the node: its proxy neighbour entries, for one)."""

        def holds(view: NodeView) -> bool:
            return instances <= {i.name for i in view.local_ips}

        return self.worker.wait_for_view(holds, timeout)

    def not_ready(self) -> str | None:
        """Why the node is not ready yet: until the first reconcile has completed, pods could
        be attached on a node whose tunnel and routes do not exist. Problems found by that
        reconcile do not count (they are reported; the rest is served)."""
        if self.worker.last is None:
            return "the node datapath has not been reconciled yet"
        return None

    def problems(self) -> list[NodeProblem]:
        """The problems of the last reconcile (none before the first)."""
        last = self.worker.last
        return desired_problems(last) if last is not None else []

    def problems_for(self, network: Network, subnets: set[str]) -> list[str]:
        """The last reconcile's problems that concern ``network``: about it, about one of
        ``subnets``, or about the interface its type is carried by."""
        interface = (
            self.config.underlay_interface
            if network.spec.type == constants.TYPE_UNDERLAY
            else self.config.vtep_interface
        )
        subjects = {f"network/{network.name}", *(f"subnet/{name}" for name in subnets)}
        found = []
        for problem in self.problems():
            about_link = (
                problem.subject.startswith("link/")
                and interface is not None
                and (
                    problem.subject == f"link/{interface}"
                    or problem.subject.startswith(f"link/{interface}.")
                )
            )
            if problem.subject in subjects or about_link:
                found.append(f"node datapath: {problem.code} {problem.subject}: {problem.message}")
        return found

    def link_mtu(self, network: Network) -> int | None:
        """The MTU of the link a pod of ``network`` leaves the node by, as the last reconcile
        built or found it: the VXLAN device for overlay pods (its parent's less the
        encapsulation), the underlay interface for underlay pods (VLAN sub-interfaces take
        their parent's). None before the first reconcile or without that link."""
        last = self.worker.last
        if last is None:
            return None
        if network.spec.type == constants.TYPE_OVERLAY:
            vxlans = [o for o in last.desired.objects if isinstance(o, VxlanLink)]
            return vxlans[0].mtu if vxlans else None
        parent = last.host.links.get(self.config.underlay_interface or "")
        return parent.mtu if parent is not None else None

    def differences_for(self, network: Network, subnets: set[str]) -> list[str]:
        """What the kernel lacks (or holds wrongly) of what a pod of ``network`` and
        ``subnets`` relies on, now: the reconciler's own diff, changing nothing."""
        try:
            desired, drift = self._diff()
        except NotCompared as exc:
            return [f"node datapath: {exc}"]
        overlay = network.spec.type == constants.TYPE_OVERLAY
        pending = pod_scope.concerning(desired, drift, subnets, self.config.numbers, overlay)
        return [f"node datapath would {op.describe()}" for op in pending]

    def policy_differences_for(self, interface: str) -> list[str]:
        """What the kernel's NetworkPolicy table lacks (or holds wrongly) of what isolates the
        pod behind host interface ``interface``: its chains, map entries and peer sets."""
        try:
            _, drift = self._diff()
        except NotCompared as exc:
            return [f"node datapath: {exc}"]
        found = []
        for op in drift.operations:
            target, current = op.target, op.current
            if not isinstance(target, PolicyTable) or op.action is Action.DELETE:
                continue
            empty = Ruleset(target.name, (), {d: frozenset() for d in Direction}, (), ())
            held = current.ruleset if isinstance(current, PolicyTable) else empty
            lines = about_interface(held, target.ruleset, interface)
            if isinstance(current, PolicyTable) and not current.base_intact:
                lines.insert(0, f"chain {BASE_CHAIN} is not what the daemon wrote")
            found += [f"network policy table: {line}" for line in lines]
        return found

    def pending(self) -> tuple[Operation, ...]:
        """Every operation a reconcile would apply now, node-wide (hybridnet-ctl node
        diagnose): the reconciler's own diff, changing nothing. NotCompared when it cannot
        be told."""
        return self._diff()[1].operations

    def _diff(self) -> tuple[DesiredState, Plan]:
        view = self._view()
        if view is None:
            raise NotCompared("the daemon's informers have not listed yet")
        try:
            return self.worker.reconciler.diff(view)
        except DatapathError as exc:
            raise NotCompared(f"cannot read the kernel: {exc}") from exc

    def _view(self) -> NodeView | None:
        if not self.cache.synced():
            return None
        networks, subnets, local_ips, node_infos = self.cache.snapshot()
        return NodeView(
            node_name=self.node_name,
            node_labels=self.cache.node_labels(),
            networks=tuple(networks),
            subnets=tuple(subnets),
            local_ips=tuple(local_ips),
            node_infos=tuple(node_infos),
            policy=self.cache.policy_view(),
        )

    def _after(self, result: ReconcileResult, drift: bool) -> None:
        if self.metrics is not None:
            self.metrics.observe(result, drift)
        self.policy.after(result)
        problems = desired_problems(result)
        self._report(problems)
        if not self._may_publish():
            return
        cached: NodeInfo | None = self.cache.node_infos.cache.get(("", self.node_name))
        try:
            self.publisher.publish(
                cached, desired_spec(result, self.config.vtep_interface), problems
            )
        except StoreError as exc:
            self.publisher.forget_write()
            log.warning(
                "could not publish nodeinfo", extra=fields(node=self.node_name, error=str(exc))
            )

    def _may_publish(self) -> bool:
        """On Kubernetes only while this node's Node exists: a node whose Node was deleted has
        left, the manager deletes its NodeInfo, and writing it again would put the node back
        into every other node's FDB. The Node's return wakes the worker."""
        if not self.requires_node:
            return True
        registered = self.cache.nodes.cache.get(("", self.node_name)) is not None
        if registered != self._registered:
            self._registered = registered
            if registered:
                log.info("node registered again", extra=fields(node=self.node_name))
            else:
                message = "node not registered: nodeinfo not published"
                log.warning(message, extra=fields(node=self.node_name))
        return registered

    def _report(self, problems: list[NodeProblem]) -> None:
        """Log and send an Event for each problem that was not there at the last reconcile."""
        current = {(p.code, p.subject, p.message) for p in problems}
        for code, subject, message in sorted(current - self._reported):
            log.warning(
                "datapath problem",
                extra=fields(node=self.node_name, code=code, subject=subject, message=message),
            )
            self.events.warning(code, f"{subject}: {message}")
        for code, subject, _ in sorted(self._reported - current):
            log.info("datapath problem resolved", extra=fields(code=code, subject=subject))
        self._reported = current
