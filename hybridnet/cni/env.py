"""The ``CNI_*`` environment the runtime executes the plugin with, validated per command.

Which variables a command needs is the spec's: ADD and CHECK need the container id, the netns
and the interface name; DEL needs the container id and the interface name and tolerates a
missing netns (it may already be gone); GC, STATUS and VERSION need none of them. ``CNI_PATH``
is read but never required: hybridnet delegates to no other plugin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from hybridnet.cni.errors import CniError
from hybridnet.rpc.codes import INVALID_ENV

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
_NEEDS_ATTACHMENT = {"ADD", "DEL", "CHECK"}
_NEEDS_NETNS = {"ADD", "CHECK"}

_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
IFNAME_MAX = 15
"""IFNAMSIZ (16) less the terminating NUL."""

DEFAULT_POD_NAMESPACE = "default"
"""Used when the runtime names no namespace (e.g. podman)."""

# Requests of a given address in CNI_ARGS (the CNI conventions' IP and MAC; podman's --ip and
# --mac-address arrive so): hybridnet chooses addresses from its subnets and cannot honour
# them, so ADD refuses them rather than give the container other addresses than it asked for.
_ADDRESS_REQUESTS = ("IP", "MAC")

# CNI_ARGS keys hybridnet understands; any other key is an error unless IgnoreUnknown is set,
# as the reference plugins do. K8S_POD_INFRA_CONTAINER_ID is what kubelet always sends.
_KNOWN_ARGS = {"K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID",
               "IgnoreUnknown", *_ADDRESS_REQUESTS}  # fmt: skip


class PodArgs(NamedTuple):
    """What ``CNI_ARGS`` says about the pod."""

    name: str = ""
    namespace: str = DEFAULT_POD_NAMESPACE
    uid: str = ""
    address_requests: tuple[str, ...] = ()
    """``IP=...`` and ``MAC=...`` as given: refused at ADD (see :func:`read_env`)."""


class CniEnv(NamedTuple):
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    pod: PodArgs = PodArgs()
    path: tuple[str, ...] = ()


def read_env(environ: Mapping[str, str]) -> CniEnv:
    """Parse and validate the environment; raises CniError(4) on anything wrong."""
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENV, "CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"unknown CNI_COMMAND {command!r}", f"one of {COMMANDS}")
    path = tuple(p for p in environ.get("CNI_PATH", "").split(":") if p)
    if command not in _NEEDS_ATTACHMENT:
        return CniEnv(command=command, path=path)
    container_id = _required(environ, "CNI_CONTAINERID")
    validate_container_id(container_id)
    ifname = _required(environ, "CNI_IFNAME")
    validate_ifname(ifname)
    netns = _required(environ, "CNI_NETNS") if command in _NEEDS_NETNS else ""
    if command == "DEL":
        netns = environ.get("CNI_NETNS", "")
    pod = parse_cni_args(environ.get("CNI_ARGS", ""))
    if command == "ADD" and pod.address_requests:
        # Only ADD: a DEL (podman sends the same CNI_ARGS) must still clean up.
        asked = ";".join(pod.address_requests)
        raise CniError(
            INVALID_ENV,
            f"hybridnet cannot give a requested address (CNI_ARGS {asked})",
            "hybridnet chooses addresses from its subnets; podman: run without --ip or "
            "--mac-address",
        )
    return CniEnv(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        pod=pod,
        path=path,
    )


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise CniError(INVALID_ENV, f"{name} is required for {environ.get('CNI_COMMAND')}")
    return value


def validate_container_id(container_id: str) -> None:
    """The spec: alphanumeric first, then alphanumerics, ``_``, ``.`` or ``-``."""
    if not _CONTAINER_ID.fullmatch(container_id):
        raise CniError(
            INVALID_ENV,
            "invalid CNI_CONTAINERID",
            f"{container_id!r}: must start with a letter or digit, then letters, digits, _ . -",
        )


def validate_ifname(ifname: str) -> None:
    """A name the kernel accepts: 1-15 bytes, not ``.``/``..``, no ``/``, ``:`` or space."""
    problem = ""
    if len(ifname.encode()) > IFNAME_MAX:
        problem = f"longer than {IFNAME_MAX} bytes"
    elif ifname in {".", ".."}:
        problem = "'.' and '..' are not interface names"
    elif any(c in "/:" or c.isspace() for c in ifname):
        problem = "contains '/', ':' or whitespace"
    if problem:
        raise CniError(INVALID_ENV, "invalid CNI_IFNAME", f"{ifname!r}: {problem}")


def parse_cni_args(text: str) -> PodArgs:
    """``K=V;K=V`` pairs; unknown keys are refused unless ``IgnoreUnknown`` is true."""
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CniError(INVALID_ENV, "invalid CNI_ARGS", f"{item!r} is not KEY=VALUE")
        pairs[name] = value
    ignore_unknown = pairs.get("IgnoreUnknown", "").lower() in {"1", "true"}
    unknown = sorted(set(pairs) - _KNOWN_ARGS)
    if unknown and not ignore_unknown:
        raise CniError(
            INVALID_ENV, "unknown CNI_ARGS", f"{unknown} (set IgnoreUnknown=1 to ignore them)"
        )
    return PodArgs(
        name=pairs.get("K8S_POD_NAME", ""),
        namespace=pairs.get("K8S_POD_NAMESPACE") or DEFAULT_POD_NAMESPACE,
        uid=pairs.get("K8S_POD_UID", ""),
        address_requests=tuple(f"{k}={pairs[k]}" for k in _ADDRESS_REQUESTS if k in pairs),
    )
