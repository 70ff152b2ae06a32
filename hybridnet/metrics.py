"""Serving /metrics: prometheus_client's registry and exposition, behind ``--metrics-address``.

Each component builds its own registry with :func:`new_registry` (never prometheus_client's
process-wide default, so tests never see each other's series), creates its metrics on it with
prometheus_client's classes, and serves it with :class:`MetricsServer`. That server is ours
rather than ``prometheus_client.start_http_server`` because that one leaves a ``::`` socket to
the kernel's ``net.ipv6.bindv6only`` default (IPv6 only where that is 1), answers every path
with the metrics, and has no ``/healthz`` for the manager's probes.
"""

from __future__ import annotations

import http.server
import ipaddress
import logging
import socket
import socketserver
import threading
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from hybridnet.logs import fields

log = logging.getLogger(__name__)

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds in seconds, 1 ms to 10 s: CNI calls, API round trips and allocations all fall
in this span, and a handful of buckets per decade keeps the series count low."""

_TEXT = "text/plain; charset=utf-8"


def new_registry() -> CollectorRegistry:
    """An empty registry for one component.

    prometheus_client would also export a ``<name>_created`` timestamp series for every
    histogram and counter series; no query of ours uses them and they double the series count,
    so they are switched off (a process-wide switch in prometheus_client, set here because every
    hybridnet component builds its registry through this function).
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return CollectorRegistry()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stuck scrape must not keep the process alive at exit

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.registry = registry
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        bind_dual_stack(self)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            # The exposition prometheus_client's own handler negotiates (OpenMetrics when the
            # scraper asks for it, text 0.0.4 otherwise), rendered before anything is sent so
            # that a failing collector answers 500 and a log line, not a reset connection.
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            try:
                body = encoder(self.server.registry)
            except Exception:
                log.exception("rendering metrics failed")
                self._reply(500, b"rendering metrics failed\n", _TEXT)
                return
            self._reply(200, body, content_type)
        elif path == "/healthz":
            self._reply(200, b"ok", _TEXT)
        else:
            self._reply(404, b"not found\n", _TEXT)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The base class writes every request to stderr; scrapes every few seconds would bury
        # the component's own JSON log lines.
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """Serves ``GET /metrics`` (the registry) and ``GET /healthz`` from a daemon thread.

    Port 0 picks a free port (tests); :attr:`port` is the one bound. Each request runs on its
    own thread, so a slow scraper does not hold up a liveness probe.
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port; only known once started."""
        if self._server is None:
            raise RuntimeError("metrics server is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in a daemon thread; binding errors (port in use) raise OSError here."""
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        server = _Server((self.host, self._requested_port), self.registry)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"metrics-http-{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        log.info("metrics server listening", extra=fields(host=self.host, port=self.port))

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before start()."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def all_interfaces() -> str:
    """What an empty host (``:9899``) means: every address of the pod or node, IPv6 and IPv4
    alike (``::`` accepts both), or every IPv4 address where the kernel has no IPv6."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return "0.0.0.0"  # noqa: S104
    return "::"


def dual_stack(server_socket: socket.socket) -> None:
    """A socket bound to ``::`` takes IPv4 connections too, whatever net.ipv6.bindv6only says
    (probes of a host-network pod come from the node's first address family)."""
    if server_socket.family == socket.AF_INET6:
        server_socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` as the components' flags take it: an IPv4 address or a name, ``[v6]``, or
    nothing (all interfaces). ValueError says what is wrong, for a one-line command-line
    error."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address in brackets") from None
        return inner, int(port)
    if ":" in host:
        raise ValueError(f"{text!r}: an IPv6 host goes in brackets, as in [::1]:9899")
    if any(c.isspace() for c in host):
        raise ValueError(f"{text!r} is not host:port")
    return host or all_interfaces(), int(port)


def bind_dual_stack(server: http.server.HTTPServer) -> None:
    """``HTTPServer.server_bind`` without its reverse DNS lookup of the bound host (which can
    stall start-up for seconds where DNS is broken, and names nothing we use), on a socket
    that also takes IPv4 when bound to ``::``."""
    dual_stack(server.socket)
    socketserver.TCPServer.server_bind(server)
    host, port = server.server_address[:2]
    server.server_name, server.server_port = str(host), int(port)


class MetricsError(Exception):
    """/metrics could not be served at the address given (in use, not ours to bind)."""


def serve_metrics(registry: CollectorRegistry, address: str) -> MetricsServer | None:
    """Start /metrics on ``address`` (``host:port``); None when ``address`` is empty."""
    if not address:
        return None
    server = MetricsServer(registry, *parse_address(address))
    try:
        server.start()
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from exc
    return server
