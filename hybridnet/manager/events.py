"""Kubernetes Events on pods, so `kubectl describe pod` says why a pod has no address.

Repeats of the same reason and message for one pod are sent at most once a minute.
"""

from __future__ import annotations

import logging
import threading
import time

from hybridnet.api.builtin import Event
from hybridnet.api.meta import ObjectMeta
from hybridnet.ipamstore.ipinstances import now
from hybridnet.logs import fields
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

COMPONENT = "hybridnet-manager"
REPEAT_SECONDS = 60.0


class EventRecorder:
    def __init__(self, store: Store, component: str = COMPONENT):
        self.store = store
        self.component = component
        self._sent: dict[tuple[str, str, str, str], float] = {}
        self._lock = threading.Lock()

    def pod_warning(
        self, namespace: str, name: str, uid: str | None, reason: str, message: str
    ) -> None:
        key = (namespace, name, reason, message)
        with self._lock:
            last = self._sent.get(key)
            if last is not None and time.monotonic() - last < REPEAT_SECONDS:
                return
            self._sent[key] = time.monotonic()
        stamp = now()
        event = Event(
            ObjectMeta(generate_name=f"{name}.", namespace=namespace),
            body={
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": name,
                    "uid": uid or "",
                    "apiVersion": "v1",
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
                "source": {"component": self.component},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "reportingComponent": self.component,
            },
        )
        try:
            self.store.create(event)
        except StoreError as exc:
            log.warning(
                "could not record event",
                extra=fields(pod=f"{namespace}/{name}", reason=reason, error=str(exc)),
            )
        log.info(
            "pod event", extra=fields(pod=f"{namespace}/{name}", reason=reason, message=message)
        )

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._sent = {k: v for k, v in self._sent.items() if k[:2] != (namespace, name)}
