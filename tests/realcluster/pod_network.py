"""Traffic from inside real pods' network namespaces, for the hybridnet tests of this tier.

A pod's network namespace is the one its container runs in: found from the pod's container ID
(the Pod's status) through the node's containerd (``ctr tasks ls`` gives the task's PID), and
entered from the host with ``nsenter --net=/proc/PID/ns/net``. The lab's TCP echo
(:mod:`hybridnet.lab.endpoints`: each reply starts with the client address the server's socket
saw) and iputils' ping run there, so the source address a receiver sees is read at the
receiver, as the pod's own traffic would be seen.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from hack.realcluster.cluster import RealCluster
from hybridnet.lab.processes import Process, run
from hybridnet.lab.traffic import ENDPOINTS_MODULE, EchoReply

ECHO_PORT = 7000


def _endpoint(*args: str) -> list[str]:
    return [sys.executable, "-X", "utf8", "-m", ENDPOINTS_MODULE, *args]


@dataclasses.dataclass(frozen=True)
class PodNet:
    """The network namespace of one running pod: its name, node, address and a task's PID."""

    name: str
    node: str
    ip: str
    pid: int

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *args]

    def exec(self, args: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(self.argv(args), timeout=timeout, check=False)

    def spawn(self, args: Sequence[str]) -> Process:
        return Process(self.argv(args))


def pod_net(cluster: RealCluster, pod: Any) -> PodNet:
    """The :class:`PodNet` of a Running pod (its first container's task)."""
    container_id = str(pod.status.container_statuses[0].container_id).split("://", 1)[-1]
    node = cluster.node(pod.spec.node_name)
    for line in node.ctr("tasks", "ls").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == container_id:
            return PodNet(pod.metadata.name, pod.spec.node_name, pod.status.pod_ip, int(fields[1]))
    raise AssertionError(f"pod {pod.metadata.name}: no task {container_id} on {node.spec.name}")


def start_echo(net: PodNet, port: int = ECHO_PORT) -> Process:
    """The lab's TCP echo server on the pod's address; stopped by the caller."""
    server = net.spawn(_endpoint("tcp-echo-server", net.ip, str(port)))
    server.wait_for_line("^ready$")
    return server


def echo(net: PodNet, address: str, payload: str, port: int = ECHO_PORT) -> EchoReply:
    """Send ``payload`` from the pod to an echo server; the reply says the source it saw."""
    done = net.exec(_endpoint("tcp-send", address, str(port), payload), timeout=30)
    assert done.returncode == 0, f"{net.name} -> {address}:{port}: {done.stdout}{done.stderr}"
    peer, _, echoed = done.stdout.strip().partition(" ")
    return EchoReply(seen_source=peer, payload=echoed)
