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
    *,
    timeout: float,
    versions: set[str] | None = None,
) -> list[IPInstance]:
    """The pod's IPInstances, waiting up to ``timeout`` seconds until one exists for every IP
    version in ``versions`` ("4", "6"; None: any one). A dual-stack pair is written in two
    steps, so waiting for both keeps ADD from configuring half a pod."""
    selector = naming.pod_selector(pod_namespace, pod_name)
    deadline = time.monotonic() + timeout
    listed = store.list(IPInstance, ipam_namespace, selector)
    found = {i.name: i for i in listed.items}
    version = listed.resource_version

    def complete() -> bool:
        have = {i.spec.address.version for i in found.values()}
        return bool(have) and (versions is None or versions <= have)

    while not complete():
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
            elif event.type == "DELETED":
                found.pop(event.object.name, None)
            if complete() or time.monotonic() >= deadline:
                break
    return sorted(found.values(), key=lambda i: (i.spec.address.version, i.name))
