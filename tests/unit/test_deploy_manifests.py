"""deploy/manager/: least-privilege RBAC, one ServiceAccount throughout, a locked-down Deployment.

deploy/ is the chart's rendering with its default values (tests/cluster/test_chart.py checks
that). These read that YAML only; tests/cluster/test_manager_rbac.py applies the chart's RBAC to a
real API server and runs the manager under it.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from hybridnet.manager import main
from hybridnet.manager.webhook import registration
from tests.unit import deploy_docs
from tests.unit.deploy_docs import (
    DEPLOY_DIR,
    ROLE_KINDS,
    Doc,
    assert_every_rule_commented,
    assert_no_wildcards,
    assert_one_service_account,
    expanded_args,
    flag,
    granted,
    load,
)

MANAGER_DIR = DEPLOY_DIR / "manager"
NAMESPACE = "hybridnet-system"
CERTS_SECRET = "hybridnet-webhook-certs"  # noqa: S105 (a Secret's name)


def documents() -> list[Doc]:
    return load(MANAGER_DIR)


def of_kind(kind: str) -> list[Doc]:
    return deploy_docs.of_kind(documents(), kind)


def one(kind: str) -> Doc:
    return deploy_docs.one(documents(), kind)


def service_account() -> tuple[str, str]:
    account = one("ServiceAccount")
    return account["metadata"]["name"], account["metadata"]["namespace"]


def rules(kind: str) -> list[Doc]:
    return deploy_docs.rules(documents(), kind)


def grants(kind: str, group: str, resource: str) -> set[str]:
    return deploy_docs.grants(documents(), kind, group, resource)


def manager_container() -> Doc:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


# ----------------------------------------------------------------------------- files


def test_the_files_exist_and_every_document_is_a_named_object() -> None:
    names = sorted(p.name for p in MANAGER_DIR.glob("*.yaml"))
    assert names == ["deployment.yaml", "pdb.yaml", "rbac.yaml"]
    for doc in documents():
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc["metadata"].get("name"), doc


# ----------------------------------------------------------------------------- RBAC


def test_no_rule_uses_a_wildcard() -> None:
    assert_no_wildcards(documents())


def test_every_rule_is_explained_by_a_comment() -> None:
    assert_every_rule_commented(MANAGER_DIR / "rbac.yaml")


def test_one_service_account_named_the_same_everywhere() -> None:
    assert_one_service_account(documents(), "hybridnet-manager", NAMESPACE, "Deployment")


def test_namespaced_rights_follow_the_managers_namespace() -> None:
    """IPInstances, the Lease and the certificate Secret live in --namespace: the Role must be
    in that namespace."""
    args = manager_container()["args"]
    assert flag(args, "--namespace") == service_account()[1] == one("Role")["metadata"]["namespace"]
    assert grants("Role", "networking.alibaba.com", "ipinstances") == {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "delete",
    }
    # Nothing about IPInstances cluster-wide: even the webhook reads only this namespace.
    assert grants("ClusterRole", "networking.alibaba.com", "ipinstances") == set()


def test_names_in_resource_names_are_the_ones_the_code_uses() -> None:
    by_resource = {
        (rule["resources"][0], tuple(rule["resourceNames"]))
        for kind in ROLE_KINDS
        for rule in rules(kind)
        if "resourceNames" in rule
    }
    assert by_resource == {
        ("leases", (main.LEASE_NAME,)),
        ("secrets", (CERTS_SECRET,)),
        ("validatingwebhookconfigurations", (registration.VALIDATING_NAME,)),
        ("mutatingwebhookconfigurations", (registration.MUTATING_NAME,)),
    }
    for kind in ROLE_KINDS:
        for rule in rules(kind):
            if "resourceNames" in rule:
                # RBAC cannot limit these by name: they would silently grant nothing.
                assert not {"create", "list", "watch", "deletecollection"} & set(rule["verbs"])


@pytest.mark.parametrize(
    ("group", "resource", "verbs"),
    [
        ("", "pods", {"list", "watch"}),
        ("", "nodes", {"get", "list", "watch", "update"}),  # NodeLabeler: labels, departures
        ("networking.alibaba.com", "nodeinfos", {"list", "watch", "delete"}),  # departed nodes
        ("", "namespaces", {"get", "list", "watch"}),
        ("", "events", {"create"}),
        ("networking.alibaba.com", "networks", {"list", "watch"}),
        ("networking.alibaba.com", "subnets", {"list", "watch"}),
        ("networking.alibaba.com", "networks/status", {"update"}),
        ("networking.alibaba.com", "subnets/status", {"update"}),
        # caBundle only: the chart ships both configurations, the manager may not create one.
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", {"get", "update"}),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", {"get", "update"}),
    ],
)
def test_cluster_wide_rights_are_exactly_what_the_code_does(
    group: str, resource: str, verbs: set[str]
) -> None:
    assert grants("ClusterRole", group, resource) == verbs


def test_nothing_else_is_granted_and_each_right_is_in_its_scope() -> None:
    admission = "admissionregistration.k8s.io"
    group = "networking.alibaba.com"
    assert granted(documents()) == {
        ("ClusterRole", "", "events"): {"create"},
        ("ClusterRole", "", "namespaces"): {"get", "list", "watch"},
        ("ClusterRole", "", "nodes"): {"get", "list", "watch", "update"},
        ("ClusterRole", "", "pods"): {"list", "watch"},
        ("ClusterRole", admission, "mutatingwebhookconfigurations"): {"get", "update"},
        ("ClusterRole", admission, "validatingwebhookconfigurations"): {"get", "update"},
        ("ClusterRole", group, "networks"): {"list", "watch"},
        ("ClusterRole", group, "networks/status"): {"update"},
        ("ClusterRole", group, "nodeinfos"): {"delete", "list", "watch"},
        ("ClusterRole", group, "subnets"): {"list", "watch"},
        ("ClusterRole", group, "subnets/status"): {"update"},
        ("Role", "coordination.k8s.io", "leases"): {"create", "get", "update"},
        ("Role", "", "secrets"): {"create", "get", "update"},  # the webhook's certificates
        ("Role", group, "ipinstances"): {"create", "delete", "get", "list", "update", "watch"},
    }
    never = {"delete", "deletecollection", "patch", "escalate", "bind", "impersonate"}
    for rule in rules("ClusterRole"):
        verbs = set(rule["verbs"])
        if rule["resources"] == ["nodeinfos"]:
            verbs -= {"delete"}  # the one cluster-wide delete: departed nodes' NodeInfos
        assert not never & verbs, f"cluster-wide {never & verbs}"


# ----------------------------------------------------------------------------- Deployment


def test_the_deployment_runs_two_leader_elected_replicas() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = manager_container()["args"]
    assert "--no-leader-elect" not in args
    assert flag(args, "--metrics-address") == ":9899"
    assert manager_container()["command"] == ["hybridnet-manager"]
    # The flags are the manager's own: its parser accepts them (the kubelet expands $(POD_NAME)
    # and the ConfigMap's settings from the env entries before the process sees them).
    parsed = main.parse_args(expanded_args(manager_container(), POD_NAME="hybridnet-manager-abc"))
    assert parsed.leader_elect and parsed.identity == "hybridnet-manager-abc"
    assert parsed.namespace == NAMESPACE
    assert (parsed.default_network_type, parsed.default_ip_family) == ("Overlay", "IPv4")
    # The webhook on by default, behind the Service, with the manager's own certificates.
    assert parsed.webhook_address == ":9898"
    assert (parsed.webhook_service, parsed.webhook_secret) == ("hybridnet-webhook", CERTS_SECRET)


def test_the_deployment_is_locked_down() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    container = manager_container()
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert not context["capabilities"].get("add")
    assert not any("hostPath" in volume for volume in pod.get("volumes", []))


def test_the_deployment_has_probes_and_resources() -> None:
    container = manager_container()
    port = int(flag(container["args"], "--metrics-address").rpartition(":")[2])
    webhook = int(flag(container["args"], "--webhook-address").rpartition(":")[2])
    assert {p["containerPort"] for p in container["ports"]} == {port, webhook}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", port), probe
    for section in ("requests", "limits"):
        assert set(container["resources"][section]) >= {"cpu", "memory"}, section
    assert container["image"] == "hybridnet:0.1.0"  # the chart's appVersion


def test_the_disruption_budget_keeps_a_replica() -> None:
    budget = one("PodDisruptionBudget")
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_shipped_webhook_configurations_are_the_ones_the_manager_expects() -> None:
    """The chart renders the configurations the manager patches but never creates: their
    webhooks must be exactly registration.service_configurations' (the rules, scope, selectors,
    failure policy), or admission would differ from what the manager's code and tests assume.
    The caBundle is the manager's to write, so it is absent here."""
    validating, mutating = registration.service_configurations(NAMESPACE, "hybridnet-webhook")
    for shipped_file, expected in (
        ("webhook/validating.yaml", validating),
        ("webhook/mutating.yaml", mutating),
    ):
        (shipped,) = [d for d in yaml.safe_load_all((DEPLOY_DIR / shipped_file).read_text()) if d]
        assert shipped["metadata"]["name"] == expected.metadata.name
        wanted = copy.deepcopy(expected.to_json()["webhooks"])
        for webhook in wanted:
            webhook["clientConfig"].pop("caBundle", None)
        assert shipped["webhooks"] == wanted
