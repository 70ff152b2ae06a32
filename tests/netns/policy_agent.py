"""The far ends of the NetworkPolicy probe matrix, run inside pod (and node) namespaces.

Standard library only, started by file path under ``ip netns exec``:

``serve PORT...``
    TCP and UDP servers on ``::`` (IPv4 and IPv6) at every port. Each connection or datagram
    carries a token; the server prints ``{"proto", "port", "peer", "token"}`` as a JSON line
    when one arrives and answers ``ok TOKEN``. A TCP connection then echoes ``tick N`` lines
    as ``tock N`` for as long as the client keeps it (the established-connection case).
``probe``
    Reads ``[{"id", "address", "port", "proto", "timeout"}, ...]`` on stdin, tries them all
    at once (one thread each) and prints ``{"ID": "ok" | "timeout" | "refused" | ...}``.
``hold ADDRESS PORT TOKEN``
    Opens one TCP connection, then sends ``tick N`` every 50 ms and prints each ``tock N``
    it gets back; prints ``broken: ...`` and exits when the connection stops answering.
"""

from __future__ import annotations

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


def _dual_stack(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
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


def serve(ports: list[int]) -> None:
    threads = []
    for port in ports:
        listener = _dual_stack(socket.SOCK_STREAM)
        listener.bind(("::", port))
        listener.listen(128)
        datagrams = _dual_stack(socket.SOCK_DGRAM)
        datagrams.bind(("::", port))
        threads.append(threading.Thread(target=_serve_tcp, args=(listener, port), daemon=True))
        threads.append(threading.Thread(target=_serve_udp, args=(datagrams, port), daemon=True))
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


def _udp_probe(address: str, port: int, token: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        try:
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
        kind = _tcp_probe if request["proto"] == "tcp" else _udp_probe
        address, port, timeout = request["address"], int(request["port"]), request["timeout"]
        results[request["id"]] = kind(address, port, request["id"], float(timeout))

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
        serve([int(p) for p in rest])
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
