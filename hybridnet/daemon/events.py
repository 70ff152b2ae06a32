"""Kubernetes Events on this node's Node object, so ``kubectl describe node`` shows what its
datapath could not build (the caller sends each distinct problem once, when it appears), on a
pod whose underlay address check failed, and on a NetworkPolicy that cannot be enforced as
written. A failed write is logged and not retried.

The manager has its own writer for pod Events (hybridnet.manager.events); components do not
import each other, and these two share only the Event's shape.
"""

from __future__ import annotations

import logging

from hybridnet.api.builtin import Event
from hybridnet.api.meta import ObjectMeta
from hybridnet.ipamstore.ipinstances import now
from hybridnet.logs import fields
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

COMPONENT = "hybridnet-daemon"
EVENT_NAMESPACE = "default"
"""Where Kubernetes keeps Events about cluster-scoped objects such as Nodes."""


class NodeEvents:
    def __init__(self, store: Store, node_name: str):
        self.store = store
        self.node_name = node_name

    def warning(self, reason: str, message: str) -> None:
        """A Warning on this Node."""
        involved = {"kind": "Node", "name": self.node_name, "apiVersion": "v1"}
        self._send(EVENT_NAMESPACE, involved, reason, message)

    def policy_warning(self, namespace: str, name: str, reason: str, message: str) -> None:
        """A Warning on a NetworkPolicy (``kubectl describe networkpolicy`` shows it)."""
        involved = {
            "kind": "NetworkPolicy",
            "namespace": namespace,
            "name": name,
            "apiVersion": "networking.k8s.io/v1",
        }
        self._send(namespace, involved, reason, message)

    def pod_warning(self, namespace: str, name: str, reason: str, message: str) -> None:
        involved = {"kind": "Pod", "namespace": namespace, "name": name, "apiVersion": "v1"}
        self._send(namespace, involved, reason, message)

    def _send(self, namespace: str, involved: dict[str, str], reason: str, message: str) -> None:
        stamp = now()
        event = Event(
            ObjectMeta(generate_name=f"{involved['name']}.", namespace=namespace),
            body={
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": "Warning",
                "source": {"component": COMPONENT, "host": self.node_name},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "reportingComponent": COMPONENT,
            },
        )
        try:
            self.store.create(event)
        except StoreError as exc:
            log.warning(
                "could not record event",
                extra=fields(about=involved, reason=reason, error=str(exc)),
            )
