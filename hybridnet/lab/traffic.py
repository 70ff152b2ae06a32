"""Traffic between the lab's namespaces: ping, a TCP echo, and a look at packets on the wire.

The far ends (the echo server, its client, the sniffer) run as child processes inside the
namespaces: :mod:`hybridnet.lab.endpoints`, started by module name.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

from hybridnet.lab.netns import Namespace
from hybridnet.lab.processes import Process

ENDPOINTS_MODULE = "hybridnet.lab.endpoints"


def ping(namespace: Namespace, address: str, count: int = 3, timeout: float = 10.0) -> bool:
    """True when at least one of ``count`` echo requests from ``namespace`` got a reply."""
    done = namespace.exec(
        ["ping", "-c", str(count), "-i", "0.2", "-W", "1", address],
        check=False,
        timeout=timeout,
    )
    return done.returncode == 0


def _helper_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "utf8", "-m", ENDPOINTS_MODULE, *args]


def start_tcp_echo_server(namespace: Namespace, address: str, port: int) -> Process:
    """Start a TCP echo server in ``namespace``; each reply is prefixed by the peer's address."""
    server = namespace.spawn(_helper_argv("tcp-echo-server", address, str(port)))
    server.wait_for_line("^ready$")
    return server


def tcp_echo(namespace: Namespace, address: str, port: int, payload: str) -> EchoReply:
    """Send ``payload`` from ``namespace`` to an echo server; return what came back."""
    done = namespace.exec(_helper_argv("tcp-send", address, str(port), payload), timeout=15)
    peer, _, echoed = done.stdout.strip().partition(" ")
    return EchoReply(seen_source=peer, payload=echoed)


@dataclasses.dataclass(frozen=True)
class EchoReply:
    seen_source: str
    """The client address as the server's socket saw it (after any NAT)."""
    payload: str


@dataclasses.dataclass(frozen=True)
class CapturedPacket:
    source: str
    destination: str
    protocol: str


def capture_source(
    namespace: Namespace,
    ifname: str,
    protocol: str,
    trigger: Callable[[], object],
    timeout: float = 20.0,
) -> CapturedPacket:
    """Sniff ``ifname`` with scapy, run ``trigger``, and return the first ``protocol`` packet.

    The source address as it arrives on the wire shows whether anything rewrote it (NAT).
    ``protocol`` is ``icmp`` (IPv4 or IPv6 echo request), ``tcp`` or ``udp``.
    """
    sniffer = namespace.spawn(_helper_argv("sniff", ifname, protocol, str(timeout)))
    try:
        sniffer.wait_for_line("^ready$", timeout=timeout)
        trigger()
        line = sniffer.wait_for_line(r"^\{", timeout=timeout)
    finally:
        sniffer.stop()
        namespace.processes.remove(sniffer)
    fields = json.loads(line)
    return CapturedPacket(fields["source"], fields["destination"], fields["protocol"])
