"""IPInstances as the manager writes them, a store that can be cut off, and waiting for a
positive signal: what the daemon's cache and service tests share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hybridnet.api.resources import IPInstance
from hybridnet.ipamcore.allocator import Allocation
from hybridnet.ipamstore import ipinstances
from hybridnet.store.errors import Unavailable
from hybridnet.store.interface import ListResult, R, WatchEvent
from hybridnet.store.sqlite import SQLiteStore

IPAM_NAMESPACE = "kube-system"
NODE = "n1"
SIGNAL_TIMEOUT = 20.0
"""How long a test waits for a positive signal (an informer's event): generous, since a slow
machine only makes it arrive later; the tests never depend on it being fast."""


def instance(
    pod: str,
    address: str,
    *,
    families: Iterable[int] | None = (4,),
    node: str = NODE,
    namespace: str = "default",
) -> IPInstance:
    """The IPInstance a manager writes for ``namespace/pod`` on ``node``; ``families=None``:
    as an older manager wrote it, without the families annotation."""
    version = 6 if ":" in address else 4
    allocation = Allocation(
        network="pods",
        subnet=f"pods-v{version}",
        version=version,
        address=address,
        prefix_length=64 if version == 6 else 24,
        gateway=None,
        net_id=None,
        mac="02:00:00:00:00:05",
        owner=f"{namespace}/{pod}",
    )
    built = ipinstances.build(
        allocation,
        ipam_namespace=IPAM_NAMESPACE,
        pod_namespace=namespace,
        pod_name=pod,
        pod_uid=None,
        node_name=node,
        ordinal=None,
        families=families or (),
    )
    if families is None:
        del built.metadata.annotations[ipinstances.ANNOTATION_FAMILIES]
    return built


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a positive signal), failing after SIGNAL_TIMEOUT."""
    deadline = time.monotonic() + SIGNAL_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {SIGNAL_TIMEOUT}s")
        time.sleep(0.01)


class CutOffStore(SQLiteStore):
    """The embedded store, with a switch that makes lists and watches fail as an unreachable
    API server does: a new one at once, a running one at its next event (a quiet one runs to
    its timeout, so tests give their informers short watches)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cut = threading.Event()

    def _refuse(self) -> None:
        if self.cut.is_set():
            raise Unavailable("API server unreachable: connection refused")

    def list(
        self, kind: type[R], namespace: str | None = None, label_selector: str | None = None
    ) -> ListResult[R]:
        self._refuse()
        return super().list(kind, namespace, label_selector)

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        self._refuse()
        events = super().watch(kind, resource_version, namespace, label_selector, timeout_seconds)
        return self._until_cut(events)

    def _until_cut(self, events: Iterator[WatchEvent[R]]) -> Iterator[WatchEvent[R]]:
        for event in events:
            self._refuse()
            yield event
