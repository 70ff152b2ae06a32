"""The six CNI commands. Each one: read the configuration, make one daemon call, build the
answer (a JSON document to print, or None for commands that print nothing on success).

Chaining: hybridnet creates the pod's interface, so it is meant to be the first plugin of a
conflist (meta plugins such as portmap or bandwidth follow it). If a runtime nevertheless
hands it a ``prevResult`` on ADD, the previous result is passed through: hybridnet's interface,
addresses and routes are appended to it (interface indexes shifted), as the spec asks of a
plugin that does not suppress a previous result. On CHECK, only hybridnet's own part of the
cached result (the ``CNI_IFNAME`` interface in ``CNI_NETNS`` and the IPs on it) is sent to the
daemon as ``expected``.

The daemon client is hybridnet's own small gRPC client (hybridnet.rpc.client), so the plugin
never loads grpcio or protobuf.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from hybridnet.cni import results, versions
from hybridnet.cni.config import NetConf, decode, parse_config, requested_version
from hybridnet.cni.env import CniEnv
from hybridnet.cni.errors import CniError
from hybridnet.rpc import messages as m
from hybridnet.rpc.client import DaemonClient, DaemonError
from hybridnet.rpc.codes import (
    CHECK_FAILED,
    CONTAINER_UNKNOWN,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENV,
    LIMITED_CONNECTIVITY,
    PLUGIN_NOT_AVAILABLE,
)

Output = dict[str, Any] | None
Connect = Callable[[NetConf], DaemonClient]


def connect(conf: NetConf) -> DaemonClient:
    """The real daemon at the configuration's socket."""
    return DaemonClient(conf.socket, conf.timeout)


def dispatch(env: CniEnv, stdin: bytes, connect: Connect = connect) -> Output:
    if env.command == "VERSION":
        return version(stdin)
    conf = parse_config(stdin)
    if not versions.allows(conf.cni_version, env.command):
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"CNI {conf.cni_version} has no {env.command}",
            f"{env.command} needs cniVersion {versions.INTRODUCED[env.command]} or later",
        )
    handler = _COMMANDS[env.command]
    return handler(env, conf, connect)


def version(stdin: bytes) -> dict[str, Any]:
    """VERSION: the requested version echoed when supported (else the latest), and the list."""
    requested = requested_version(decode(stdin)) if stdin.strip() else None
    answer = requested if requested in versions.SUPPORTED else versions.LATEST
    return {"cniVersion": answer, "supportedVersions": list(versions.SUPPORTED)}


@contextlib.contextmanager
def _daemon_errors() -> Iterator[None]:
    """A failed daemon call becomes the CNI error it carries."""
    try:
        yield
    except DaemonError as exc:
        raise CniError(exc.cni_code, exc.msg, exc.details) from None


def _attachment(env: CniEnv) -> m.Attachment:
    return m.Attachment(
        container_id=env.container_id,
        netns=env.netns,
        ifname=env.ifname,
        pod_namespace=env.pod.namespace,
        pod_name=env.pod.name,
        pod_uid=env.pod.uid,
    )


def _netns_exists(env: CniEnv) -> None:
    """ADD and CHECK need the pod's namespace: say so before asking the daemon."""
    if not os.path.exists(env.netns):
        raise CniError(INVALID_ENV, "CNI_NETNS does not exist", env.netns)


def add(env: CniEnv, conf: NetConf, connect: Connect) -> Output:
    _netns_exists(env)
    with _daemon_errors():
        reply = connect(conf).add(_attachment(env), conf.mtu)
    ours = results.from_add_reply(reply)
    result = ours if conf.prev_result is None else results.chain_after(conf.prev_result, ours)
    return results.to_json(result, conf.cni_version)


def delete(env: CniEnv, conf: NetConf, connect: Connect) -> Output:
    try:
        with _daemon_errors():
            connect(conf).delete(_attachment(env))
    except CniError as exc:
        # The daemon says the attachment is already gone: DEL is idempotent, so that is success.
        if exc.code != CONTAINER_UNKNOWN:
            raise
    return None


def check(env: CniEnv, conf: NetConf, connect: Connect) -> Output:
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult", "the runtime passed none")
    _netns_exists(env)
    expected = results.own_part(conf.prev_result, env.ifname, env.netns)
    if not expected.interfaces:
        raise CniError(
            INVALID_CONFIG,
            "prevResult has no hybridnet interface",
            f"no interface {env.ifname!r} in sandbox {env.netns!r}",
        )
    with _daemon_errors():
        differences = connect(conf).check(_attachment(env), results.to_add_reply(expected))
    if differences:
        raise CniError(
            CHECK_FAILED, "the attachment differs from prevResult", "; ".join(differences)
        )
    return None


def status(env: CniEnv, conf: NetConf, connect: Connect) -> Output:
    try:
        with _daemon_errors():
            reply = connect(conf).status()
    except CniError as exc:
        if exc.code in {PLUGIN_NOT_AVAILABLE, LIMITED_CONNECTIVITY}:
            raise
        raise CniError(PLUGIN_NOT_AVAILABLE, exc.msg, exc.details) from None
    if not reply.ready:
        raise CniError(PLUGIN_NOT_AVAILABLE, "the hybridnet daemon is not ready", reply.reason)
    return None


def garbage_collect(env: CniEnv, conf: NetConf, connect: Connect) -> Output:
    valid = [(a.container_id, a.ifname) for a in conf.valid_attachments]
    with _daemon_errors():
        connect(conf).garbage_collect(valid)
    return None


_COMMANDS: dict[str, Callable[[CniEnv, NetConf, Connect], Output]] = {
    "ADD": add,
    "DEL": delete,
    "CHECK": check,
    "STATUS": status,
    "GC": garbage_collect,
}
