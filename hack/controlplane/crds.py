"""Installing CustomResourceDefinitions and waiting until the API server serves them."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hack.controlplane.errors import ControlPlaneError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

DEFAULT_CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"


def crd_documents(directory: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in ``directory``'s ``*.yaml``; other kinds are skipped."""
    documents = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                documents.append(document)
    return documents


def install_crds(
    api_client: ApiClient, documents: Sequence[dict[str, Any]], timeout: float
) -> list[str]:
    """Create (or replace) each CRD, then wait until each is Established and its resources are
    in discovery. Returns the CRD names."""
    from kubernetes import client  # noqa: PLC0415  (only the API users pay for the import)

    extensions = client.ApiextensionsV1Api(api_client)
    names = [_apply_crd(extensions, document) for document in documents]
    deadline = time.monotonic() + timeout
    for document in documents:
        _wait_crd_served(api_client, extensions, document, deadline)
    return names


def _apply_crd(extensions: Any, document: dict[str, Any]) -> str:
    """Create the CRD, or replace the existing one of that name; return its name."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    name = str(document["metadata"]["name"])
    # _preload_content=False throughout: the client's model of CRD status rejects the
    # condition-less status a just-created CRD has.
    try:
        extensions.create_custom_resource_definition(document, _preload_content=False)
    except ApiException as exc:
        if exc.status != 409:
            raise ControlPlaneError(f"creating CRD {name}: {exc.status} {exc.body}") from exc
        current = json.loads(
            extensions.read_custom_resource_definition(name, _preload_content=False).data
        )
        body = json.loads(json.dumps(document))
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        extensions.replace_custom_resource_definition(name, body, _preload_content=False)
    return name


def _discovered(api_client: Any, group: str, version: str) -> set[str]:
    """The resource names that discovery lists for ``group/version`` (empty when unknown)."""
    request = api_client.param_serialize(
        "GET", f"/apis/{group}/{version}", auth_settings=["BearerToken"]
    )
    response = api_client.call_api(*request, _request_timeout=10)
    data = response.read()
    if response.status != 200:
        return set()
    return {str(r.get("name")) for r in json.loads(data).get("resources", [])}


def _wait_crd_served(
    api_client: Any, extensions: Any, document: dict[str, Any], deadline: float
) -> None:
    name = str(document["metadata"]["name"])
    group = document["spec"]["group"]
    plural = document["spec"]["names"]["plural"]
    versions = [v["name"] for v in document["spec"]["versions"] if v.get("served", True)]
    conditions: list[dict[str, Any]] = []
    while True:
        crd = json.loads(
            extensions.read_custom_resource_definition(name, _preload_content=False).data
        )
        conditions = crd.get("status", {}).get("conditions") or []
        by_type = {c["type"]: c for c in conditions}
        names_accepted = by_type.get("NamesAccepted", {})
        if names_accepted.get("status") == "False":
            raise ControlPlaneError(f"CRD {name}: names not accepted: {names_accepted}")
        established = by_type.get("Established", {}).get("status") == "True"
        if established and all(plural in _discovered(api_client, group, v) for v in versions):
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"CRD {name} not established/served in time: {conditions}")
        time.sleep(0.1)
