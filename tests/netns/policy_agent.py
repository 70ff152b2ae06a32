"""The far ends of the NetworkPolicy probe matrix, run inside pod (and node) namespaces.

Standard library only (but for ``sctp-init``), started by file path under ``ip netns exec``:

``serve [--bind ADDRESS]... PORT...``
    TCP and UDP servers on ``::`` (IPv4 and IPv6), or on each ``--bind`` address, at every
    port (a host with several addresses binds each: a UDP answer then leaves from the address
    the probe went to, not the one routing prefers, which the prober would not accept and
    conntrack would take for a flow of its own). Each connection or datagram
    carries a token; the server prints ``{"proto", "port", "peer", "token"}`` as a JSON line
    when one arrives and answers ``ok TOKEN``. A TCP connection then echoes ``tick N`` lines
    as ``tock N`` for as long as the client keeps it (the established-connection case).
``probe``
    Reads ``[{"id", "address", "port", "proto", "timeout", "source_port"}, ...]`` on stdin,
    tries them all at once (one thread each) and prints ``{"ID": "ok" | "timeout" | ...}``.
    A UDP probe sends from ``source_port``: the caller picks one no earlier probe of the same
    pair used, so no conntrack entry of an earlier, allowed probe (UDP entries live for
    minutes) can let it through as a reply.
``hold ADDRESS PORT TOKEN``
    Opens one TCP connection, then sends ``tick N`` every 50 ms and prints each ``tock N``
    it gets back; prints ``broken: ...`` and exits when the connection stops answering.
``sctp-init ADDRESS PORT TAG``
    Sends one SCTP INIT chunk (initiate tag ``TAG``, source port ``TAG % 50000 + 10000``) to
    ADDRESS:PORT through a raw IP socket: the packet an SCTP client's ``connect`` sends first,
    for kernels without SCTP sockets (the chunk is built with scapy, the one import here
    outside the standard library, and only by this command).
``sctp-sniff IFNAME``
    Prints ``ready``, then a JSON line ``{"proto": "sctp", "port", "peer", "token"}`` (the
    token: the initiate tag) for every SCTP INIT arriving on IFNAME, read by an ``AF_PACKET``
    socket (so it sees the packet whether or not the kernel has an SCTP stack to take it).
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import socket
import sys
import threading
import time
from typing import Any

IPPROTO_SCTP = 132
SCTP_INIT = 1
ETH_P_ALL = 0x0003
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
HOLD_INTERVAL = 0.05
HOLD_REPLY_TIMEOUT = 2.0
UDP_RESEND = 0.1

_print_lock = threading.Lock()


def _emit(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def _peer(address: str) -> str:
    return address.removeprefix("::ffff:")


def _listening(kind: int, address: str) -> socket.socket:
    sock = socket.socket(_family(address), kind)
    if address == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def _serve_tcp(listener: socket.socket, port: int) -> None:
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=_tcp_session, args=(conn, peer, port), daemon=True).start()


def _tcp_session(conn: socket.socket, peer: Any, port: int) -> None:
    with conn, conn.makefile("rwb") as stream:
        conn.settimeout(30)
        try:
            token = stream.readline().decode().strip()
            _emit(
                json.dumps({"proto": "tcp", "port": port, "peer": _peer(peer[0]), "token": token})
            )
            stream.write(f"ok {token}\n".encode())
            stream.flush()
            while line := stream.readline():
                stream.write(line.replace(b"tick", b"tock"))
                stream.flush()
        except OSError:
            return


def _serve_udp(sock: socket.socket, port: int) -> None:
    while True:
        data, peer = sock.recvfrom(2048)
        token = data.decode(errors="replace").strip()
        _emit(json.dumps({"proto": "udp", "port": port, "peer": _peer(peer[0]), "token": token}))
        sock.sendto(f"ok {token}".encode(), peer)


def serve(addresses: list[str], ports: list[int]) -> None:
    threads = []
    for address in addresses:
        for port in ports:
            listener = _listening(socket.SOCK_STREAM, address)
            listener.bind((address, port))
            listener.listen(128)
            datagrams = _listening(socket.SOCK_DGRAM, address)
            datagrams.bind((address, port))
            for target, sock in ((_serve_tcp, listener), (_serve_udp, datagrams)):
                threads.append(threading.Thread(target=target, args=(sock, port), daemon=True))
    for thread in threads:
        thread.start()
    _emit("ready")
    threading.Event().wait()


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _outcome(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
        return "unreachable"
    return f"error: {exc}"


def _tcp_probe(address: str, port: int, token: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            conn.sendall(f"{token}\n".encode())
            reply = conn.makefile("rb").readline().decode().strip()
    except OSError as exc:
        return _outcome(exc)
    return "ok" if reply == f"ok {token}" else f"wrong reply {reply!r}"


def _udp_probe(address: str, port: int, token: str, timeout: float, source_port: int) -> str:
    deadline = time.monotonic() + timeout
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if ":" in address else "0.0.0.0", source_port))  # noqa: S104
            sock.connect((address, port))
            while (remaining := deadline - time.monotonic()) > 0:
                sock.send(token.encode())
                sock.settimeout(min(UDP_RESEND, remaining))
                try:
                    reply = sock.recv(2048).decode(errors="replace")
                except TimeoutError:
                    continue
                return "ok" if reply == f"ok {token}" else f"wrong reply {reply!r}"
        except OSError as exc:
            return _outcome(exc)
    return "timeout"


def probe(requests: list[dict[str, Any]]) -> dict[str, str]:
    results: dict[str, str] = {}

    def one(request: dict[str, Any]) -> None:
        address, port, timeout = request["address"], int(request["port"]), request["timeout"]
        token = request["id"]
        if request["proto"] == "tcp":
            results[token] = _tcp_probe(address, port, token, float(timeout))
        else:
            source = int(request["source_port"])
            results[token] = _udp_probe(address, port, token, float(timeout), source)

    threads = [threading.Thread(target=one, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def hold(address: str, port: int, token: str) -> int:
    try:
        conn = socket.create_connection((address, port), timeout=HOLD_REPLY_TIMEOUT)
    except OSError as exc:
        _emit(f"broken: {_outcome(exc)}")
        return 1
    with conn, conn.makefile("rwb") as stream:
        conn.settimeout(HOLD_REPLY_TIMEOUT)
        try:
            stream.write(f"{token}\n".encode())
            stream.flush()
            if stream.readline().decode().strip() != f"ok {token}":
                _emit("broken: wrong greeting")
                return 1
            _emit("connected")
            count = 0
            while True:
                count += 1
                stream.write(f"tick {count}\n".encode())
                stream.flush()
                reply = stream.readline().decode().strip()
                if reply != f"tock {count}":
                    _emit(f"broken: reply {reply!r}")
                    return 1
                _emit(reply)
                time.sleep(HOLD_INTERVAL)
        except OSError as exc:
            _emit(f"broken: {_outcome(exc)}")
            return 1


def sctp_init(address: str, port: int, tag: int) -> None:
    from scapy.layers.sctp import SCTP, SCTPChunkInit  # noqa: PLC0415 - only this command

    chunk = SCTPChunkInit(init_tag=tag, a_rwnd=65535, n_out_streams=1, n_in_streams=1,
                          init_tsn=tag)  # fmt: skip
    packet = bytes(SCTP(sport=tag % 50000 + 10000, dport=port) / chunk)
    with socket.socket(_family(address), socket.SOCK_RAW, IPPROTO_SCTP) as sock:
        sock.sendto(packet, (address, 0))


def _sctp_init_of(frame: bytes) -> tuple[str, int, int] | None:
    """(source address, destination port, initiate tag) of an Ethernet frame carrying an
    IPv4 or IPv6 packet whose SCTP packet starts with an INIT chunk; else None."""
    ethertype = int.from_bytes(frame[12:14], "big")
    packet = frame[14:]
    if ethertype == ETHERTYPE_IPV4 and len(packet) >= 20 and packet[9] == IPPROTO_SCTP:
        source = socket.inet_ntop(socket.AF_INET, packet[12:16])
        sctp = packet[(packet[0] & 0x0F) * 4 :]
    elif ethertype == ETHERTYPE_IPV6 and len(packet) >= 40 and packet[6] == IPPROTO_SCTP:
        source = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        sctp = packet[40:]
    else:
        return None
    # common header (12 bytes), then the chunk: type, flags, length, initiate tag
    if len(sctp) < 20 or sctp[12] != SCTP_INIT:
        return None
    return source, int.from_bytes(sctp[2:4], "big"), int.from_bytes(sctp[16:20], "big")


def sctp_sniff(ifname: str) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.bind((ifname, 0))
        _emit("ready")
        while True:
            found = _sctp_init_of(sock.recv(65535))
            if found is not None:
                source, port, tag = found
                _emit(json.dumps({"proto": "sctp", "port": port, "peer": source,
                                  "token": str(tag)}))  # fmt: skip


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    command, *rest = argv
    if command == "serve":
        parser = argparse.ArgumentParser(prog="policy_agent.py serve")
        parser.add_argument("--bind", action="append", default=[])
        parser.add_argument("ports", type=int, nargs="+")
        args = parser.parse_args(rest)
        serve(args.bind or ["::"], args.ports)
    elif command == "probe":
        print(json.dumps(probe(json.load(sys.stdin))), flush=True)
    elif command == "hold":
        return hold(rest[0], int(rest[1]), rest[2])
    elif command == "sctp-init":
        sctp_init(rest[0], int(rest[1]), int(rest[2]))
    elif command == "sctp-sniff":
        sctp_sniff(rest[0])
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
