"""Whether a pod's network attaches this node: an underlay network serves only the nodes its
``nodeSelector`` picks (and, when several pick one node, only the oldest, as the datapath
chooses: hybridnet.daemon.datapath.inputs). An overlay network spans every node; a GlobalBGP
network every node whose underlay network is a BGP one (its peers carry the pod's route, and
its pods leave through them).

Refusing here keeps ADD from building a pod the datapath will never route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hybridnet.api import constants
from hybridnet.api.resources import Network
from hybridnet.daemon.datapath.inputs import pick_oldest, selects
from hybridnet.daemon.datapath.problems import Problem, ProblemCode


def refusal(
    network: Network, networks: Sequence[Network], node_name: str, labels: Mapping[str, str]
) -> str | None:
    """Why ``network``'s pods cannot be attached on this node, or None when they can."""
    wanted = dict(labels)
    if network.spec.type == constants.TYPE_GLOBAL_BGP:
        attached = underlay_of(networks, wanted)
        serves = f"GlobalBGP network {network.name} serves only nodes a BGP network attaches"
        if attached is None:
            return f"{serves}; no underlay network attaches node {node_name}"
        if attached.spec.mode != constants.MODE_BGP:
            return f"{serves}; node {node_name}'s underlay network {attached.name} is not BGP"
        return None
    if network.spec.type != constants.TYPE_UNDERLAY:
        return None
    if not selects(network, wanted):
        selector = ",".join(f"{k}={v}" for k, v in sorted(network.spec.node_selector.items()))
        return (
            f"underlay network {network.name} does not attach node {node_name} "
            f"(its nodeSelector {selector} does not match the node's labels)"
        )
    picking = [n for n in networks if n.spec.type == constants.TYPE_UNDERLAY and selects(n, wanted)]
    chosen = underlay_of(networks, wanted)
    if chosen is not None and chosen.name != network.name:
        return (
            f"underlay networks {', '.join(sorted(n.name for n in picking))} all select node "
            f"{node_name}; it serves only the oldest, {chosen.name}"
        )
    return None


def underlay_of(networks: Sequence[Network], labels: Mapping[str, str]) -> Network | None:
    """The underlay network that attaches a node with ``labels`` (the oldest of those that
    select it, as the datapath picks)."""
    wanted = dict(labels)
    picking = [n for n in networks if n.spec.type == constants.TYPE_UNDERLAY and selects(n, wanted)]
    ignored: list[Problem] = []
    return pick_oldest(picking, ProblemCode.UNDERLAY_CONFLICT, "", ignored)
