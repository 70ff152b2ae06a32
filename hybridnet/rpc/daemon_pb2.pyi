from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attachment(_message.Message):
    __slots__ = ("container_id", "netns", "ifname", "pod_namespace", "pod_name", "pod_uid")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    POD_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    netns: str
    ifname: str
    pod_namespace: str
    pod_name: str
    pod_uid: str
    def __init__(self, container_id: _Optional[str] = ..., netns: _Optional[str] = ..., ifname: _Optional[str] = ..., pod_namespace: _Optional[str] = ..., pod_name: _Optional[str] = ..., pod_uid: _Optional[str] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("attachment", "mtu")
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    attachment: Attachment
    mtu: int
    def __init__(self, attachment: _Optional[_Union[Attachment, _Mapping]] = ..., mtu: _Optional[int] = ...) -> None: ...

class Interface(_message.Message):
    __slots__ = ("name", "mac", "sandbox", "mtu")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    name: str
    mac: str
    sandbox: str
    mtu: int
    def __init__(self, name: _Optional[str] = ..., mac: _Optional[str] = ..., sandbox: _Optional[str] = ..., mtu: _Optional[int] = ...) -> None: ...

class IPConfig(_message.Message):
    __slots__ = ("address", "gateway", "interface")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    address: str
    gateway: str
    interface: int
    def __init__(self, address: _Optional[str] = ..., gateway: _Optional[str] = ..., interface: _Optional[int] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("dst", "gw")
    DST_FIELD_NUMBER: _ClassVar[int]
    GW_FIELD_NUMBER: _ClassVar[int]
    dst: str
    gw: str
    def __init__(self, dst: _Optional[str] = ..., gw: _Optional[str] = ...) -> None: ...

class AddReply(_message.Message):
    __slots__ = ("interfaces", "ips", "routes")
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedCompositeFieldContainer[Interface]
    ips: _containers.RepeatedCompositeFieldContainer[IPConfig]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, interfaces: _Optional[_Iterable[_Union[Interface, _Mapping]]] = ..., ips: _Optional[_Iterable[_Union[IPConfig, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("attachment",)
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    attachment: Attachment
    def __init__(self, attachment: _Optional[_Union[Attachment, _Mapping]] = ...) -> None: ...

class DeleteReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("attachment", "expected")
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    attachment: Attachment
    expected: AddReply
    def __init__(self, attachment: _Optional[_Union[Attachment, _Mapping]] = ..., expected: _Optional[_Union[AddReply, _Mapping]] = ...) -> None: ...

class CheckReply(_message.Message):
    __slots__ = ("differences",)
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    differences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, differences: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("ready", "reason")
    READY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    reason: str
    def __init__(self, ready: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ValidAttachment(_message.Message):
    __slots__ = ("container_id", "ifname")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    ifname: str
    def __init__(self, container_id: _Optional[str] = ..., ifname: _Optional[str] = ...) -> None: ...

class GarbageCollectRequest(_message.Message):
    __slots__ = ("valid",)
    VALID_FIELD_NUMBER: _ClassVar[int]
    valid: _containers.RepeatedCompositeFieldContainer[ValidAttachment]
    def __init__(self, valid: _Optional[_Iterable[_Union[ValidAttachment, _Mapping]]] = ...) -> None: ...

class GarbageCollectReply(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed: _Optional[_Iterable[str]] = ...) -> None: ...

class DiagnoseRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatapathDifference(_message.Message):
    __slots__ = ("kind", "action", "object", "current")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    action: str
    object: str
    current: str
    def __init__(self, kind: _Optional[str] = ..., action: _Optional[str] = ..., object: _Optional[str] = ..., current: _Optional[str] = ...) -> None: ...

class DatapathProblem(_message.Message):
    __slots__ = ("code", "subject", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    subject: str
    message: str
    def __init__(self, code: _Optional[str] = ..., subject: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AttachedPod(_message.Message):
    __slots__ = ("container_id", "ifname", "host_ifname", "addresses")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    HOST_IFNAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    ifname: str
    host_ifname: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, container_id: _Optional[str] = ..., ifname: _Optional[str] = ..., host_ifname: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class DiagnoseReply(_message.Message):
    __slots__ = ("node_name", "compared", "reason", "differences", "problems", "pods")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    compared: bool
    reason: str
    differences: _containers.RepeatedCompositeFieldContainer[DatapathDifference]
    problems: _containers.RepeatedCompositeFieldContainer[DatapathProblem]
    pods: _containers.RepeatedCompositeFieldContainer[AttachedPod]
    def __init__(self, node_name: _Optional[str] = ..., compared: _Optional[bool] = ..., reason: _Optional[str] = ..., differences: _Optional[_Iterable[_Union[DatapathDifference, _Mapping]]] = ..., problems: _Optional[_Iterable[_Union[DatapathProblem, _Mapping]]] = ..., pods: _Optional[_Iterable[_Union[AttachedPod, _Mapping]]] = ...) -> None: ...
