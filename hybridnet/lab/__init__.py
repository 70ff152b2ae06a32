"""The lab: throwaway hosts in network namespaces on the real kernel, and traffic between them.

``make demo``, the netns and cluster test tiers and the benchmarks all build their world here;
the next step grows it into a multi-node virtual cluster. This package face hands on the
network-namespace lab; the harnesses that drive hybridnet's components in it are imported from
their own modules: :mod:`hybridnet.lab.cni_runtime` (a container runtime's side of CNI),
:mod:`hybridnet.lab.daemon` (the node daemon in a node namespace) and
:mod:`hybridnet.lab.manager` (kubelet and the scheduler, for the manager).

Nothing in hybridnet imports the lab; the lab uses only the package's runtime dependencies.
"""

from hybridnet.lab.errors import TestbedError
from hybridnet.lab.fabric import FABRIC_V4, FABRIC_V6, Fabric, Node, NodeAddresses
from hybridnet.lab.netns import (
    PREFIX_ROOT,
    Namespace,
    TestbedRun,
    connect,
    create_namespace,
    delete_namespace,
    ip,
    list_namespaces,
    remove_stale_runs,
    root_links,
    testbed_run,
)
from hybridnet.lab.processes import Process, run
from hybridnet.lab.sweep import leftovers, remove_leftovers
from hybridnet.lab.traffic import (
    CapturedPacket,
    EchoReply,
    capture_source,
    ping,
    start_tcp_echo_server,
    tcp_echo,
)

__all__ = [
    "FABRIC_V4",
    "FABRIC_V6",
    "PREFIX_ROOT",
    "CapturedPacket",
    "EchoReply",
    "Fabric",
    "Namespace",
    "Node",
    "NodeAddresses",
    "Process",
    "TestbedError",
    "TestbedRun",
    "capture_source",
    "connect",
    "create_namespace",
    "delete_namespace",
    "ip",
    "leftovers",
    "list_namespaces",
    "ping",
    "remove_leftovers",
    "remove_stale_runs",
    "root_links",
    "run",
    "start_tcp_echo_server",
    "tcp_echo",
    "testbed_run",
]
