"""The Daemon gRPC service: one method per CNI command, each turning into datapath work.

Where addresses come from depends on the store: with Kubernetes the manager allocates and the
daemon waits for the pod's IPInstances on a watch; with the embedded store the daemon allocates
itself through the same IPAM core. Failures carry their CNI error code in the trailing metadata
key ``cni-code``, so the plugin can answer the runtime with the right one.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from prometheus_client import CollectorRegistry, Histogram

from hybridnet.api.annotations import AnnotationError, ClusterDefaults, parse_pod_request
from hybridnet.api.builtin import Namespace, Pod
from hybridnet.api.resources import IPInstance, Network
from hybridnet.daemon import attachment
from hybridnet.daemon.wait import AllocationTimeout, wait_for_instances
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamcore.errors import IPAMError
from hybridnet.ipamstore.service import IPAMService, PodRef
from hybridnet.logs import fields
from hybridnet.metrics import LATENCY_BUCKETS
from hybridnet.netlink import links, ns
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.rpc.codes import CNI_CODE_KEY
from hybridnet.rpc.codes import INTERNAL as CNI_INTERNAL
from hybridnet.rpc.codes import INVALID_ENV as CNI_INVALID_ENV
from hybridnet.rpc.codes import TRY_AGAIN_LATER as CNI_TRY_AGAIN_LATER
from hybridnet.store.errors import Conflict, NotFound, StoreError, Unavailable
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

Handler = Callable[..., Any]

SANDBOX_WRITE_ATTEMPTS = 5
"""Writes of an IPInstance's status that may meet a newer version (the manager writes it too)."""


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    node_name: str
    ipam_namespace: str = "kube-system"
    allocation_timeout: float = 30.0
    default_mtu: int = 1500
    embedded_network: str | None = None
    """With the embedded store: the network this daemon allocates from itself."""
    embedded_ip_family: str = "IPv4"
    """With the embedded store: IPv4, IPv6 or DualStack for every pod."""
    datapath: attachment.DatapathConfig = dataclasses.field(
        default_factory=attachment.DatapathConfig
    )


def _abort(context: grpc.ServicerContext, cni_code: int, message: str) -> NoReturn:
    context.set_trailing_metadata(((CNI_CODE_KEY, str(cni_code)),))
    status = (
        grpc.StatusCode.UNAVAILABLE
        if cni_code == CNI_TRY_AGAIN_LATER
        else grpc.StatusCode.FAILED_PRECONDITION
    )
    context.abort(status, message)
    raise AssertionError("unreachable")  # context.abort raises


def timed(command: str) -> Callable[[Handler], Handler]:
    """Observe a CNI command's latency by result (ok / error) in the service's histogram."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(self: DaemonService, request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            result = "error"
            try:
                reply = handler(self, request, context)
                result = "ok"
                return reply
            finally:
                if self.latency is not None:
                    self.latency.labels(command=command, result=result).observe(
                        time.perf_counter() - started
                    )

        return run

    return wrap


class DaemonService(pb_grpc.DaemonServicer):
    def __init__(
        self, store: Store, config: DaemonConfig, registry: CollectorRegistry | None = None
    ):
        self.store = store
        self.config = config
        self.latency = (
            Histogram(
                "hybridnet_cni_request_seconds",
                "CNI requests served by the daemon, by command and result.",
                ["command", "result"],
                registry=registry,
                buckets=LATENCY_BUCKETS,
            )
            if registry is not None
            else None
        )
        self._ipam: IPAMService | None = None
        self._ipam_lock = threading.Lock()

    # ----------------------------------------------------------------- addresses

    def _embedded_ipam(self) -> IPAMService:
        """The daemon's own allocator (embedded store only), rebuilt once from the store."""
        with self._ipam_lock:
            if self._ipam is None:
                service = IPAMService(self.store, Allocator(), self.config.ipam_namespace)
                service.rebuild()
                self._ipam = service
            return self._ipam

    def _wanted_versions(self, attach: pb.Attachment) -> set[str] | None:
        """The IP versions the pod asked for (its annotations, then its namespace's)."""
        try:
            pod = self.store.get(Pod, attach.pod_name, attach.pod_namespace)
        except NotFound:
            return None  # not a Kubernetes pod we can read: take what the manager wrote
        try:
            namespace = self.store.get(Namespace, attach.pod_namespace).metadata.annotations
        except NotFound:
            namespace = {}
        try:
            request = parse_pod_request(
                attach.pod_name, pod.metadata.annotations, namespace, pod.metadata.owner_references
            )
        except AnnotationError:
            return None
        return {str(v) for v in request.versions}

    def _instances(self, attach: pb.Attachment) -> list[IPInstance]:
        versions: set[str] | None
        if self.config.embedded_network:
            service = self._embedded_ipam()
            defaults = ClusterDefaults(ip_family=self.config.embedded_ip_family)
            request = parse_pod_request(attach.pod_name, {}, {}, (), defaults)
            network = self.store.get(Network, self.config.embedded_network)
            service.apply_network(network)
            ref = PodRef(
                attach.pod_namespace, attach.pod_name, attach.pod_uid or None, self.config.node_name
            )
            service.ensure_allocated(ref, request, self.config.embedded_network)
            versions = {str(v) for v in request.versions}
        else:
            versions = self._wanted_versions(attach)
        found = wait_for_instances(
            self.store,
            self.config.ipam_namespace,
            attach.pod_namespace,
            attach.pod_name,
            timeout=self.config.allocation_timeout,
            versions=versions,
        )
        one_per_family: dict[str, IPInstance] = {}
        for instance in sorted(found, key=lambda i: i.name):  # the manager keeps the lowest
            one_per_family.setdefault(instance.spec.address.version, instance)
        return list(one_per_family.values())

    def _plan(
        self, attach: pb.Attachment, mtu: int, instances: list[IPInstance]
    ) -> attachment.AttachmentPlan:
        return attachment.plan_attachment(
            container_id=attach.container_id,
            netns=attach.netns,
            pod_ifname=attach.ifname,
            mac=instances[0].spec.address.mac,
            mtu=mtu or self.config.default_mtu,
            cidrs=[i.spec.address.ip for i in instances],
        )

    def _record_sandbox(self, instances: list[IPInstance], attach: pb.Attachment) -> None:
        """Write the sandbox into each IPInstance's status (the daemon's part of it)."""
        for stored in instances:
            current = stored
            for attempt in range(SANDBOX_WRITE_ATTEMPTS):
                current.status.sandbox_id = attach.container_id
                current.status.node_name = self.config.node_name
                current.status.pod_name = attach.pod_name
                current.status.pod_namespace = attach.pod_namespace
                current.status.phase = "Using"
                try:
                    self.store.update_status(current)
                    break
                except Conflict:
                    if attempt == SANDBOX_WRITE_ATTEMPTS - 1:
                        raise  # ADD fails ("try again later") and rolls back
                    current = self.store.get(IPInstance, stored.name, self.config.ipam_namespace)

    # ----------------------------------------------------------------- CNI commands

    @timed("ADD")
    def Add(self, request: pb.AddRequest, context: grpc.ServicerContext) -> pb.AddReply:
        attach = request.attachment
        try:
            instances = self._instances(attach)
            plan = self._plan(attach, request.mtu, instances)
            attachment.attach(plan, self.config.datapath)
            try:
                self._record_sandbox(instances, attach)
            except BaseException:  # a failed ADD leaves nothing behind
                attachment.detach(attach.container_id, attach.ifname)
                raise
        except AllocationTimeout as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, str(exc))
        except Unavailable as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"store unavailable: {exc}")
        except Conflict as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"IPInstance kept changing: {exc}")
        except ns.NetnsGone as exc:
            _abort(context, CNI_INVALID_ENV, f"CNI_NETNS: {exc}")
        except IPAMError as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"no address: {exc}")
        except StoreError as exc:
            _abort(context, CNI_INTERNAL, f"store: {exc}")
        log.info("pod attached", extra=fields(
            pod=f"{attach.pod_namespace}/{attach.pod_name}", container=attach.container_id,
            addresses=list(plan.addresses), host_ifname=plan.host_ifname))  # fmt: skip
        return _reply(plan, instances)

    @timed("DEL")
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteReply:
        attach = request.attachment
        removed = attachment.detach(attach.container_id, attach.ifname)
        if self.config.embedded_network and attach.pod_name:
            try:
                self._embedded_ipam().release(f"{attach.pod_namespace}/{attach.pod_name}")
            except StoreError as exc:
                _abort(context, CNI_TRY_AGAIN_LATER, f"store: {exc}")
        log.info("pod detached", extra=fields(container=attach.container_id, removed=removed))
        return pb.DeleteReply()

    @timed("CHECK")
    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckReply:
        attach = request.attachment
        try:
            found = wait_for_instances(
                self.store,
                self.config.ipam_namespace,
                attach.pod_namespace,
                attach.pod_name,
                timeout=0,
            )
        except AllocationTimeout:
            return pb.CheckReply(differences=["the pod has no address allocated"])
        except StoreError as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"store: {exc}")
        pod_side = [i for i in request.expected.interfaces if i.sandbox]
        mtu = pod_side[0].mtu if pod_side else 0
        plan = self._plan(attach, mtu, found)
        differences = attachment.check(plan, self.config.datapath)
        expected = sorted(ip.address for ip in request.expected.ips)
        if expected and expected != sorted(plan.addresses):
            differences.append(f"prevResult has {expected}, the pod holds {sorted(plan.addresses)}")
        return pb.CheckReply(differences=differences)

    @timed("STATUS")
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        try:
            self.store.list(Network)
        except StoreError as exc:
            return pb.StatusReply(ready=False, reason=f"store unavailable: {exc}")
        return pb.StatusReply(ready=True)

    @timed("GC")
    def GarbageCollect(
        self, request: pb.GarbageCollectRequest, context: grpc.ServicerContext
    ) -> pb.GarbageCollectReply:
        valid = {attachment.host_ifname(v.container_id, v.ifname) for v in request.valid}
        removed = []
        with ns.node() as host:
            for name in links.names(host):
                if name.startswith(attachment.HOST_PREFIX) and name not in valid:
                    links.delete(host, name)
                    removed.append(name)
        log.info("garbage collected", extra=fields(removed=removed, kept=len(valid)))
        return pb.GarbageCollectReply(removed=removed)


def _reply(plan: attachment.AttachmentPlan, instances: list[IPInstance]) -> pb.AddReply:
    """Interfaces as CNI lists them: the host end (no sandbox) first, then the pod's; chained
    plugins such as bandwidth find the host end there."""
    reply = pb.AddReply(
        interfaces=[
            pb.Interface(name=plan.host_ifname, mac=attachment.HOST_MAC, sandbox="", mtu=plan.mtu),
            pb.Interface(name=plan.pod_ifname, mac=plan.mac, sandbox=plan.netns, mtu=plan.mtu),
        ]
    )
    for instance in instances:
        version = ipaddress.ip_interface(instance.spec.address.ip).version
        gateway = attachment.GATEWAY_V4 if version == 4 else attachment.GATEWAY_V6
        address = instance.spec.address.ip
        reply.ips.append(pb.IPConfig(address=address, gateway=gateway, interface=1))
        reply.routes.append(pb.Route(dst="0.0.0.0/0" if version == 4 else "::/0", gw=gateway))
    return reply
