"""The Daemon gRPC service: one method per CNI command, each turning into datapath work.

Where addresses come from depends on the store. With Kubernetes the manager allocates, and the
daemon takes the pod's IPInstances from its cache of this node's IPInstances (hybridnet.daemon.
cache), waiting there when ADD comes first: an ADD costs one API request per address, the
status write that records the sandbox. With the embedded store the daemon allocates itself
through the same IPAM core; an address then belongs to the sandbox recorded in its
IPInstance's status, and DEL and GC free only addresses whose sandbox is gone. Failures carry
their CNI error code in the trailing metadata key ``cni-code``, so the plugin can answer the
runtime with the right one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from prometheus_client import CollectorRegistry, Histogram

from hybridnet.api import constants
from hybridnet.api.annotations import AnnotationError
from hybridnet.api.naming import pod_selector
from hybridnet.api.resources import IPInstance, Network
from hybridnet.daemon import attachment, bgp_wait, embedded_request, placement, underlay_check
from hybridnet.daemon.cache import (
    AllocationTimeout,
    NodeCache,
    NotAnnounced,
    one_per_family,
)
from hybridnet.daemon.datapath.config import NodeConfig
from hybridnet.daemon.datapath.plan import Operation
from hybridnet.daemon.embedded_addresses import EmbeddedAddresses, EmbeddedSettings
from hybridnet.daemon.node_datapath import NodeDatapath, NotCompared
from hybridnet.daemon.pod_locks import PodLocks
from hybridnet.daemon.worker import DEFAULT_RESYNC_PERIOD
from hybridnet.ipamcore.errors import IPAMError
from hybridnet.ipamstore import ipinstances
from hybridnet.logs import fields
from hybridnet.metrics import LATENCY_BUCKETS
from hybridnet.netlink import ns
from hybridnet.rpc import daemon_pb2 as pb
from hybridnet.rpc import daemon_pb2_grpc as pb_grpc
from hybridnet.rpc.codes import ADDRESS_IN_USE as CNI_ADDRESS_IN_USE
from hybridnet.rpc.codes import CNI_CODE_KEY
from hybridnet.rpc.codes import INTERNAL as CNI_INTERNAL
from hybridnet.rpc.codes import INVALID_ENV as CNI_INVALID_ENV
from hybridnet.rpc.codes import NETWORK_NOT_ON_NODE as CNI_NETWORK_NOT_ON_NODE
from hybridnet.rpc.codes import POD_REQUEST_INVALID as CNI_POD_REQUEST_INVALID
from hybridnet.rpc.codes import TRY_AGAIN_LATER as CNI_TRY_AGAIN_LATER
from hybridnet.store.errors import Conflict, StoreError, Unavailable
from hybridnet.store.interface import Store

log = logging.getLogger(__name__)

Handler = Callable[..., Any]

SANDBOX_WRITE_ATTEMPTS = 5
"""Writes of an IPInstance's status that may meet a newer version (the manager writes it too)."""

NODE_DATAPATH_WAIT = 10.0
"""How long ADD waits for the node datapath to include its pod. Past it the pod is attached
anyway (the next reconcile or resync builds the rest) and the wait is logged as a warning."""


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    node_name: str
    ipam_namespace: str = constants.INSTALL_NAMESPACE
    allocation_timeout: float = 30.0
    announce_timeout: float = 20.0
    """How long ADD of a BGP pod waits for the manager to announce its route."""
    default_mtu: int = 1500
    embedded: bool = False
    """The embedded store: the daemon allocates itself (hybridnet.daemon.embedded_request)."""
    embedded_network: str | None = None
    """With the embedded store: the network of pods that choose none."""
    embedded_ip_family: str = "IPv4"
    """With the embedded store: IPv4, IPv6 or DualStack for pods that do not say."""
    watch_timeout: float = 30.0
    """How long each of the daemon's watches lasts before its informer renews it."""
    datapath: attachment.DatapathConfig = dataclasses.field(
        default_factory=attachment.DatapathConfig
    )
    node: NodeConfig | None = None
    """The node datapath's settings; None runs no reconcile worker (pod attachments only)."""
    resync_period: float = DEFAULT_RESYNC_PERIOD


class AddressCheckFailed(Exception):
    """The underlay address check refused the pod's address (or could not run)."""

    def __init__(self, message: str, cni_code: int):
        super().__init__(message)
        self.cni_code = cni_code


class NotAttached(Exception):
    """The pod's network does not attach this node (hybridnet.daemon.placement)."""


class RouteNotAnnounced(Exception):
    """A BGP pod's route was not announced in time (hybridnet.daemon.bgp_wait says why)."""


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


class Phases:
    """Seconds each step of one CNI call took, for its log line: where a slow ADD waited
    (its lock, the manager's allocation, the node datapath) is read from the log."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mark = clock()
        self.seconds: dict[str, float] = {}

    def end(self, step: str) -> None:
        now = self._clock()
        self.seconds[step] = round(now - self._mark, 3)
        self._mark = now


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
        self._pod_locks = PodLocks()
        self.cache = NodeCache(
            store,
            config.node_name,
            config.ipam_namespace,
            watch_timeout=config.watch_timeout,
            network_policy=config.node is not None,
        )
        self.addresses = (
            EmbeddedAddresses(store, self.cache, _embedded_settings(config), self._pod_lock)
            if config.embedded
            else None
        )
        if self.addresses is not None:
            self.cache.on_instance = self.addresses.follow
        self.node_datapath = (
            NodeDatapath(
                store,
                self.cache,
                config.node,
                registry,
                config.resync_period,
                requires_node=config.embedded_network is None,
            )
            if config.node is not None
            else None
        )

    def start(self) -> DaemonService:
        """Start the informers and the reconcile worker; CNI calls wait for the informers'
        first list (STATUS says not ready)."""
        self.cache.start()
        if self.node_datapath is not None:
            self.node_datapath.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the reconcile worker (waiting for a run under way) and ask the informers to
        end. Their watches may sleep until the store is closed: close it, then :meth:`join`."""
        if self.node_datapath is not None:
            self.node_datapath.stop(timeout)
        self.cache.signal_stop()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the informers to end (after :meth:`stop` and the store's close)."""
        self.cache.stop(timeout)

    def _wake_datapath(self) -> None:
        """ADD and DEL touch only the pod's own objects; node-wide state is the worker's."""
        if self.node_datapath is not None:
            self.node_datapath.wake()

    def _wait_for_datapath(self, owner: str, instances: list[IPInstance]) -> None:
        """Node-wide objects a new pod relies on (the proxy neighbour entry that answers for
        its address on the overlay or VLAN, its routes) are the worker's: an ADD that returned
        before them would report a pod that peers cannot reach yet, and a CHECK right after
        would find them missing."""
        if self.node_datapath is None:
            return
        names = {i.name for i in instances}
        if not self.node_datapath.wait_for_pod(names, NODE_DATAPATH_WAIT):
            log.warning(
                "pod attached before the node datapath included it",
                extra=fields(pod=owner, waited_seconds=NODE_DATAPATH_WAIT),
            )

    # ----------------------------------------------------------------- addresses

    def _pod_lock(self, owner: str) -> contextlib.AbstractContextManager[None]:
        """ADD, DEL and GC of one pod run one at a time (hybridnet.daemon.pod_locks): on the
        embedded store this also means an IPInstance without a sandbox recorded is never one
        an ADD is still building."""
        return self._pod_locks.hold(owner)

    def _instances(self, attach: pb.Attachment) -> list[IPInstance]:
        if self.addresses is not None:
            found = self.addresses.allocate(attach, self._check_placement)
        else:
            owner = ipinstances.owner_key(attach.pod_namespace, attach.pod_name)
            found = self.cache.wait_for_pod(owner, self.config.allocation_timeout)
            for name in sorted({i.spec.network for i in found}):
                network = self.cache.network(name, self.config.allocation_timeout)
                if network is not None:
                    self._check_placement(network)
        return one_per_family(found)

    def _check_addresses(
        self, attach: pb.Attachment, instances: list[IPInstance]
    ) -> list[underlay_check.Target]:
        """Probe an underlay pod's addresses before it is built (nothing for overlay pods).
        A failure frees what the embedded store allocated, and says why on the pod."""
        node = self.config.node
        checks = underlay_check.targets(
            instances,
            {n.name: n for n in self.cache.networks.cache.copy().values()},
            {s.name: s for s in self.cache.subnets.cache.copy().values()},
            node.underlay_interface if node is not None else None,
        )
        for ifname in sorted({t.ifname for t in checks}):
            self._wait_for_link(ifname)
        try:
            underlay_check.probe_all(checks)
        except underlay_check.CheckFailed as exc:
            if self.addresses is not None:
                self.addresses.delete(instances)
            if self.node_datapath is not None:
                reason = "AddressInUse" if exc.in_use else "AddressCheckFailed"
                self.node_datapath.events.pod_warning(
                    attach.pod_namespace, attach.pod_name, reason, str(exc)
                )
            code = CNI_ADDRESS_IN_USE if exc.in_use else CNI_TRY_AGAIN_LATER
            raise AddressCheckFailed(f"underlay address check: {exc}", code) from exc
        return checks

    def _wait_for_link(self, ifname: str) -> None:
        """The link the check runs on, built by the reconcile worker: a new network's first
        pod may come before it; the worker is woken and waited for once."""
        if _link_exists(ifname) or self.node_datapath is None:
            return
        worker = self.node_datapath.worker
        runs = worker.runs
        worker.wake()
        worker.wait_for_run(runs, self.config.allocation_timeout)
        if not _link_exists(ifname):
            raise underlay_check.InterfaceNotReady(f"{ifname} does not exist on this node yet")

    def _check_placement(self, network: Network) -> None:
        networks = list(self.cache.networks.cache.copy().values())
        why = placement.refusal(network, networks, self.config.node_name, self.cache.node_labels())
        if why is not None:
            raise NotAttached(why)

    def _plan(
        self, attach: pb.Attachment, mtu: int, instances: list[IPInstance]
    ) -> attachment.AttachmentPlan:
        return attachment.plan_attachment(
            container_id=attach.container_id,
            netns=attach.netns,
            pod_ifname=attach.ifname,
            mac=instances[0].spec.address.mac,
            mtu=self._pod_mtu(attach, mtu, instances[0].spec.network),
            cidrs=[i.spec.address.ip for i in instances],
        )

    def _pod_mtu(self, attach: pb.Attachment, requested: int, network_name: str) -> int:
        """The configuration's MTU, else that of the link the pod's traffic leaves the node
        by (an overlay pod gets the VXLAN device's: 1500 there would make every first
        full-size packet to a peer come back as "fragmentation needed"), else the daemon's
        default; never more than that link carries."""
        link_mtu = None
        network = self.cache.networks.cache.get(("", network_name))
        if network is not None and self.node_datapath is not None:
            link_mtu = self.node_datapath.link_mtu(network)
        if not requested:
            return link_mtu or self.config.default_mtu
        if link_mtu is not None and requested > link_mtu:
            log.warning(
                "pod MTU above its link's; lowered",
                extra=fields(container=attach.container_id, network=network_name,
                             requested=requested, mtu=link_mtu),
            )  # fmt: skip
            return link_mtu
        return requested

    def _wait_announced(self, owner: str, instances: list[IPInstance]) -> list[IPInstance]:
        """A BGP pod's IPInstances once the manager has announced their routes (the versions
        carrying its mark, for the sandbox write); the others as they are."""
        networks = {n.name: n for n in self.cache.networks.cache.copy().values()}
        names = bgp_wait.awaited(instances, networks)
        if not names:
            return instances
        timeout = self.config.announce_timeout
        try:
            current = self.cache.wait_for_announced(owner, names, timeout)
        except NotAnnounced as exc:
            waiting = [i for i in instances if i.name in exc.waiting]
            why = bgp_wait.describe(
                waiting, list(networks.values()), self.cache.node_labels(), timeout
            )
            raise RouteNotAnnounced(why) from exc
        by_name = {i.name: i for i in current}
        return [by_name.get(i.name, i) for i in instances]

    def _record_sandbox(self, instances: list[IPInstance], attach: pb.Attachment) -> None:
        """Write the sandbox into each IPInstance's status (the daemon's part of it). After a
        write meets a newer version, the retry waits for that version in the cache instead
        of reading it from the store."""
        deadline = time.monotonic() + self.config.allocation_timeout
        for stored in instances:
            current = stored
            for attempt in range(SANDBOX_WRITE_ATTEMPTS):
                updated = copy.deepcopy(current)  # the cache's object stays as stored
                updated.status.sandbox_id = attach.container_id
                updated.status.node_name = self.config.node_name
                updated.status.pod_name = attach.pod_name
                updated.status.pod_namespace = attach.pod_namespace
                updated.status.phase = "Using"
                try:
                    self.store.update_status(updated)
                    break
                except Conflict:
                    remaining = deadline - time.monotonic()
                    newer = self.cache.wait_for_newer(current, remaining)
                    if attempt == SANDBOX_WRITE_ATTEMPTS - 1 or newer is None:
                        raise  # ADD fails ("try again later") and rolls back
                    current = newer

    # ----------------------------------------------------------------- CNI commands

    @timed("ADD")
    def Add(self, request: pb.AddRequest, context: grpc.ServicerContext) -> pb.AddReply:
        attach = request.attachment
        owner = ipinstances.owner_key(attach.pod_namespace, attach.pod_name)
        phases = Phases()
        try:
            with self._pod_lock(owner):
                phases.end("lock")
                instances = self._instances(attach)
                phases.end("allocation")
                checks = self._check_addresses(attach, instances)
                plan = self._plan(attach, request.mtu, instances)
                attachment.attach(plan, self.config.datapath)
                phases.end("attach")
                try:
                    # Built while the manager announces: BGP pods wait for their routes here.
                    instances = self._wait_announced(owner, instances)
                    self._record_sandbox(instances, attach)
                except BaseException:  # a failed ADD leaves no attachment behind
                    attachment.detach(attach.container_id, attach.ifname)
                    raise
                underlay_check.announce_all(checks)
                phases.end("record")
        except (AllocationTimeout, RouteNotAnnounced) as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, str(exc))
        except Unavailable as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"store unavailable: {exc}")
        except Conflict as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"IPInstance kept changing: {exc}")
        except ns.NetnsGone as exc:
            _abort(context, CNI_INVALID_ENV, f"CNI_NETNS: {exc}")
        except underlay_check.InterfaceNotReady as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, str(exc))
        except AddressCheckFailed as exc:
            _abort(context, exc.cni_code, str(exc))
        except (NotAttached, embedded_request.NoNetworkOnNode) as exc:
            log.warning("pod refused", extra=fields(pod=owner, error=str(exc)))
            _abort(context, CNI_NETWORK_NOT_ON_NODE, str(exc))
        except AnnotationError as exc:
            _abort(context, CNI_POD_REQUEST_INVALID, f"pod {owner}: {exc}")
        except IPAMError as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"no address: {exc}")
        except StoreError as exc:
            _abort(context, CNI_INTERNAL, f"store: {exc}")
        self._wait_for_datapath(owner, instances)
        phases.end("datapath")
        log.info("pod attached", extra=fields(
            pod=owner, container=attach.container_id,
            addresses=list(plan.addresses), host_ifname=plan.host_ifname,
            seconds=phases.seconds))  # fmt: skip
        return _reply(plan, instances)

    @timed("DEL")
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteReply:
        attach = request.attachment
        # Without the pod's name (a runtime outside Kubernetes may send none), the container
        # is what one ADD and its DEL have in common.
        owner = (
            ipinstances.owner_key(attach.pod_namespace, attach.pod_name)
            if attach.pod_name
            else f"container:{attach.container_id}"
        )
        freed: list[str] = []
        phases = Phases()
        with self._pod_lock(owner):  # never while this pod's ADD is still building
            phases.end("lock")
            removed = attachment.detach(attach.container_id, attach.ifname)
            if self.addresses is not None and attach.pod_name:
                try:
                    freed = self.addresses.free_sandbox(attach)
                except StoreError as exc:
                    _abort(context, CNI_TRY_AGAIN_LATER, f"store: {exc}")
        self._wake_datapath()
        phases.end("detach")
        log.info("pod detached", extra=fields(
            container=attach.container_id, removed=removed, freed=freed,
            seconds=phases.seconds))  # fmt: skip
        return pb.DeleteReply()

    @timed("CHECK")
    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckReply:
        attach = request.attachment
        try:
            if self.addresses is not None:
                found = self.addresses.stored(pod_selector(attach.pod_namespace, attach.pod_name))
            elif self.cache.instances.synced.is_set():
                owner = ipinstances.owner_key(attach.pod_namespace, attach.pod_name)
                found = self.cache.pod_instances(owner)
            else:
                _abort(context, CNI_TRY_AGAIN_LATER, "the daemon has not listed IPInstances yet")
        except StoreError as exc:
            _abort(context, CNI_TRY_AGAIN_LATER, f"store: {exc}")
        if not found:
            return pb.CheckReply(differences=["the pod has no address allocated"])
        pod_side = [i for i in request.expected.interfaces if i.sandbox]
        mtu = pod_side[0].mtu if pod_side else 0
        plan = self._plan(attach, mtu, one_per_family(found))
        differences = attachment.check(plan, self.config.datapath)
        networks = {n.name: n for n in self.cache.networks.cache.copy().values()}
        differences += bgp_wait.unannounced(one_per_family(found), networks, self.config.node_name)
        differences += self._datapath_problems(found)
        if self.node_datapath is not None:
            differences += self.node_datapath.policy_differences_for(plan.host_ifname)
        expected = sorted(ip.address for ip in request.expected.ips)
        if expected and expected != sorted(plan.addresses):
            differences.append(f"prevResult has {expected}, the pod holds {sorted(plan.addresses)}")
        return pb.CheckReply(differences=differences)

    def _datapath_problems(self, found: list[IPInstance]) -> list[str]:
        """What the node-wide datapath could not build for the pod's network (its problems),
        and what of it the kernel lacks now (the reconciler's diff)."""
        if self.node_datapath is None:
            return []
        problems = []
        for name in sorted({i.spec.network for i in found}):
            network = self.cache.networks.cache.get(("", name))
            if network is None:
                problems.append(f"network {name} does not exist")
                continue
            subnets = {i.spec.subnet for i in found if i.spec.network == name}
            problems += self.node_datapath.problems_for(network, subnets)
            problems += self.node_datapath.differences_for(network, subnets)
        return problems

    @timed("STATUS")
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        problem = self.cache.problem()
        if problem is None and self.node_datapath is not None:
            problem = self.node_datapath.not_ready()
        if problem is not None:
            return pb.StatusReply(ready=False, reason=problem)
        return pb.StatusReply(ready=True)

    @timed("GC")
    def GarbageCollect(
        self, request: pb.GarbageCollectRequest, context: grpc.ServicerContext
    ) -> pb.GarbageCollectReply:
        valid = {(v.container_id, v.ifname) for v in request.valid}
        removed = attachment.collect_garbage(valid)
        freed: list[str] = []
        if self.addresses is not None:
            try:
                freed = self.addresses.free_stale({container_id for container_id, _ in valid})
            except StoreError as exc:
                _abort(context, CNI_TRY_AGAIN_LATER, f"store: {exc}")
        log.info("garbage collected", extra=fields(
            removed=removed, freed=freed, kept=len(valid)))  # fmt: skip
        return pb.GarbageCollectReply(removed=removed)

    def Diagnose(
        self, request: pb.DiagnoseRequest, context: grpc.ServicerContext
    ) -> pb.DiagnoseReply:
        """The node datapath's pending operations and problems, and the pods attached here:
        read only, for hybridnet-ctl (node diagnose, ipam check)."""
        reply = pb.DiagnoseReply(node_name=self.config.node_name)
        if self.node_datapath is None:
            reply.reason = "this daemon runs no node datapath"
        else:
            try:
                reply.differences.extend(_difference(op) for op in self.node_datapath.pending())
                reply.compared = True
            except NotCompared as exc:
                reply.reason = str(exc)
            reply.problems.extend(
                pb.DatapathProblem(code=p.code, subject=p.subject, message=p.message)
                for p in self.node_datapath.problems()
            )
        reply.pods.extend(
            pb.AttachedPod(
                container_id=a.container_id,
                ifname=a.ifname,
                host_ifname=a.host_ifname,
                addresses=list(a.addresses),
            )
            for a in attachment.attached(self.config.datapath)
        )
        return reply


def _embedded_settings(config: DaemonConfig) -> EmbeddedSettings:
    return EmbeddedSettings(
        node_name=config.node_name,
        ipam_namespace=config.ipam_namespace,
        allocation_timeout=config.allocation_timeout,
        default_network=config.embedded_network,
        default_family=config.embedded_ip_family,
    )


def _difference(op: Operation) -> pb.DatapathDifference:
    current = f"{op.current.describe()}: {op.changes()}" if op.current is not None else ""
    return pb.DatapathDifference(
        kind=str(op.target.kind),
        action=str(op.action),
        object=op.target.describe(),
        current=current,
    )


def _link_exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


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
