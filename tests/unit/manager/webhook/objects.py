"""Small builders of the objects webhook tests feed to rules, mutation and reviews."""

from __future__ import annotations

import copy
from typing import Any

from hybridnet.api import constants as c
from hybridnet.api.builtin import Node
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import (
    Address,
    AddressRange,
    BGPPeer,
    IPInstance,
    IPInstanceSpec,
    IPInstanceStatus,
    Network,
    NetworkConfig,
    NetworkSpec,
    Subnet,
    SubnetSpec,
    SubnetStatus,
)


def underlay(name: str, selector: dict[str, str] | None = None, net_id: int = 10) -> Network:
    return Network(
        ObjectMeta(name=name),
        NetworkSpec(
            type=c.TYPE_UNDERLAY,
            mode=c.MODE_VLAN,
            net_id=net_id,
            node_selector=selector if selector is not None else {"rack": name},
        ),
    )


def bgp(
    name: str,
    selector: dict[str, str] | None = None,
    *,
    asn: int = 65001,
    peer: str = "198.18.0.1",
) -> Network:
    return Network(
        ObjectMeta(name=name),
        NetworkSpec(
            type=c.TYPE_UNDERLAY,
            mode=c.MODE_BGP,
            net_id=asn,
            node_selector=selector if selector is not None else {"rack": name},
            config=NetworkConfig(bgp_peers=[BGPPeer(address=peer, asn=65000)]),
        ),
    )


def global_bgp(name: str, asn: int = 65001, peer: str = "198.18.0.1") -> Network:
    return Network(
        ObjectMeta(name=name),
        NetworkSpec(
            type=c.TYPE_GLOBAL_BGP,
            net_id=asn,
            config=NetworkConfig(bgp_peers=[BGPPeer(address=peer, asn=65000)]),
        ),
    )


def overlay(name: str, vni: int = 4) -> Network:
    return Network(ObjectMeta(name=name), NetworkSpec(type=c.TYPE_OVERLAY, net_id=vni))


def subnet(
    name: str, cidr: str, network: str = "net1", net_id: int | None = None, used: int = 0
) -> Subnet:
    version = c.IPV6 if ":" in cidr else c.IPV4
    return Subnet(
        ObjectMeta(name=name),
        SubnetSpec(network=network, range=AddressRange(version=version, cidr=cidr), net_id=net_id),
        SubnetStatus(used=used),
    )


def node(name: str, **labels: str) -> Node:
    return Node(ObjectMeta(name=name, labels=dict(labels)))


def instance(name: str, subnet_name: str, namespace: str = "ns1") -> IPInstance:
    return IPInstance(
        ObjectMeta(name=name, namespace=namespace),
        IPInstanceSpec(
            network="net1",
            subnet=subnet_name,
            address=Address(version="4", ip="198.19.0.5/24", mac="02:00:00:00:00:05"),
        ),
        IPInstanceStatus(),
    )


def pod_json(
    name: str = "web",
    annotations: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ns1"}
    if annotations is not None:
        metadata["annotations"] = annotations
    body: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}], **spec}
    if node_selector is not None:
        body["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body}


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """A tiny RFC 6902 applier (add / replace / remove on objects), enough to check our patches
    the way the API server applies them: a missing parent is an error, not created."""
    result = copy.deepcopy(document)
    for operation in patch:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
        parent = result
        for token in tokens[:-1]:
            parent = parent[token]  # KeyError: missing parent, as in the RFC
        last = tokens[-1]
        if operation["op"] == "add":
            parent[last] = copy.deepcopy(operation["value"])
        elif operation["op"] == "replace":
            if last not in parent:
                raise KeyError(f"replace of missing {operation['path']}")
            parent[last] = copy.deepcopy(operation["value"])
        elif operation["op"] == "remove":
            del parent[last]
        else:
            raise ValueError(f"unsupported op {operation['op']}")
    return result
