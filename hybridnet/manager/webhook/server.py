"""The webhook's HTTPS endpoint: stdlib http.server with TLS 1.2+, one thread per connection.

The TLS handshake runs in the connection's own thread (not in the accept loop), so a slow or
broken client cannot hold up the others; bodies are bounded and every connection has a timeout.
Requests are logged through ``logging`` as structured records, never printed to stderr.
Each accepted connection is wrapped with the context of that moment, so a renewed certificate
(:meth:`WebhookServer.use_context`) serves the next connection without a restart, while
connections already open finish with the old one.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Protocol, cast

from hybridnet.logs import fields
from hybridnet.metrics import bind_dual_stack

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
"""An AdmissionReview carries the object and the old object; 3 MiB each at most in etcd."""
REQUEST_TIMEOUT_SECONDS = 15.0
ENDPOINTS = {"/validate": "validate", "/mutate": "mutate"}


class ReviewHandler(Protocol):
    """Answers one review: endpoint (``validate`` or ``mutate``) and body -> status, JSON."""

    def __call__(self, endpoint: str, body: bytes) -> tuple[int, dict[str, Any]]: ...


def server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server-side TLS context, TLS 1.2 at least, with the given certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def pem_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """:func:`server_context` for PEMs in memory. ``load_cert_chain`` reads only files, so
    they are handed over as anonymous memory files: the key never lands on a disk, and a
    read-only root filesystem is fine. Raises ssl.SSLError when the key does not fit."""
    files = []
    try:
        for name, pem in (("webhook-cert", cert_pem), ("webhook-key", key_pem)):
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
            files.append(fd)
            os.write(fd, pem)
        return server_context(f"/proc/self/fd/{files[0]}", f"/proc/self/fd/{files[1]}")
    finally:
        for fd in files:
            os.close(fd)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        *,
        context: ssl.SSLContext,
        review_handler: ReviewHandler,
        max_body_bytes: int,
        request_timeout: float,
    ) -> None:
        self.address_family = family
        self.context = context
        """Replaced whole (one assignment) on renewal; read once per accepted connection."""
        self.review_handler = review_handler
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        bind_dual_stack(self)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, client = self.socket.accept()
        try:
            wrapped = self.context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        except BaseException:
            connection.close()
            raise
        return wrapped, client

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes, resets and timeouts (probes, scanners): one line, no traceback;
        # anything else is a bug and keeps its traceback. Never printed to stderr.
        error = sys.exc_info()[1]
        where = fields(client=client_address[0], error=str(error))
        if isinstance(error, OSError):  # ssl.SSLError and TimeoutError included
            log.warning("webhook connection failed", extra=where)
        else:
            log.error("webhook connection failed", exc_info=True, extra=where)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hybridnet-webhook"
    sys_version = ""

    @property
    def _server(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._server.request_timeout)  # the handshake included
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    # ----------------------------------------------------------------- answering

    def _send(self, status: int, body: bytes, content_type: str, started: float) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        log.info(
            "webhook request",
            extra=fields(
                method=self.command,
                path=self.path,
                status=status,
                client=self.client_address[0],
                duration_ms=round((time.monotonic() - started) * 1000, 2),
            ),
        )

    def _send_json(self, status: int, data: dict[str, Any], started: float) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", started)

    def _error(self, status: int, message: str, started: float) -> None:
        self._send_json(status, {"error": message}, started)

    # ----------------------------------------------------------------- methods

    def do_GET(self) -> None:
        started = time.monotonic()
        if urllib.parse.urlsplit(self.path).path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8", started)
        else:
            self._error(404, f"no such endpoint {self.path}", started)

    def do_POST(self) -> None:
        started = time.monotonic()
        endpoint = ENDPOINTS.get(urllib.parse.urlsplit(self.path).path)
        if endpoint is None:
            self.close_connection = True  # the body is left unread
            self._error(404, f"no such endpoint {self.path}; use /validate or /mutate", started)
            return
        body = self._read_body(started)
        if body is None:
            return
        try:
            status, reply = self._server.review_handler(endpoint, body)
        except Exception:
            log.exception("review handler failed", extra=fields(path=self.path))
            self._error(500, "internal error in the hybridnet webhook (see its log)", started)
            return
        self._send_json(status, reply, started)

    def _read_body(self, started: float) -> bytes | None:
        """The request body, or None after answering why it cannot be taken."""
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self.close_connection = True
            self._error(
                415, f"Content-Type must be application/json, not {content_type!r}", started
            )
            return None
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            self.close_connection = True
            self._error(411, "Content-Length is required", started)
            return None
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, f"Content-Length {raw_length!r} is not a length", started)
            return None
        if length > self._server.max_body_bytes:
            self.close_connection = True
            self._error(
                413, f"body of {length} bytes exceeds {self._server.max_body_bytes}", started
            )
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            self._error(400, f"body ended after {len(body)} of {length} bytes", started)
            return None
        return body

    # ----------------------------------------------------------------- logging

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged by _send, with their duration."""

    def log_message(self, format: str, *args: Any) -> None:
        log.info(format % args, extra=fields(client=self.client_address[0]))

    def log_error(self, format: str, *args: Any) -> None:
        log.warning(format % args, extra=fields(client=self.client_address[0]))


class WebhookServer:
    """The HTTPS server; binds at construction, serves between start() and stop()."""

    def __init__(
        self,
        review_handler: ReviewHandler,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        host: str = "0.0.0.0",  # noqa: S104 (a webhook serves the API server from outside)
        port: int = 9898,
        *,
        context: ssl.SSLContext | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        """The certificate comes from ``cert_file`` and ``key_file``, or from ``context``
        (see :func:`pem_context`)."""
        if context is None:
            if cert_file is None or key_file is None:
                raise ValueError("the webhook needs cert_file and key_file, or a context")
            context = server_context(cert_file, key_file)
        elif cert_file is not None or key_file is not None:
            raise ValueError("give the webhook files or a context, not both")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._httpd = _HTTPServer(
            (host, port),
            family,
            context=context,
            review_handler=review_handler,
            max_body_bytes=max_body_bytes,
            request_timeout=request_timeout,
        )
        self._thread: threading.Thread | None = None

    def use_context(self, context: ssl.SSLContext) -> None:
        """Serve new connections with ``context`` (a renewed or reloaded certificate)."""
        self._httpd.context = context

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (the one picked when constructed with port 0)."""
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"webhook-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("webhook serving", extra=fields(host=self.host, port=self.port))

    def stop(self) -> None:
        """Stop accepting, close the socket, wait for the serving thread."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> WebhookServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
