"""``hybridnet-daemon``: serve CNI requests for one node; ``install`` puts the plugin in place.

Kubelet execs ``hybridnet-daemon probe`` twice every ten seconds on each node (hybridnet.daemon.
probe), so importing this module stays light: what only serving needs (grpcio, the datapath,
the store clients, prometheus) is imported by :func:`serve_node` when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hybridnet import logs
from hybridnet.api import constants
from hybridnet.daemon import bundle, probe
from hybridnet.daemon import install as installer
from hybridnet.daemon.datapath.config import (
    VXLAN_DEFAULT_PORT,
    ConfigError,
    NodeConfig,
    RoutingNumbers,
)
from hybridnet.daemon.worker import DEFAULT_RESYNC_PERIOD
from hybridnet.store.errors import StoreError

if TYPE_CHECKING:
    from hybridnet.store.interface import Store

DEFAULT_SOCKET = Path("/run/hybridnet/daemon.sock")


MIN_MTU, MAX_MTU = 68, 65535
"""What the plugin's configuration accepts (hybridnet.cni.config) and the kernel allows."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybridnet-daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, default=DEFAULT_SOCKET)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("serve", help="serve CNI requests (the default)")
    install = commands.add_parser("install", help="install the plugin and its conflist")
    install.add_argument("--cni-bin-dir", type=Path, default=Path("/opt/cni/bin"))
    install.add_argument("--cni-conf-dir", type=Path, default=Path("/etc/cni/net.d"))
    install.add_argument("--mtu", type=int)
    install.add_argument(
        "--python",
        default=bundle.default_interpreter(),
        help="the interpreter the plugin runs under on the node (default: %(default)s, which is"
        " $HYBRIDNET_PLUGIN_PYTHON if set, else this interpreter)",
    )
    check = commands.add_parser(
        "probe", help="exit 0 if the daemon on --socket serves (for Kubernetes exec probes)"
    )
    check.add_argument(
        "--ready", action="store_true", help="also require the daemon's caches to be current"
    )
    check.add_argument("--timeout", type=float, default=3.0)
    for sub in (parser, run):
        sub.add_argument("--node-name")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster credentials)")
        where.add_argument("--store", help="embedded SQLite store file instead of Kubernetes")
        sub.add_argument(
            "--network",
            help="embedded store: the network of pods whose Pod object (if any) names no "
            "network or network type",
        )
        sub.add_argument(
            "--ip-family",
            default="IPv4",
            choices=["IPv4", "IPv6", "DualStack"],
            help="embedded store: the address families of pods that do not say",
        )
        sub.add_argument("--ipam-namespace", default=constants.INSTALL_NAMESPACE)
        sub.add_argument("--allocation-timeout", type=float, default=30.0)
        sub.add_argument(
            "--bgp-announce-timeout",
            type=float,
            default=20.0,
            help="how long ADD of a BGP pod waits for the manager to announce its route (with "
            "--allocation-timeout, within the plugin's 60 s per call)",
        )
        sub.add_argument("--mtu-default", type=int, default=1500)
        sub.add_argument(
            "--metrics-address",
            default="",
            help="host:port for /metrics (CNI latency, datapath reconciles)",
        )
        _add_datapath_flags(sub)
    args = parser.parse_args(argv)
    mtu_flag, mtu = (
        ("--mtu", args.mtu) if args.command == "install" else ("--mtu-default", args.mtu_default)
    )
    if mtu is not None and not MIN_MTU <= mtu <= MAX_MTU:
        parser.error(f"{mtu_flag} {mtu}: an MTU from {MIN_MTU} to {MAX_MTU}")
    if args.command in (None, "serve"):
        for flag in ("allocation_timeout", "bgp_announce_timeout"):
            if not getattr(args, flag) > 0:
                name = flag.replace("_", "-")
                parser.error(f"--{name} {getattr(args, flag)}: must be above 0 seconds")
        if args.metrics_address:
            from hybridnet.metrics import parse_address  # noqa: PLC0415 - serving only

            try:
                parse_address(args.metrics_address)
            except ValueError as exc:
                parser.error(f"--metrics-address: {exc}")
        if not args.node_name:
            parser.error("--node-name is required")
        if args.network and not args.store:
            parser.error("--network is for the embedded store (--store)")
        if not args.resync_period > 0:
            parser.error(f"--resync-period {args.resync_period}: must be above 0 seconds")
        try:
            args.node_config = node_config(args)
        except ConfigError as exc:
            parser.error(f"datapath: {exc}")
    return args


def _add_datapath_flags(parser: argparse.ArgumentParser) -> None:
    datapath = parser.add_argument_group("node datapath")
    datapath.add_argument(
        "--vtep-interface", help="the interface VXLAN leaves by (overlay networks)"
    )
    datapath.add_argument(
        "--vtep-address", help="the local VTEP address (default: the first of --vtep-interface)"
    )
    datapath.add_argument("--underlay-interface", help="the parent of underlay VLAN sub-interfaces")
    datapath.add_argument("--vxlan-port", type=int, default=VXLAN_DEFAULT_PORT)
    datapath.add_argument(
        "--resync-period",
        type=float,
        default=DEFAULT_RESYNC_PERIOD,
        help="seconds between full reconciles without any change; bounds how long a route, "
        "rule, FDB or neighbour entry deleted behind the daemon's back stays missing "
        "(default %(default)s)",
    )
    for flag, default in _TABLE_FLAGS:
        datapath.add_argument(f"--{flag}", type=int, default=default)


_TABLE_FLAGS = tuple(
    (field.name.replace("_", "-"), field.default) for field in dataclasses.fields(RoutingNumbers)
)
"""--local-pod-table, --overlay-table, ..., --route-protocol: RoutingNumbers, field for field."""


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The node datapath's settings from the flags; ConfigError names what is wrong."""
    numbers = RoutingNumbers(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(RoutingNumbers)}
    )
    return NodeConfig(
        underlay_interface=args.underlay_interface,
        vtep_interface=args.vtep_interface,
        vtep_address=args.vtep_address,
        vxlan_port=args.vxlan_port,
        numbers=numbers,
    )


def open_store(args: argparse.Namespace) -> Store:
    if args.store:
        from hybridnet.store.sqlite import SQLiteStore  # noqa: PLC0415 - serving only

        return SQLiteStore(args.store)
    from hybridnet.store.kube import KubeStore  # noqa: PLC0415 - serving only

    return KubeStore.from_kubeconfig(args.kubeconfig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level)
    if args.command == "probe":
        why = probe.problem(args.socket, args.timeout, args.ready)
        if why is not None:
            print(f"hybridnet-daemon probe: {why}", file=sys.stderr)
            return 1
        return 0
    if args.command == "install":
        try:
            plugin, conf_path = installer.install(
                args.python,
                args.cni_bin_dir,
                args.cni_conf_dir,
                args.socket,
                args.mtu,
            )
        except (OSError, ValueError) as exc:
            print(f"hybridnet-daemon install: {exc}", file=sys.stderr)
            return 1
        print(f"installed {plugin} and {conf_path}")
        return 0
    return serve_node(args)


def serve_node(args: argparse.Namespace) -> int:
    """Serve CNI requests until a signal (the default command)."""
    import threading  # noqa: PLC0415 - the imports below are serving's only (module docstring)

    from hybridnet.daemon.attachment import DatapathConfig  # noqa: PLC0415
    from hybridnet.daemon.server import serve  # noqa: PLC0415
    from hybridnet.daemon.service import DaemonConfig, DaemonService  # noqa: PLC0415
    from hybridnet.metrics import MetricsError, new_registry, serve_metrics  # noqa: PLC0415
    from hybridnet.shutdown import set_on_signal, wait_for  # noqa: PLC0415

    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"hybridnet-daemon: {exc}", file=sys.stderr)
        return 1
    config = DaemonConfig(
        node_name=args.node_name,
        ipam_namespace=args.ipam_namespace,
        allocation_timeout=args.allocation_timeout,
        announce_timeout=args.bgp_announce_timeout,
        default_mtu=args.mtu_default,
        embedded=args.store is not None,
        embedded_network=args.network,
        embedded_ip_family=args.ip_family,
        node=args.node_config,
        resync_period=args.resync_period,
        datapath=DatapathConfig(
            local_pod_table=args.node_config.numbers.local_pod_table,
            local_pod_rule_priority=args.node_config.numbers.local_pod_priority,
        ),
    )
    registry = new_registry()
    try:
        metrics = serve_metrics(registry, args.metrics_address)
    except MetricsError as exc:
        print(f"hybridnet-daemon: {exc}", file=sys.stderr)
        store.close()
        return 1
    service = DaemonService(store, config, registry).start()
    server = serve(service, args.socket)
    done = threading.Event()
    set_on_signal(done)
    wait_for(done)
    server.stop(grace=5).wait()
    service.stop()
    if metrics is not None:
        metrics.stop()
    store.close()  # wakes the informers' watches: they end now, not at a re-check
    service.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
