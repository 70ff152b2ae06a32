"""Reaching a node's daemon: over its root-only unix socket, on the node itself (or, on
Kubernetes, from inside that node's daemon pod with ``kubectl exec``: the CLI cannot open
another machine's unix socket, and the daemon serves nothing over the network).

``--socket`` names the socket; ``{node}`` in it stands for the node's name, so one template
reaches every daemon whose socket this machine can see (the lab's virtual cluster keeps each
node's under ``DIR/<node>/run/daemon.sock``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hybridnet.api.builtin import Pod
from hybridnet.ctl.errors import CtlError
from hybridnet.rpc import messages as m
from hybridnet.rpc.client import DaemonClient, DaemonError
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store

CALL_TIMEOUT_SECONDS = 10.0
DAEMON_POD_LABEL = "app.kubernetes.io/name=hybridnet-daemon"
DAEMON_CONTAINER = "daemon"


def socket_for(template: str, node: str) -> str:
    return template.replace("{node}", node)


def per_node(template: str) -> bool:
    return "{node}" in template


def how_to_reach(node: str, store: Store | None, namespace: str) -> str:
    """What to do when this machine cannot reach ``node``'s daemon: run where it can."""
    pod = _daemon_pod(node, store, namespace) if store is not None else None
    where = (
        f"kubectl -n {namespace} exec {pod} -c {DAEMON_CONTAINER} -- hybridnet-ctl node "
        f"diagnose {node}"
        if pod
        else f"kubectl -n {namespace} exec <the hybridnet-daemon pod on {node}> -- "
        f"hybridnet-ctl node diagnose {node}"
    )
    return f"run it on {node} as root, or from inside its daemon pod: {where}"


def _daemon_pod(node: str, store: Store, namespace: str) -> str | None:
    """The name of the DaemonSet's pod on ``node``, when the store is a cluster that has one."""
    try:
        pods = store.list(Pod, namespace, DAEMON_POD_LABEL).items
    except StoreError:
        return None
    return next((p.name for p in pods if p.node_name == node), None)


def diagnose(path: str, expected_node: str | None, how: Callable[[], str]) -> m.DiagnoseReply:
    """Ask the daemon at ``path``; CtlError (with ``how()`` to reach it) when it cannot."""
    if not Path(path).exists():
        raise CtlError(f"no daemon socket at {path}", how())
    if not os.access(path, os.R_OK | os.W_OK):
        raise CtlError(f"the daemon socket {path} is root-only", "run as root")
    try:
        reply = DaemonClient(path, CALL_TIMEOUT_SECONDS).diagnose()
    except DaemonError as exc:
        detail = f"{exc.msg}: {exc.details}" if exc.details else exc.msg
        raise CtlError(f"the daemon at {path} did not answer ({detail})", how()) from None
    if expected_node is not None and reply.node_name != expected_node:
        raise CtlError(
            f"the daemon at {path} serves node {reply.node_name}, not {expected_node}", how()
        )
    return reply
