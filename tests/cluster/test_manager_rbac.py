"""hybridnet-manager as the ServiceAccount the chart ships (templates/manager/rbac.yaml, rendered
by the real helm): enough, and no more.

The manager process runs with a kubeconfig that holds nothing but a bound token of that
ServiceAccount, so every request it makes is authorized by the chart's rules alone. Driving a
pod's whole life through it (allocation, dual stack, release, status counters, node labels,
an Event for a bad annotation, the leader Lease, and its admission webhook: registration, pod
mutation, subnet and network checks) proves the rules are sufficient; a missing rule fails here,
not for a user. The manager's log is also searched for any RBAC denial, since some of its failures
are retried quietly. Then the same identity is shown to be refused what the manager has no
business doing: deleting a Node, reading Secrets other than its certificate's, writing pods,
specs or other namespaces' IPInstances, touching other Leases or webhook configurations, creating
a webhook configuration. And a manager given less than it needs stops at start-up with one
error naming the permission it lacks.

Why the RBAC is rendered into a namespace of the test's own (``rbac-<run>``, the release
namespace to helm) instead of a shared one such as ``hybridnet-system`` or ``kube-system``: the
API server is shared by the whole session, and there kube-system already holds other tests'
state - the Lease ``hybridnet-manager`` (test_manager_failover
kills a leader with -9, so the Lease stays held until it expires) and the IPInstances of every
earlier test's pods, which a manager in kube-system would rebuild from. Waiting for the Lease
to expire would still leave the foreign IPInstances, and would make the test slow and
order-dependent. The manager's namespace is also where its Role grants IPInstance, Lease and
Secret rights; helm renders the chart for that namespace exactly as `helm install -n` would,
which also proves that nothing outside the release namespace is relied upon.

The chart ships both webhook configurations and grants no ``create`` of them, so the test
creates them from the chart's rendering before the manager starts (as `helm install` would);
the manager, serving on 127.0.0.1 with ``--webhook-url`` because this API server cannot reach a
Service, then rewrites their client configuration with get + update, which the chart grants.

Stand-ins, as everywhere in the cluster tier: no kubelet or scheduler runs, so the Harness
creates the Node and binds pods by setting ``spec.nodeName``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.controlplane import (
    CertificateAuthority,
    ControlPlane,
    close_api_client,
    free_port,
    tail,
)
from hybridnet.api import constants as c
from hybridnet.api.builtin import Lease, Node, Pod
from hybridnet.api.resources import IPInstance, Network, Subnet
from hybridnet.ipamstore import ipinstances
from hybridnet.lab.manager import Harness, manager_argv
from hybridnet.manager.webhook import registration
from hybridnet.store.errors import Forbidden, Invalid, NotFound, StoreError
from hybridnet.store.kube import KubeStore
from tests.cluster.manifests import apply, can_i, remove, render
from tests.manager_scenarios import events_for

ACCOUNT = "hybridnet-manager"
WAIT_SECONDS = 60.0
"""Generous: in a full run this manager also serves the pods earlier tests left behind."""


# --------------------------------------------------------------------------- the process


@dataclasses.dataclass
class ManagerProcess:
    process: subprocess.Popen[bytes]
    log: Path
    identity: str

    def tail(self) -> str:
        return f"--- last lines of the manager's log {self.log}:\n{tail(self.log, 60)}"

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM to our own child, by PID; SIGKILL only if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the manager ignored SIGTERM for {timeout}s\n{self.tail()}"
            ) from exc


def start_manager(
    sa_kubeconfig: Path, namespace: str, identity: str, tmp_path: Path
) -> ManagerProcess:
    ca = CertificateAuthority("hybridnet-rbac-test-ca")
    cert, key = ca.issue("hybridnet-webhook", sans=["127.0.0.1"], server=True).write(
        tmp_path, "webhook"
    )
    (tmp_path / "webhook-ca.pem").write_bytes(ca.cert_pem)
    webhook_port = free_port()
    argv = manager_argv(
        sa_kubeconfig,
        namespace,
        identity,
        "--metrics-address",
        "",
        "--webhook-address",
        f"127.0.0.1:{webhook_port}",
        "--webhook-cert",
        str(cert),
        "--webhook-key",
        str(key),
        "--webhook-ca",
        str(tmp_path / "webhook-ca.pem"),
        "--webhook-url",
        f"https://127.0.0.1:{webhook_port}",
    )
    log = tmp_path / "manager.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return ManagerProcess(process, log, identity)


# --------------------------------------------------------------------------- fixtures


@dataclasses.dataclass
class Setup:
    run: str
    namespace: str
    """The manager's namespace: its Lease, its IPInstances, its Role."""
    pods: str
    node: str
    admin: KubeStore
    sa_kubeconfig: Path
    harness: Harness


@pytest.fixture
def setup(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Setup]:
    """The RBAC applied into ``rbac-<run>`` and a token kubeconfig of its ServiceAccount; on
    the way out, everything the test and its manager created is removed (the namespaces stay:
    without a controller-manager nobody would finish deleting them)."""
    run = uuid.uuid4().hex[:6]
    namespace = f"rbac-{run}"
    admin = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    harness = Harness(admin, run)
    harness.namespace(namespace)
    rbac = render("manager/rbac.yaml", namespace)
    try:
        apply(control_plane, rbac)
        sa_kubeconfig = control_plane.service_account_kubeconfig(
            namespace, ACCOUNT, path=tmp_path / "sa.kubeconfig"
        )
        yield Setup(run, namespace, f"pods-{run}", f"node-{run}", admin, sa_kubeconfig, harness)
    finally:
        registration.unregister(admin)  # fail-closed: never leave it pointing at nothing
        for pod in admin.list(Pod, f"pods-{run}").items:
            harness.delete_pod(pod.namespace or "", pod.name)
        for instance in admin.list(IPInstance, namespace).items:
            with contextlib.suppress(NotFound):
                admin.delete(IPInstance, instance.name, namespace)
        for kind, name in (
            (Subnet, f"v4-{run}"),
            (Subnet, f"v6-{run}"),
            (Subnet, f"ghost-subnet-{run}"),
            (Subnet, f"overlap-{run}"),
            (Network, f"u2-{run}"),
            (Network, f"u-{run}"),
            (Node, f"node-{run}"),
        ):
            with contextlib.suppress(NotFound):
                admin.delete(kind, name)
        remove(control_plane, rbac)
        admin.close()


# --------------------------------------------------------------------------- helpers


def webhook_configurations(namespace: str) -> list[dict[str, Any]]:
    return render("webhook/validating.yaml", namespace) + render("webhook/mutating.yaml", namespace)


def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def refusal(create: Callable[[], object], undo: Callable[[], None]) -> str:
    """The message with which the API server refuses ``create``, or "" if it let it in (then
    ``undo`` removes it again)."""
    try:
        create()
    except (Forbidden, Invalid) as exc:  # the webhook answers 403 or 400
        return str(exc)
    undo()
    return ""


def instances(setup: Setup, pod: str) -> list[IPInstance]:
    """The pod's IPInstances, in the manager's namespace (not the Harness's kube-system)."""
    selector = ipinstances.pod_selector(setup.pods, pod)
    found = setup.admin.list(IPInstance, setup.namespace, selector).items
    return sorted(found, key=lambda i: i.spec.address.version)


def wait_instances(setup: Setup, pod: str, count: int) -> list[IPInstance]:
    eventually(lambda: len(instances(setup, pod)) == count, f"{count} IPInstance(s) for {pod}")
    return instances(setup, pod)


def lease_holder(admin: KubeStore, namespace: str) -> str:
    try:
        lease = admin.get(Lease, "hybridnet-manager", namespace)
    except NotFound:
        return ""
    return str(lease.body.get("spec", {}).get("holderIdentity") or "")


def mutated_by_webhook(api: Any, namespace: str) -> bool:
    """A dry-run pod create (admission runs, nothing is stored) came back with the annotations
    the mutating webhook adds."""
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="probe", namespace=namespace),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    try:
        pod = client.CoreV1Api(api).create_namespaced_pod(namespace, body, dry_run="All")
    except ApiException:
        return False
    annotations = (pod.metadata.annotations if pod.metadata else None) or {}
    return c.ANNOTATION_NETWORK_TYPE in annotations


# --------------------------------------------------------------------------- the test


def test_the_manager_needs_only_its_shipped_rbac(
    setup: Setup, control_plane: ControlPlane, tmp_path: Path
) -> None:
    run, namespace, pods = setup.run, setup.namespace, setup.pods
    admin, harness = setup.admin, setup.harness

    # The Deployment and its PodDisruptionBudget, rendered the same way, are accepted by the
    # API server as they are (schema, strict field validation), without being run.
    workload = render("manager/deployment.yaml", namespace) + render("manager/pdb.yaml", namespace)
    apply(control_plane, workload, "--dry-run=server")

    # What exists before the manager starts. The pod with a bad annotation goes in now: once
    # the manager's mutating webhook is registered, admission would refuse it outright.
    harness.namespace(pods)
    harness.node(setup.node)
    harness.underlay(f"u-{run}")
    harness.subnet(f"v4-{run}", f"u-{run}", "198.18.176.0/24")
    harness.subnet(f"v6-{run}", f"u-{run}", "2001:db8:176::/64", version="6")
    harness.pod(pods, "bad", node=setup.node, annotations={c.ANNOTATION_IP_POOL: "198.18.176.x"})
    # The chart's webhook configurations, as `helm install` creates them (the manager may not).
    apply(control_plane, webhook_configurations(namespace))

    manager = start_manager(setup.sa_kubeconfig, namespace, f"rbac-{run}", tmp_path)
    try:
        drive_a_pods_life(setup, control_plane, manager)
        prove_least_privilege(setup, control_plane)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{manager.tail()}") from exc
    finally:
        registration.unregister(admin)  # before the server goes: failurePolicy is Fail
        code = manager.terminate()
    assert code == 0, f"the manager exited with {code} on SIGTERM\n{manager.tail()}"
    denied = f'User "system:serviceaccount:{namespace}:{ACCOUNT}" cannot'
    log = manager.log.read_text(errors="replace")
    assert denied not in log, f"the manager was refused something:\n{manager.tail()}"
    assert "released the lease" in log, manager.tail()  # the Lease update on the way out
    assert lease_holder(admin, namespace) == ""


def drive_a_pods_life(setup: Setup, control_plane: ControlPlane, manager: ManagerProcess) -> None:
    run, namespace, pods = setup.run, setup.namespace, setup.pods
    admin, harness = setup.admin, setup.harness

    def alive() -> bool:
        assert manager.process.poll() is None, f"the manager exited ({manager.process.poll()})"
        return True

    # The Lease: get, create, update in its namespace.
    eventually(lambda: alive() and lease_holder(admin, namespace) == manager.identity, "lead")

    # The webhook was registered by the manager (create, or get + update, of both
    # configurations) and answers: a subnet of a network that does not exist is refused (the
    # CRD alone would take it; the check lists Networks as the ServiceAccount).
    def ghost() -> str:
        return refusal(
            lambda: harness.subnet(f"ghost-subnet-{run}", f"ghost-{run}", "198.18.177.0/24"),
            lambda: admin.delete(Subnet, f"ghost-subnet-{run}"),
        )

    eventually(lambda: alive() and "does not exist" in ghost(), "the validating webhook")
    api = control_plane.api_client()
    try:
        eventually(lambda: alive() and mutated_by_webhook(api, pods), "the mutating webhook")
    finally:
        close_api_client(api)

    # Overlap (lists Subnets) and node sharing (lists Nodes) are refused with their reasons.
    overlap = refusal(
        lambda: harness.subnet(f"overlap-{run}", f"u-{run}", "198.18.176.128/25"),
        lambda: admin.delete(Subnet, f"overlap-{run}"),
    )
    assert f"v4-{run}" in overlap and f"overlap-{run}" in overlap, overlap
    shared = refusal(
        lambda: harness.underlay(f"u2-{run}"), lambda: admin.delete(Network, f"u2-{run}")
    )
    assert f'share node "{setup.node}"' in shared, shared

    # A pod's life. Admission mutates it (reads the Namespace, Networks, Subnets), the manager
    # allocates (Pods, Namespaces, Nodes, Networks, Subnets watched; IPInstances created).
    web = harness.pod(pods, "web", node=setup.node)
    assert web.metadata.annotations.get(c.ANNOTATION_NETWORK_TYPE) == c.TYPE_UNDERLAY
    dual = harness.pod(
        pods, "dual", node=setup.node, annotations={c.ANNOTATION_IP_FAMILY: "DualStack"}
    )
    assert dual.metadata.annotations.get(c.ANNOTATION_IP_FAMILY) == "DualStack"
    (web_v4,) = wait_instances(setup, "web", 1)
    dual_v4, dual_v6 = wait_instances(setup, "dual", 2)
    assert {web_v4.spec.subnet, dual_v4.spec.subnet, dual_v6.spec.subnet} == {
        f"v4-{run}",
        f"v6-{run}",
    }
    assert all(i.namespace == namespace for i in (web_v4, dual_v4, dual_v6))

    # Status counters (networks/status and subnets/status updates).
    def used() -> tuple[int, int, int]:
        v4 = admin.get(Subnet, f"v4-{run}").status.used
        v6 = admin.get(Subnet, f"v6-{run}").status.used
        statistics = admin.get(Network, f"u-{run}").status.statistics
        return v4, v6, statistics.used if statistics else -1

    eventually(lambda: alive() and used() == (2, 1, 2), "subnet and network counters 2/1/2")

    # Node labels (nodes update): the attachment and quota labels the webhook selects on.
    def labels() -> dict[str, str]:
        return admin.get(Node, setup.node).metadata.labels

    eventually(
        lambda: (
            alive()
            and labels().get(c.LABEL_UNDERLAY_ATTACHMENT) == "true"
            and labels().get(c.LABEL_DUALSTACK_QUOTA) == c.QUOTA_NONEMPTY
        ),
        "the node labelled as attached, with addresses of both families",
    )

    # An Event for the bad annotation (events create, in the pod's namespace); no address.
    eventually(
        lambda: any(
            e.body.get("reason") == "InvalidAnnotation"
            and c.ANNOTATION_IP_POOL in e.body["message"]
            for e in events_for(admin, pods, "bad")
        ),
        "an InvalidAnnotation event for the bad pod",
    )
    assert instances(setup, "bad") == []

    # A subnet with addresses in use cannot be deleted: the webhook lists IPInstances in every
    # namespace, and names the holders it found.
    in_use = ""
    try:
        admin.delete(Subnet, f"v4-{run}")
    except (Forbidden, Invalid) as exc:
        in_use = str(exc)
    assert f"{namespace}/{web_v4.name}" in in_use, in_use or "the subnet was deleted in use"

    # Release: the pods go, their IPInstances are deleted, the counters drop.
    harness.delete_pod(pods, "web")
    harness.delete_pod(pods, "dual")
    wait_instances(setup, "web", 0)
    wait_instances(setup, "dual", 0)
    eventually(lambda: alive() and used() == (0, 0, 0), "counters back to 0/0/0")


def prove_least_privilege(setup: Setup, control_plane: ControlPlane) -> None:
    namespace, pods, kubeconfig = setup.namespace, setup.pods, setup.sa_kubeconfig

    # Real requests as the ServiceAccount.
    sa_store = KubeStore.from_kubeconfig(kubeconfig)
    try:
        with pytest.raises(Forbidden):
            sa_store.delete(Node, setup.node)
        with pytest.raises(Forbidden):
            sa_store.delete(Subnet, f"v4-{setup.run}")
        with pytest.raises(Forbidden):
            sa_store.delete(Pod, "bad", pods)
        # ...while what the manager does is allowed to the same store.
        assert setup.node in {n.name for n in sa_store.list(Node).items}
    except StoreError as exc:
        raise AssertionError(f"as the ServiceAccount: {exc}") from exc
    finally:
        sa_store.close()
    api = control_plane.api_client(kubeconfig)
    try:
        core = client.CoreV1Api(api)
        for call in (
            lambda: core.list_namespaced_secret(namespace),
            core.list_secret_for_all_namespaces,
            lambda: core.read_namespaced_secret("anything", "kube-system"),
        ):
            with pytest.raises(ApiException) as secret_refused:
                call()
            assert secret_refused.value.status == 403, secret_refused.value
    finally:
        close_api_client(api)

    # What the rules allow and refuse, asked as the ServiceAccount itself.
    ipinstances_resource = "ipinstances.networking.alibaba.com"
    allowed = [
        ("create", ipinstances_resource, "-n", namespace),
        ("delete", ipinstances_resource, "-n", namespace),
        ("list", "pods", "--all-namespaces"),
        ("create", "events", "-n", pods),
        ("update", "subnets.networking.alibaba.com", "--subresource=status"),
        ("update", "leases.coordination.k8s.io/hybridnet-manager", "-n", namespace),
        ("update", "validatingwebhookconfigurations/hybridnet-validating"),
        ("get", "mutatingwebhookconfigurations/hybridnet-mutating"),
        ("get", "secrets/hybridnet-webhook-certs", "-n", namespace),  # --webhook-secret
        ("update", "secrets/hybridnet-webhook-certs", "-n", namespace),
        ("create", "secrets", "-n", namespace),
        ("update", "nodes"),  # NodeLabeler
        ("get", "nodes"),  # NodeLabeler: is a Node gone?
        ("list", "nodeinfos.networking.alibaba.com"),
        ("delete", "nodeinfos.networking.alibaba.com"),  # ...then its NodeInfo goes
    ]
    refused = [
        ("get", "secrets", "-n", namespace),
        ("get", "secrets/someone-elses", "-n", namespace),
        ("delete", "secrets/hybridnet-webhook-certs", "-n", namespace),
        ("create", "secrets", "-n", pods),
        ("list", "secrets", "--all-namespaces"),
        ("delete", "nodes"),
        ("patch", "nodes"),
        ("create", "pods", "-n", pods),
        ("delete", "pods", "-n", pods),
        ("update", "pods", "-n", pods),
        ("update", "subnets.networking.alibaba.com"),
        ("delete", "subnets.networking.alibaba.com"),
        ("create", "networks.networking.alibaba.com"),
        ("get", "nodeinfos.networking.alibaba.com"),
        ("update", "nodeinfos.networking.alibaba.com"),
        ("create", ipinstances_resource, "-n", pods),
        ("delete", ipinstances_resource, "-n", "kube-system"),
        ("watch", ipinstances_resource, "--all-namespaces"),
        ("update", "leases.coordination.k8s.io/someone-else", "-n", namespace),
        ("create", "leases.coordination.k8s.io", "-n", pods),
        ("update", "validatingwebhookconfigurations/someone-elses"),
        ("delete", "validatingwebhookconfigurations/hybridnet-validating"),
        ("delete", "mutatingwebhookconfigurations/hybridnet-mutating"),
        ("create", "validatingwebhookconfigurations"),  # the chart ships them
        ("create", "mutatingwebhookconfigurations"),
        ("patch", "validatingwebhookconfigurations/hybridnet-validating"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "serviceaccounts", "--subresource=token", "-n", namespace),
    ]
    wrong = [a for a in allowed if not can_i(control_plane, kubeconfig, *a)]
    wrong += [("MAY", *r) for r in refused if can_i(control_plane, kubeconfig, *r)]
    assert not wrong, f"the ServiceAccount's rights differ from what the chart means: {wrong}"


def test_a_manager_missing_a_rule_stops_naming_it(
    setup: Setup, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """An operator who trimmed the chart's ClusterRole: without list + watch of Networks and
    Subnets the manager cannot rebuild its state, and instead of running without allocating it
    exits 1 at start-up with one error that names the refused verb and resource."""
    (role,) = [
        d for d in render("manager/rbac.yaml", setup.namespace) if d["kind"] == "ClusterRole"
    ]
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["networks", "subnets"]]
    apply(control_plane, [role])
    # The authorizer follows RBAC objects through a watch: start once it answers "no".
    eventually(
        lambda: (
            not can_i(control_plane, setup.sa_kubeconfig, "list", "networks.networking.alibaba.com")
        ),
        "the trimmed ClusterRole in force",
    )
    log = tmp_path / "manager.log"
    argv = manager_argv(
        setup.sa_kubeconfig, setup.namespace, f"trimmed-{setup.run}", "--metrics-address", ""
    )
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    manager = ManagerProcess(process, log, f"trimmed-{setup.run}")
    try:
        code = process.wait(WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        manager.terminate()
        raise AssertionError(
            f"the manager kept running without its rule\n{manager.tail()}"
        ) from None
    assert code == 1, manager.tail()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, manager.tail()
    assert errors[0]["msg"] == "cannot start", errors[0]
    message = str(errors[0]["error"])
    assert 'cannot list resource "networks"' in message, message
    assert 'in API group "networking.alibaba.com"' in message, message
