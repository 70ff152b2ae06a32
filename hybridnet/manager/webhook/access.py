"""Errors that say exactly what the manager lacks: a permission (verb and resource) or an object
it relies on but never creates. Both end start-up with one line (see startup.describe)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hybridnet.api.meta import ResourceKind
from hybridnet.store.errors import Forbidden, StoreError


def resource_name(kind: ResourceKind) -> str:
    """The resource as RBAC rules name it: ``secrets``, ``x.admissionregistration.k8s.io``."""
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


class PermissionMissing(Forbidden):
    """The API server refused ``verb`` on one object to the manager's identity."""

    def __init__(
        self, verb: str, kind: ResourceKind, name: str, namespace: str | None, detail: str
    ) -> None:
        where = f' in namespace "{namespace}"' if namespace else ""
        super().__init__(
            f'forbidden to {verb} {resource_name(kind)} "{name}"{where}: the manager\'s RBAC '
            f"must grant {verb!r} on it ({detail})"
        )
        self.verb = verb
        self.resource = resource_name(kind)


class ConfigurationMissing(StoreError):
    """A webhook configuration the chart ships is not there; the manager never creates one.

    Not a NotFound: that would read as a missing CRD."""

    def __init__(self, kind: ResourceKind, name: str) -> None:
        super().__init__(
            f"{kind.kind} {name} does not exist: the manager patches its caBundle but never "
            "creates it (install the chart's or deploy/'s webhook configurations)"
        )


@contextlib.contextmanager
def permission(
    verb: str, kind: ResourceKind, name: str, namespace: str | None = None
) -> Iterator[None]:
    """Turn a Forbidden from the store call inside into a PermissionMissing naming it."""
    try:
        yield
    except PermissionMissing:
        raise
    except Forbidden as exc:
        raise PermissionMissing(verb, kind, name, namespace, str(exc)) from exc
