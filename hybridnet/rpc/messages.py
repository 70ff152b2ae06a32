"""The daemon API's messages (proto/hybridnet/rpc/daemon.proto) as light classes for the plugin.

The daemon uses the generated classes (hybridnet.rpc.daemon_pb2); the plugin uses these with
:mod:`hybridnet.rpc.protowire`, so it never loads the protobuf runtime. ``SCHEMA`` gives each
field's number and kind; a unit test holds it equal to the .proto's descriptors, so the two
cannot drift apart. Repeated fields are tuples, an unset message field is None.
"""

from __future__ import annotations

from typing import NamedTuple

from hybridnet.rpc.protowire import BOOL, INT32, STRING, UINT32, Field, Schema

PACKAGE = "hybridnet.rpc.v1"
SERVICE = f"{PACKAGE}.Daemon"


class Attachment(NamedTuple):
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""


class AddRequest(NamedTuple):
    attachment: Attachment | None = None
    mtu: int = 0


class Interface(NamedTuple):
    name: str = ""
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0


class IPConfig(NamedTuple):
    address: str = ""
    gateway: str = ""
    interface: int = 0


class Route(NamedTuple):
    dst: str = ""
    gw: str = ""


class AddReply(NamedTuple):
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()


class DeleteRequest(NamedTuple):
    attachment: Attachment | None = None


class DeleteReply(NamedTuple):
    pass


class CheckRequest(NamedTuple):
    attachment: Attachment | None = None
    expected: AddReply | None = None


class CheckReply(NamedTuple):
    differences: tuple[str, ...] = ()


class StatusRequest(NamedTuple):
    pass


class StatusReply(NamedTuple):
    ready: bool = False
    reason: str = ""


class ValidAttachment(NamedTuple):
    container_id: str = ""
    ifname: str = ""


class GarbageCollectRequest(NamedTuple):
    valid: tuple[ValidAttachment, ...] = ()


class GarbageCollectReply(NamedTuple):
    removed: tuple[str, ...] = ()


class DiagnoseRequest(NamedTuple):
    pass


class DatapathDifference(NamedTuple):
    kind: str = ""
    action: str = ""
    object: str = ""
    current: str = ""


class DatapathProblem(NamedTuple):
    code: str = ""
    subject: str = ""
    message: str = ""


class AttachedPod(NamedTuple):
    container_id: str = ""
    ifname: str = ""
    host_ifname: str = ""
    addresses: tuple[str, ...] = ()


class DiagnoseReply(NamedTuple):
    node_name: str = ""
    compared: bool = False
    reason: str = ""
    differences: tuple[DatapathDifference, ...] = ()
    problems: tuple[DatapathProblem, ...] = ()
    pods: tuple[AttachedPod, ...] = ()


SCHEMA: Schema = {
    Attachment: (
        Field(1, "container_id", STRING),
        Field(2, "netns", STRING),
        Field(3, "ifname", STRING),
        Field(4, "pod_namespace", STRING),
        Field(5, "pod_name", STRING),
        Field(6, "pod_uid", STRING),
    ),
    AddRequest: (Field(1, "attachment", Attachment), Field(2, "mtu", UINT32)),
    Interface: (
        Field(1, "name", STRING),
        Field(2, "mac", STRING),
        Field(3, "sandbox", STRING),
        Field(4, "mtu", UINT32),
    ),
    IPConfig: (
        Field(1, "address", STRING),
        Field(2, "gateway", STRING),
        Field(3, "interface", INT32),
    ),
    Route: (Field(1, "dst", STRING), Field(2, "gw", STRING)),
    AddReply: (
        Field(1, "interfaces", Interface, repeated=True),
        Field(2, "ips", IPConfig, repeated=True),
        Field(3, "routes", Route, repeated=True),
    ),
    DeleteRequest: (Field(1, "attachment", Attachment),),
    DeleteReply: (),
    CheckRequest: (Field(1, "attachment", Attachment), Field(2, "expected", AddReply)),
    CheckReply: (Field(1, "differences", STRING, repeated=True),),
    StatusRequest: (),
    StatusReply: (Field(1, "ready", BOOL), Field(2, "reason", STRING)),
    ValidAttachment: (Field(1, "container_id", STRING), Field(2, "ifname", STRING)),
    GarbageCollectRequest: (Field(1, "valid", ValidAttachment, repeated=True),),
    GarbageCollectReply: (Field(1, "removed", STRING, repeated=True),),
    DiagnoseRequest: (),
    DatapathDifference: (
        Field(1, "kind", STRING),
        Field(2, "action", STRING),
        Field(3, "object", STRING),
        Field(4, "current", STRING),
    ),
    DatapathProblem: (
        Field(1, "code", STRING),
        Field(2, "subject", STRING),
        Field(3, "message", STRING),
    ),
    AttachedPod: (
        Field(1, "container_id", STRING),
        Field(2, "ifname", STRING),
        Field(3, "host_ifname", STRING),
        Field(4, "addresses", STRING, repeated=True),
    ),
    DiagnoseReply: (
        Field(1, "node_name", STRING),
        Field(2, "compared", BOOL),
        Field(3, "reason", STRING),
        Field(4, "differences", DatapathDifference, repeated=True),
        Field(5, "problems", DatapathProblem, repeated=True),
        Field(6, "pods", AttachedPod, repeated=True),
    ),
}
