"""AdmissionReview v1 in and out: parse the API server's request, decide, answer.

Validation (``/validate``) covers Network and Subnet create, update and delete; mutation
(``/mutate``) covers Pod create. Anything else that arrives is allowed untouched: the webhook
configurations only send these, and refusing the unexpected would block the cluster. A review
that cannot be read gets a 400 answer saying what is wrong, never a traceback.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from hybridnet.api import admission
from hybridnet.api import constants as c
from hybridnet.api.annotations import ClusterDefaults
from hybridnet.api.codec import DecodeError
from hybridnet.api.resources import Network, Subnet
from hybridnet.logs import fields
from hybridnet.manager.webhook.mutate import JsonPatch, Mutation, mutate_pod
from hybridnet.manager.webhook.view import ClusterView
from hybridnet.store.errors import StoreError

log = logging.getLogger(__name__)

ADMISSION_API_VERSION = "admission.k8s.io/v1"
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")

BAD_REQUEST = 400
"""Code of a refusal for what the object itself says (its fields, its annotations)."""
FORBIDDEN = 403
"""Code of a refusal because of other objects (overlap, in use, one overlay network)."""
INTERNAL = 500


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 request; ``uid`` is echoed when it could be read."""

    def __init__(self, message: str, uid: str = ""):
        super().__init__(message)
        self.uid = uid


@dataclasses.dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    group: str
    kind: str
    operation: str
    name: str
    namespace: str | None
    sub_resource: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: int = 200
    message: str = ""
    patch: JsonPatch = dataclasses.field(default_factory=list)


ALLOW = Verdict(allowed=True)


class Reply(NamedTuple):
    """An HTTP status and the JSON body to answer with."""

    status: int
    body: dict[str, Any]


def _verdict(code: int, problems: list[str]) -> Verdict:
    return Verdict(False, code, "; ".join(problems)) if problems else ALLOW


# --------------------------------------------------------------------------- parsing


def _optional_object(request: dict[str, Any], key: str, uid: str) -> dict[str, Any] | None:
    value = request.get(key)
    if value is not None and not isinstance(value, dict):
        raise MalformedReview(f"request.{key} must be an object", uid)
    return value


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview v1; raises MalformedReview naming what is wrong."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedReview(f"the body is not JSON: {exc}") from exc
    if not isinstance(review, dict):
        raise MalformedReview("the body is not a JSON object")
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    uid = uid if isinstance(uid, str) else ""
    if review.get("apiVersion") != ADMISSION_API_VERSION or review.get("kind") != "AdmissionReview":
        raise MalformedReview(
            f"expected an AdmissionReview of {ADMISSION_API_VERSION}, got kind "
            f"{review.get('kind')!r} of {review.get('apiVersion')!r}",
            uid,
        )
    if not isinstance(request, dict):
        raise MalformedReview("request is missing", uid)
    if not uid:
        raise MalformedReview("request.uid is missing")
    kind = request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise MalformedReview("request.kind must be {group, version, kind}", uid)
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise MalformedReview(f"request.operation {operation!r} is not one of {OPERATIONS}", uid)
    parsed = AdmissionRequest(
        uid=uid,
        group=str(kind.get("group") or ""),
        kind=kind["kind"],
        operation=operation,
        name=str(request.get("name") or ""),
        namespace=str(request.get("namespace") or "") or None,
        sub_resource=str(request.get("subResource") or ""),
        object=_optional_object(request, "object", uid),
        old_object=_optional_object(request, "oldObject", uid),
    )
    if operation in ("CREATE", "UPDATE") and parsed.object is None:
        raise MalformedReview(f"request.object is missing for {operation}", uid)
    if operation == "UPDATE" and parsed.old_object is None:
        raise MalformedReview("request.oldObject is missing for UPDATE", uid)
    return parsed


def review_response(uid: str, verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview v1 answer carrying ``verdict``."""
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": verdict.code, "message": verdict.message}
    if verdict.allowed and verdict.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(verdict.patch).encode()).decode()
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


# --------------------------------------------------------------------------- deciding


class ReviewHandler:
    """Answers AdmissionReviews for the ``validate`` and ``mutate`` endpoints."""

    def __init__(
        self,
        view: ClusterView,
        defaults: ClusterDefaults | None = None,
        *,
        pod_view: ClusterView | None = None,
    ) -> None:
        self.view = view
        self.pod_view = pod_view or view
        """What pod mutation reads first (hybridnet.manager.webhook.view.PodView: caches); a
        pod it refuses is decided again on ``view``."""
        self.defaults = defaults or ClusterDefaults()
        self._routes: dict[tuple[str, str, str], Callable[[AdmissionRequest], Verdict]] = {
            ("validate", c.GROUP, "Network"): self._network,
            ("validate", c.GROUP, "Subnet"): self._subnet,
            ("mutate", "", "Pod"): self._pod,
        }

    def __call__(self, endpoint: str, body: bytes) -> Reply:
        try:
            request = parse_review(body)
        except MalformedReview as exc:
            log.warning(
                "malformed admission review", extra=fields(endpoint=endpoint, error=str(exc))
            )
            return Reply(
                BAD_REQUEST, review_response(exc.uid, Verdict(False, BAD_REQUEST, str(exc)))
            )
        verdict = self.decide(endpoint, request)
        log.info(
            "admission review",
            extra=fields(
                endpoint=endpoint,
                uid=request.uid,
                kind=request.kind,
                name=request.name,
                namespace=request.namespace,
                operation=request.operation,
                allowed=verdict.allowed,
                code=verdict.code,
                message=verdict.message,
                patch_ops=len(verdict.patch),
            ),
        )
        return Reply(200, review_response(request.uid, verdict))

    def decide(self, endpoint: str, request: AdmissionRequest) -> Verdict:
        """The verdict on one request; failures to read the object or the cluster refuse it."""
        route = self._routes.get((endpoint, request.group, request.kind))
        if route is None or request.sub_resource:
            return ALLOW
        try:
            return route(request)
        except DecodeError as exc:
            return Verdict(False, BAD_REQUEST, f"{request.kind} {request.name!r}: {exc}")
        except StoreError as exc:
            log.warning("cannot read cluster state", extra=fields(uid=request.uid, error=str(exc)))
            return Verdict(False, INTERNAL, f"hybridnet webhook cannot read cluster state: {exc}")
        except Exception:
            log.exception("admission review failed", extra=fields(uid=request.uid))
            return Verdict(False, INTERNAL, "internal error in the hybridnet webhook (see its log)")

    def _network(self, request: AdmissionRequest) -> Verdict:
        if request.operation == "DELETE":
            old = request.old_object
            gone = (
                Network.from_json(old)
                if old
                else next((n for n in self.view.networks() if n.name == request.name), None)
            )
            if gone is None:
                return ALLOW
            return _verdict(FORBIDDEN, admission.network_delete_problems(gone, self.view.subnets()))
        if request.operation not in ("CREATE", "UPDATE") or request.object is None:
            return ALLOW
        new = Network.from_json(request.object)
        before = Network.from_json(request.old_object) if request.old_object else None
        problems = admission.single_object(new, before)
        if problems:
            return _verdict(BAD_REQUEST, problems)
        nodes = self.view.nodes() if new.spec.type == c.TYPE_UNDERLAY else []
        conflicts = admission.network_conflicts(new, before, self.view.networks(), nodes)
        return _verdict(FORBIDDEN, conflicts)

    def _subnet(self, request: AdmissionRequest) -> Verdict:
        if request.operation == "DELETE":
            old = request.old_object
            gone = (
                Subnet.from_json(old)
                if old
                else next((s for s in self.view.subnets() if s.name == request.name), None)
            )
            if gone is None:
                return ALLOW
            problems = admission.subnet_delete_problems(gone, self.view.ipinstances())
            return _verdict(FORBIDDEN, problems)
        if request.operation not in ("CREATE", "UPDATE") or request.object is None:
            return ALLOW
        new = Subnet.from_json(request.object)
        before = Subnet.from_json(request.old_object) if request.old_object else None
        problems = admission.single_object(new, before)
        if problems:
            return _verdict(BAD_REQUEST, problems)
        conflicts = admission.subnet_conflicts(
            new, before, self.view.networks(), self.view.subnets()
        )
        return _verdict(FORBIDDEN, conflicts)

    def _pod(self, request: AdmissionRequest) -> Verdict:
        if request.operation != "CREATE" or request.object is None:
            return ALLOW
        metadata = request.object.get("metadata")
        namespace = request.namespace or (
            str(metadata.get("namespace") or "") if isinstance(metadata, dict) else ""
        )
        annotations = self.view.namespace_annotations(namespace) if namespace else {}
        mutation = self._mutate(request.object, annotations, self.pod_view)
        if not mutation.allowed and self.pod_view is not self.view:
            cached_refusal = mutation.message
            mutation = self._mutate(request.object, annotations, self.view)
            if mutation.allowed:
                log.info(
                    "pod admitted on a fresh read after the caches refused it",
                    extra=fields(namespace=namespace, name=request.name, cached=cached_refusal),
                )
        if not mutation.allowed:
            return Verdict(False, BAD_REQUEST, mutation.message)
        return Verdict(True, patch=mutation.patch)

    def _mutate(
        self, pod: dict[str, Any], namespace_annotations: dict[str, str], view: ClusterView
    ) -> Mutation:
        return mutate_pod(
            pod, namespace_annotations, view.networks(), view.subnets(), self.defaults
        )
