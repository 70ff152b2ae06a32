"""Whether a pod's network attaches this node: an underlay network serves only the nodes its
``nodeSelector`` picks (and, when several pick one node, only the oldest, as the datapath
chooses: hybridnet.daemon.datapath.inputs). An overlay network spans every node.

Refusing here keeps ADD from building a pod the datapath will never route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hybridnet.api import constants
from hybridnet.api.resources import Network
from hybridnet.daemon.datapath.inputs import pick_oldest, selects
from hybridnet.daemon.datapath.problems import Problem, ProblemCode


def refusal(
    network: Network, networks: Iterable[Network], node_name: str, labels: Mapping[str, str]
) -> str | None:
    """Why ``network``'s pods cannot be attached on this node, or None when they can."""
    if network.spec.type != constants.TYPE_UNDERLAY:
        return None
    wanted = dict(labels)
    if not selects(network, wanted):
        selector = ",".join(f"{k}={v}" for k, v in sorted(network.spec.node_selector.items()))
        return (
            f"underlay network {network.name} does not attach node {node_name} "
            f"(its nodeSelector {selector} does not match the node's labels)"
        )
    picking = [n for n in networks if n.spec.type == constants.TYPE_UNDERLAY and selects(n, wanted)]
    ignored: list[Problem] = []
    chosen = pick_oldest(picking, ProblemCode.UNDERLAY_CONFLICT, "", ignored)
    if chosen is not None and chosen.name != network.name:
        return (
            f"underlay networks {', '.join(sorted(n.name for n in picking))} all select node "
            f"{node_name}; it serves only the oldest, {chosen.name}"
        )
    return None
