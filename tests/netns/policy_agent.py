"""The far ends of the NetworkPolicy probe matrix, run inside pod (and node) namespaces.

Standard library only, started by file path under ``ip netns exec``:

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
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
