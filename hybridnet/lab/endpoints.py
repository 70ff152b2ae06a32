"""The far ends of the lab's traffic, run in namespaces as ``python -m hybridnet.lab.endpoints``.

A TCP echo server that prefixes each reply with the address it saw the client come from, its
client, and a sniffer that prints the first matching packet as JSON. Started by
:mod:`hybridnet.lab.traffic`; standard library only, except the sniffer (scapy, imported only
when it runs).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any


def _serve_tcp_echo(address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(16)
        print("ready", flush=True)
        while True:
            conn, peer = listener.accept()
            with conn:
                data = conn.recv(65536)
                conn.sendall(f"{peer[0]} ".encode() + data)


def _send_tcp(address: str, port: int, payload: str) -> None:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(payload.encode())
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    print(reply.decode(), flush=True)


def _sniff(ifname: str, protocol: str, timeout: float) -> None:
    # Imported here, in the child only: only the sniffer pays for scapy's slow import
    # (~170 ms), and the lab's other children start without it.
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: PLC0415
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6  # noqa: PLC0415
    from scapy.sendrecv import sniff  # noqa: PLC0415

    def matches(packet: Any) -> bool:
        if protocol == "icmp":
            return bool(packet.haslayer(ICMP) and packet[ICMP].type == 8) or bool(
                packet.haslayer(ICMPv6EchoRequest)
            )
        return bool(packet.haslayer({"tcp": TCP, "udp": UDP}[protocol]))

    found = sniff(
        iface=ifname,
        lfilter=matches,
        count=1,
        timeout=timeout,
        store=True,
        started_callback=lambda: print("ready", flush=True),
    )
    if not found:
        print(f"no {protocol} packet on {ifname} within {timeout}s", file=sys.stderr, flush=True)
        sys.exit(1)
    layer = IP if found[0].haslayer(IP) else IPv6
    packet = found[0][layer]
    print(json.dumps({"source": packet.src, "destination": packet.dst, "protocol": protocol}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="endpoints", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("tcp-echo-server")
    server.add_argument("address")
    server.add_argument("port", type=int)
    send = commands.add_parser("tcp-send")
    send.add_argument("address")
    send.add_argument("port", type=int)
    send.add_argument("payload")
    sniffer = commands.add_parser("sniff")
    sniffer.add_argument("ifname")
    sniffer.add_argument("protocol", choices=["icmp", "tcp", "udp"])
    sniffer.add_argument("timeout", type=float)
    args = parser.parse_args(argv)

    if args.command == "tcp-echo-server":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _serve_tcp_echo(args.address, args.port)
    elif args.command == "tcp-send":
        _send_tcp(args.address, args.port, args.payload)
    elif args.command == "sniff":
        _sniff(args.ifname, args.protocol, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
