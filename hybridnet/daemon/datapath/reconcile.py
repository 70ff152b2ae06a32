"""One reconcile of the node datapath: observe → desired → plan → apply.

The whole desired state is rebuilt whatever changed, so a deleted route, a restarted daemon
or a missed event all heal the same way. One worker thread owns a Reconciler (the kernel
state it writes is node-wide); it runs in that thread's network namespace.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from hybridnet.daemon.datapath import observe, policy_table
from hybridnet.daemon.datapath.apply import apply
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.desired import DesiredState, desired_state
from hybridnet.daemon.datapath.errors import ApplyError
from hybridnet.daemon.datapath.model import KernelObject, Kind
from hybridnet.daemon.datapath.plan import Action, Operation, Plan, plan
from hybridnet.daemon.datapath.problems import Problem
from hybridnet.daemon.datapath.view import HostFacts, NodeView
from hybridnet.logs import fields

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    desired: DesiredState
    plan: Plan
    """The drift found: every operation the kernel needed (empty when it already matched)."""
    applied: tuple[Operation, ...]
    failures: tuple[ApplyError, ...]
    seconds: float
    host: HostFacts = dataclasses.field(default_factory=HostFacts)
    """The host as observed (the daemon publishes the VTEP interface's addresses)."""

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.desired.problems

    @property
    def converged(self) -> bool:
        """Whether the kernel now holds everything desired (problems aside)."""
        return not self.failures

    def applied_counts(self) -> dict[tuple[Kind, Action], int]:
        return Plan(self.applied).counts()


class Reconciler:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.forms = policy_table.KernelForms()
        """How the policy table's chains it wrote are listed (taught by the applier)."""

    def reconcile(self, view: NodeView) -> ReconcileResult:
        """Bring the kernel to the view's desired state. Raises ObserveError when the kernel
        cannot be read (nothing was changed); failures of single operations are returned."""
        started = time.monotonic()
        snapshot, desired, drift = self._diff(view)
        outcome = apply(drift, self.config, self.forms)
        result = ReconcileResult(
            desired=desired,
            plan=drift,
            applied=outcome.applied,
            failures=outcome.failures,
            seconds=time.monotonic() - started,
            host=snapshot.host,
        )
        _log(result)
        return result

    def diff(self, view: NodeView) -> tuple[DesiredState, Plan]:
        """What a reconcile would do now, changing nothing (CNI CHECK, diagnosis). Safe beside
        the worker: it only reads the kernel."""
        _, desired, drift = self._diff(view)
        return desired, drift

    def _diff(self, view: NodeView) -> tuple[observe.Snapshot, DesiredState, Plan]:
        snapshot = observe.snapshot(self.config, self.forms)
        desired = desired_state(view, self.config, snapshot.host)
        observed = snapshot.objects + observe.sysctls(desired.objects)
        if desired.policy is None:  # no verdict on the policy table: leave it as it is
            observed = tuple(o for o in observed if not _policy(o))
        return snapshot, desired, plan(desired.objects, observed)


def _policy(obj: KernelObject) -> bool:
    return obj.kind is Kind.NETWORK_POLICY


def _log(result: ReconcileResult) -> None:
    summary = fields(
        objects=len(result.desired.objects),
        drift={f"{kind}/{action}": n for (kind, action), n in result.plan.counts().items()},
        applied=len(result.applied),
        failures=[str(f) for f in result.failures],
        problems=[str(p) for p in result.problems],
        seconds=round(result.seconds, 4),
    )
    if result.failures:
        log.warning("datapath reconciled with failures", extra=summary)
    elif result.plan.empty:
        log.debug("datapath in sync", extra=summary)
    else:
        log.info("datapath reconciled", extra=summary)
