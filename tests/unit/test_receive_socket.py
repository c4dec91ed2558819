"""Socket and io_uring receive paths on loopback (no root, no namespaces): batch form, stamps,
timeouts, truncation, path selection and its logged reasons, metrics."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tectra.core.clock import monotonic_ns
from tectra.core.metrics import MetricsRegistry
from tectra.io import receive
from tectra.io.receive import (
    PacketBatch,
    ReceivePathUnavailableError,
    Receiver,
    ReceiverClosedError,
    SocketReceiver,
    UringReceiver,
    open_receiver,
    register_receive_metrics,
    uring_unavailable,
)

LOOPBACK = "127.0.0.1"
URING_SKIP = uring_unavailable()
needs_uring = pytest.mark.skipif(URING_SKIP is not None, reason=f"io_uring: {URING_SKIP}")


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        yield s


def send(s: socket.socket, port: int, payloads: list[bytes]) -> None:
    for p in payloads:
        s.sendto(p, (LOOPBACK, port))


def receive_all(rx: Receiver, want: int, timeout_s: float = 2.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(rx.receive(None, 50_000_000).packets())
    return got


def payloads(n: int) -> list[bytes]:
    return [b"%05d:" % i + b"x" * (i % 97) for i in range(n)]


def make(kind: str, **kw: object) -> Receiver:
    if kind == "socket":
        return SocketReceiver(LOOPBACK, 0, **kw)  # type: ignore[arg-type]
    return UringReceiver(LOOPBACK, 0, mode=kind.removeprefix("uring-"), **kw)  # type: ignore[arg-type]


KINDS = [
    "socket",
    pytest.param("uring-multishot", marks=needs_uring),
    pytest.param("uring-single", marks=needs_uring),
]


@pytest.mark.parametrize("kind", KINDS)
def test_batch_form_payloads_and_stamps(kind: str, sender: socket.socket) -> None:
    with make(kind, batch_size=32) as rx:
        port = rx.port  # type: ignore[attr-defined]
        sent = payloads(100)
        t0 = monotonic_ns()
        send(sender, port, sent)
        batches: list[PacketBatch] = []
        got: list[bytes] = []
        deadline = time.monotonic() + 2
        while len(got) < len(sent) and time.monotonic() < deadline:
            batch = rx.receive(None, 50_000_000)
            assert len(batch) <= 32
            assert batch.offsets.dtype == np.uint32 and batch.lengths.dtype == np.uint32
            assert batch.recv_ns.dtype == np.int64 and batch.payload.dtype == np.uint8
            got.extend(batch.packets())
            batches.append(batch.copy())
        t1 = monotonic_ns()
        assert got == sent
        stamps = np.concatenate([b.recv_ns for b in batches])
        assert ((stamps >= t0) & (stamps <= t1)).all()
        assert rx.stats()["rx_packets"] == 100


@pytest.mark.parametrize("kind", KINDS)
def test_timeouts_poll_and_wait(kind: str) -> None:
    with make(kind) as rx:
        t = time.monotonic()
        assert len(rx.receive(None, 0)) == 0
        assert time.monotonic() - t < 0.05
        t = time.monotonic()
        assert len(rx.receive(None, 60_000_000)) == 0
        waited = time.monotonic() - t
        assert 0.05 <= waited < 1.0
        assert int(rx.stats()["empty_polls"]) >= 2


@pytest.mark.parametrize("kind", KINDS)
def test_max_packets_is_respected(kind: str, sender: socket.socket) -> None:
    with make(kind) as rx:
        send(sender, rx.port, payloads(10))  # type: ignore[attr-defined]
        time.sleep(0.05)
        sizes = []
        got: list[bytes] = []
        while len(got) < 10:
            batch = rx.receive(4, 100_000_000)
            assert len(batch) > 0
            sizes.append(len(batch))
            got.extend(batch.packets())
        assert got == payloads(10)
        assert max(sizes) <= 4


@pytest.mark.parametrize("kind", KINDS)
def test_oversized_datagrams_are_counted_never_half_delivered(
    kind: str, sender: socket.socket
) -> None:
    with make(kind, max_datagram=128) as rx:
        port = rx.port  # type: ignore[attr-defined]
        send(sender, port, [b"a" * 100, b"b" * 500, b"c" * 128])
        assert receive_all(rx, 2) == [b"a" * 100, b"c" * 128]
        assert rx.stats()["truncated"] == 1


def test_kernel_timestamps_are_on_the_monotonic_clock(sender: socket.socket) -> None:
    with SocketReceiver(LOOPBACK, 0, kernel_timestamps=True) as rx:
        # The kernel switches rx stamping on lazily (a deferred static key) when the first
        # socket asks: until then skbs are stamped at recvmsg time. Let that happen first.
        send(sender, rx.port, [b"warm-up"])
        assert receive_all(rx, 1) == [b"warm-up"]
        time.sleep(0.05)
        t0 = monotonic_ns()
        send(sender, rx.port, [b"k1", b"k2"])
        time.sleep(0.02)
        batch = rx.receive(None, 100_000_000)
        t1 = monotonic_ns()
        assert batch.packets() == [b"k1", b"k2"]
        # skb stamps precede our look at the batch by the 20 ms we slept
        assert all(t0 <= int(t) <= t1 - 15_000_000 for t in batch.recv_ns)
        assert rx.stats()["stamps"] == "kernel" and rx.stats()["no_stamp"] == 0


def test_batch_copy_is_compact_and_independent(sender: socket.socket) -> None:
    with SocketReceiver(LOOPBACK, 0) as rx:
        send(sender, rx.port, [b"one", b"three", b""])
        time.sleep(0.02)
        batch = rx.receive(None, 100_000_000)
        kept = batch.copy()
        assert kept.packets() == [b"one", b"three", b""]
        assert kept.offsets.tolist() == [0, 3, 8] and kept.payload.nbytes == 8
        send(sender, rx.port, [b"ZZZZZZZZZ"])
        rx.receive(None, 100_000_000)
        assert kept.packets() == [b"one", b"three", b""]


@pytest.mark.parametrize("kind", KINDS)
def test_close_is_idempotent_and_final(kind: str) -> None:
    rx = make(kind)
    rx.close()
    rx.close()
    with pytest.raises(ReceiverClosedError):
        rx.receive()
    assert rx.stats()["closed"] == 1


def test_busy_port_is_a_typed_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((LOOPBACK, 0))  # no SO_REUSEADDR: nobody else may bind it
        port = holder.getsockname()[1]
        with pytest.raises(receive.ReceiveError) as info:
            SocketReceiver(LOOPBACK, port)
        assert info.value.errno != 0


# ---- choosing a path ---------------------------------------------------------------------------


def fields(caplog: pytest.LogCaptureFixture, msg: str) -> list[dict[str, object]]:
    return [
        dict(r.tectra_fields)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == msg
    ]


def test_auto_without_an_interface_skips_xdp_and_says_why(
    caplog: pytest.LogCaptureFixture, sender: socket.socket
) -> None:
    with caplog.at_level(logging.INFO, logger="tectra"):
        rx = open_receiver("auto", bind_address=LOOPBACK, port=0)
    try:
        expected = "uring" if URING_SKIP is None else "socket"
        assert rx.io_path == expected
        skipped = fields(caplog, "receive path unavailable")
        assert skipped[0]["io_path"] == "xdp"
        assert "no interface" in str(skipped[0]["reason"])
        in_use = fields(caplog, "receive path in use")
        assert in_use == [
            {**in_use[0], "io_path": expected, "requested": "auto"}
        ]  # what we logged is what we got
        send(sender, rx.port, [b"auto"])  # type: ignore[attr-defined]
        assert receive_all(rx, 1) == [b"auto"]
    finally:
        rx.close()


def test_auto_falls_through_to_the_socket_and_logs_every_reason(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receive, "uring_unavailable", lambda: "io_uring is disabled (test)")
    with caplog.at_level(logging.INFO, logger="tectra"):
        rx = open_receiver("auto", bind_address=LOOPBACK, port=0)
    with rx:
        assert rx.io_path == "socket"
    skipped = fields(caplog, "receive path unavailable")
    assert [(f["io_path"], f["falling_back_to"]) for f in skipped] == [
        ("xdp", "uring"),
        ("uring", "socket"),
    ]
    assert skipped[1]["reason"] == "io_uring is disabled (test)"


def test_an_explicit_path_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ReceivePathUnavailableError, match="no interface"):
        open_receiver("xdp", bind_address=LOOPBACK, port=0)
    monkeypatch.setattr(receive, "uring_unavailable", lambda: "nope")
    with pytest.raises(ReceivePathUnavailableError, match="nope") as info:
        open_receiver("uring", bind_address=LOOPBACK, port=0)
    assert info.value.path == "uring"
    with pytest.raises(ValueError):
        open_receiver("dpdk", port=0)  # type: ignore[arg-type]


def test_metrics_name_the_path_and_read_counters_at_scrape_time(sender: socket.socket) -> None:
    metrics = MetricsRegistry(process_metrics=False)
    rx = SocketReceiver(LOOPBACK, 0)
    register_receive_metrics(metrics, lambda: [rx])
    try:
        send(sender, rx.port, [b"m1", b"m2", b"m3"])
        assert receive_all(rx, 3) == [b"m1", b"m2", b"m3"]
        text = metrics.exposition().decode()
        assert (
            'tectra_feed_io_path{attach_mode="",bind_mode="",io_path="socket",uring_mode=""} 1.0'
            in text
        )
        assert 'tectra_feed_rx_packets_total{io_path="socket"} 3.0' in text
        assert 'tectra_feed_rx_bytes_total{io_path="socket"} 6.0' in text
    finally:
        rx.close()
    assert "tectra_feed_io_path{" not in metrics.exposition().decode()
