"""Self-managed webhook certificates with real manager processes and the real API server.

Two managers start at once with ``--webhook-secret`` and ``--webhook-service`` and end up
serving one certificate from one Secret; the CA lands in the configurations the chart ships
(made here by ``registration.service_configurations``, as the chart renders them) and the API
server then really calls the webhook through the Service reference: a bad Subnet and a bad
Pod are refused, a good Pod is mutated. A restart rotates nothing, a removed caBundle comes
back, a missing configuration or permission stops the manager with one line naming it, and
with every manager down the pods outside the webhook's scope (kube-system, host network) are
still admitted.

How the API server reaches a webhook behind a Service here: no kube-proxy or cluster network
runs, and the root network namespace is never changed, so a ClusterIP would lead nowhere. The
Service is of type ExternalName with ``externalName: 127.0.0.1``; for that type the API server
dials ``externalName:<clientConfig.service.port>`` while still verifying the certificate for
``<service>.<namespace>.svc`` against caBundle, exactly the name check a ClusterIP Service
gets. So the configurations name the manager's loopback port instead of 443.

The API server is shared by the session: the configurations select only objects labelled
with this module's run id, and are deleted before the managers stop (they fail closed).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.controlplane import ControlPlane, free_port, tail
from hybridnet.api import constants as c
from hybridnet.api.builtin import (
    MutatingWebhookConfiguration,
    Namespace,
    Pod,
    Secret,
    ValidatingWebhookConfiguration,
)
from hybridnet.api.meta import ObjectMeta
from hybridnet.api.resources import AddressRange, Subnet, SubnetSpec
from hybridnet.lab.manager import manager_argv
from hybridnet.manager.webhook import registration
from hybridnet.store.errors import Forbidden, Invalid, NotFound, Unavailable
from hybridnet.store.kube import KubeStore
from tests.cluster.manifests import apply, remove

RUN = uuid.uuid4().hex[:6]
NAMESPACE = f"whc-{RUN}"
"""The install namespace: the managers' Secret, Service, Lease and IPInstances."""
PODS = f"whc-pods-{RUN}"
"""An ordinary namespace, in the pod webhook's scope."""
SERVICE = "hybridnet-webhook"
SECRET = "hybridnet-webhook-certs"  # noqa: S105 (a Secret name)
SELECTED = "hybridnet-test/webhook-certs"
LABELS = {SELECTED: RUN}
WAIT_SECONDS = 60.0
RESYNC_SECONDS = "1"


def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- manager processes


@dataclasses.dataclass
class ManagerProcess:
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def logged(self, message: str) -> bool:
        return any(line.get("msg") == message for line in self.lines())

    def tail(self) -> str:
        return f"--- last lines of {self.log}:\n{tail(self.log, 40)}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.logged("webhook ready"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the manager never got its webhook ready\n{self.tail()}")
            time.sleep(0.1)

    def exit_code(self, timeout: float = WAIT_SECONDS) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the manager kept running\n{self.tail()}") from exc

    def terminate(self) -> None:
        """SIGTERM to our own child, by PID; SIGKILL only if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_manager(
    kubeconfig: Path, name: str, port: int, directory: Path, *, secret: str = SECRET
) -> ManagerProcess:
    argv = manager_argv(
        kubeconfig,
        NAMESPACE,
        name,
        "--metrics-address",
        "",
        "--webhook-address",
        f"127.0.0.1:{port}",
        "--webhook-secret",
        secret,
        "--webhook-service",
        SERVICE,
        "--webhook-resync-seconds",
        RESYNC_SECONDS,
    )
    log = directory / f"{name}-{uuid.uuid4().hex[:4]}.log"  # a restart gets a log of its own
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return ManagerProcess(process, log, port)


def served_certificate(port: int) -> bytes:
    """The DER certificate the webhook on ``port`` hands a new connection (compared only)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def secret_pem(store: KubeStore, key: str, name: str = SECRET) -> bytes:
    secret = store.get(Secret, name, NAMESPACE)
    return base64.b64decode(secret.body["data"][key])


def as_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


# --------------------------------------------------------------------------- fixtures


def service_manifest(port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {
                "type": "ExternalName",
                "externalName": "127.0.0.1",
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
        }
    ]


def ship_configurations(store: KubeStore, port: int) -> None:
    """What the chart installs, limited to this module's objects."""
    for config in registration.service_configurations(
        NAMESPACE, SERVICE, port=port, object_selector={"matchLabels": dict(LABELS)}
    ):
        store.create(config)


def ca_bundles(store: KubeStore) -> list[bytes]:
    bundles = []
    for kind, name in (
        (ValidatingWebhookConfiguration, registration.VALIDATING_NAME),
        (MutatingWebhookConfiguration, registration.MUTATING_NAME),
    ):
        try:
            config = store.get(kind, name)
        except NotFound:
            bundles.append(b"")
            continue
        for webhook in config.body["webhooks"]:
            bundles.append(base64.b64decode(webhook["clientConfig"].get("caBundle", "")))
    return bundles


@dataclasses.dataclass
class Setup:
    control_plane: ControlPlane
    admin: KubeStore
    directory: Path
    port: int
    managers: list[ManagerProcess]


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    admin = KubeStore.from_kubeconfig(control_plane.kubeconfig_path)
    directory = tmp_path_factory.mktemp("webhook-certs")
    port = free_port()
    admin.create(Namespace(ObjectMeta(name=NAMESPACE)))
    admin.create(Namespace(ObjectMeta(name=PODS)))
    apply(control_plane, service_manifest(port))
    ship_configurations(admin, port)
    state = Setup(control_plane, admin, directory, port, [])
    try:
        yield state
    finally:
        registration.unregister(admin)  # fail closed: never leave them pointing at nothing
        for manager in state.managers:
            manager.terminate()
        for namespace in (NAMESPACE, PODS, "kube-system"):
            for pod in admin.list(Pod, namespace, f"{SELECTED}={RUN}").items:
                with contextlib.suppress(NotFound):
                    admin.delete(Pod, pod.name, pod.namespace, grace_period_seconds=0)
        remove(control_plane, service_manifest(port))
        admin.close()


def bad_subnet() -> Subnet:
    """A Subnet of a Network that does not exist: the CRD takes it, the webhook does not."""
    return Subnet(
        ObjectMeta(name=f"orphan-{RUN}-{uuid.uuid4().hex[:4]}", labels=dict(LABELS)),
        SubnetSpec(network=f"missing-{RUN}", range=AddressRange(version="4", cidr="100.99.0.0/24")),
    )


def refusal(store: KubeStore, obj: Subnet | Pod) -> str:
    """The API server's refusal of ``obj``, or "" when it was admitted (then it is removed)."""
    try:
        created = store.create(obj)
    except (Forbidden, Invalid) as exc:
        return str(exc)
    with contextlib.suppress(NotFound):
        if isinstance(created, Pod):
            store.delete(Pod, created.name, created.namespace, grace_period_seconds=0)
        else:
            store.delete(Subnet, created.name)
    return ""


def pod(namespace: str, annotations: dict[str, str] | None = None, **spec: Any) -> Pod:
    metadata = ObjectMeta(
        name=f"p-{uuid.uuid4().hex[:6]}",
        namespace=namespace,
        labels=dict(LABELS),
        annotations=annotations or {},
    )
    containers = [{"name": "app", "image": "busybox"}]
    return Pod(metadata, body={"spec": {"containers": containers, **spec}})


# --------------------------------------------------------------------------- the tests


def test_two_managers_starting_together_share_one_secret(setup: Setup) -> None:
    kubeconfig = setup.control_plane.kubeconfig_path
    first = start_manager(kubeconfig, f"a-{RUN}", setup.port, setup.directory)
    second = start_manager(kubeconfig, f"b-{RUN}", free_port(), setup.directory)
    setup.managers += [first, second]
    first.wait_ready()
    second.wait_ready()
    served = as_der(secret_pem(setup.admin, "tls.crt"))
    assert served_certificate(first.port) == served
    assert served_certificate(second.port) == served
    created = [m for m in (first, second) if m.logged("webhook certificates created")]
    assert len(created) == 1, "exactly one replica made the certificates"
    secret = setup.admin.get(Secret, SECRET, NAMESPACE)
    assert secret.body["type"] == "kubernetes.io/tls"


def test_the_ca_is_patched_in_and_the_api_server_calls_the_webhook(setup: Setup) -> None:
    ca = secret_pem(setup.admin, "ca.crt")
    assert ca_bundles(setup.admin) == [ca, ca]
    message = refusal(setup.admin, bad_subnet())
    assert "admission webhook" in message and "does not exist" in message, message
    bad_pod = pod(PODS, {c.ANNOTATION_IP_FAMILY: "IPv5"})
    assert "IPv5" in refusal(setup.admin, bad_pod)
    good = setup.admin.create(pod(PODS))
    try:
        assert created_selector(good) == {
            c.LABEL_UNDERLAY_ATTACHMENT: "true",
            c.LABEL_IPV4_QUOTA: c.QUOTA_NONEMPTY,
        }
    finally:
        setup.admin.delete(Pod, good.name, PODS, grace_period_seconds=0)


def created_selector(created: Pod) -> dict[str, str]:
    return dict(created.body["spec"].get("nodeSelector") or {})


def test_a_restart_rotates_nothing(setup: Setup) -> None:
    first = setup.managers[0]
    before = setup.admin.get(Secret, SECRET, NAMESPACE)
    served = served_certificate(first.port)
    first.terminate()
    again = start_manager(
        setup.control_plane.kubeconfig_path, f"a-{RUN}", first.port, setup.directory
    )
    setup.managers[0] = again
    again.wait_ready()
    assert served_certificate(again.port) == served
    assert setup.admin.get(Secret, SECRET, NAMESPACE).resource_version == before.resource_version
    assert "does not exist" in refusal(setup.admin, bad_subnet())


def test_a_removed_ca_bundle_is_put_back(setup: Setup) -> None:
    ca = secret_pem(setup.admin, "ca.crt")
    config = setup.admin.get(ValidatingWebhookConfiguration, registration.VALIDATING_NAME)
    for webhook in config.body["webhooks"]:
        webhook["clientConfig"].pop("caBundle", None)
    setup.admin.update(config)
    eventually(lambda: ca_bundles(setup.admin)[0] == ca, "the managers to patch caBundle back")


def test_a_missing_configuration_stops_the_manager_naming_it(setup: Setup) -> None:
    mutating = setup.admin.get(MutatingWebhookConfiguration, registration.MUTATING_NAME)
    setup.admin.delete(MutatingWebhookConfiguration, registration.MUTATING_NAME)
    try:
        lone = start_manager(
            setup.control_plane.kubeconfig_path, f"c-{RUN}", free_port(), setup.directory
        )
        setup.managers.append(lone)
        assert lone.exit_code() == 1
        (line,) = [line for line in lone.lines() if line.get("msg") == "cannot start"]
        assert line["step"] == "patch the webhook CA bundle"
        assert line["error"].startswith(
            "ConfigurationMissing: MutatingWebhookConfiguration hybridnet-mutating does not exist"
        ), line
        assert "never creates it" in line["error"]
    finally:
        # Put it back as the chart would (no caBundle): the running managers patch it again.
        mutating.metadata = ObjectMeta(name=registration.MUTATING_NAME)
        for webhook in mutating.body["webhooks"]:
            webhook["clientConfig"].pop("caBundle", None)
        setup.admin.create(mutating)
    ca = secret_pem(setup.admin, "ca.crt")
    eventually(lambda: ca_bundles(setup.admin)[1] == ca, "caBundle in the recreated configuration")


def role_documents(account: str, drop: tuple[str, str]) -> list[dict[str, Any]]:
    """The manager's webhook RBAC as agreed for the chart, minus one (resource, verb)."""

    def verbs(resource: str, *wanted: str) -> list[str]:
        return [v for v in wanted if (resource, v) != drop]

    secret_rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": verbs("secrets", "create")},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"other-{RUN}"],
            "verbs": verbs("secrets", "get", "update"),
        },
    ]
    config_rules = [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
            "resourceNames": [registration.VALIDATING_NAME, registration.MUTATING_NAME],
            "verbs": verbs("webhookconfigurations", "get", "update", "patch"),
        }
    ]
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    name = f"{account}-{RUN}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "rules": [r for r in secret_rules if r["verbs"]],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": config_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": subject,
        },
    ]


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (
            ("webhookconfigurations", "update"),
            "forbidden to update validatingwebhookconfigurations.admissionregistration.k8s.io "
            '"hybridnet-validating"',
        ),
        (("secrets", "create"), f'forbidden to create secrets "other-{RUN}" in namespace'),
    ],
    ids=["update-configurations", "create-secrets"],
)
def test_a_missing_permission_stops_the_manager_naming_it(
    setup: Setup, drop: tuple[str, str], named: str
) -> None:
    """Its own Secret (``other-RUN``), so its new CA has to be patched in: with update on the
    configurations dropped that is refused; with create on Secrets dropped, it gets no further
    than the Secret."""
    account = f"limited-{drop[1]}"
    documents = role_documents(account, drop)
    apply(setup.control_plane, documents)
    try:
        kubeconfig = setup.control_plane.service_account_kubeconfig(
            NAMESPACE, account, path=setup.directory / f"{account}.kubeconfig"
        )
        limited = start_manager(
            kubeconfig, f"{account}-{RUN}", free_port(), setup.directory, secret=f"other-{RUN}"
        )
        setup.managers.append(limited)
        assert limited.exit_code() == 1
        (line,) = [line for line in limited.lines() if line.get("msg") == "cannot start"]
        assert line["error"].startswith("PermissionMissing: " + named), line
        assert f"system:serviceaccount:{NAMESPACE}:{account}" in line["error"]
    finally:
        remove(setup.control_plane, documents)
        with contextlib.suppress(NotFound):
            setup.admin.delete(Secret, f"other-{RUN}", NAMESPACE)
    ca = secret_pem(setup.admin, "ca.crt")
    assert ca_bundles(setup.admin) == [ca, ca], "a refused manager changed nothing"


def test_with_every_manager_down_system_and_host_network_pods_still_start(setup: Setup) -> None:
    for manager in setup.managers:
        manager.terminate()
    # The webhook is gone but its configurations stay (fail closed): a pod in its scope is
    # refused because the API server cannot call it (an internal error: a 500)...
    with pytest.raises(Unavailable, match="failed calling webhook"):
        setup.admin.create(pod(PODS))
    # ...while what the scope leaves out is admitted, untouched: the cluster's system pods,
    # the managers' own replacements, host-network pods anywhere.
    for outside in (pod("kube-system"), pod(NAMESPACE), pod(PODS, hostNetwork=True)):
        assert created_selector(setup.admin.create(outside)) == {}
