"""The chart deploy/helm/hybridnet and the plain manifests of deploy/, against a real API server.

- deploy/ is the chart's rendering with its default values, file for file (one source);
- every shipped manifest, and the chart rendered with its defaults and with a non-default set
  (cert-manager mode, an init network, Underlay + dual stack, other images, BGP, ...), passes a
  server-side dry run: schemas, strict field validation, CEL rules of the CRDs, admission;
- `helm install` then `helm upgrade` with changed values succeeds and changes the objects:
  replicas, images, settings (the pods' checksum follows), CRDs of an older chart updated, the
  caBundle the manager wrote kept; uninstall keeps the CRDs;
- the init network is created once on install and left alone by upgrades and uninstall;
- values that cannot work are refused by `helm template` and `helm install`, naming the value.

The API server is this module's own (not the session's): the chart installs cluster-scoped
objects under fixed names (the CRDs, ClusterRoles, two fail-closed webhook configurations
pointing at a Service nothing serves here), which must not meet other tests' objects.
Stand-ins: no kubelet, scheduler or controller-manager runs, so no pod starts; `helm install`
runs without --wait (which would wait for pods), and what a test needs from the manager (the
caBundle it writes) the test writes itself.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.controlplane import ControlPlane
from hack.helm import CHART_DIR, PLAIN_NAMESPACE, RELEASE, HelmError, documents, template
from hack.helm.chart import DEPLOY_DIR, differences, generated_files, plain_manifests
from tests.cluster.conftest import control_plane_binaries
from tests.cluster.manifests import apply, helm_tools, kubectl

NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.example/hybridnet", "tag": "9.9.9", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry-login"}],
    "config": {
        "defaultNetworkType": "Underlay",
        "defaultIPFamily": "DualStack",
        "interfaces": {"vxlan": "bond0", "underlay": "bond0.100"},
        "vxlanPort": 4789,
        "mtu": 9000,
        "tables": {"localPod": 500, "overlay": 501, "subnetFirst": 1000, "subnetLast": 1999},
        "rulePriorities": {"localPod": 100, "overlay": 101, "subnet": 102},
    },
    "manager": {
        "replicas": 3,
        "bgp": {"routerID": "198.18.0.1", "localAddresses": ["198.18.0.1", "2001:db8::1"]},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    },
    "daemon": {"logLevel": "debug", "python": "/usr/local/bin/python3.12"},
    "webhook": {"certManager": {"enabled": True}, "excludeNamespaces": ["cert-manager"]},
    "init": {
        "enabled": True,
        "cidr": "198.18.64.0/20",
        "ipv6Cidr": "2001:db8:64::/64",
        "vxlanID": 7,
    },
}
"""Every switch away from its default at once."""


# --------------------------------------------------------------------------- fixtures


def own_plane() -> Iterator[ControlPlane]:
    plane = ControlPlane(bin_dir=control_plane_binaries())
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """The dry runs' API server: they create CRDs with kubectl, not helm."""
    yield from own_plane()


@pytest.fixture(scope="module")
def helm_plane() -> Iterator[ControlPlane]:
    """The releases' API server: helm refuses to adopt objects it did not create (a CRD
    applied by kubectl), so the dry runs' CRDs must not be there."""
    yield from own_plane()


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm's cache, configuration and release data of this module, not the user's."""
    return tmp_path_factory.mktemp("helm-home")


def helm(
    plane: ControlPlane, home: Path, *args: str, values: Mapping[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **{f"HELM_{part}_HOME": str(home / part.lower()) for part in ("CACHE", "CONFIG", "DATA")},
    }
    argv = [str(helm_tools().helm), "--kubeconfig", str(plane.kubeconfig_path), *args]
    if values is not None:
        values_file = home / "values.json"
        values_file.write_text(json.dumps(values))
        argv += ["--values", str(values_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, env=env)


def get(plane: ControlPlane, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
    where = ["-n", namespace] if namespace else []
    done = kubectl(plane, "get", kind, name, *where, "-o", "json")
    assert done.returncode == 0, f"kubectl get {kind} {name}: {done.stderr}"
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def exists(plane: ControlPlane, kind: str, name: str, namespace: str = "") -> bool:
    where = ["-n", namespace] if namespace else []
    done = kubectl(plane, "get", kind, name, *where, "--ignore-not-found", "-o", "name")
    assert done.returncode == 0, done.stderr
    return bool(done.stdout.strip())


def ensure_namespace(plane: ControlPlane, name: str) -> None:
    apply(plane, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])


def install_crds(plane: ControlPlane, crds: list[dict[str, Any]]) -> None:
    """Create the CRDs for real and wait until they are served: a dry run of their objects
    needs the API to exist."""
    apply(plane, crds)
    names = [f"crd/{crd['metadata']['name']}" for crd in crds]
    done = kubectl(plane, "wait", "--for=condition=Established", "--timeout=60s", *names)
    assert done.returncode == 0, done.stderr


def dry_run(plane: ControlPlane, objects: list[dict[str, Any]], what: str) -> None:
    done = kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objects))
    assert done.returncode == 0, f"{what}: the API server refused it:\n{done.stderr}"
    # Every object was sent (none skipped as unchanged or unknown).
    assert len(done.stdout.strip().splitlines()) == len(objects), done.stdout


def crds_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "CustomResourceDefinition"]


# --------------------------------------------------------------------------- one source


def test_deploy_is_the_charts_rendering_with_default_values() -> None:
    files = plain_manifests(helm_tools().helm)
    wrong = differences(files)
    assert not wrong, f"deploy/ is not the chart's rendering; run `make manifests`: {wrong}"
    assert set(generated_files()) == set(files)
    # The layout the rest of the project reads: CRDs, then one directory per component.
    assert {str(p.parent) for p in files} == {".", "config", "crds", "daemon", "manager", "webhook"}


# --------------------------------------------------------------------------- dry runs


def test_every_shipped_manifest_passes_a_server_side_dry_run(plane: ControlPlane) -> None:
    namespace = documents((DEPLOY_DIR / "namespace.yaml").read_text())
    apply(plane, namespace)
    shipped = {path: documents((DEPLOY_DIR / path).read_text()) for path in generated_files()}
    install_crds(plane, [crd for objects in shipped.values() for crd in crds_of(objects)])
    for path, objects in sorted(shipped.items()):
        if path.name != "kustomization.yaml":
            dry_run(plane, objects, f"deploy/{path}")
    # ...and all of them at once, the way the README installs them.
    done = kubectl(plane, "apply", "--dry-run=server", "-k", str(DEPLOY_DIR))
    assert done.returncode == 0, f"kubectl apply -k deploy/: {done.stderr}"
    expected = sum(len(o) for p, o in shipped.items() if p.name != "kustomization.yaml")
    assert len(done.stdout.strip().splitlines()) == expected, done.stdout


@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["defaults", "non-default"])
def test_the_rendered_chart_passes_a_server_side_dry_run(
    plane: ControlPlane, values: dict[str, Any]
) -> None:
    namespace = "chart-dry-run"
    ensure_namespace(plane, namespace)
    objects = documents(template(helm_tools().helm, namespace, values))
    kinds = {o["kind"] for o in objects}
    if values:
        # cert-manager's own CRDs (from its Go module), as a cluster with cert-manager has them.
        cert_manager = [
            d for path in helm_tools().cert_manager_crds for d in documents(path.read_text())
        ]
        install_crds(plane, crds_of(cert_manager))
        assert {"Issuer", "Certificate", "Network", "Subnet"} <= kinds
    install_crds(plane, crds_of(objects))
    dry_run(plane, objects, f"the chart with {values or 'its default values'}")


def test_the_non_default_values_reach_the_objects() -> None:
    """What the dry run accepted is what the values asked for (not the defaults)."""
    objects = documents(template(helm_tools().helm, "elsewhere", NON_DEFAULT))
    by_kind_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    manager = by_kind_name[("Deployment", "hybridnet-manager")]["spec"]
    assert manager["replicas"] == 3
    (container,) = manager["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/hybridnet:9.9.9"
    assert container["imagePullPolicy"] == "Always"
    args = container["args"]
    assert args[args.index("--namespace") + 1] == "elsewhere"
    assert "--webhook-secret" not in args
    for flag, path in (("--webhook-cert", "tls.crt"), ("--webhook-key", "tls.key")):
        assert args[args.index(flag) + 1] == f"/etc/hybridnet/webhook/{path}"
    assert args.count("--bgp-local-address") == 2
    volumes = {v["name"]: v for v in manager["template"]["spec"]["volumes"]}
    assert volumes["webhook-certs"]["secret"]["secretName"] == "hybridnet-webhook-certs"
    config = by_kind_name[("ConfigMap", "hybridnet-config")]["data"]
    assert config["default-network-type"] == "Underlay"
    assert (config["vtep-interface"], config["underlay-interface"]) == ("bond0", "bond0.100")
    assert (config["overlay-table"], config["subnet-priority"], config["mtu"]) == (
        "501",
        "102",
        "9000",
    )
    certificate = by_kind_name[("Certificate", "hybridnet-webhook")]["spec"]
    assert certificate["secretName"] == "hybridnet-webhook-certs"
    assert certificate["dnsNames"] == ["hybridnet-webhook.elsewhere.svc"]
    # The manager needs no Secret rights when cert-manager writes the Secret.
    role = by_kind_name[("Role", "hybridnet-manager")]
    assert all("secrets" not in rule["resources"] for rule in role["rules"])
    (pods,) = by_kind_name[("MutatingWebhookConfiguration", "hybridnet-mutating")]["webhooks"]
    excluded = pods["namespaceSelector"]["matchExpressions"][0]["values"]
    assert excluded == ["cert-manager", "elsewhere", "kube-system"]
    subnets = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Subnet"}
    assert subnets["init"]["range"] == {"version": "4", "cidr": "198.18.64.0/20"}
    assert subnets["init-v6"]["range"] == {"version": "6", "cidr": "2001:db8:64::/64"}
    assert by_kind_name[("Network", "init")]["spec"] == {"type": "Overlay", "netID": 7}


# --------------------------------------------------------------------------- install, upgrade


def older_chart(directory: Path) -> Path:
    """A copy of the chart as an earlier release: its Subnet CRD lacks the Gateway column."""
    chart = directory / "hybridnet"
    shutil.copytree(CHART_DIR, chart)
    crd = chart / "templates" / "crds" / "networking.alibaba.com_subnets.yaml"
    column = "        - {name: Gateway, type: string, jsonPath: .spec.range.gateway}\n"
    assert column in crd.read_text()
    crd.write_text(crd.read_text().replace(column, ""))
    return chart


def columns(plane: ControlPlane, crd: str) -> list[str]:
    (version,) = get(plane, "crd", crd)["spec"]["versions"]
    return [c["name"] for c in version.get("additionalPrinterColumns", [])]


def test_install_then_upgrade_changes_the_objects(
    helm_plane: ControlPlane, helm_home: Path, tmp_path: Path
) -> None:
    namespace = PLAIN_NAMESPACE
    subnets = "subnets.networking.alibaba.com"
    installed = helm(
        helm_plane, helm_home, "install", RELEASE, str(older_chart(tmp_path)),
        "--namespace", namespace, "--create-namespace", values={},
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        assert "Gateway" not in columns(helm_plane, subnets)
        manager = get(helm_plane, "deployment", "hybridnet-manager", namespace)
        assert manager["spec"]["replicas"] == 2
        checksum = manager["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        config = get(helm_plane, "configmap", "hybridnet-config", namespace)["data"]
        assert config["default-network-type"] == "Overlay"
        for kind, name in (
            ("daemonset", "hybridnet-daemon"),
            ("service", "hybridnet-webhook"),
            ("poddisruptionbudget", "hybridnet-manager"),
            ("clusterrole", "hybridnet-daemon"),
        ):
            assert exists(helm_plane, kind, name, namespace), (kind, name)
        # What the manager does at start: write its CA into the shipped configurations.
        ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...\n").decode()
        validating = get(helm_plane, "validatingwebhookconfiguration", "hybridnet-validating")
        assert "caBundle" not in validating["webhooks"][0]["clientConfig"]
        validating["webhooks"][0]["clientConfig"]["caBundle"] = ca
        replaced = kubectl(helm_plane, "replace", "-f", "-", stdin=json.dumps(validating))  # a PUT
        assert replaced.returncode == 0, replaced.stderr

        changed = {
            "image": {"tag": "0.2.0"},
            "manager": {"replicas": 3},
            "config": {"defaultNetworkType": "Underlay", "tables": {"overlay": 40001}},
        }
        upgraded = helm(
            helm_plane, helm_home, "upgrade", RELEASE, str(CHART_DIR), "--namespace", namespace,
            values=changed,
        )  # fmt: skip
        assert upgraded.returncode == 0, upgraded.stderr

        # The CRDs are the new chart's: templates, not crds/, so upgrades reach them.
        assert "Gateway" in columns(helm_plane, subnets)
        manager = get(helm_plane, "deployment", "hybridnet-manager", namespace)
        assert manager["spec"]["replicas"] == 3
        pod = manager["spec"]["template"]
        assert pod["spec"]["containers"][0]["image"] == "hybridnet:0.2.0"
        assert pod["metadata"]["annotations"]["checksum/config"] != checksum  # pods roll
        config = get(helm_plane, "configmap", "hybridnet-config", namespace)["data"]
        assert (config["default-network-type"], config["overlay-table"]) == ("Underlay", "40001")
        daemon = get(helm_plane, "daemonset", "hybridnet-daemon", namespace)["spec"]["template"]
        assert daemon["spec"]["initContainers"][0]["image"] == "hybridnet:0.2.0"
        # The chart never sets caBundle, so the upgrade left the manager's in place.
        validating = get(helm_plane, "validatingwebhookconfiguration", "hybridnet-validating")
        assert validating["webhooks"][0]["clientConfig"]["caBundle"] == ca
        history = helm(helm_plane, helm_home, "history", RELEASE, "-n", namespace, "-o", "json")
        assert [r["status"] for r in json.loads(history.stdout)] == ["superseded", "deployed"]
    finally:
        uninstalled = helm(helm_plane, helm_home, "uninstall", RELEASE, "--namespace", namespace)
    assert uninstalled.returncode == 0, uninstalled.stderr
    # Gone with the release, except the CRDs (and with them every Network, Subnet, address).
    assert not exists(helm_plane, "validatingwebhookconfiguration", "hybridnet-validating")
    assert not exists(helm_plane, "deployment", "hybridnet-manager", namespace)
    assert exists(helm_plane, "crd", subnets)


def served_crds_for_the_release(plane: ControlPlane, namespace: str) -> None:
    """The chart's CRDs, created and Established before `helm install`, marked as the
    release's (helm adopts them): the state `helm install --wait` reaches before it runs the
    post-install hooks, which a kubelet-less API server cannot reach through --wait (it would
    wait for pods). Without it the hook objects race the new CRDs into discovery ("no matches
    for kind Network"), which is why the README installs with --wait when init is on."""
    crds = crds_of(documents(template(helm_tools().helm, namespace)))
    for crd in crds:
        crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "Helm"
        crd["metadata"].setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": namespace}
        )
    install_crds(plane, crds)


def test_the_init_network_is_created_once_and_kept(
    helm_plane: ControlPlane, helm_home: Path
) -> None:
    """The post-install hook objects. The webhook is off here: with it on (the default),
    Networks fail closed until a manager serves the webhook, which needs a kubelet to run
    (hence `--wait` in the README); what the webhook does to Networks is tested elsewhere."""
    namespace = PLAIN_NAMESPACE
    served_crds_for_the_release(helm_plane, namespace)
    init = {"enabled": True, "cidr": "198.18.80.0/20", "vxlanID": 9}
    values = {"webhook": {"enabled": False}, "init": init}
    installed = helm(
        helm_plane, helm_home, "install", RELEASE, str(CHART_DIR), "--namespace", namespace,
        "--create-namespace", values=values,
    )  # fmt: skip
    try:
        assert installed.returncode == 0, installed.stderr
        network = get(helm_plane, "networks.networking.alibaba.com", "init")
        subnet = get(helm_plane, "subnets.networking.alibaba.com", "init")
        assert network["spec"] == {"type": "Overlay", "netID": 9}
        assert subnet["spec"]["range"]["cidr"] == "198.18.80.0/20"
        assert subnet["spec"]["config"]["autoNatOutgoing"] is True
        version = subnet["metadata"]["resourceVersion"]
        moved = {**values, "init": {**init, "cidr": "198.18.96.0/20"}}
        upgraded = helm(
            helm_plane, helm_home, "upgrade", RELEASE, str(CHART_DIR), "--namespace", namespace,
            values=moved,
        )  # fmt: skip
        assert upgraded.returncode == 0, upgraded.stderr
        # Not the release's objects: the upgrade did not touch them (same resourceVersion).
        subnet = get(helm_plane, "subnets.networking.alibaba.com", "init")
        assert subnet["metadata"]["resourceVersion"] == version
    finally:
        uninstalled = helm(helm_plane, helm_home, "uninstall", RELEASE, "--namespace", namespace)
    assert uninstalled.returncode == 0, uninstalled.stderr
    try:
        assert exists(helm_plane, "networks.networking.alibaba.com", "init")  # kept: pods use it
    finally:
        kubectl(helm_plane, "delete", "subnets.networking.alibaba.com", "init", "--wait=false")
        kubectl(helm_plane, "delete", "networks.networking.alibaba.com", "init", "--wait=false")


# --------------------------------------------------------------------------- bad values


BAD_VALUES = [
    ({"config": {"defaultNetworkType": "Bridge"}}, "/config/defaultNetworkType"),
    ({"config": {"defaultIPFamily": "IPv5"}}, "/config/defaultIPFamily"),
    ({"config": {"interfaces": {"vxlan": ""}}}, "/config/interfaces/vxlan"),
    ({"config": {"interfaces": {"underlay": "eth0/1"}}}, "/config/interfaces/underlay"),
    ({"config": {"tables": {"subnetLast": 4294967296}}}, "/config/tables/subnetLast"),
    ({"config": {"tables": {"overlay": 254}}}, "config.tables.overlay (254)"),
    ({"config": {"tables": {"localPod": 20000}}}, "config.tables.localPod (20000) lies inside"),
    ({"config": {"tables": {"subnetFirst": 50000}}}, "config.tables.subnetFirst (50000)"),
    ({"config": {"rulePriorities": {"overlay": 1}}}, "config.rulePriorities must rise"),
    ({"config": {"rulePriorities": {"subnet": 32766}}}, "/config/rulePriorities/subnet"),
    ({"config": {"routeProtocol": 2}}, "/config/routeProtocol"),
    ({"config": {"mtu": 40}}, "/config/mtu"),
    ({"manager": {"replicas": 0}}, "/manager/replicas"),
    ({"manager": {"leaderElection": {"renewDeadline": 20}}}, "manager.leaderElection must be"),
    ({"manager": {"bgp": {"routerID": "1.2.3"}}}, "/manager/bgp/routerID"),
    ({"manager": {"metricsPort": 9898}}, "webhook.port and manager.metricsPort must differ"),
    ({"daemon": {"interfaces": {"vxlan": "eth1"}}}, "'interfaces' not allowed"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"webhook": {"podFailurePolicy": "Maybe"}}, "/webhook/podFailurePolicy"),
    ({"webhook": {"timeoutSeconds": 60}}, "/webhook/timeoutSeconds"),
    (
        {"webhook": {"enabled": False, "certManager": {"enabled": True}}},
        "webhook.certManager.enabled needs webhook.enabled",
    ),
    ({"init": {"enabled": True, "ipVersion": "6"}}, 'init.cidr "100.64.0.0/16" is not an IPv6'),
    ({"init": {"vxlanID": 0}}, "/init/vxlanID"),
    (
        {"init": {"enabled": True}, "config": {"defaultIPFamily": "DualStack"}},
        "config.defaultIPFamily DualStack needs init subnets",
    ),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_values_that_cannot_work_are_refused_naming_them(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(HelmError) as refused:
        template(helm_tools().helm, PLAIN_NAMESPACE, values)
    assert named in str(refused.value), refused.value


def test_helm_install_refuses_them_before_creating_anything(
    helm_plane: ControlPlane, helm_home: Path
) -> None:
    namespace = "chart-refused"
    bad = {"config": {"interfaces": {"vxlan": ""}}, "manager": {"replicas": 2}}
    refused = helm(
        helm_plane, helm_home, "install", RELEASE, str(CHART_DIR), "--namespace", namespace,
        "--create-namespace", values=bad,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "/config/interfaces/vxlan" in refused.stderr, refused.stderr
    listed = helm(helm_plane, helm_home, "list", "--all", "-n", namespace, "-o", "json")
    assert json.loads(listed.stdout) == []
    assert not exists(helm_plane, "namespace", namespace)
