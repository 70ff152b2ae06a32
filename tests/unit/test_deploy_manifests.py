"""deploy/manager/: least-privilege RBAC, one ServiceAccount throughout, a locked-down Deployment.

These read the YAML only; tests/cluster/test_manager_rbac.py applies it to a real API server and
runs the manager under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridnet.manager import main
from hybridnet.manager.webhook import registration

MANAGER_DIR = Path(__file__).resolve().parents[2] / "deploy" / "manager"
ROLE_KINDS = ("Role", "ClusterRole")
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")
Doc = dict[str, Any]


def documents() -> list[Doc]:
    docs: list[Doc] = []
    for path in sorted(MANAGER_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
                docs.append(doc)
    return docs


def of_kind(kind: str) -> list[Doc]:
    return [d for d in documents() if d["kind"] == kind]


def one(kind: str) -> Doc:
    (doc,) = of_kind(kind)
    return doc


def service_account() -> tuple[str, str]:
    account = one("ServiceAccount")
    return account["metadata"]["name"], account["metadata"]["namespace"]


def rules(kind: str) -> list[Doc]:
    return [rule for role in of_kind(kind) for rule in role["rules"]]


def grants(kind: str, group: str, resource: str) -> set[str]:
    """The verbs ``kind`` (Role or ClusterRole) grants on ``group``/``resource``."""
    verbs: set[str] = set()
    for rule in rules(kind):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def manager_container() -> Doc:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# ----------------------------------------------------------------------------- files


def test_the_files_exist_and_every_document_is_a_named_object() -> None:
    names = sorted(p.name for p in MANAGER_DIR.glob("*.yaml"))
    assert names == ["deployment.yaml", "rbac.yaml"]
    for doc in documents():
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc["metadata"].get("name"), doc


# ----------------------------------------------------------------------------- RBAC


def test_no_rule_uses_a_wildcard() -> None:
    for kind in ROLE_KINDS:
        for rule in rules(kind):
            assert "nonResourceURLs" not in rule, rule
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                values = rule.get(field, [])
                assert isinstance(values, list), (field, rule)
                assert not any("*" in str(v) for v in values), f"{kind} {field}: {rule}"
            assert rule["verbs"] and rule["resources"], rule


def test_every_rule_is_explained_by_a_comment() -> None:
    lines = (MANAGER_DIR / "rbac.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[number - 1].strip().startswith("#"), (
                f"rbac.yaml line {number + 1}: a rule without a comment above it"
            )


def test_one_service_account_named_the_same_everywhere() -> None:
    name, namespace = service_account()
    assert (name, namespace) == ("hybridnet-manager", "kube-system")
    bindings = [b for kind in BINDING_KINDS for b in of_kind(kind)]
    assert sorted(b["kind"] for b in bindings) == ["ClusterRoleBinding", "RoleBinding"]
    roles = {(r["kind"], r["metadata"]["name"]) for kind in ROLE_KINDS for r in of_kind(kind)}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": namespace}
        ], binding
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        assert (ref["kind"], ref["name"]) in roles, f"{binding['kind']} names a missing role"
        if binding["kind"] == "RoleBinding":
            assert ref["kind"] == "Role"
            assert binding["metadata"]["namespace"] == namespace
    assert one("Role")["metadata"]["namespace"] == namespace
    spec = one("Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == name
    assert spec.get("automountServiceAccountToken", True) is True  # the manager needs its token
    for doc in documents():
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]


def test_namespaced_rights_follow_the_managers_namespace() -> None:
    """IPInstances and the Lease live in --namespace: the Role must be in that namespace."""
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
        ("", "nodes", {"list", "watch", "update"}),  # NodeLabeler writes labels
        ("", "namespaces", {"get", "list", "watch"}),
        ("", "events", {"create"}),
        ("networking.alibaba.com", "networks", {"list", "watch"}),
        ("networking.alibaba.com", "subnets", {"list", "watch"}),
        ("networking.alibaba.com", "networks/status", {"update"}),
        ("networking.alibaba.com", "subnets/status", {"update"}),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            {"get", "update", "create"},
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            {"get", "update", "create"},
        ),
    ],
)
def test_cluster_wide_rights_are_exactly_what_the_code_does(
    group: str, resource: str, verbs: set[str]
) -> None:
    assert grants("ClusterRole", group, resource) == verbs


def test_nothing_else_is_granted() -> None:
    granted = {
        (group, resource)
        for kind in ROLE_KINDS
        for rule in rules(kind)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        ("", "pods"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "events"),
        ("networking.alibaba.com", "networks"),
        ("networking.alibaba.com", "subnets"),
        ("networking.alibaba.com", "networks/status"),
        ("networking.alibaba.com", "subnets/status"),
        ("networking.alibaba.com", "ipinstances"),
        ("coordination.k8s.io", "leases"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    }
    never = {"delete", "deletecollection", "patch", "escalate", "bind", "impersonate"}
    for rule in rules("ClusterRole"):
        assert not never & set(rule["verbs"]), f"cluster-wide {never & set(rule['verbs'])}"


# ----------------------------------------------------------------------------- Deployment


def test_the_deployment_runs_two_leader_elected_replicas() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = manager_container()["args"]
    assert "--no-leader-elect" not in args
    assert flag(args, "--metrics-address") == "0.0.0.0:9899"
    assert manager_container()["command"] == ["hybridnet-manager"]
    # The flags are the manager's own: its parser accepts them (the API server expands
    # $(POD_NAME) from the env entry before the process sees it).
    env = {e["name"] for e in manager_container()["env"]}
    assert "POD_NAME" in env
    parsed = main.parse_args([a.replace("$(POD_NAME)", "hybridnet-manager-abc") for a in args])
    assert parsed.leader_elect and parsed.identity == "hybridnet-manager-abc"
    assert parsed.namespace == "kube-system"


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
    assert {p["containerPort"] for p in container["ports"]} == {port}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", port), probe
    for section in ("requests", "limits"):
        assert set(container["resources"][section]) >= {"cpu", "memory"}, section
    assert container["image"] == "hybridnet:latest"


def test_the_disruption_budget_keeps_a_replica() -> None:
    budget = one("PodDisruptionBudget")
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
