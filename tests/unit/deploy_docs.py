"""Reading deploy/ manifests in unit tests: the documents of a directory and what their RBAC
rules grant, plus the checks every component's RBAC must pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
ROLE_KINDS = ("Role", "ClusterRole")
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")
Doc = dict[str, Any]


def load(directory: Path) -> list[Doc]:
    docs: list[Doc] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
                docs.append(doc)
    return docs


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    (doc,) = of_kind(docs, kind)
    return doc


def rules(docs: list[Doc], kind: str) -> list[Doc]:
    return [rule for role in of_kind(docs, kind) for rule in role["rules"]]


def grants(docs: list[Doc], kind: str, group: str, resource: str) -> set[str]:
    """The verbs ``kind`` (Role or ClusterRole) grants on ``group``/``resource``."""
    verbs: set[str] = set()
    for rule in rules(docs, kind):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def granted(docs: list[Doc]) -> dict[tuple[str, str, str], set[str]]:
    """Everything the roles grant: (Role or ClusterRole, group, resource) -> verbs, so that a
    right in the wrong scope shows as clearly as a missing or an extra one."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for kind in ROLE_KINDS:
        for rule in rules(docs, kind):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    found.setdefault((kind, group, resource), set()).update(rule["verbs"])
    return found


def expanded_args(container: Doc, **field_values: str) -> list[str]:
    """The container's args as the kubelet hands them over: each ``$(NAME)`` replaced by its
    env entry's value, from the ConfigMap deploy/config/configmap.yaml (configMapKeyRef) or from
    ``field_values`` (fieldRef, by variable name)."""
    (config,) = load(DEPLOY_DIR / "config")
    values: dict[str, str] = {}
    for entry in container.get("env", []):
        source = entry["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["name"] == config["metadata"]["name"], entry
            values[entry["name"]] = config["data"][ref["key"]]
        else:
            values[entry["name"]] = field_values[entry["name"]]
    args = []
    for given in container["args"]:
        arg = str(given)
        for name, value in values.items():
            arg = arg.replace(f"$({name})", value)
        assert "$(" not in arg, f"{arg}: a variable without an env entry"
        args.append(arg)
    return args


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def assert_no_wildcards(docs: list[Doc]) -> None:
    for kind in ROLE_KINDS:
        for rule in rules(docs, kind):
            assert "nonResourceURLs" not in rule, rule
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                values = rule.get(field, [])
                assert isinstance(values, list), (field, rule)
                assert not any("*" in str(v) for v in values), f"{kind} {field}: {rule}"
            assert rule["verbs"] and rule["resources"], rule


def assert_every_rule_commented(rbac_file: Path) -> None:
    lines = rbac_file.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[number - 1].strip().startswith("#"), (
                f"{rbac_file.name} line {number + 1}: a rule without a comment above it"
            )


def assert_one_service_account(docs: list[Doc], name: str, namespace: str, workload: str) -> None:
    """One ServiceAccount, bound by a ClusterRoleBinding and a RoleBinding in its namespace,
    used by the ``workload`` (Deployment, DaemonSet); every namespaced object in its namespace."""
    account = one(docs, "ServiceAccount")
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == (name, namespace)
    bindings = [b for kind in BINDING_KINDS for b in of_kind(docs, kind)]
    assert sorted(b["kind"] for b in bindings) == ["ClusterRoleBinding", "RoleBinding"]
    roles = {(r["kind"], r["metadata"]["name"]) for k in ROLE_KINDS for r in of_kind(docs, k)}
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
    assert one(docs, "Role")["metadata"]["namespace"] == namespace
    spec = one(docs, workload)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == name
    assert spec.get("automountServiceAccountToken", True) is True  # it needs its token
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]
