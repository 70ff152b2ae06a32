"""What follows a reconcile for NetworkPolicy: its problems in the log and as Events on the
policies, its metrics, and the line that says the node now enforces a given set of inputs.

A policy that cannot be enforced as written (hybridnet.daemon.datapath.policy_table's
PolicyProblem) is reported when it appears, once: a warning in the log and a Warning Event on
the NetworkPolicy; its going is logged. ``network policy applied`` is logged (info) each time
the table holds what a new set of inputs asks for, with the inputs' digest
(:meth:`~hybridnet.daemon.datapath.view.PolicyView.digest`): whoever lists the same objects can
tell from it that this node enforces them.
"""

from __future__ import annotations

import logging

from hybridnet.daemon.datapath.errors import PolicyTableError
from hybridnet.daemon.datapath.model import Kind
from hybridnet.daemon.datapath.policy_table import PolicyDesired, PolicyProblem
from hybridnet.daemon.datapath.reconcile import ReconcileResult
from hybridnet.daemon.events import NodeEvents
from hybridnet.daemon.policy_metrics import PolicyMetrics
from hybridnet.logs import fields

log = logging.getLogger(__name__)


class PolicyReport:
    def __init__(self, node_name: str, events: NodeEvents, metrics: PolicyMetrics | None):
        self.node_name = node_name
        self.events = events
        self.metrics = metrics
        self._reported: set[PolicyProblem] = set()
        self._enforced: str | None = None
        """The digest of the inputs the table last held."""

    def after(self, result: ReconcileResult) -> None:
        policy = result.desired.policy
        if policy is None:
            return
        written = not any(isinstance(f, PolicyTableError) for f in result.failures)
        if self.metrics is not None:
            self.metrics.observe(policy, written)
        self._problems(policy)
        if written and policy.inputs != self._enforced:
            self._enforced = policy.inputs
            ruleset = policy.table.ruleset
            changed = any(op.target.kind is Kind.NETWORK_POLICY for op in result.applied)
            log.info(
                "network policy applied",
                extra=fields(
                    node=self.node_name,
                    inputs=policy.inputs,
                    changed=changed,
                    local_pods=len(policy.peers.local),
                    pod_chains=len(ruleset.chains),
                    rules=ruleset.rule_count,
                    compile_seconds=round(policy.compile_seconds, 4),
                ),
            )

    def _problems(self, policy: PolicyDesired) -> None:
        current = set(policy.problems)
        for problem in sorted(current - self._reported, key=_order):
            log.warning(
                "network policy not enforceable as written",
                extra=fields(
                    node=self.node_name,
                    about=f"{problem.about} {problem.namespace}/{problem.name}",
                    code=problem.code,
                    message=problem.message,
                ),
            )
            send = (
                self.events.policy_warning
                if problem.about == "NetworkPolicy"
                else self.events.pod_warning
            )
            send(problem.namespace, problem.name, problem.code, problem.message)
        for problem in sorted(self._reported - current, key=_order):
            log.info(
                "network policy problem resolved",
                extra=fields(
                    about=f"{problem.about} {problem.namespace}/{problem.name}", code=problem.code
                ),
            )
        self._reported = current


def _order(problem: PolicyProblem) -> tuple[str, str, str, str]:
    return (problem.namespace, problem.name, problem.code, problem.message)
