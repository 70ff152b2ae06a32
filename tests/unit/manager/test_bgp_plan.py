"""What the leader advertises (hybridnet.manager.bgp_plan): a table of cluster states and the
peers, routes and waits each must give, plus the announced() rule."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    Address,
    AddressRange,
    BGPPeer,
    Binding,
    IPInstance,
    IPInstanceSpec,
    Network,
    NetworkConfig,
    NetworkSpec,
    Subnet,
    SubnetSpec,
)
from hybridnet.bgp.model import NO_EXPORT, Family, Peer, Route, SessionState
from hybridnet.manager.bgp_plan import (
    Plan,
    PodRoute,
    SpeakerSettings,
    announced,
    internal_ip,
    node_ready,
    plan,
)

ONE, TWO = "one", "two"
RACK_A = {"rack": "a"}
RACK_B = {"rack": "b"}


def bgp_network(
    name: str,
    *peers: BGPPeer,
    asn: int | None = 65010,
    selector: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> Network:
    spec = NetworkSpec(
        type=c.TYPE_UNDERLAY,
        mode=c.MODE_BGP,
        net_id=asn,
        node_selector=dict(selector or RACK_A),
        config=NetworkConfig(bgp_peers=list(peers)),
    )
    return Network(ObjectMeta(name=name, creation_timestamp=created), spec)


def global_network(name: str = "global") -> Network:
    spec = NetworkSpec(type=c.TYPE_GLOBAL_BGP, mode=c.MODE_GLOBAL_BGP)
    return Network(ObjectMeta(name=name), spec)


def vlan_network(name: str = "vlan") -> Network:
    spec = NetworkSpec(type=c.TYPE_UNDERLAY, mode=c.MODE_VLAN, net_id=0, node_selector=RACK_A)
    return Network(ObjectMeta(name=name), spec)


def subnet(name: str, network: str, cidr: str) -> Subnet:
    version = str(ipaddress.ip_network(cidr).version)
    return Subnet(ObjectMeta(name=name), SubnetSpec(network, AddressRange(version, cidr)))


def instance(address: str, network: str, node: str | None = "n1", **meta: str) -> IPInstance:
    version = str(ipaddress.ip_interface(address).version)
    name = address.split("/", maxsplit=1)[0].replace(".", "-").replace(":", "-")
    spec = IPInstanceSpec(
        network=network,
        subnet="s",
        address=Address(version, address, "02:00:00:00:00:01"),
        binding=Binding(node_name=node, pod_name=f"pod-{name}"),
    )
    return IPInstance(ObjectMeta(name=name, namespace="kube-system", **meta), spec)  # type: ignore[arg-type]


def node(
    name: str,
    *addresses: str,
    ready: str | None = "True",
    labels: dict[str, str] | None = None,
    deleting: bool = False,
) -> Node:
    status: dict[str, object] = {
        "addresses": [{"type": "Hostname", "address": name}]
        + [{"type": "InternalIP", "address": a} for a in addresses]
    }
    if ready is not None:
        status["conditions"] = [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": ready},
        ]
    meta = ObjectMeta(
        name=name,
        labels=dict(RACK_A if labels is None else labels),
        deletion_timestamp="2026-01-02T00:00:00Z" if deleting else None,
    )
    return Node(meta, body={"status": status})


def tor(address: str = "198.18.0.1", **options: object) -> BGPPeer:
    return BGPPeer(address=address, asn=65000, **options)  # type: ignore[arg-type]


def peer(address: str = "198.18.0.1", **options: object) -> Peer:
    version = ipaddress.ip_address(address).version
    family = Family.IPV4 if version == 4 else Family.IPV6
    values: dict[str, object] = {"families": frozenset({family}), **options}
    return Peer(ipaddress.ip_address(address), 65000, 65010, **values)  # type: ignore[arg-type]


def pod(address: str, hop: str, *, no_export: bool = True) -> Route:
    prefix = f"{address}/{32 if ':' not in address else 128}"
    return Route.of(prefix, hop, {NO_EXPORT} if no_export else set())


N1 = node("n1", "198.18.0.11", "2001:db8::b")
N2 = node("n2", "198.18.0.12", "2001:db8::c")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    networks: list[Network]
    subnets: list[Subnet]
    instances: list[IPInstance]
    nodes: list[Node]
    peers: list[Peer]
    routes: dict[str, set[Route]]
    problems: list[str] = dataclasses.field(default_factory=list)
    settings: SpeakerSettings = dataclasses.field(default_factory=SpeakerSettings)


CASES = [
    Case(
        "a BGP network: its subnet via the speaker, each pod /32 NO_EXPORT via its node",
        [bgp_network("bgp", tor())],
        [subnet("s4", "bgp", "198.19.0.0/24")],
        [instance("198.19.0.5/24", "bgp"), instance("198.19.0.6/24", "bgp", node="n2")],
        [N1, N2],
        [peer()],
        {
            "198.18.0.1": {
                Route.of("198.19.0.0/24"),
                pod("198.19.0.5", "198.18.0.11"),
                pod("198.19.0.6", "198.18.0.12"),
            }
        },
    ),
    Case(
        "dual stack: each family to the peer of its family, IPv6 via the node's IPv6 address",
        [bgp_network("bgp", tor(), tor("2001:db8::1"))],
        [subnet("s4", "bgp", "198.19.0.0/24"), subnet("s6", "bgp", "2001:db8:19::/64")],
        [instance("198.19.0.5/24", "bgp"), instance("2001:db8:19::5/64", "bgp")],
        [N1],
        [peer(), peer("2001:db8::1")],
        {
            "198.18.0.1": {Route.of("198.19.0.0/24"), pod("198.19.0.5", "198.18.0.11")},
            "2001:db8::1": {
                Route.of("2001:db8:19::/64"),
                pod("2001:db8:19::5", "2001:db8::b"),
            },
        },
    ),
    Case(
        "GlobalBGP: pods /32 without community to the peers of the node's BGP network, no subnet",
        [
            bgp_network("rack-a", tor()),
            bgp_network("rack-b", tor("198.18.1.1"), selector=RACK_B),
            global_network(),
        ],
        [subnet("g4", "global", "198.20.0.0/24")],
        [
            instance("198.20.0.5/24", "global"),
            instance("198.20.0.6/24", "global", node="n3"),
        ],
        [N1, node("n3", "198.18.1.13", labels=RACK_B)],
        [peer(), peer("198.18.1.1")],
        {
            "198.18.0.1": {pod("198.20.0.5", "198.18.0.11", no_export=False)},
            "198.18.1.1": {pod("198.20.0.6", "198.18.1.13", no_export=False)},
        },
    ),
    Case(
        "GlobalBGP pod on a node no BGP network attaches: no route, a problem",
        [bgp_network("rack-a", tor()), global_network()],
        [],
        [instance("198.20.0.5/24", "global", node="n3")],
        [node("n3", "198.18.1.13", labels=RACK_B)],
        [peer()],
        {"198.18.0.1": set()},
        ["ipinstance 198-20-0-5: node n3 is attached to no BGP network"],
    ),
    Case(
        "node NotReady, without a Ready condition, being deleted or missing: no route",
        [bgp_network("bgp", tor())],
        [],
        [
            instance("198.19.0.5/24", "bgp", node="down"),
            instance("198.19.0.6/24", "bgp", node="new"),
            instance("198.19.0.7/24", "bgp", node="going"),
            instance("198.19.0.8/24", "bgp", node="gone"),
            instance("198.19.0.9/24", "bgp", node="n1"),
        ],
        [
            node("down", "198.18.0.20", ready="False"),
            node("new", "198.18.0.21", ready=None),
            node("going", "198.18.0.22", deleting=True),
            N1,
        ],
        [peer()],
        {"198.18.0.1": {pod("198.19.0.9", "198.18.0.11")}},
    ),
    Case(
        "an address released (gone) or being deleted, or not bound to a node: no route",
        [bgp_network("bgp", tor())],
        [],
        [
            instance("198.19.0.6/24", "bgp", deletion_timestamp="2026-01-02T00:00:00Z"),
            instance("198.19.0.7/24", "bgp", node=None),
        ],
        [N1],
        [peer()],
        {"198.18.0.1": set()},
    ),
    Case(
        "a node without an InternalIP of the address's family: no route, a problem",
        [bgp_network("bgp", tor("2001:db8::1"))],
        [],
        [instance("2001:db8:19::5/64", "bgp", node="v4only")],
        [node("v4only", "198.18.0.30")],
        [peer("2001:db8::1")],
        {"2001:db8::1": set()},
        ["ipinstance 2001-db8-19--5: node v4only has no IPv6 InternalIP"],
    ),
    Case(
        "VLAN and overlay networks advertise nothing",
        [vlan_network()],
        [subnet("v4", "vlan", "198.18.0.0/24")],
        [instance("198.18.0.100/24", "vlan")],
        [N1],
        [],
        {},
    ),
    Case(
        "a peer listed by two networks is one session; the listing with other settings noted",
        [
            bgp_network("old", tor(password=ONE), created="2026-01-01T00:00:00Z"),
            bgp_network("new", tor(password=TWO), created="2026-01-02T00:00:00Z"),
        ],
        [subnet("a", "old", "198.19.0.0/24"), subnet("b", "new", "198.19.1.0/24")],
        [],
        [],
        [peer(password=ONE)],
        {"198.18.0.1": {Route.of("198.19.0.0/24"), Route.of("198.19.1.0/24")}},
    ),
    Case(
        "settings: graceful restart, hold time, the local address of the family, multihop",
        [bgp_network("bgp", tor(graceful_restart_seconds=120, hold_time=9))],
        [],
        [],
        [],
        [
            peer(
                graceful_restart_seconds=120,
                hold_time=9,
                multihop=3,
                local_address=ipaddress.ip_address("198.18.0.5"),
            )
        ],
        {"198.18.0.1": set()},
        settings=SpeakerSettings(
            {4: ipaddress.ip_address("198.18.0.5"), 6: ipaddress.ip_address("2001:db8::5")}, 3
        ),
    ),
    Case(
        "a peer that cannot be configured is left out (its network's status says why)",
        [bgp_network("bgp", tor("not-an-ip"), tor(), tor("198.18.0.2", hold_time=1))],
        [subnet("s4", "bgp", "198.19.0.0/24")],
        [],
        [],
        [peer()],
        {"198.18.0.1": {Route.of("198.19.0.0/24")}},
    ),
    Case(
        "two subnets with one CIDR: one route",
        [bgp_network("bgp", tor())],
        [subnet("a", "bgp", "198.19.0.0/24"), subnet("b", "bgp", "198.19.0.0/24")],
        [],
        [],
        [peer()],
        {"198.18.0.1": {Route.of("198.19.0.0/24")}},
    ),
    Case(
        "two different routes for one prefix: the subnet's stays, a problem names the pod's",
        [bgp_network("bgp", tor())],
        [subnet("a", "bgp", "198.19.0.5/32")],
        [instance("198.19.0.5/24", "bgp")],
        [N1],
        [peer()],
        {"198.18.0.1": {Route.of("198.19.0.5/32")}},
        ["ipinstance 198-19-0-5: 198.19.0.5/32 is already announced as 198.19.0.5/32 via self"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_plan(case: Case) -> None:
    result = plan(case.networks, case.subnets, case.instances, case.nodes, case.settings)
    assert list(result.peers) == case.peers
    assert {name: set(routes) for name, routes in result.routes.items()} == case.routes
    for problem in case.problems:
        assert problem in result.problems


def test_every_pod_route_names_its_node_route_and_peers() -> None:
    result = plan(
        [bgp_network("bgp", tor(), tor("198.18.0.2", allow_not_established=True))],
        [],
        [instance("198.19.0.5/24", "bgp")],
        [N1],
    )
    assert dict(result.pods) == {
        "198-19-0-5": PodRoute(
            "198-19-0-5",
            "n1",
            pod("198.19.0.5", "198.18.0.11"),
            frozenset({"198.18.0.1", "198.18.0.2"}),
            frozenset({"198.18.0.1"}),
        )
    }


def test_status_listings_keep_the_networks_order_and_say_what_is_wrong() -> None:
    result = plan(
        [
            bgp_network("old", tor(password=ONE), created="2026-01-01T00:00:00Z"),
            bgp_network("new", tor("not-an-ip"), tor(password=TWO), created="2026-01-02T00:00:00Z"),
            bgp_network("no-asn", tor(), asn=None, created="2026-01-03T00:00:00Z"),
        ],
        [],
        [],
        [],
    )
    (old,) = result.listings["old"]
    assert (old.address, old.peer, old.note) == ("198.18.0.1", "198.18.0.1", None)
    invalid, shared = result.listings["new"]
    assert (invalid.address, invalid.peer) == ("not-an-ip", None)
    assert invalid.note is not None and "not-an-ip" in invalid.note
    assert shared.peer == "198.18.0.1"
    assert shared.note is not None and "network old" in shared.note
    (no_asn,) = result.listings["no-asn"]
    assert no_asn.peer is None and no_asn.note is not None and "netID" in no_asn.note


def test_a_global_bgp_pod_waits_as_its_nodes_bgp_network_says() -> None:
    result = plan(
        [bgp_network("rack-a", tor(allow_not_established=True)), global_network()],
        [],
        [instance("198.20.0.5/24", "global")],
        [N1],
    )
    assert result.pods["198-20-0-5"].established == frozenset()
    assert result.pods["198-20-0-5"].peers == frozenset({"198.18.0.1"})


ROUTE = pod("198.19.0.5", "198.18.0.11")
WAITING = PodRoute("x", "n1", ROUTE, frozenset({"a", "b"}), frozenset({"a"}))
UP, DOWN = SessionState.ESTABLISHED, SessionState.ACTIVE


@pytest.mark.parametrize(
    ("states", "acked", "expected"),
    [
        ({"a": UP, "b": UP}, {"a": {ROUTE}, "b": {ROUTE}}, True),
        ({"a": UP, "b": DOWN}, {"a": {ROUTE}, "b": {ROUTE}}, True),  # b allows not established
        ({"a": DOWN, "b": UP}, {"a": {ROUTE}, "b": {ROUTE}}, False),  # a must be up
        ({"a": UP, "b": UP}, {"a": {ROUTE}, "b": set()}, False),  # b does not hold it yet
        ({"a": UP, "b": UP}, {"a": {ROUTE}}, False),
    ],
    ids=["all up", "an allowed peer down", "a required peer down", "not held", "peer unknown"],
)
def test_announced(
    states: dict[str, SessionState], acked: dict[str, set[Route]], expected: bool
) -> None:
    frozen = {name: frozenset(routes) for name, routes in acked.items()}
    assert announced(WAITING, states, frozen) is expected


def test_node_helpers() -> None:
    assert node_ready(N1)
    assert not node_ready(node("x", ready="Unknown"))
    assert internal_ip(N1, 6) == ipaddress.ip_address("2001:db8::b")
    assert internal_ip(node("x", "bogus", "198.18.0.9"), 4) == ipaddress.ip_address("198.18.0.9")
    assert internal_ip(node("x"), 4) is None


def test_an_empty_cluster_has_nothing_to_advertise() -> None:
    result: Plan = plan([], [], [], [])
    assert result.empty and not result.routes and not result.pods
