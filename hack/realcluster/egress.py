"""The API server's way into the cluster network: an HTTP CONNECT proxy dialling from the gateway.

kube-apiserver runs in our own network namespace and reaches nothing on the fabric, yet a
cluster needs it to: ``kubectl logs/exec`` go to kubelet's port 10250 on a node, admission
webhooks go to the manager's port on a node (host network). kube-apiserver's egress selector
sends exactly that traffic (its ``cluster`` selection) through an HTTP CONNECT proxy on a unix
socket, as it would through konnectivity. :class:`ClusterEgress` is that proxy: each ``CONNECT
ADDRESS:PORT`` gets a TCP socket made inside the gateway namespace (the fabric's router, which
reaches every node and the outside host) and the bytes are relayed both ways. It is a stand-in
for konnectivity, and changes nothing in the root namespace.

Only addresses of the test ranges (198.18.0.0/15, 2001:db8::/32) are dialled; anything else is
refused with 403, so the proxy cannot be turned into a way out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
from pathlib import Path

from hack.controlplane.errors import ControlPlaneError
from hack.controlplane.forwarder import RelayServer, pump, socket_in_namespace

TEST_RANGES = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
MAX_REQUEST_HEAD = 8192
CONNECT_TIMEOUT = 10.0


def parse_connect(head: bytes) -> tuple[str, int]:
    """The address and port of a ``CONNECT address:port HTTP/1.1`` request head.

    Raises ValueError for anything else: another method, a name instead of an address, an
    address outside the test ranges, a bad port.
    """
    request_line = head.split(b"\r\n", 1)[0].decode("ascii", errors="replace")
    parts = request_line.split()
    if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not a CONNECT request: {request_line!r}")
    host, _, port_text = parts[1].rpartition(":")
    address = ipaddress.ip_address(host.strip("[]"))  # ValueError for a name
    if not any(address in network for network in TEST_RANGES):
        raise ValueError(f"{address} is outside the test ranges")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    return str(address), port


class ClusterEgress(RelayServer):
    """The proxy on ``socket_path``, dialling from the namespace at ``netns_path``."""

    def __init__(self, socket_path: Path, netns_path: str) -> None:
        self.socket_path = socket_path
        self.netns_path = netns_path
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        socket_path.unlink(missing_ok=True)
        listener.bind(str(socket_path))
        os.chmod(socket_path, 0o600)
        listener.listen(128)
        self._count_lock = threading.Lock()
        self.connections = 0
        """CONNECT requests served (for tests: the API server came through here)."""
        super().__init__(listener, "egress")

    def config_document(self) -> str:
        """kube-apiserver's ``--egress-selector-config-file``: the ``cluster`` selection via this
        proxy (control plane and etcd traffic stays direct). JSON, which it reads as YAML."""
        return json.dumps(
            {
                "apiVersion": "apiserver.k8s.io/v1beta1",
                "kind": "EgressSelectorConfiguration",
                "egressSelections": [
                    {
                        "name": "cluster",
                        "connection": {
                            "proxyProtocol": "HTTPConnect",
                            "transport": {"uds": {"udsName": str(self.socket_path)}},
                        },
                    }
                ],
            },
            indent=2,
        )

    def _read_head(self, conn: socket.socket) -> bytes:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(1024)
            if not chunk or len(head) > MAX_REQUEST_HEAD:
                raise ValueError("incomplete request head")
            head += chunk
        return head

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(CONNECT_TIMEOUT)
            try:
                address, port = parse_connect(self._read_head(conn))
            except (ValueError, OSError) as exc:
                with contextlib.suppress(OSError):
                    conn.sendall(f"HTTP/1.1 403 Forbidden\r\n\r\n{exc}".encode())
                return
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            try:
                upstream = socket_in_namespace(
                    self.netns_path, lambda: socket.socket(family, socket.SOCK_STREAM)
                )
            except ControlPlaneError:
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                return
            with upstream:
                upstream.settimeout(CONNECT_TIMEOUT)
                try:
                    upstream.connect((address, port))
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        conn.sendall(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{exc}".encode())
                    return
                with self._count_lock:
                    self.connections += 1
                conn.settimeout(None)
                upstream.settimeout(None)
                try:
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    pump(conn, upstream, self.wake)
                except OSError:
                    return

    def close(self) -> None:
        """Stop accepting, end every relayed connection, remove the socket; twice is fine."""
        super().close()
        self.socket_path.unlink(missing_ok=True)
