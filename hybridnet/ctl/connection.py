"""Where the CLI reads and writes: the API server of a kubeconfig (and context), or the
embedded SQLite store named by ``--store``; and how a store failure reads to a person.

Nothing is created on the way: a kubeconfig or store file that does not exist is an error
naming it (SQLiteStore would create an empty store, which is never what a typo meant).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from hybridnet.ctl.errors import CtlError
from hybridnet.store import errors as store_errors
from hybridnet.store.interface import Store

DEFAULT_KUBECONFIG = Path.home() / ".kube" / "config"


@dataclasses.dataclass(frozen=True)
class Target:
    """The global options that choose the store."""

    kubeconfig: str | None = None
    context: str | None = None
    store_file: str | None = None

    def kubeconfig_path(self) -> Path | None:
        """``--kubeconfig``, else the first file of ``$KUBECONFIG``, else ~/.kube/config;
        None in a pod without either (in-cluster credentials)."""
        if self.kubeconfig:
            return Path(self.kubeconfig)
        listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        if listed:
            return Path(next((p for p in listed if Path(p).exists()), listed[0]))
        if DEFAULT_KUBECONFIG.exists() or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return DEFAULT_KUBECONFIG
        return None

    def describe(self) -> str:
        if self.store_file:
            return f"the embedded store {self.store_file}"
        path = self.kubeconfig_path()
        context = f" (context {self.context})" if self.context else ""
        return f"the cluster of {path}{context}" if path else "the in-cluster API server"


def open_store(target: Target) -> Store:
    """The store ``target`` names; CtlError when it cannot be opened."""
    if target.store_file:
        if target.kubeconfig or target.context:
            raise CtlError(
                "--store and --kubeconfig/--context both given",
                "choose the embedded store or a cluster, not both",
            )
        return _open_sqlite(Path(target.store_file))
    path = target.kubeconfig_path()
    if path is not None and not path.is_file():
        raise CtlError(
            f"kubeconfig {path} does not exist",
            "pass --kubeconfig FILE, set KUBECONFIG, or use --store FILE for the embedded store",
        )
    from hybridnet.store.kube import KubeStore  # noqa: PLC0415 - the kubernetes client: slow

    try:
        return KubeStore.from_kubeconfig(path, context=target.context)
    except store_errors.Unavailable as exc:
        raise CtlError(
            f"cannot use kubeconfig {path}: {_reason(exc)}",
            "check the file and --context (kubectl config get-contexts lists them)",
        ) from exc


def _open_sqlite(path: Path) -> Store:
    if not path.is_file():
        raise CtlError(
            f"no embedded store at {path}",
            "pass the file the daemons use (their --store), or --kubeconfig for a cluster",
        )
    from hybridnet.store.sqlite import SQLiteStore  # noqa: PLC0415 - only with --store

    try:
        return SQLiteStore(path)
    except store_errors.StoreError as exc:
        raise CtlError(f"cannot open the embedded store {path}: {exc}") from exc


def _reason(exc: BaseException) -> str:
    """The innermost cause's words (``Connection refused``), not the whole chain's repr."""
    seen: BaseException = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException) and inner is None:
            inner = reason
        if inner is None or inner is seen:
            break
        seen = inner
    if isinstance(seen, OSError) and seen.strerror:
        return seen.strerror
    text = str(seen)
    # urllib3 wraps the socket error's words in its own: keep the last part.
    return text.rsplit(": ", 1)[-1].rstrip("')\"") if ": " in text else text


def explain(exc: store_errors.StoreError, target: Target) -> CtlError:
    """A store failure as one line: what happened and what to do."""
    where = target.describe()
    if isinstance(exc, store_errors.Unavailable):
        return CtlError(
            f"cannot reach {where}: {_reason(exc)}",
            "check that it is up and that --kubeconfig/--context (or --store) point at it",
        )
    if isinstance(exc, store_errors.Forbidden):
        return CtlError(
            f"{where} refused: {exc}", "the identity in use needs RBAC for this (see deploy/)"
        )
    if isinstance(exc, store_errors.Invalid):
        return CtlError(f"{where} refused the object: {exc}")
    if isinstance(exc, store_errors.Conflict):
        return CtlError(f"the object changed meanwhile: {exc}", "run the command again")
    return CtlError(f"{where}: {exc}")
