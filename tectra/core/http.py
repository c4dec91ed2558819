"""The per-process HTTP endpoint: ``/metrics``, ``/health/live``, ``/health/ready``.

This module owns the small HTTP server every role runs (bound to ``[metrics] host`` and the
role's ``metrics_port``):

* ``GET /metrics``       Prometheus text format of the process's registry;
* ``GET /health/live``   200 while the process runs (systemd/k8s liveness);
* ``GET /health/ready``  200 only when the :class:`HealthSource` says ready (for a role: its
  lifecycle is READY), else 503; both with a JSON body carrying the state and reason;
* anything else          404; POST/PUT/DELETE/PATCH/OPTIONS → 405; unknown methods → 501.

``HEAD`` is answered like ``GET`` without a body. A request that fails inside (a broken health
source) gets a 500 with a JSON reason; the server thread never dies of a bad request.
It runs a ``ThreadingHTTPServer`` in a daemon thread: scrapes are rare and cheap, and a slow
client only holds its own thread (with a socket timeout).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from tectra.core.log import get_logger
from tectra.core.metrics import MetricsRegistry

__all__ = ["AlwaysReady", "HealthSource", "MetricsServer"]

_log = get_logger("http")
_JSON: Final = "application/json"
_REQUEST_TIMEOUT_S: Final = 5.0


@runtime_checkable
class HealthSource(Protocol):
    """Tells the readiness endpoint whether the process is ready and why (JSON-able details).

    :class:`tectra.core.lifecycle.Lifecycle` is one (ready only in READY).
    """

    def ready(self) -> tuple[bool, dict[str, object]]: ...


class AlwaysReady:
    """A health source for processes without a lifecycle (tools, tests)."""

    def ready(self) -> tuple[bool, dict[str, object]]:
        return True, {"state": "READY", "reason": "no lifecycle"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Restarting a role must not wait for TIME_WAIT on its fixed port.
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        health: HealthSource,
        family: socket.AddressFamily,
    ) -> None:
        self.address_family = family
        self.metrics_registry = registry
        self.health = health
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS round trip that can stall
        # start-up for seconds); the name is only used in CGI environments, so skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _REQUEST_TIMEOUT_S
    server_version = "tectra"
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, content_type: str, *, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, status: int, doc: dict[str, Any], *, head: bool = False) -> None:
        body = json.dumps(doc, default=str).encode() + b"\n"
        self._send(status, body, _JSON, head=head)

    def _route(self, head: bool) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/metrics":
                body = generate_latest(self.server.metrics_registry)
                self._send(HTTPStatus.OK, body, CONTENT_TYPE_LATEST, head=head)
            elif path == "/health/live":
                self._send_json(HTTPStatus.OK, {"live": True}, head=head)
            elif path == "/health/ready":
                ok, details = self.server.health.ready()
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send_json(status, {"ready": bool(ok), **details}, head=head)
            else:
                self._send_json(
                    HTTPStatus.NOT_FOUND, {"error": "not found", "path": path}, head=head
                )
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer
        except Exception as e:
            _log.error("http request failed", path=path, exc_info=True)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": type(e).__name__, "reason": str(e)},
                head=head,
            )

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _not_allowed(self) -> None:
        # Drain any request body so a keep-alive connection stays in sync.
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 1 << 20:
            self.rfile.read(length)
        else:
            self.close_connection = True
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    def do_POST(self) -> None:
        self._not_allowed()

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def do_PATCH(self) -> None:
        self._not_allowed()

    def do_OPTIONS(self) -> None:
        self._not_allowed()

    def log_message(self, format: str, *args: Any) -> None:
        # Access logs go through our JSON logger at debug level, not raw to stderr.
        _log.debug("http " + (format % args), client=self.client_address[0])


class MetricsServer:
    """``/metrics`` + health endpoints on ``host:port`` in a daemon thread.

    ``start()`` binds and returns the bound port (``port=0`` picks a free one); ``stop()``
    shuts down and closes the socket. Usable as a context manager.
    """

    def __init__(
        self,
        registry: MetricsRegistry | CollectorRegistry,
        health: HealthSource,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._registry = registry.registry if isinstance(registry, MetricsRegistry) else registry
        self._health = health
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (raises if not started)."""
        if self._server is None:
            raise RuntimeError("metrics server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = _Server((self.host, self._requested_port), self._registry, self._health, family)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"metrics-http:{self.port}",
            daemon=True,
        )
        self._thread.start()
        _log.info("metrics endpoint listening", host=self.host, port=self.port)
        return self.port

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
