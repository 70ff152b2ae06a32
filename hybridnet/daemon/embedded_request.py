"""What a pod asks for on the embedded store, where the daemon allocates itself.

There is no manager and no webhook there, so the daemon reads the pod's request the way the
manager would: from the pod's ``Pod`` object in the store (written by whoever plays the API
server: a test bed, a tool, an operator), its Namespace object's annotations, then the daemon's
defaults. A pod without a ``Pod`` object, or one that chooses nothing, gets the daemon's
``--network``; without one, the pod's network type (Underlay unless it says otherwise) picks
the network as the manager does: the overlay network, or the underlay network whose
nodeSelector matches this node's labels (its ``Node`` object in the store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from hybridnet.api import constants as c
from hybridnet.api.annotations import ClusterDefaults, PodNetworkRequest, parse_pod_request
from hybridnet.api.builtin import Namespace, Pod
from hybridnet.api.meta import OwnerReference
from hybridnet.api.resources import Network
from hybridnet.ipamcore.errors import NoSuchNetwork
from hybridnet.ipamstore.service import IPAMService
from hybridnet.store.errors import NotFound
from hybridnet.store.interface import Store


class NoNetworkOnNode(Exception):
    """The pod wants an underlay network and none attaches this node: nothing changes until
    the node's labels or a network do, so it is refused (CNI 101), not retried."""


@dataclasses.dataclass(frozen=True)
class PodAnnotations:
    """What the store says about a pod: its own annotations, its namespace's, its owners."""

    pod: Mapping[str, str]
    namespace: Mapping[str, str]
    owners: tuple[OwnerReference, ...] = ()

    def chooses_network(self) -> bool:
        """Whether the pod (or its namespace) names a network or a network type."""
        keys = (c.ANNOTATION_SPECIFIED_NETWORK, c.ANNOTATION_NETWORK_TYPE)
        return any(key in self.pod or key in self.namespace for key in keys)


def read_annotations(store: Store, namespace: str, name: str) -> PodAnnotations:
    """The pod's and its namespace's annotations; none for objects the store does not hold
    (a pod started without one is served on the defaults)."""
    pod_annotations: Mapping[str, str] = {}
    owners: tuple[OwnerReference, ...] = ()
    if name:
        try:
            pod = store.get(Pod, name, namespace)
        except NotFound:
            pass
        else:
            pod_annotations = pod.metadata.annotations
            owners = tuple(pod.metadata.owner_references)
    try:
        namespace_annotations = store.get(Namespace, namespace).metadata.annotations
    except NotFound:
        namespace_annotations = {}
    return PodAnnotations(pod_annotations, namespace_annotations, owners)


def resolve(
    pod_name: str,
    annotations: PodAnnotations,
    *,
    default_network: str | None,
    default_family: str,
    node_labels: dict[str, str],
    networks: Iterable[Network],
) -> tuple[PodNetworkRequest, str]:
    """The pod's request and the network it allocates from. AnnotationError names a bad
    annotation; NoNetworkOnNode, that no underlay network attaches this node; NoSuchNetwork,
    that there is no overlay network."""
    defaults = ClusterDefaults(ip_family=default_family)
    request = parse_pod_request(
        pod_name, annotations.pod, annotations.namespace, annotations.owners, defaults
    )
    if default_network is not None and not annotations.chooses_network():
        return request, default_network
    try:
        return request, IPAMService.network_for(request, node_labels, list(networks))
    except NoSuchNetwork as exc:
        if request.network is None and request.network_type == c.TYPE_UNDERLAY:
            raise NoNetworkOnNode(f"{exc} (labels {dict(node_labels) or 'none'})") from exc
        raise
