"""The three receive paths on a real veth pair: the same datagrams arrive through AF_XDP,
io_uring (both modes) and recvmmsg, with stamps on the sender's clock; multicast on the socket
paths; path selection in a namespace, including a fallback for a real reason."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tectra.core.clock import monotonic_ns
from tectra.io import netns as nl
from tectra.io.receive import (
    ReceivePathUnavailableError,
    Receiver,
    SocketReceiver,
    UringReceiver,
    XdpReceiver,
    open_receiver,
)
from tests.kernel.conftest import VethPair

pytestmark = pytest.mark.kernel

PORT = 26500
GROUP = "239.193.7.2"
DATAGRAMS = [b"seq=%06d|" % i + bytes([i % 251]) * (i % 300) for i in range(500)]


def send(pair: VethPair, payloads: list[bytes], dst: str | None = None) -> None:
    with nl.in_namespace(pair.venue_ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if dst is not None:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(pair.venue_ip))
        for p in payloads:
            s.sendto(p, (dst or pair.appliance_ip, PORT))


def receive_all(rx: Receiver, want: int, timeout_s: float = 5.0) -> tuple[list[bytes], list[int]]:
    payloads: list[bytes] = []
    stamps: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(payloads) < want and time.monotonic() < deadline:
        batch = rx.receive(None, 100_000_000)
        payloads.extend(batch.packets())
        stamps.extend(int(t) for t in batch.recv_ns)
    return payloads, stamps


def open_path(kind: str, pair: VethPair, group: str | None = None) -> Receiver:
    common = {
        "multicast_group": group,
        "interface": pair.appliance_if,
        "namespace": pair.appliance_ns,
        "batch_size": 64,
    }
    if kind == "socket":
        return SocketReceiver(pair.appliance_ip if group is None else None, PORT, **common)
    if kind == "socket-kernel-stamps":
        return SocketReceiver(
            pair.appliance_ip if group is None else None, PORT, kernel_timestamps=True, **common
        )
    if kind == "uring-multishot":
        return UringReceiver(pair.appliance_ip, PORT, mode="multishot", **common)
    if kind == "uring-single":
        return UringReceiver(pair.appliance_ip, PORT, mode="single", **common)
    assert kind == "xdp"
    return XdpReceiver(pair.appliance_if, PORT, namespace=pair.appliance_ns, batch_size=64,
                       multicast_group=group)  # fmt: skip


@pytest.mark.parametrize(
    "kind", ["xdp", "uring-multishot", "uring-single", "socket", "socket-kernel-stamps"]
)
def test_every_path_receives_the_same_datagrams_in_order(veth_pair: VethPair, kind: str) -> None:
    with open_path(kind, veth_pair) as rx:
        t0 = monotonic_ns()
        send(veth_pair, DATAGRAMS)
        got, stamps = receive_all(rx, len(DATAGRAMS))
        t1 = monotonic_ns()
        assert got == DATAGRAMS
        # CLOCK_MONOTONIC on the sender's host clock: after the first send, before we looked.
        assert all(t0 <= t <= t1 for t in stamps)
        assert stamps == sorted(stamps)
        stats = rx.stats()
        assert stats["rx_packets"] == len(DATAGRAMS)
        assert stats["rx_bytes"] == sum(map(len, DATAGRAMS))
        if kind.startswith("uring"):
            assert stats["uring_mode"] == kind.removeprefix("uring-")


@pytest.mark.parametrize("kind", ["socket", "uring-multishot"])
def test_socket_paths_join_the_multicast_group(veth_pair: VethPair, kind: str) -> None:
    with open_path(kind, veth_pair, group=GROUP) as rx:
        assert GROUP in nl.multicast_groups(veth_pair.appliance_if, veth_pair.appliance_ns)
        send(veth_pair, DATAGRAMS[:50], dst=GROUP)
        got, _ = receive_all(rx, 50)
        assert got == DATAGRAMS[:50]


def test_auto_picks_xdp_in_the_namespace_and_says_how(veth_pair: VethPair) -> None:
    rx = open_receiver(
        "auto",
        interface=veth_pair.appliance_if,
        netns=veth_pair.appliance_ns,
        bind_address=veth_pair.appliance_ip,
        port=PORT,
    )
    try:
        assert rx.io_path == "xdp"
        stats = rx.stats()
        assert stats["attach_mode"] == "native"
        assert stats["bind_mode"] == "copy"
        send(veth_pair, DATAGRAMS[:100])
        assert receive_all(rx, 100)[0] == DATAGRAMS[:100]
    finally:
        rx.close()
    assert nl.xdp_attachment(veth_pair.appliance_if, veth_pair.appliance_ns).mode is None


def test_auto_falls_back_to_uring_when_the_interface_is_taken(
    veth_pair: VethPair, caplog: pytest.LogCaptureFixture
) -> None:
    from bcc import BPF

    ns, ifname = veth_pair.appliance_ns, veth_pair.appliance_if
    bpf = BPF(text=b"int someone_else(struct xdp_md *ctx) { return XDP_PASS; }")
    try:
        fn = bpf.load_func(b"someone_else", BPF.XDP)
        nl.set_link_xdp(ifname, fn.fd, nl.XDP_FLAGS_DRV_MODE, ns)
        with caplog.at_level(logging.INFO, logger="tectra"):
            rx = open_receiver(
                "auto", interface=ifname, netns=ns, bind_address=veth_pair.appliance_ip, port=PORT
            )
        try:
            assert rx.io_path == "uring"  # never pretends: the path it is really on
            fallbacks = [r for r in caplog.records if r.getMessage() == "receive path unavailable"]
            assert len(fallbacks) == 1
            fields = fallbacks[0].tectra_fields  # type: ignore[attr-defined]
            assert fields["io_path"] == "xdp"
            assert "someone_else" in fields["reason"]
            assert fields["falling_back_to"] == "uring"
            send(veth_pair, DATAGRAMS[:20])
            assert receive_all(rx, 20)[0] == DATAGRAMS[:20]
        finally:
            rx.close()
        # asked for explicitly, the same failure is an error, not a fallback
        with pytest.raises(ReceivePathUnavailableError, match="someone_else"):
            open_receiver("xdp", interface=ifname, netns=ns, port=PORT)
        assert nl.xdp_attachment(ifname, ns).prog_id is not None  # theirs, untouched
    finally:
        nl.set_link_xdp(ifname, -1, nl.XDP_FLAGS_DRV_MODE, ns)
        bpf.cleanup()


def test_afxdp_with_a_python_umem_and_busy_poll_reports_what_it_got(veth_pair: VethPair) -> None:
    with XdpReceiver(
        veth_pair.appliance_if,
        PORT,
        namespace=veth_pair.appliance_ns,
        umem_from_python=True,
        busy_poll_usecs=20,
        busy_poll_budget=64,
    ) as rx:
        stats = rx.stats()
        assert stats["bind_mode"] == "copy"
        assert stats["busy_poll"] == "on" or str(stats["busy_poll"]).startswith("unsupported")
        send(veth_pair, DATAGRAMS[:64])
        assert receive_all(rx, 64)[0] == DATAGRAMS[:64]
