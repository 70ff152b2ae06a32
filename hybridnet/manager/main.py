"""``hybridnet-manager``: IPAM for the cluster, one leader at a time.

Start-up is in phases, leader only: rebuild the allocator from stored Networks, Subnets and
IPInstances, then start the pod controller and the status writer. A leader that loses its Lease
exits at once (the Deployment restarts it as a standby): half-leading is never an option.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Histogram

from hybridnet import logs
from hybridnet.api import constants as c
from hybridnet.api.annotations import FAMILIES, ClusterDefaults
from hybridnet.ipamcore.allocator import Allocator
from hybridnet.ipamstore.service import IPAMService
from hybridnet.logs import fields
from hybridnet.manager.leader import LeaderElector
from hybridnet.manager.nodes import NodeLabeler
from hybridnet.manager.pods import PodController
from hybridnet.manager.status import CountsObserver, StatusWriter
from hybridnet.manager.webhook.registration import register
from hybridnet.manager.webhook.review import ReviewHandler
from hybridnet.manager.webhook.server import WebhookServer
from hybridnet.manager.webhook.view import StoreView
from hybridnet.metrics import (
    LATENCY_BUCKETS,
    MetricsServer,
    new_registry,
    parse_address,
    serve_metrics,
)
from hybridnet.store.errors import StoreError
from hybridnet.store.interface import Store
from hybridnet.store.kube import KubeStore
from hybridnet.store.sqlite import SQLiteStore

log = logging.getLogger("hybridnet.manager")

LEASE_NAME = "hybridnet-manager"
SHUTDOWN_SECONDS = 10.0
"""How long stopping the controllers may take in all; a Deployment's grace period is 30 s."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybridnet-manager", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster credentials)")
    where.add_argument("--store", help="embedded SQLite store file instead of Kubernetes")
    parser.add_argument(
        "--namespace",
        default="kube-system",
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
    parser.add_argument("--workers", type=int, default=8)
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
    webhook.add_argument("--webhook-cert", help="serving certificate (PEM)")
    webhook.add_argument("--webhook-key", help="serving key (PEM)")
    webhook.add_argument("--webhook-ca", help="CA bundle for the webhook configurations (PEM)")
    webhook.add_argument(
        "--webhook-url", help="base URL the API server calls; registers the configurations"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    for flag in ("metrics_address", "webhook_address"):
        try:
            if getattr(args, flag):  # empty: that server is off
                parse_address(getattr(args, flag))
        except ValueError as exc:
            parser.error(f"--{flag.replace('_', '-')}: {exc}")
    if args.webhook_address and not (args.webhook_cert and args.webhook_key):
        parser.error("--webhook-address needs --webhook-cert and --webhook-key")
    if args.webhook_url and not (args.webhook_address and args.webhook_ca):
        parser.error("--webhook-url needs --webhook-address and --webhook-ca")
    return args


def start_webhook(store: Store, args: argparse.Namespace) -> WebhookServer:
    """Serve admission reviews; with --webhook-url also (re)register the configurations."""
    host, port = parse_address(args.webhook_address)
    handler = ReviewHandler(
        StoreView(store, args.namespace),
        ClusterDefaults(args.default_network_type, args.default_ip_family),
    )
    server = WebhookServer(handler, args.webhook_cert, args.webhook_key, host, port)
    server.start()
    if args.webhook_url:
        # The pod webhook fails closed, so it must not cover the manager's own namespace:
        # otherwise, with every replica down, not even their replacements could be created.
        own_namespace = {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": [args.namespace],
                }
            ]
        }
        register(
            store,
            args.webhook_url,
            Path(args.webhook_ca).read_bytes(),
            namespace_selector=own_namespace,
        )
    log.info("webhook serving", extra=fields(address=args.webhook_address, url=args.webhook_url))
    return server


def open_store(args: argparse.Namespace) -> Store:
    if args.store:
        return SQLiteStore(args.store)
    return KubeStore.from_kubeconfig(args.kubeconfig)


class Manager:
    """The leader's work: rebuild, then serve; with the metrics it reports."""

    def __init__(self, store: Store, args: argparse.Namespace, registry: CollectorRegistry):
        self.allocator = Allocator()
        self.service = IPAMService(store, self.allocator, args.namespace)
        latency = Histogram(
            "hybridnet_manager_allocation_seconds",
            "Time to allocate and persist a pod's addresses.",
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.controller = PodController(
            store,
            self.service,
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
        self.status = StatusWriter(store, self.allocator, on_counts=self._report(usage))
        self.nodes = NodeLabeler(store, self.allocator)
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    @staticmethod
    def _report(usage: Gauge) -> CountsObserver:
        def report(subnet: str, total: int, used: int, available: int) -> None:
            usage.labels(subnet=subnet, state="total").set(total)
            usage.labels(subnet=subnet, state="used").set(used)
            usage.labels(subnet=subnet, state="available").set(available)

        return report

    def start(self) -> None:
        with self._lock:
            if self._stopped:
                return  # asked to stop before leadership arrived: never start
            restored = self.service.rebuild()
            self.controller.start()
            self.status.start()
            self.nodes.start()
            self._started = True
        log.info("manager serving", extra=fields(restored_allocations=restored))

    def stop(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Safe at any point, also while start() is still running in another thread. Takes at
        most about ``timeout`` seconds: every thread is a daemon, so one that does not finish in
        time (a slow API call) ends with the process instead of holding it up."""
        deadline = time.monotonic() + timeout
        self._stopped = True  # a start() that has not begun will not begin
        if not self._lock.acquire(timeout=timeout):
            log.warning("start-up still running at shutdown; not waiting for it")
            return
        try:
            if self._started:
                self.controller.stop(timeout=_left(deadline))
                self.status.stop(timeout=_left(deadline))
                self.nodes.stop(timeout=_left(deadline))
        finally:
            self._lock.release()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level)
    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"hybridnet-manager: {exc}", file=sys.stderr)
        return 1
    registry = new_registry()
    leader_gauge = Gauge(
        "hybridnet_manager_leader", "1 while this replica leads.", registry=registry
    )
    server = serve_metrics(registry, args.metrics_address)
    try:
        webhook = start_webhook(store, args) if args.webhook_address else None
    except (OSError, StoreError) as exc:
        print(f"hybridnet-manager: cannot start the webhook: {exc}", file=sys.stderr)
        return 1
    manager = Manager(store, args, registry)
    done = threading.Event()
    exit_code = 0

    def lead() -> None:
        leader_gauge.set(1)
        threading.Thread(target=serve, name="manager-start", daemon=True).start()

    def serve() -> None:
        nonlocal exit_code
        try:
            manager.start()
        except (StoreError, TimeoutError) as exc:
            log.error("manager could not start", extra=fields(error=str(exc)))
            exit_code = 1
            done.set()

    def lost() -> None:
        nonlocal exit_code
        leader_gauge.set(0)
        if not done.is_set():
            log.error("lost leadership; exiting so a fresh standby takes over")
            exit_code = 1
            done.set()

    elector = None
    if args.leader_elect:
        elector = LeaderElector(
            store,
            namespace=args.namespace,
            name=LEASE_NAME,
            identity=args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            on_started_leading=lead,
            on_stopped_leading=lost,
        ).start()
        log.info("waiting for leadership", extra=fields(identity=args.identity))
    else:
        lead()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    log.info("stopping")
    stopping = time.monotonic()
    if elector is not None:
        elector.stop(release=exit_code == 0)
    manager.stop()
    _stop_serving(webhook, server)
    store.close()
    log.info("stopped", extra=fields(seconds=round(time.monotonic() - stopping, 3)))
    return exit_code


def _stop_serving(webhook: WebhookServer | None, metrics: MetricsServer | None) -> None:
    if webhook is not None:
        webhook.stop()
    if metrics is not None:
        metrics.stop()


if __name__ == "__main__":
    sys.exit(main())
