"""Plays kubelet and the scheduler for the manager (tests, benchmarks), on any Store backend.

No kubelet or scheduler runs in the test control plane (nor with the SQLite store), so the
harness creates Node objects, binds pods to nodes, sets their phase, and finishes deletions.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from hybridnet.api import constants as c
from hybridnet.api.builtin import Namespace, Node, Pod
from hybridnet.api.meta import ObjectMeta, OwnerReference
from hybridnet.api.resources import (
    AddressRange,
    IPInstance,
    Network,
    NetworkSpec,
    Subnet,
    SubnetConfig,
    SubnetSpec,
)
from hybridnet.ipamstore import ipinstances
from hybridnet.store.errors import AlreadyExists, NotFound
from hybridnet.store.interface import Store

IPAM_NAMESPACE = "kube-system"


class Harness:
    """``run`` makes node labels and names unique, so tests can share one API server."""

    def __init__(self, store: Store, run: str):
        self.store = store
        self.run = run
        self.rack = {"hybridnet.test/rack": run}

    def namespace(self, name: str, annotations: dict[str, str] | None = None) -> None:
        with contextlib.suppress(AlreadyExists):
            self.store.create(Namespace(ObjectMeta(name=name, annotations=annotations or {})))

    def node(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.store.create(Node(ObjectMeta(name=name, labels=labels or dict(self.rack))))

    def underlay(self, name: str, net_id: int = 0) -> Network:
        spec = NetworkSpec(
            type=c.TYPE_UNDERLAY,
            mode=c.MODE_VLAN,
            net_id=net_id,
            node_selector=dict(self.rack),
        )
        return self.store.create(Network(ObjectMeta(name=name), spec))

    def overlay(self, name: str, vni: int = 4) -> Network:
        spec = NetworkSpec(type=c.TYPE_OVERLAY, mode=c.MODE_VXLAN, net_id=vni)
        return self.store.create(Network(ObjectMeta(name=name), spec))

    def subnet(
        self,
        name: str,
        network: str,
        cidr: str,
        *,
        version: str = "4",
        gateway: str | None = None,
        private: bool = False,
        reserved: list[str] | None = None,
    ) -> Subnet:
        spec = SubnetSpec(
            network=network,
            range=AddressRange(
                version=version, cidr=cidr, gateway=gateway, reserved_ips=reserved or []
            ),
            config=SubnetConfig(private=True) if private else None,
        )
        return self.store.create(Subnet(ObjectMeta(name=name), spec))

    def pod(
        self,
        namespace: str,
        name: str,
        node: str | None = "node1",
        annotations: dict[str, str] | None = None,
        statefulset: str | None = None,
    ) -> Pod:
        owners = []
        if statefulset:
            owners.append(
                OwnerReference(
                    api_version="apps/v1",
                    kind="StatefulSet",
                    name=statefulset,
                    uid=f"uid-{statefulset}",
                    controller=True,
                )
            )
        spec: dict[str, object] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        return self.store.create(
            Pod(
                ObjectMeta(
                    name=name,
                    namespace=namespace,
                    annotations=annotations or {},
                    owner_references=owners,
                ),
                body={"spec": spec},
            )
        )

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        pod = self.store.get(Pod, name, namespace)
        pod.body.setdefault("status", {})["phase"] = phase
        self.store.update_status(pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete as kubelet would finish it: the object is gone at once."""
        with contextlib.suppress(NotFound):
            self.store.delete(Pod, name, namespace, grace_period_seconds=0)

    def instances(self, namespace: str, name: str) -> list[IPInstance]:
        return self.store.list(
            IPInstance, IPAM_NAMESPACE, ipinstances.pod_selector(namespace, name)
        ).items

    def wait_instances(
        self, namespace: str, name: str, count: int, timeout: float = 30
    ) -> list[IPInstance]:
        deadline = time.monotonic() + timeout
        found: list[IPInstance] = []
        while time.monotonic() < deadline:
            found = self.instances(namespace, name)
            if len(found) == count:
                return sorted(found, key=lambda i: i.spec.address.version)
            time.sleep(0.05)
        raise AssertionError(f"{namespace}/{name}: wanted {count} IPInstances, have {len(found)}")


FAST_LEASE = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5")
"""Lease timings short enough for a takeover within a test, long enough for a busy machine."""


def manager_argv(kubeconfig: Path, namespace: str, identity: str, *extra: str) -> list[str]:
    """The command line of a ``hybridnet-manager`` process as the tests run it."""
    return [
        sys.executable,
        "-m",
        "hybridnet.manager.main",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
        "--identity",
        identity,
        *FAST_LEASE,
        *extra,
    ]
