"""When several networks qualify, the webhook, the manager's IPAM and the daemons' datapath all
pick the oldest (they used to differ: by name, by list order, by age)."""

from __future__ import annotations

from hybridnet.api import constants as c
from hybridnet.api.annotations import PodNetworkRequest
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.ordering import oldest_first
from hybridnet.api.resources import Network, NetworkSpec
from hybridnet.daemon.datapath.inputs import pick_oldest
from hybridnet.daemon.datapath.problems import Problem, ProblemCode
from hybridnet.ipamstore.service import IPAMService
from hybridnet.manager.webhook import mutate

RACK = {"rack": "r1"}


def network(name: str, created: str | None, kind: str = c.TYPE_OVERLAY) -> Network:
    selector = dict(RACK) if kind == c.TYPE_UNDERLAY else {}
    meta = ObjectMeta(name=name, creation_timestamp=created)
    return Network(meta, NetworkSpec(type=kind, node_selector=selector))


def request(network_type: str) -> PodNetworkRequest:
    return PodNetworkRequest(network_type, None, "IPv4", {}, {}, None, False, None)


# The newer one sorts first by name: only age can pick "b-old".
NEWER = "2026-12-01T10:00:00Z"
OLDER = "2026-11-30T10:00:00Z"


def test_oldest_first_sorts_by_creation_then_name_and_untimed_last() -> None:
    nets = [
        network("c", None),
        network("a-new", NEWER),
        network("b-old", OLDER),
        network("a", None),
    ]
    assert [n.name for n in oldest_first(nets)] == ["b-old", "a-new", "a", "c"]


def test_every_component_picks_the_oldest_overlay_network() -> None:
    nets = [network("a-new", NEWER), network("b-old", OLDER)]
    problems: list[Problem] = []
    daemon = pick_oldest(nets, ProblemCode.OVERLAY_CONFLICT, "several", problems)
    assert daemon is not None and daemon.name == "b-old"
    assert IPAMService.network_for(request(c.TYPE_OVERLAY), {}, nets) == "b-old"
    decision = mutate.resolve(request(c.TYPE_OVERLAY), True, nets, [])
    assert decision.network == "b-old"


def test_the_manager_picks_the_oldest_underlay_network_of_a_node() -> None:
    nets = [network("a-new", NEWER, c.TYPE_UNDERLAY), network("b-old", OLDER, c.TYPE_UNDERLAY)]
    assert IPAMService.network_for(request(c.TYPE_UNDERLAY), dict(RACK), nets) == "b-old"
    problems: list[Problem] = []
    daemon = pick_oldest(nets, ProblemCode.UNDERLAY_CONFLICT, "several", problems)
    assert daemon is not None and daemon.name == "b-old"
