"""Workloads for a real cluster (tests and the benchmark): manifests and waits on their state.

Every pod runs the busybox image the nodes imported (:data:`BUSYBOX_IMAGE`, ``imagePullPolicy:
Never``: there is no registry) with a shell that exits at once on SIGTERM, so deletions take
the pod's real shutdown path without waiting out a grace period. Waits poll the API server for
the state they name and give up only at a bound that a working cluster never reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from hack.controlplane.errors import ControlPlaneError
from hybridnet.lab.realnode_images import BUSYBOX_IMAGE

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

T = TypeVar("T")
SLEEPER = "trap 'exit 0' TERM; echo started; while true; do sleep 1; done"
"""A container's shell: says it started, then idles; SIGTERM ends it at once (PID 1 ignores
signals it has no handler for, which would make every deletion wait its grace period)."""
POLL_SECONDS = 0.1


def container(name: str = "main", script: str = SLEEPER) -> dict[str, Any]:
    return {
        "name": name,
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
    }


def pod_manifest(
    name: str, *, script: str = SLEEPER, node: str | None = None, labels: Mapping[str, str] = {}
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container(script=script)],
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
    }
    if node is not None:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": spec,
    }


def deployment_manifest(name: str, replicas: int, *, spread: bool = True) -> dict[str, Any]:
    """A Deployment of sleepers; ``spread``: at most one pod more on a node than on another."""
    labels = {"app": name}
    pod_spec: dict[str, Any] = {
        "containers": [container()],
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
    }
    if spread:
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": labels},
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def create(api_client: ApiClient, manifest: Mapping[str, Any], namespace: str = "default") -> None:
    """Create a Pod or a Deployment from its manifest (a dict, as the API takes it)."""
    from kubernetes import client  # noqa: PLC0415

    kind = manifest["kind"]
    api: Any
    if kind == "Pod":
        api = client.CoreV1Api(api_client)
        api.create_namespaced_pod(namespace, manifest)
    elif kind == "Deployment":
        api = client.AppsV1Api(api_client)
        api.create_namespaced_deployment(namespace, manifest)
    else:
        raise ControlPlaneError(f"cannot create a {kind}")


def delete(api_client: ApiClient, kind: str, name: str, namespace: str = "default") -> None:
    """Delete a Pod or a Deployment (its pods go with it, by the garbage collector)."""
    from kubernetes import client  # noqa: PLC0415

    if kind == "Pod":
        client.CoreV1Api(api_client).delete_namespaced_pod(name, namespace)
    elif kind == "Deployment":
        client.AppsV1Api(api_client).delete_namespaced_deployment(name, namespace)
    else:
        raise ControlPlaneError(f"cannot delete a {kind}")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, describe: Callable[[], str]
) -> T:
    """Poll ``probe`` until it returns something other than None; fail with ``describe()``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{what}: not within {timeout}s; {describe()}")
        time.sleep(POLL_SECONDS)


def pods_with_label(api_client: ApiClient, namespace: str, selector: str) -> list[Any]:
    from kubernetes import client  # noqa: PLC0415

    items: list[Any] = (
        client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=selector).items
    )
    return items


def phases(pods: list[Any]) -> dict[str, str]:
    """Pod name -> phase (and, for pods not Running, why, from their conditions)."""
    found = {}
    for pod in pods:
        reasons = [
            f"{c.type}={c.status}:{c.reason}" for c in pod.status.conditions or [] if c.reason
        ]
        found[pod.metadata.name] = " ".join([pod.status.phase or "?", *reasons])
    return found


def wait_running(
    api_client: ApiClient, namespace: str, selector: str, count: int, timeout: float
) -> list[Any]:
    """Until exactly ``count`` pods match ``selector`` and every one is Running."""

    def probe() -> list[Any] | None:
        pods = pods_with_label(api_client, namespace, selector)
        running = [p for p in pods if p.status.phase == "Running"]
        return pods if len(pods) == count and len(running) == count else None

    return wait_for(
        f"{count} pods {selector} Running",
        probe,
        timeout,
        lambda: str(phases(pods_with_label(api_client, namespace, selector))),
    )


def wait_gone(api_client: ApiClient, namespace: str, selector: str, timeout: float) -> None:
    """Until no pod matches ``selector`` (the kubelets confirmed every deletion)."""

    def probe() -> bool | None:
        return True if not pods_with_label(api_client, namespace, selector) else None

    wait_for(
        f"pods {selector} gone",
        probe,
        timeout,
        lambda: str(phases(pods_with_label(api_client, namespace, selector))),
    )


def wait_default_service_account(api_client: ApiClient, namespace: str, timeout: float) -> None:
    """Until the controller manager made ``namespace``'s default ServiceAccount (ServiceAccount
    admission rejects pods before that)."""
    from kubernetes import client  # noqa: PLC0415

    core: Any = client.CoreV1Api(api_client)

    def probe() -> bool | None:
        names = [sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items]
        return True if "default" in names else None

    wait_for(f"ServiceAccount {namespace}/default", probe, timeout, lambda: "not created")
