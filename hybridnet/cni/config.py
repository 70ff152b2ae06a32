"""The network configuration on stdin: spec fields, hybridnet's options, prevResult, GC list.

Decoding failures are code 6, a configuration of the wrong shape is code 7, and a
``cniVersion`` the plugin does not speak is code 1 (its details list the supported ones).
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from hybridnet.cni import versions
from hybridnet.cni.errors import CniError
from hybridnet.cni.results import Result, parse_result
from hybridnet.rpc.codes import DECODE_ERROR, INCOMPATIBLE_VERSION, INVALID_CONFIG

DEFAULT_SOCKET = "/run/hybridnet/daemon.sock"
DEFAULT_TIMEOUT = 60.0
"""Seconds for one daemon call: longer than the daemon's own wait for an allocation (30 s),
so that the daemon's "try again later" arrives instead of a bare deadline."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"


class ValidAttachment(NamedTuple):
    container_id: str
    ifname: str


class NetConf(NamedTuple):
    cni_version: str
    name: str
    type: str
    socket: str = DEFAULT_SOCKET
    """hybridnet option: the daemon's unix socket."""
    mtu: int = 0
    """hybridnet option: the pod interface's MTU; 0 lets the daemon decide."""
    timeout: float = DEFAULT_TIMEOUT
    """hybridnet option: seconds to wait for the daemon's answer."""
    prev_result: Result | None = None
    valid_attachments: tuple[ValidAttachment, ...] = ()
    """GC only: the attachments the runtime still uses."""


def decode(stdin: bytes) -> Any:
    """The JSON document on stdin; CniError(6) when it is not JSON."""
    try:
        return json.loads(stdin.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CniError(DECODE_ERROR, "cannot decode the network configuration", str(exc)) from None


def requested_version(document: Any) -> str | None:
    """The ``cniVersion`` a decoded document asks for, if it is a string."""
    if isinstance(document, dict) and isinstance(document.get("cniVersion"), str):
        return str(document["cniVersion"])
    return None


def peek_version(stdin: bytes) -> str:
    """The version to answer in: the requested one when supported, else the latest (used for
    error JSON, where the configuration may be anything)."""
    try:
        version = requested_version(decode(stdin))
    except CniError:
        return versions.LATEST
    return version if version in versions.SUPPORTED else versions.LATEST


def check_version(version: Any) -> str:
    if version is None:
        raise CniError(INVALID_CONFIG, "invalid network configuration", "cniVersion is required")
    if not isinstance(version, str):
        raise CniError(INVALID_CONFIG, "invalid network configuration", "cniVersion: not a string")
    if version not in versions.SUPPORTED:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"incompatible CNI version {version}",
            f"supported versions: {', '.join(versions.SUPPORTED)}",
        )
    return version


def parse_config(stdin: bytes) -> NetConf:
    """Decode and validate the configuration a runtime passed on stdin."""
    document = decode(stdin)
    if not isinstance(document, dict):
        raise _invalid("the configuration must be a JSON object")
    version = check_version(document.get("cniVersion"))
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid("name is required (a string)")
    if not _NAME.fullmatch(name):
        raise _invalid(f"name {name!r}: letters, digits, _ . - and a letter or digit first")
    plugin_type = document.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise _invalid("type is required (a string)")
    socket = document.get("socket", DEFAULT_SOCKET)
    if not isinstance(socket, str) or not socket.startswith("/"):
        raise _invalid(f"socket {socket!r}: an absolute path is required")
    mtu = document.get("mtu", 0)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not (mtu == 0 or 68 <= mtu <= 65535):
        raise _invalid(f"mtu {mtu!r}: an integer from 68 to 65535 (0: the daemon decides)")
    timeout = document.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 3600:
        raise _invalid(f"timeout {timeout!r}: seconds, more than 0 and less than 3600")
    prev = document.get("prevResult")
    return NetConf(
        cni_version=version,
        name=name,
        type=plugin_type,
        socket=socket,
        mtu=mtu,
        timeout=float(timeout),
        prev_result=None if prev is None else parse_result(prev, version),
        valid_attachments=_valid_attachments(document.get(VALID_ATTACHMENTS)),
    )


def _invalid(details: str) -> CniError:
    return CniError(INVALID_CONFIG, "invalid network configuration", details)


def _valid_attachments(value: Any) -> tuple[ValidAttachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(f"{VALID_ATTACHMENTS} must be a list")
    found = []
    for n, entry in enumerate(value):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("containerID"), str)
            and isinstance(entry.get("ifname"), str)
        ):
            raise _invalid(f"{VALID_ATTACHMENTS}[{n}]: needs string containerID and ifname")
        found.append(ValidAttachment(entry["containerID"], entry["ifname"]))
    return tuple(found)
