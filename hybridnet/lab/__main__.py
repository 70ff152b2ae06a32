"""``python -m hybridnet.lab leftovers|clean|demo``: the lab's commands for people and CI.

``leftovers`` lists namespaces and root-namespace links that dead runs left on the machine
(exit 1 if any; ``make test`` ends with it), ``clean`` removes those of runs that are no longer
alive (``make clean-testbed``), ``demo`` builds a fabric with two nodes and shows it carries
traffic.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hybridnet.lab.fabric import Fabric
from hybridnet.lab.netns import leftovers, remove_stale_runs, testbed_run
from hybridnet.lab.traffic import ping


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybridnet.lab", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="build a fabric with two nodes, show it carries traffic")
    commands.add_parser("leftovers", help="list namespaces/links of ours; exit 1 if any")
    commands.add_parser("clean", help="remove leftovers of runs that are no longer alive")
    args = parser.parse_args(argv)

    if args.command == "demo":
        return _demo()
    if args.command == "leftovers":
        found = leftovers()
        print("\n".join(found) if found else "no leftovers")
        return 1 if found else 0
    for name in remove_stale_runs():
        print(f"removed {name}")
    return 0


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
