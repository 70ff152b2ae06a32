"""Wait for a pod's IPInstances on a watch instead of failing and relying on kubelet retries.

The manager writes them moments after the pod is bound; CNI ADD usually arrives first. A bounded
wait (then "try again later", CNI code 11) covers that gap without polling the API server.
"""

from __future__ import annotations

import time

from hybridnet.api import naming
from hybridnet.api.resources import IPInstance
from hybridnet.store.interface import Store


class AllocationTimeout(Exception):
    """The pod's addresses did not appear in time; the runtime should retry."""


def wait_for_instances(
    store: Store,
    ipam_namespace: str,
    pod_namespace: str,
    pod_name: str,
    timeout: float,
) -> list[IPInstance]:
    """The pod's IPInstances (one per family), waiting up to ``timeout`` seconds."""
    selector = naming.pod_selector(pod_namespace, pod_name)
    deadline = time.monotonic() + timeout
    listed = store.list(IPInstance, ipam_namespace, selector)
    found = {i.name: i for i in listed.items}
    version = listed.resource_version
    while not found:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AllocationTimeout(
                f"no address for pod {pod_namespace}/{pod_name} after {timeout:.0f}s"
            )
        for event in store.watch(
            IPInstance, version, ipam_namespace, selector, timeout_seconds=max(remaining, 1)
        ):
            version = event.object.metadata.resource_version or version
            if event.type in ("ADDED", "MODIFIED"):
                found[event.object.name] = event.object
                break
            if event.type == "DELETED":
                found.pop(event.object.name, None)
    # A dual-stack pair is written in two steps: give the second a moment to land.
    settle = min(1.0, max(deadline - time.monotonic(), 0))
    if settle:
        time.sleep(0.05)
        found = {i.name: i for i in store.list(IPInstance, ipam_namespace, selector).items} or found
    return sorted(found.values(), key=lambda i: (i.spec.address.version, i.name))
