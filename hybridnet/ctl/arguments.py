"""The command line: global options (accepted before or after the command, as kubectl's),
command groups, their verbs and flags, each verb tied to the function that runs it.

Errors in the command line itself print one line and exit 2, like every other error of the
tool, instead of argparse's usage block.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from hybridnet.api import constants as c
from hybridnet.ctl import (
    addresses,
    completion,
    diagnose,
    ipam,
    migrate,
    networks,
    policy,
    subnets,
)
from hybridnet.ctl.errors import EXIT_USAGE
from hybridnet.ctl.output import FORMATS
from hybridnet.ctl.values import bgp_peer, key_value, one_of, seconds

DEFAULT_IPAM_NAMESPACE = c.INSTALL_NAMESPACE
DEFAULT_SOCKET = "/run/hybridnet/daemon.sock"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _global_options(parser: argparse.ArgumentParser, *, leaf: bool) -> None:
    """On the top parser with their defaults; on each verb again without (SUPPRESS), so a
    value given after the command is taken and one given before is not overwritten."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if leaf else value

    group = parser.add_argument_group("where to connect")
    group.add_argument(
        "--kubeconfig", metavar="FILE", default=default(None),
        help="kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config)",
    )  # fmt: skip
    group.add_argument(
        "--context", metavar="NAME", default=default(None), help="the kubeconfig's context to use"
    )
    group.add_argument(
        "--store", metavar="FILE", dest="store_file", default=default(None),
        help="the embedded SQLite store instead of a cluster (the daemons' --store)",
    )  # fmt: skip
    group.add_argument(
        "--ipam-namespace", metavar="NS", default=default(DEFAULT_IPAM_NAMESPACE),
        help=f"where the IPInstances are (the manager's --namespace; {DEFAULT_IPAM_NAMESPACE})",
    )  # fmt: skip


Handler = Callable[..., int]


class Builder:
    """Adds verbs under groups, each with the global options and its handler."""

    def __init__(self, prog: str):
        self.root = Parser(
            prog=prog,
            description="Operate hybridnet: networks, subnets, addresses, the IPAM audit, "
            "node diagnosis, NetworkPolicy explanations, moving over from alibaba/hybridnet.",
        )
        _global_options(self.root, leaf=False)
        self.groups = self.root.add_subparsers(dest="group", metavar="COMMAND", required=True)
        self._verbs: dict[str, argparse._SubParsersAction[Parser]] = {}

    def group(self, name: str, help_text: str) -> None:
        parser = self.groups.add_parser(name, help=help_text, description=help_text)
        self._verbs[name] = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(
        self, group: str, name: str, handler: Handler, help_text: str, *, reads: bool = False
    ) -> argparse.ArgumentParser:
        parser = self._verbs[group].add_parser(name, help=help_text, description=help_text)
        _global_options(parser, leaf=True)
        parser.set_defaults(handler=handler)
        if reads:
            output_option(parser)
        return parser


def output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", type=one_of(FORMATS), default="table", metavar="|".join(FORMATS),
        help="table (default), wide (more columns), json or yaml (every field)",
    )  # fmt: skip


def _network_verbs(build: Builder) -> None:
    build.group("network", "Networks: create, list, get, delete")
    create = build.verb("network", "create", networks.create, "Create a Network")
    create.add_argument("name")
    create.add_argument(
        "--type", type=one_of(tuple(c.MODES_BY_TYPE)), default=c.TYPE_UNDERLAY,
        help="Underlay (default), Overlay or GlobalBGP",
    )  # fmt: skip
    modes = sorted({m for ms in c.MODES_BY_TYPE.values() for m in ms})
    create.add_argument(
        "--mode", type=one_of(modes), help="VLAN or BGP (Underlay), VXLAN (Overlay); default "
        "the type's first",
    )  # fmt: skip
    create.add_argument(
        "--net-id", type=int, metavar="N", help="VLAN id (VLAN), VNI (VXLAN) or AS number (BGP)"
    )
    create.add_argument(
        "--node-selector", type=key_value, action="append", metavar="KEY=VALUE",
        help="a node label an Underlay network's nodes carry (repeat for more)",
    )  # fmt: skip
    create.add_argument(
        "--bgp-peer", type=bgp_peer, action="append",
        metavar="address=IP,asn=N[,password=P,hold-time=S,graceful-restart-seconds=S]",
        help="a BGP peer of a BGP-mode network (repeat for more)",
    )  # fmt: skip
    create.add_argument("--dry-run", action="store_true", help="validate only; create nothing")
    build.verb("network", "list", networks.list_, "List Networks with usage", reads=True)
    get = build.verb("network", "get", networks.get, "Show one Network", reads=True)
    get.add_argument("name")
    delete = build.verb("network", "delete", networks.delete, "Delete a Network without subnets")
    delete.add_argument("name")


def _subnet_verbs(build: Builder) -> None:
    build.group("subnet", "Subnets: create, list, get, delete")
    create = build.verb("subnet", "create", subnets.create, "Create a Subnet")
    create.add_argument("name")
    create.add_argument("--network", required=True, help="the Network it belongs to")
    create.add_argument("--cidr", required=True, help="e.g. 198.19.0.0/24 or 2001:db8::/64")
    create.add_argument("--gateway", metavar="IP")
    create.add_argument("--start", metavar="IP", help="first allocatable address")
    create.add_argument("--end", metavar="IP", help="last allocatable address")
    create.add_argument(
        "--reserved", action="append", metavar="IP[,IP]",
        help="addresses given only to pods that ask for them (repeat or comma-separate)",
    )  # fmt: skip
    create.add_argument(
        "--exclude", action="append", metavar="IP[,IP]", help="addresses never allocated"
    )
    create.add_argument(
        "--private", action="store_true", help="only pods that name the subnet get addresses"
    )
    create.add_argument(
        "--auto-nat-outgoing", action="store_true",
        help="masquerade traffic leaving the cluster (overlay)",
    )  # fmt: skip
    create.add_argument("--net-id", type=int, metavar="N", help="VLAN id overriding the network's")
    create.add_argument("--gateway-type", metavar="TYPE")
    create.add_argument("--gateway-node", metavar="NODE")
    create.add_argument("--allow-subnet", action="append", metavar="CIDR")
    create.add_argument("--dry-run", action="store_true", help="validate only; create nothing")
    listed = build.verb("subnet", "list", subnets.list_, "List Subnets with usage", reads=True)
    listed.add_argument("--network", help="only this network's")
    get = build.verb("subnet", "get", subnets.get, "Show one Subnet", reads=True)
    get.add_argument("name")
    delete = build.verb("subnet", "delete", subnets.delete, "Delete a Subnet no pod uses")
    delete.add_argument("name")


def _ip_verbs(build: Builder) -> None:
    build.group("ip", "Addresses: who holds what")
    listed = build.verb("ip", "list", addresses.list_, "List allocated addresses", reads=True)
    listed.add_argument("--network")
    listed.add_argument("--subnet")
    listed.add_argument("--node")
    listed.add_argument("--namespace", help="the pods' namespace")
    get = build.verb(
        "ip", "get", addresses.get, "Who holds an address, or why nobody does", reads=True
    )
    get.add_argument("address")


def _ipam_verbs(build: Builder) -> None:
    build.group("ipam", "The IPAM audit: leaks, orphans, duplicates, counters")
    check = build.verb(
        "ipam", "check", ipam.check, "Report what is wrong with the allocations (read only; "
        "exit 3 when anything is)", reads=True,
    )  # fmt: skip
    check.add_argument(
        "--socket", metavar="PATH",
        help="daemon socket to compare attachments with; {node} stands for each node's name "
        "(default: daemons are not asked)",
    )  # fmt: skip
    check.add_argument(
        "--settle", type=seconds, default=ipam.SETTLE_SECONDS, metavar="SECONDS",
        help="when the first reading finds problems, read again this much later and report "
        "only those found both times (a pod being released, a counter about to be written); "
        f"0 reports the first reading (default {ipam.SETTLE_SECONDS:g})",
    )  # fmt: skip
    gc = build.verb("ipam", "gc", ipam.gc, "Free leaked addresses", reads=True)
    gc.add_argument("--dry-run", action="store_true", help="show what would be freed, free nothing")


def _node_verbs(build: Builder) -> None:
    build.group("node", "Nodes: diagnosis of the datapath")
    diagnosis = build.verb(
        "node", "diagnose", diagnose.run, "Desired vs actual datapath of a node, from its "
        "daemon (exit 3 when they differ)", reads=True,
    )  # fmt: skip
    diagnosis.add_argument("node")
    diagnosis.add_argument(
        "--socket", metavar="PATH", default=DEFAULT_SOCKET,
        help=f"the node daemon's socket ({DEFAULT_SOCKET}); {{node}} stands for NODE",
    )  # fmt: skip


def _policy_verbs(build: Builder) -> None:
    build.group("policy", "NetworkPolicy: which policies allow or deny a flow, and why")
    explaining = build.verb(
        "policy", "explain", policy.explain, "Would a new connection from pod A to pod B on "
        "PORT pass? Each side's isolating policies and allowing rules (exit 3 when denied)",
        reads=True,
    )  # fmt: skip
    explaining.add_argument("source", metavar="POD_A", help="NAME or NAMESPACE/NAME")
    explaining.add_argument("destination", metavar="POD_B", help="NAME or NAMESPACE/NAME")
    explaining.add_argument("port", metavar="PORT[/PROTO]", help="e.g. 80, 53/UDP, 9000/SCTP")
    explaining.add_argument(
        "-n", "--namespace", default="default", help="namespace of pods given by NAME (default)"
    )
    explaining.add_argument(
        "--family", type=int, choices=(4, 6), help="IP version to ask about (default: IPv4 "
        "when both pods have it, else IPv6)",
    )  # fmt: skip


def build_parser(prog: str = "hybridnet-ctl") -> Parser:
    build = Builder(prog)
    _network_verbs(build)
    _subnet_verbs(build)
    _ip_verbs(build)
    _ipam_verbs(build)
    _node_verbs(build)
    _policy_verbs(build)
    build.group("migrate", "Move over from a cluster run by alibaba/hybridnet")
    moving = build.verb(
        "migrate", "from-reference", migrate.run, "Write the reference's IPInstances (in the "
        "pods' namespaces) in this project's layout; idempotent", reads=True,
    )  # fmt: skip
    moving.add_argument("--dry-run", action="store_true", help="show what would be written")
    shell = build.groups.add_parser(
        "completion", help="Print a shell completion script (bash or zsh)"
    )
    shell.add_argument("shell", type=one_of(("bash", "zsh")))
    shell.set_defaults(handler=completion.run)
    return build.root


def prog_name(argv0: str | None = None) -> str:
    """``kubectl hybridnet`` when run as the kubectl plugin, ``hybridnet-ctl`` otherwise."""
    name = (argv0 or sys.argv[0]).rsplit("/", 1)[-1]
    return "kubectl hybridnet" if name.startswith("kubectl-hybridnet") else "hybridnet-ctl"


def parse(argv: Sequence[str], prog: str) -> argparse.Namespace:
    return build_parser(prog).parse_args(list(argv))
