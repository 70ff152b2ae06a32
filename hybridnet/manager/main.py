"""``hybridnet-manager``: IPAM for the cluster, one leader at a time.

Start-up is in phases, leader only: rebuild the allocator from stored Networks, Subnets and
IPInstances, sync the caches, then start the pod controller, the status writer, the node
labeler and the BGP advertiser (which runs ExaBGP while a BGP network has peers). Each phase
(and the webhook registration before it) waits out a store that is not ready yet and ends the
process on an error that waiting does not cure (see startup.py). A
leader that loses its Lease exits at once (the Deployment restarts it as a standby):
half-leading is never an option.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Histogram

from hybridnet import logs
from hybridnet.api import constants as c
from hybridnet.api.annotations import FAMILIES, ClusterDefaults
from hybridnet.bgp.model import MAX_TTL
from hybridnet.bgp.speaker import ANSWER_TIMEOUT
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamstore.service import IPAMService
from hybridnet.logs import fields
from hybridnet.manager import bgp_handover
from hybridnet.manager.bgp import BGPAdvertiser, BGPSettings
from hybridnet.manager.bgp_handover import Successor
from hybridnet.manager.bgp_plan import SpeakerSettings
from hybridnet.manager.caches import ClusterCache
from hybridnet.manager.leader import JITTER_FACTOR, LeaderElector
from hybridnet.manager.nodes import NodeLabeler
from hybridnet.manager.pods import PodController
from hybridnet.manager.startup import StartupAborted, StartupFailed, describe, retry_transient
from hybridnet.manager.status import CountsObserver, StatusWriter
from hybridnet.manager.webhook.cabundle import CABundlePatcher
from hybridnet.manager.webhook.certs import service_dns_names
from hybridnet.manager.webhook.keeper import (
    RESYNC_SECONDS,
    CertificateKeeper,
    CertificateSource,
    FileSource,
    SecretSource,
)
from hybridnet.manager.webhook.registration import (
    MUTATING_NAME,
    VALIDATING_NAME,
    pod_namespace_selector,
    register,
)
from hybridnet.manager.webhook.review import ReviewHandler
from hybridnet.manager.webhook.secret import CertificateSecret
from hybridnet.manager.webhook.server import WebhookServer, pem_context
from hybridnet.manager.webhook.view import PodView, StoreView
from hybridnet.metrics import (
    LATENCY_BUCKETS,
    MetricsError,
    MetricsServer,
    new_registry,
    parse_address,
    serve_metrics,
)
from hybridnet.shutdown import set_on_signal, wait_for
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store
from hybridnet.store.kube import KubeStore
from hybridnet.store.sqlite import SQLiteStore

log = logging.getLogger("hybridnet.manager")

LEASE_NAME = "hybridnet-manager"
SHUTDOWN_SECONDS = 10.0
"""How long stopping the controllers may take in all; a Deployment's grace period is 30 s."""
WATCH_JOIN_SECONDS = 5.0
"""How long stopping waits for the informers' watches, which end at their next event or their
server-side timeout (the threads are daemons: a process on its way out does not hang on them)."""
MAX_HANDOVER_SECONDS = 60.0
"""--bgp-handover-timeout's bound: with SHUTDOWN_SECONDS it must fit in the pod's grace period."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybridnet-manager", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster credentials)")
    where.add_argument("--store", help="embedded SQLite store file instead of Kubernetes")
    parser.add_argument(
        "--namespace",
        default=c.INSTALL_NAMESPACE,
        help="namespace of the leader Lease and of all IPInstances",
    )
    parser.add_argument("--identity", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument(
        "--no-leader-elect",
        dest="leader_elect",
        action="store_false",
        help="serve at once without a Lease (single replica only)",
    )
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="pods served at once (each waits on one API request; bench/manager_e2e.py: with "
        "16 the manager keeps pace with pod creation, with 8 it falls behind)",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1:9899",
        help="host:port for /metrics and /healthz ('' to disable)",
    )
    parser.add_argument(
        "--default-network-type", choices=[c.TYPE_UNDERLAY, c.TYPE_OVERLAY], default=c.TYPE_UNDERLAY
    )
    parser.add_argument("--default-ip-family", choices=FAMILIES, default="IPv4")
    webhook = parser.add_argument_group("admission webhook (served by every replica)")
    webhook.add_argument(
        "--webhook-address", default="", help="host:port to serve the webhook on ('' = no webhook)"
    )
    webhook.add_argument(
        "--webhook-secret",
        metavar="NAME",
        help="self-managed certificates: a CA and serving certificate for the Service's DNS "
        "names, made once and kept in this kubernetes.io/tls Secret in --namespace, shared by "
        "every replica and renewed there before they expire (needs --webhook-service)",
    )
    webhook.add_argument(
        "--webhook-cert", help="serving certificate (PEM), reloaded when the file changes"
    )
    webhook.add_argument("--webhook-key", help="serving key (PEM), reloaded with the certificate")
    webhook.add_argument("--webhook-ca", help="CA bundle for the webhook configurations (PEM)")
    webhook.add_argument(
        "--webhook-service",
        metavar="NAME",
        help="the webhook's Service in --namespace: its CA goes into the caBundle of every "
        f"webhook calling it in {VALIDATING_NAME} and {MUTATING_NAME}, which must exist "
        "(they are never created)",
    )
    webhook.add_argument(
        "--webhook-url",
        help="base URL the API server calls; creates the configurations with that URL "
        "(instead of --webhook-service; for webhooks outside the cluster)",
    )
    webhook.add_argument(
        "--webhook-resync-seconds",
        type=float,
        default=RESYNC_SECONDS,
        help="how often the certificate is read again (reloaded when changed, renewed when "
        "due) and caBundle checked",
    )
    bgp = parser.add_argument_group("BGP (the leader speaks for BGP and GlobalBGP networks)")
    bgp.add_argument(
        "--bgp-router-id",
        type=_ipv4,
        help="ExaBGP's BGP identifier (default: the IPv4 --bgp-local-address, else the "
        "address this host reaches the first IPv4 peer from)",
    )
    bgp.add_argument(
        "--bgp-local-address",
        type=ipaddress.ip_address,
        action="append",
        default=[],
        help="source address of the sessions to the peers of its family (once per family; "
        "default: the kernel's choice)",
    )
    bgp.add_argument(
        "--bgp-multihop",
        type=int,
        help="hops to eBGP peers that are not directly connected (L3 fabrics; default: the "
        "peers are one hop away)",
    )
    bgp.add_argument(
        "--bgp-workdir",
        type=Path,
        help="where ExaBGP's configuration, environment and API socket go (default: a "
        "private temporary directory)",
    )
    bgp.add_argument(
        "--bgp-handover-timeout",
        type=float,
        default=15.0,
        help="seconds a leader that stops on purpose keeps its routes for the next leader to "
        "announce its own (then it withdraws them; without a successor the peers keep them "
        "for their graceful-restart time). With the controllers' 10 s it must fit in the pod's "
        "terminationGracePeriodSeconds",
    )
    bgp.add_argument(
        "--bgp-answer-timeout",
        type=float,
        default=ANSWER_TIMEOUT,
        help="seconds ExaBGP may leave its commands unanswered (or unread) before it is "
        "taken for hung, killed and started again (graceful restart at the peers, then every "
        "route again)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    versions = [address.version for address in args.bgp_local_address]
    if len(versions) != len(set(versions)):
        parser.error("--bgp-local-address: at most one address per IP version")
    if args.bgp_multihop is not None and not 1 <= args.bgp_multihop <= MAX_TTL:
        parser.error(f"--bgp-multihop must be 1-{MAX_TTL}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not 0 <= args.bgp_handover_timeout <= MAX_HANDOVER_SECONDS:
        parser.error(f"--bgp-handover-timeout must be 0-{MAX_HANDOVER_SECONDS:g} seconds")
    if not 0 < args.bgp_answer_timeout < math.inf:
        parser.error("--bgp-answer-timeout must be a number of seconds above 0")
    for flag in ("metrics_address", "webhook_address"):
        try:
            if getattr(args, flag):  # empty: that server is off
                parse_address(getattr(args, flag))
        except ValueError as exc:
            parser.error(f"--{flag.replace('_', '-')}: {exc}")
    _check_webhook_flags(parser, args)
    return args


def _check_webhook_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    files = args.webhook_cert or args.webhook_key or args.webhook_ca
    if args.webhook_secret and files:
        parser.error(
            "--webhook-secret makes its own certificates: drop --webhook-cert, --webhook-key "
            "and --webhook-ca (or drop --webhook-secret to use those files)"
        )
    for flag in ("webhook_secret", "webhook_service", "webhook_url"):
        if getattr(args, flag) and not args.webhook_address:
            parser.error(f"--{flag.replace('_', '-')} needs --webhook-address")
    own_files = args.webhook_cert and args.webhook_key
    if args.webhook_address and not (args.webhook_secret or own_files):
        parser.error(
            "--webhook-address needs --webhook-secret, or --webhook-cert and --webhook-key"
        )
    if args.webhook_secret and not args.webhook_service:
        parser.error("--webhook-secret needs --webhook-service (the certificate names it)")
    if (args.webhook_secret or args.webhook_service) and args.store:
        parser.error("--webhook-secret and --webhook-service need Kubernetes, not --store")
    if args.webhook_service and args.webhook_url:
        parser.error("--webhook-service and --webhook-url are two ways to be called: give one")
    if args.webhook_service and not (args.webhook_secret or args.webhook_ca):
        parser.error("--webhook-service needs --webhook-ca (or --webhook-secret)")
    if args.webhook_url and not args.webhook_ca:
        parser.error("--webhook-url needs --webhook-ca")
    if args.webhook_resync_seconds <= 0:
        parser.error("--webhook-resync-seconds must be positive")


def _ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def bgp_settings(args: argparse.Namespace) -> BGPSettings:
    return BGPSettings(
        router_id=args.bgp_router_id,
        speaker=SpeakerSettings(
            local_addresses={a.version: a for a in args.bgp_local_address},
            multihop=args.bgp_multihop,
        ),
        workdir=args.bgp_workdir,
        handover_seconds=args.bgp_handover_timeout,
        answer_timeout=args.bgp_answer_timeout,
        # A standby tries every retry period, jittered: after that, nobody is coming.
        takeover_seconds=args.retry_period * (1 + JITTER_FACTOR) + 1.0,
    )


@dataclasses.dataclass
class Webhook:
    """The serving webhook and what keeps its certificate current."""

    server: WebhookServer
    keeper: CertificateKeeper
    pod_view: PodView

    def stop(self) -> None:
        self.keeper.stop(timeout=SHUTDOWN_SECONDS)
        self.server.stop()
        self.pod_view.signal_stop()  # their watches end when the store is closed


def certificate_source(store: Store, args: argparse.Namespace) -> CertificateSource:
    if args.webhook_secret:
        names = service_dns_names(args.webhook_service, args.namespace)
        return SecretSource(CertificateSecret(store, args.namespace, args.webhook_secret, names))
    ca = Path(args.webhook_ca) if args.webhook_ca else None
    return FileSource(Path(args.webhook_cert), Path(args.webhook_key), ca)


def start_webhook(store: Store, args: argparse.Namespace, stopping: threading.Event) -> Webhook:
    """Serve admission reviews with the certificate of --webhook-secret or the files; with
    --webhook-service patch caBundle into the shipped configurations, with --webhook-url
    create them. Every store step waits out a store that is not ready yet (see
    startup.retry_transient)."""
    host, port = parse_address(args.webhook_address)
    pod_view = PodView(store, args.namespace)  # every replica serves reviews: its own caches
    handler = ReviewHandler(
        StoreView(store, args.namespace),
        ClusterDefaults(args.default_network_type, args.default_ip_family),
        pod_view=pod_view,
    )
    source = certificate_source(store, args)
    material = retry_transient("read the webhook certificate", source.read, stopping)
    context = pem_context(material.cert, material.key)
    server = WebhookServer(handler, host=host, port=port, context=context)
    patcher = None
    if args.webhook_service:
        patcher = CABundlePatcher(store, args.namespace, args.webhook_service)
    pod_view.start()  # until its caches have listed, reviews read the store
    server.start()
    try:
        if patcher is not None and material.ca is not None:
            ca = material.ca
            retry_transient("patch the webhook CA bundle", lambda: patcher.ensure(ca), stopping)
        _register_webhook(store, args, stopping)
    except BaseException:
        server.stop()
        pod_view.signal_stop()
        raise
    keeper = CertificateKeeper(
        source, server.use_context, material, patcher, args.webhook_resync_seconds
    )
    log.info(
        "webhook ready",
        extra=fields(
            address=args.webhook_address,
            secret=args.webhook_secret,
            service=args.webhook_service,
            url=args.webhook_url,
        ),
    )
    return Webhook(server, keeper.start(), pod_view)


def _register_webhook(store: Store, args: argparse.Namespace, stopping: threading.Event) -> None:
    if args.webhook_url:
        ca = Path(args.webhook_ca).read_bytes()
        scope = pod_namespace_selector(args.namespace)
        retry_transient(
            "register the webhook",
            lambda: register(store, args.webhook_url, ca, namespace_selector=scope),
            stopping,
        )


CONNECTIONS_BESIDES_WORKERS = 16
"""The manager's other requests that may be in flight at once: seven informers' watches, the
status writer, the node labeler, the Lease, Events, the webhook's reads, with room to spare."""


def open_store(args: argparse.Namespace) -> Store:
    if args.store:
        return SQLiteStore(args.store)
    connections = args.workers + CONNECTIONS_BESIDES_WORKERS
    return KubeStore.from_kubeconfig(args.kubeconfig, connections=connections)


class Manager:
    """The leader's work: rebuild, then serve; with the metrics it reports."""

    def __init__(
        self,
        store: Store,
        args: argparse.Namespace,
        registry: CollectorRegistry,
        *,
        watch_timeout: float = 30.0,
    ):
        self.service = IPAMService(store, Allocator(), args.namespace)
        self.cache = ClusterCache(store, args.namespace, watch_timeout=watch_timeout)
        latency = Histogram(
            "hybridnet_manager_allocation_seconds",
            "Time to allocate and persist a pod's addresses.",
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.controller = PodController(
            store,
            self.service,
            self.cache,
            defaults=ClusterDefaults(args.default_network_type, args.default_ip_family),
            workers=args.workers,
            on_allocated=latency.observe,
        )
        usage = Gauge(
            "hybridnet_subnet_addresses",
            "Addresses per subnet by state.",
            ["subnet", "state"],
            registry=registry,
        )
        self.bgp = BGPAdvertiser(
            store,
            self.cache,
            bgp_settings(args),
            registry,
        )
        self.status = StatusWriter(
            store,
            self.cache,
            self.service.usage,
            on_counts=self._report(usage),
            bgp_peers=self.bgp.peer_statuses,
        )
        self.bgp.on_status = self.status.network_changed
        # On Kubernetes every node that runs a daemon is a registered Node (see nodes.py).
        registered = not args.store
        self.nodes = NodeLabeler(store, self.cache, self.service.usage, nodes_registered=registered)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False

    @staticmethod
    def _report(usage: Gauge) -> CountsObserver:
        def report(subnet: str, total: int, used: int, available: int) -> None:
            usage.labels(subnet=subnet, state="total").set(total)
            usage.labels(subnet=subnet, state="used").set(used)
            usage.labels(subnet=subnet, state="available").set(available)

        return report

    def start(self) -> None:
        """Rebuild, sync, serve. Raises StartupFailed (an error that waiting does not cure)
        or StartupAborted (stop() was called first)."""
        with self._lock:
            if self._stopping.is_set():
                raise StartupAborted("asked to stop before leadership arrived")
            restored = retry_transient(
                "rebuild the IPAM state", self.service.rebuild, self._stopping
            )
            self.cache.start(self._stopping)
            self.controller.start()
            self.status.start()
            self.nodes.start()
            self.bgp.start()
            self._started = True
        log.info("manager serving", extra=fields(restored_allocations=restored))

    def stand_by(self) -> None:
        """While another replica leads: keep BGP sessions up, announcing nothing (see
        hybridnet.manager.bgp_standby)."""
        self.bgp.stand_by()

    def stop(
        self,
        timeout: float = SHUTDOWN_SECONDS,
        *,
        successor: Callable[[], Successor] | None = None,
    ) -> None:
        """Safe at any point, also while start() is still running in another thread (which
        then gives up at its next wait). Takes at most about ``timeout`` seconds: every thread
        is a daemon, so one that does not finish in time (a slow API call) ends with the
        process instead of holding it up. With ``successor``, a leader's BGP routes are
        handed over after the controllers stopped (bounded by --bgp-handover-timeout)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if not self._lock.acquire(timeout=timeout):
            log.warning("start-up still running at shutdown; not waiting for it")
            return
        try:
            if self._started:
                self.controller.stop(timeout=_left(deadline))
                self.status.stop(timeout=_left(deadline))
                self.nodes.stop(timeout=_left(deadline))
            self.bgp.stop(timeout=_left(deadline), successor=successor)  # a standby's too
            # Every watch was asked to end by now; they end together, so one window for all.
            window_end = time.monotonic() + min(WATCH_JOIN_SECONDS, _left(deadline))
            self.cache.stop(timeout=_left(deadline))
            self.bgp.join_watches(timeout=max(window_end - time.monotonic(), 0.0))
        finally:
            self._lock.release()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


class Leadership:
    """What happens when leadership comes and goes; ``exit_code`` is the process's."""

    def __init__(self, manager: Manager, leader_gauge: Gauge, done: threading.Event):
        self.manager = manager
        self.leader_gauge = leader_gauge
        self.done = done
        self.exit_code = 0

    def lead(self) -> None:
        self.leader_gauge.set(1)
        threading.Thread(target=self._serve, name="manager-start", daemon=True).start()

    def _serve(self) -> None:
        try:
            self.manager.start()
        except StartupAborted:
            return
        except StartupFailed as exc:
            _cannot_start(exc)
            self.exit_code = 1
            self.done.set()

    def lost(self) -> None:
        self.leader_gauge.set(0)
        if not self.done.is_set():
            log.error("lost leadership; exiting so a fresh standby takes over")
            self.exit_code = 1
            self.done.set()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level)
    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"hybridnet-manager: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    set_on_signal(done)
    registry = new_registry()
    leader_gauge = Gauge(
        "hybridnet_manager_leader", "1 while this replica leads.", registry=registry
    )
    try:
        server = serve_metrics(registry, args.metrics_address)
    except MetricsError as exc:
        print(f"hybridnet-manager: {exc}", file=sys.stderr)
        store.close()
        return 1
    try:
        webhook = start_webhook(store, args, done) if args.webhook_address else None
    except OSError as exc:
        print(f"hybridnet-manager: cannot start the webhook: {exc}", file=sys.stderr)
        return 1
    except StartupFailed as exc:
        _cannot_start(exc)
        return 1
    except StartupAborted:  # a signal while the store was not ready yet
        _stop_serving(None, server)
        store.close()
        return 0
    manager = Manager(store, args, registry)
    leadership = Leadership(manager, leader_gauge, done)

    elector = None
    if args.leader_elect:
        manager.stand_by()  # before the elector: leadership takes the standby's sessions over
        candidate = LeaderElector(
            store,
            namespace=args.namespace,
            name=LEASE_NAME,
            identity=args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            on_started_leading=leadership.lead,
            on_stopped_leading=leadership.lost,
        )
        speaker_note = (bgp_handover.ANNOTATION_BGP_SPEAKER, args.identity)
        manager.bgp.on_speaking = lambda: candidate.annotate(*speaker_note)
        elector = candidate.start()
        log.info("waiting for leadership", extra=fields(identity=args.identity))
    else:
        leadership.lead()

    wait_for(done)
    log.info("stopping")
    stopping = time.monotonic()
    if elector is not None:
        elector.stop(release=leadership.exit_code == 0)
    successor = None
    if elector is not None:
        successor = bgp_handover.LeaseSuccessor(store, args.namespace, LEASE_NAME, args.identity)
    manager.stop(successor=successor)
    _stop_serving(webhook, server)
    store.close()
    log.info("stopped", extra=fields(seconds=round(time.monotonic() - stopping, 3)))
    return leadership.exit_code


def _cannot_start(failure: StartupFailed) -> None:
    """The one line that says why the process ends: which step, and the error's kind."""
    log.error(
        "cannot start",
        extra=fields(step=failure.step, error=describe(failure.error)),
    )


def _stop_serving(webhook: Webhook | None, metrics: MetricsServer | None) -> None:
    if webhook is not None:
        webhook.stop()
    if metrics is not None:
        metrics.stop()


if __name__ == "__main__":
    sys.exit(main())
