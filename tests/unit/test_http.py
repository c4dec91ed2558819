"""tectra.core.http: /metrics, /health/live, /health/ready on a real socket."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from tectra.core.clock import VirtualClock
from tectra.core.http import AlwaysReady, HealthSource, MetricsServer
from tectra.core.lifecycle import Lifecycle, MemoryTransitionJournal
from tectra.core.metrics import MetricsRegistry
from tectra.schema import LifecycleState as S


def request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def lifecycle() -> Lifecycle:
    return Lifecycle("feed", MemoryTransitionJournal(), VirtualClock())


@pytest.fixture
def server(lifecycle: Lifecycle) -> Iterator[MetricsServer]:
    reg = MetricsRegistry(process_metrics=False)
    reg.gauge_from("tectra_lifecycle_state", "Lifecycle state.", lambda: int(lifecycle.state))
    hist = reg.latency_histogram("tectra_demo_latency", "Demo latency.")
    hist.record_batch(np.array([1_000, 2_000, 3_000]))
    srv = MetricsServer(reg, lifecycle, "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()


def test_metrics_endpoint_serves_prometheus_text(server: MetricsServer) -> None:
    status, headers, body = request(server.port, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "tectra_lifecycle_state 0.0" in text
    assert 'tectra_demo_latency_seconds_bucket{le="+Inf"} 3.0' in text
    assert 'tectra_demo_latency_quantile_seconds{quantile="0.99"}' in text
    status, _, _ = request(server.port, "GET", "/metrics?name=x")  # query strings are ignored
    assert status == 200


def test_liveness(server: MetricsServer) -> None:
    status, headers, body = request(server.port, "GET", "/health/live")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"live": True}


def test_readiness_follows_the_lifecycle(server: MetricsServer, lifecycle: Lifecycle) -> None:
    status, _, body = request(server.port, "GET", "/health/ready")
    doc = json.loads(body)
    assert status == 503 and doc["ready"] is False and doc["state"] == "INIT"
    lifecycle.transition(S.WARMUP, "warming")
    assert request(server.port, "GET", "/health/ready")[0] == 503
    lifecycle.transition(S.READY, "warm-up done")
    status, _, body = request(server.port, "GET", "/health/ready")
    doc = json.loads(body)
    assert status == 200 and doc["ready"] is True
    assert doc["state"] == "READY" and doc["reason"] == "warm-up done"
    lifecycle.transition(S.DEGRADED, "stale feed")
    status, _, body = request(server.port, "GET", "/health/ready")
    assert status == 503 and json.loads(body)["reason"] == "stale feed"
    assert "tectra_lifecycle_state 3.0" in request(server.port, "GET", "/metrics")[2].decode()


def test_boundary_errors_get_proper_status_codes(server: MetricsServer) -> None:
    status, _, body = request(server.port, "GET", "/nope")
    assert status == 404 and json.loads(body)["path"] == "/nope"
    status, headers, _ = request(server.port, "POST", "/metrics", body=b"x=1")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert request(server.port, "DELETE", "/health/ready")[0] == 405
    assert request(server.port, "BREW", "/metrics")[0] == 501
    status, headers, body = request(server.port, "HEAD", "/health/live")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    # Malformed requests are answered with 4xx/5xx and the server keeps serving.
    for raw, code in [
        (b"GET /metrics HTTP/7.0\r\n\r\n", b" 505 "),
        (b"GET /metrics HTTP/1.1 trailing\r\n\r\n", b" 400 "),
        (b"\x00\x01garbage\r\n\r\n", b"400"),  # no version: stdlib answers HTTP/0.9-style
    ]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(raw)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            assert code in reply, (raw, reply[:200])
    assert request(server.port, "GET", "/health/live")[0] == 200


def test_a_failing_health_source_answers_500_and_the_server_survives() -> None:
    class Broken:
        def ready(self) -> tuple[bool, dict[str, object]]:
            raise RuntimeError("lost lifecycle")

    assert isinstance(Broken(), HealthSource)
    with MetricsServer(MetricsRegistry(process_metrics=False), Broken()) as srv:
        status, _, body = request(srv.port, "GET", "/health/ready")
        assert status == 500 and json.loads(body)["reason"] == "lost lifecycle"
        assert request(srv.port, "GET", "/health/live")[0] == 200


def test_start_stop_lifecycle_of_the_server() -> None:
    srv = MetricsServer(MetricsRegistry(process_metrics=False), AlwaysReady(), "127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        _ = srv.port
    port = srv.start()
    assert port > 0 and srv.url == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError):
        srv.start()
    assert request(port, "GET", "/health/ready")[0] == 200
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(OSError):
        request(port, "GET", "/health/live")
    # The port is free again: a restarted role can bind the same fixed port.
    again = MetricsServer(MetricsRegistry(process_metrics=False), AlwaysReady(), "127.0.0.1", port)
    assert again.start() == port
    again.stop()
