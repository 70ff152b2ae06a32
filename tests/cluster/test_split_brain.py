"""Two managers that both serve at once (leader election off) never hand out one address twice.

Storage refuses a second IPInstance of an address, so whichever manager loses the race learns
the claim and moves on; pods served twice converge to one address per family.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from hybridnet.api.builtin import Pod
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import IPInstance
from hybridnet.ipamstore import ipinstances
from hybridnet.store.kube import KubeStore
from tests.cluster.controlplane import ControlPlane
from tests.manager_harness import IPAM_NAMESPACE, Harness
from tests.manager_scenarios import Manager

PODS = 500


def test_two_managers_500_pods_no_duplicate_address(control_plane: ControlPlane) -> None:
    run = uuid.uuid4().hex[:6]
    stores = [KubeStore.from_kubeconfig(control_plane.kubeconfig_path) for _ in range(3)]
    harness = Harness(stores[0], run)
    harness.namespace(IPAM_NAMESPACE)
    namespace = f"split-{run}"
    harness.namespace(namespace)
    harness.node(f"node-{run}")
    harness.underlay(f"u-{run}")
    harness.subnet(f"s-{run}", f"u-{run}", "198.18.128.0/22")  # 1022 addresses for 500 pods
    managers = [Manager(stores[1]).start(), Manager(stores[2]).start()]
    try:

        def create(index: int) -> None:
            stores[0].create(
                Pod(
                    ObjectMeta(name=f"p{index}", namespace=namespace),
                    body={
                        "spec": {
                            "nodeName": f"node-{run}",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    },
                )
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(PODS)))

        def served() -> tuple[set[str], list[IPInstance]]:
            mine = [
                i
                for i in stores[0].list(IPInstance, IPAM_NAMESPACE).items
                if i.spec.subnet == f"s-{run}"
            ]
            return {ipinstances.owner_of(i) or "" for i in mine}, mine

        deadline = time.monotonic() + 180
        owners, instances = served()
        while time.monotonic() < deadline and len(owners) < PODS:
            time.sleep(0.5)
            owners, instances = served()
        assert owners == {f"{namespace}/p{i}" for i in range(PODS)}, (
            f"{len(owners)} of {PODS} served"
        )

        # Converged: one address per pod, and no address twice.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            per_pod = Counter(ipinstances.owner_of(i) for i in instances)
            if max(per_pod.values()) == 1 and len(instances) == PODS:
                break
            time.sleep(0.5)
            _, instances = served()
        addresses = [ipaddress.ip_interface(i.spec.address.ip).ip for i in instances]
        assert len(addresses) == len(set(addresses)), "an address was handed out twice"
        assert len(instances) == PODS, f"{len(instances) - PODS} extra addresses left"
        for manager in managers:
            for index in range(PODS):
                held = manager.service.held_by(f"{namespace}/p{index}")
                assert len(held) == 1, (index, held)
    finally:
        for manager in managers:
            manager.stop()
        for store in stores:
            store.close()
