"""The Kubernetes backend: the four hybridnet kinds and the core objects, over the API server.

The only module that imports the official ``kubernetes`` client. It uses the client for what is
hard to get right (kubeconfig and in-cluster credentials, TLS, token refresh) and speaks the
REST API itself with the models' JSON, so every kind - custom or built-in - goes through the
same few lines, and watch streams are read line by line with their HTTP errors intact.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3

from hybridnet.api import validation
from hybridnet.api.meta import ResourceKind
from hybridnet.store.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    StoreError,
    Unavailable,
)
from hybridnet.store.interface import ListResult, R, Store, WatchEvent

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30.0


def _path(kind: ResourceKind, namespace: str | None, name: str | None = None) -> str:
    path = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace:
        path += f"/namespaces/{urllib.parse.quote(namespace, safe='')}"
    path += f"/{kind.plural}"
    if name is not None:
        path += f"/{urllib.parse.quote(name, safe='')}"
    return path


def _error(status: int, body: bytes, what: str) -> StoreError:
    """Map an API error response to the store's typed errors."""
    try:
        parsed = json.loads(body)
        message = parsed.get("message") or body.decode(errors="replace")
        reason = parsed.get("reason", "")
    except ValueError:
        message, reason = body.decode(errors="replace").strip(), ""
    text = f"{what}: {message}"
    if status == 404:
        return NotFound(text)
    if status == 409:
        return AlreadyExists(text) if reason == "AlreadyExists" else Conflict(text)
    if status in (400, 422):
        return Invalid(text)
    if status in (401, 403):
        return Forbidden(text)
    if status == 410:
        return Gone(text)
    if status == 429 or status >= 500:
        return Unavailable(text)
    return StoreError(f"{text} (HTTP {status})")


class KubeStore(Store):
    """The store over a Kubernetes API server."""

    def __init__(self, configuration: kubernetes.client.Configuration):
        configuration.retries = False  # callers decide how to retry (Unavailable)
        self.configuration = configuration
        self._client = kubernetes.client.ApiClient(configuration)

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path | None = None,
        *,
        connections: int | None = None,
        context: str | None = None,
    ) -> KubeStore:
        """From a kubeconfig file, or in-cluster credentials when ``path`` is None and the
        process runs in a pod. ``connections``: how many requests the caller has in flight at
        once (a watch holds one while it runs); each beyond the pool's size opens a TLS
        connection of its own and throws it away after. The client's default is 5 per CPU.
        ``context``: the kubeconfig's context to use instead of its current one."""
        configuration = kubernetes.client.Configuration()
        if connections is not None:
            configuration.connection_pool_maxsize = connections
        try:
            if path is None:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            else:
                kubernetes.config.load_kube_config(
                    config_file=str(path), context=context, client_configuration=configuration
                )
        except (kubernetes.config.ConfigException, OSError) as exc:
            source = path or "in-cluster service account"
            raise Unavailable(f"cannot load Kubernetes credentials from {source}: {exc}") from exc
        return cls(configuration)

    def close(self) -> None:
        self._client.close()

    # ----------------------------------------------------------------- HTTP

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        hook = getattr(self.configuration, "refresh_api_key_hook", None)
        if hook is not None:
            hook(self.configuration)
        # The client keeps a token (ServiceAccount, kubeconfig token) under "BearerToken";
        # older releases used "authorization".
        token = self.configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or self.configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        return headers

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        read_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> urllib3.BaseHTTPResponse:
        url = self.configuration.host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            response = self._client.rest_client.request(
                method,
                url,
                headers=self._headers(),
                body=body,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"API server {self.configuration.host} unreachable: {exc}") from exc
        except kubernetes.client.exceptions.ApiException as exc:
            raise Unavailable(f"API server {self.configuration.host}: {exc.reason}") from exc
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        response = self._send(method, path, query, body)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"{what}: connection lost: {exc}") from exc
        finally:
            response.release_conn()
        if not 200 <= response.status <= 299:
            raise _error(response.status, data, what)
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    @staticmethod
    def _describe(kind: ResourceKind, name: str, namespace: str | None) -> str:
        return f"{kind.kind} {namespace}/{name}" if kind.namespaced else f"{kind.kind} {name}"

    @staticmethod
    def _validate(obj: R) -> None:
        try:
            validation.validate(obj)
        except validation.ValidationFailed as exc:
            raise Invalid(str(exc)) from exc

    @staticmethod
    def _require_namespace(kind: ResourceKind, namespace: str | None) -> None:
        if kind.namespaced and not namespace:
            raise Invalid(f"{kind.kind}: metadata.namespace: is required")

    # ----------------------------------------------------------------- reads

    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        self._require_namespace(kind.KIND, namespace)
        what = self._describe(kind.KIND, name, namespace)
        return kind.from_json(self._call("GET", _path(kind.KIND, namespace, name), what))

    def list(
        self,
        kind: type[R],
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> ListResult[R]:
        query = {"labelSelector": label_selector} if label_selector else None
        data = self._call("GET", _path(kind.KIND, namespace), f"list {kind.KIND.plural}", query)
        items = [kind.from_json(item) for item in data.get("items", [])]
        return ListResult(items, str(data["metadata"]["resourceVersion"]))

    # ----------------------------------------------------------------- writes

    def create(self, obj: R) -> R:
        self._require_namespace(obj.KIND, obj.metadata.namespace)
        self._validate(obj)
        what = self._describe(obj.KIND, obj.metadata.name, obj.metadata.namespace)
        path = _path(obj.KIND, obj.metadata.namespace)
        return type(obj).from_json(self._call("POST", path, what, body=obj.to_json()))

    def update(self, obj: R) -> R:
        self._require_namespace(obj.KIND, obj.metadata.namespace)
        self._validate(obj)
        what = self._describe(obj.KIND, obj.metadata.name, obj.metadata.namespace)
        path = _path(obj.KIND, obj.metadata.namespace, obj.metadata.name)
        return type(obj).from_json(self._call("PUT", path, what, body=obj.to_json()))

    def update_status(self, obj: R) -> R:
        self._require_namespace(obj.KIND, obj.metadata.namespace)
        what = self._describe(obj.KIND, obj.metadata.name, obj.metadata.namespace)
        path = _path(obj.KIND, obj.metadata.namespace, obj.metadata.name)
        if obj.KIND.status_subresource:
            path += "/status"
        return type(obj).from_json(self._call("PUT", path, what, body=obj.to_json()))

    def delete(
        self,
        kind: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        self._require_namespace(kind.KIND, namespace)
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        what = self._describe(kind.KIND, name, namespace)
        self._call("DELETE", _path(kind.KIND, namespace, name), what, body=body)

    # ----------------------------------------------------------------- watch

    def watch(
        self,
        kind: type[R],
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent[R]]:
        query = {"watch": "true", "allowWatchBookmarks": "true"}
        if resource_version:
            query["resourceVersion"] = resource_version
        if label_selector:
            query["labelSelector"] = label_selector
        server_timeout = int(timeout_seconds) if timeout_seconds else 300
        query["timeoutSeconds"] = str(max(server_timeout, 1))
        return self._stream(kind, _path(kind.KIND, namespace), query, server_timeout)

    def _stream(
        self, kind: type[R], path: str, query: dict[str, str], server_timeout: int
    ) -> Iterator[WatchEvent[R]]:
        # The server ends the watch after timeoutSeconds; reading may wait a little longer.
        response = self._send("GET", path, query, read_timeout=server_timeout + 15)
        try:
            if not 200 <= response.status <= 299:
                raise _error(response.status, response.read(), f"watch {kind.KIND.plural}")
            for line in _lines(response):
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise _error(int(status.get("code", 500)), json.dumps(status).encode(), "watch")
                yield WatchEvent(event["type"], kind.from_json(event["object"]))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"watch {kind.KIND.plural}: connection lost: {exc}") from exc
        finally:
            response.release_conn()
            response.close()


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Newline-delimited JSON from a streaming response, one complete line at a time."""
    buffer = b""
    for chunk in response.stream(65536, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
