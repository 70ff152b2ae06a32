"""``python -m hybridnet.lab leftovers|clean|demo|cluster``: the lab's commands for people and CI.

``leftovers`` lists namespaces, root-namespace links and real-cluster node cgroup trees that
dead runs left on the machine (exit 1 if any; ``make test`` ends with it), ``clean`` removes
those of runs that are no longer alive (``make clean-testbed``), ``demo`` builds a fabric
with two nodes and shows it carries traffic, ``cluster up|status|down`` keeps a virtual
hybridnet cluster running between commands (:mod:`hybridnet.lab.cluster_command`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hybridnet.lab import cluster_command
from hybridnet.lab.cluster import ClusterConfig
from hybridnet.lab.fabric import Fabric
from hybridnet.lab.netns import testbed_run
from hybridnet.lab.sweep import leftovers, remove_leftovers
from hybridnet.lab.traffic import ping


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybridnet.lab", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="build a fabric with two nodes, show it carries traffic")
    commands.add_parser(
        "leftovers", help="list namespaces/links/cgroup trees of ours; exit 1 if any"
    )
    commands.add_parser("clean", help="remove leftovers of runs that are no longer alive")
    _add_cluster_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "demo":
        return _demo()
    if args.command == "cluster":
        return _cluster(args)
    if args.command == "leftovers":
        found = leftovers()
        print("\n".join(found) if found else "no leftovers")
        return 1 if found else 0
    for name in remove_leftovers():
        print(f"removed {name}")
    return 0


def _add_cluster_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser("cluster", help="a virtual hybridnet cluster: up, status, down")
    actions = cluster.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="build a cluster and leave it running")
    up.add_argument("--nodes", type=int, default=ClusterConfig.nodes, help="(default %(default)s)")
    up.add_argument("--no-nat", action="store_true", help="overlay subnets without autoNatOutgoing")
    up.add_argument("--no-pods", action="store_true", help="no pods, only nodes and networks")
    actions.add_parser("status", help="tables of nodes, networks and pods")
    actions.add_parser("down", help="remove the cluster and its state directory")
    for action in actions.choices.values():
        action.add_argument(
            "--dir",
            type=Path,
            default=cluster_command.DEFAULT_DIR,
            help="the cluster's state directory (default %(default)s; env HYBRIDNET_CLUSTER_DIR)",
        )


def _cluster(args: argparse.Namespace) -> int:
    if args.action == "up":
        if not 1 <= args.nodes <= 50:
            print("--nodes: from 1 to 50", file=sys.stderr)
            return 2
        config = ClusterConfig(nodes=args.nodes, overlay_nat=not args.no_nat)
        return cluster_command.up(args.dir, config, pods=not args.no_pods)
    if args.action == "status":
        return cluster_command.status(args.dir)
    return cluster_command.down(args.dir)


def _demo() -> int:
    """Build the bed's standard topology, show it and its traffic, and take it down again."""
    with testbed_run() as bed:
        fabric = Fabric(bed)
        try:
            for _ in range(2):
                fabric.add_node()
            print(
                f"fabric switch {fabric.switch.name}, gateway {fabric.gateway.name} "
                f"({fabric.gateway_ipv4}, {fabric.gateway_ipv6})"
            )
            for node in fabric.nodes:
                print(f"node {node.name}: eth0 {', '.join(node.addresses('eth0'))}")
            first, second = fabric.nodes
            failures = 0
            for address in (second.ipv4, second.ipv6, fabric.gateway_ipv4):
                ok = ping(first, address)
                failures += not ok
                print(f"ping {first.name} -> {address}: {'ok' if ok else 'FAILED'}")
        finally:
            fabric.teardown()
    print("torn down; leftovers:", ", ".join(leftovers()) or "none")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
