"""XDP feed steering on a real veth pair: attach and read-back, steering into AF_XDP while
everything else (ARP, ICMP, other UDP ports) still reaches the kernel, multicast, malformed
frames, and clean detach, also after the owning process was kill -9ed or SIGTERMed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tectra.core.clock import monotonic_ns
from tectra.io import netns as nl
from tectra.io.receive import PacketBatch, XdpReceiver
from tectra.io.xdp import PROGRAM_NAME, FeedSteering, XdpBusyError
from tests.kernel.conftest import VethPair

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
FEED_PORT = 26400
OTHER_PORT = 26401
GROUP = "239.193.7.1"
ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806


# ---- traffic from the venue namespace ------------------------------------------------------


def send_udp(pair: VethPair, payloads: list[bytes], port: int, dst: str | None = None) -> None:
    with nl.in_namespace(pair.venue_ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if dst is not None and dst.startswith("239."):
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(pair.venue_ip))
        for p in payloads:
            s.sendto(p, (dst or pair.appliance_ip, port))


def send_frames(pair: VethPair, frames: list[bytes]) -> None:
    with (
        nl.in_namespace(pair.venue_ns),
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s,
    ):
        s.bind((pair.venue_if, 0))
        for f in frames:
            s.send(f)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(pair: VethPair, proto: int, body: bytes, total_len: int | None = None) -> bytes:
    tot = total_len if total_len is not None else 20 + len(body)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, tot, 1, 0, 64, proto, 0,
        socket.inet_aton(pair.venue_ip), socket.inet_aton(pair.appliance_ip),
    )  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + body


def udp(sport: int, dport: int, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack("!HHHH", sport, dport, length or 8 + len(payload), 0) + payload


def eth(pair: VethPair, ethertype: int, body: bytes, vlan: int | None = None) -> bytes:
    head = mac(pair.appliance_mac) + mac(pair.venue_mac)
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", ethertype) + body


def drain(rx: XdpReceiver, want: int, timeout_s: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        batch: PacketBatch = rx.receive(64, 100_000_000)
        got.extend(batch.packets())
    return got


def wait_counters(steering: FeedSteering, total: int, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while steering.counters().total < total and time.monotonic() < deadline:
        time.sleep(0.01)


# ---- attach, read back, detach --------------------------------------------------------------


def test_attach_reads_back_mode_and_detach_leaves_nothing(veth_pair: VethPair) -> None:
    ns, ifname = veth_pair.appliance_ns, veth_pair.appliance_if
    steering = FeedSteering(ifname, [FEED_PORT], namespace=ns)
    try:
        seen = nl.xdp_attachment(ifname, ns)
        # veth has a native XDP driver hook, and what we report is what netlink says.
        assert steering.attached_mode == seen.mode == "native"
        assert steering.prog_id == seen.prog_id
    finally:
        steering.detach()
    assert nl.xdp_attachment(ifname, ns) == nl.XdpAttachment(None, None)
    steering.detach()  # idempotent

    with FeedSteering(ifname, [FEED_PORT], mode="generic", namespace=ns) as generic:
        assert generic.attached_mode == nl.xdp_attachment(ifname, ns).mode == "generic"
    assert nl.xdp_attachment(ifname, ns).mode is None


def test_feed_udp_goes_to_afxdp_and_everything_else_to_the_kernel(veth_pair: VethPair) -> None:
    ns = veth_pair.appliance_ns
    other = nl_udp_socket(ns, veth_pair.appliance_ip, OTHER_PORT)
    rx = XdpReceiver(veth_pair.appliance_if, FEED_PORT, namespace=ns)
    try:
        assert rx.attach_mode == "native"
        assert rx.bind_mode == "copy"  # veth has no zero-copy AF_XDP support
        feed = [b"feed-%04d-" % i + bytes(range(i % 50)) for i in range(200)]
        send_udp(veth_pair, feed, FEED_PORT)
        send_udp(veth_pair, [b"other-%d" % i for i in range(20)], OTHER_PORT)
        got = drain(rx, len(feed))
        assert got == feed
        assert ping(veth_pair), "ICMP echo must still be answered by the kernel"
        assert arp_answered(veth_pair), "ARP must still be answered by the kernel"

        other_got = []
        while True:
            try:
                other_got.append(other.recv(2048))
            except BlockingIOError:
                break
        assert other_got == [b"other-%d" % i for i in range(20)]

        counters = rx.steering.counters()
        assert counters.steered == len(feed)
        assert counters.passed >= 20 + 2  # other-port UDP, the ping and the ARP request
        assert counters.malformed == 0
        assert counters.no_socket == 0
        stats = rx.stats()
        assert stats["rx_packets"] == len(feed)
        assert stats["xdp_steered"] == len(feed)
        assert stats["rx_dropped"] == stats["rx_ring_full"] == 0
        batch = rx.receive(8, 0)
        assert len(batch) == 0  # nothing left, and a zero timeout returns at once
        assert rx.stats()["empty_polls"] >= 1
    finally:
        rx.close()
        other.close()
    assert nl.xdp_attachment(veth_pair.appliance_if, ns).mode is None


def test_receive_stamps_are_monotonic_and_bracket_the_send(veth_pair: VethPair) -> None:
    with XdpReceiver(veth_pair.appliance_if, FEED_PORT, namespace=veth_pair.appliance_ns) as rx:
        t0 = monotonic_ns()
        send_udp(veth_pair, [b"stamp"], FEED_PORT)
        batch = rx.receive(1, 2_000_000_000)
        t1 = monotonic_ns()
        assert batch.packets() == [b"stamp"]
        assert t0 <= int(batch.recv_ns[0]) <= t1


def test_multicast_group_is_steered_and_unicast_to_the_port_is_not(veth_pair: VethPair) -> None:
    ns, ifname = veth_pair.appliance_ns, veth_pair.appliance_if
    with XdpReceiver(ifname, FEED_PORT, namespace=ns, multicast_group=GROUP) as rx:
        assert GROUP in nl.multicast_groups(ifname, ns)  # NIC filter + IGMP membership held
        mcast = [b"group-%d" % i for i in range(50)]
        send_udp(veth_pair, mcast, FEED_PORT, dst=GROUP)
        send_udp(veth_pair, [b"unicast"] * 5, FEED_PORT)
        assert drain(rx, len(mcast)) == mcast
        wait_counters(rx.steering, len(mcast) + 5)
        counters = rx.steering.counters()
        assert counters.steered == len(mcast)
        assert counters.passed >= 5
    assert GROUP not in nl.multicast_groups(ifname, ns)


def test_malformed_frames_are_counted_and_vlan_frames_steered(veth_pair: VethPair) -> None:
    pair = veth_pair
    good = udp(40000, FEED_PORT, b"vlan-tagged feed")
    frames = [
        # UDP header cut after 4 bytes
        eth(pair, 0x0800, ipv4(pair, 17, udp(40000, FEED_PORT, b"")[:4], total_len=28)),
        # UDP length says 200 bytes, the frame carries 10
        eth(pair, 0x0800, ipv4(pair, 17, udp(40000, FEED_PORT, b"short", length=200))),
        # IPv4 header cut at 10 bytes
        eth(pair, 0x0800, ipv4(pair, 17, b"")[:10]),
        # VLAN tag with nothing after it
        mac(pair.appliance_mac) + mac(pair.venue_mac) + b"\x81\x00\x00",
        # a well-formed 802.1Q-tagged feed datagram
        eth(pair, 0x0800, ipv4(pair, 17, good), vlan=7),
    ]
    with XdpReceiver(pair.appliance_if, FEED_PORT, namespace=pair.appliance_ns) as rx:
        base = rx.steering.counters()
        send_frames(pair, frames)
        assert drain(rx, 1) == [b"vlan-tagged feed"]
        wait_counters(rx.steering, base.total + len(frames))
        counters = rx.steering.counters()
        assert counters.malformed - base.malformed == 4
        assert counters.steered - base.steered == 1
        assert rx.stats()["malformed"] == 0  # nothing bad ever reached the socket
        # and the receiver still works afterwards
        send_udp(pair, [b"after"], FEED_PORT)
        assert drain(rx, 1) == [b"after"]


# ---- someone else's program, crashes, signals -----------------------------------------------

FOREIGN = b"int other_prog(struct xdp_md *ctx) { return XDP_PASS; }"


def test_foreign_program_is_refused_unless_replacing_is_allowed(veth_pair: VethPair) -> None:
    from bcc import BPF

    ns, ifname = veth_pair.appliance_ns, veth_pair.appliance_if
    bpf = BPF(text=FOREIGN)
    try:
        fn = bpf.load_func(b"other_prog", BPF.XDP)
        nl.set_link_xdp(ifname, fn.fd, nl.XDP_FLAGS_SKB_MODE, ns)
        foreign = nl.xdp_attachment(ifname, ns)
        with pytest.raises(XdpBusyError, match="other_prog"):
            FeedSteering(ifname, [FEED_PORT], namespace=ns)
        assert nl.xdp_attachment(ifname, ns) == foreign  # left alone
        with FeedSteering(ifname, [FEED_PORT], namespace=ns, replace_foreign=True) as steering:
            assert steering.replaced == foreign
            assert steering.attached_mode == "native"
    finally:
        bpf.cleanup()
    assert nl.xdp_attachment(ifname, ns).mode is None


@contextlib.contextmanager
def owner_process(pair: VethPair, *, sigterm: bool) -> Iterator[subprocess.Popen[str]]:
    code = textwrap.dedent(
        f"""
        import sys, time
        from tectra.io.xdp import FeedSteering
        s = FeedSteering({pair.appliance_if!r}, [{FEED_PORT}], namespace={pair.appliance_ns!r},
                         detach_on_sigterm={sigterm})
        print(s.prog_id, flush=True)
        time.sleep(120)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_stale_program_of_a_killed_owner_is_found_and_replaced(veth_pair: VethPair) -> None:
    ns, ifname = veth_pair.appliance_ns, veth_pair.appliance_if
    with owner_process(veth_pair, sigterm=False) as proc:
        assert proc.stdout is not None
        old_id = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # kill -9 gave it no chance to clean up: the program is still on the interface.
    stale = nl.xdp_attachment(ifname, ns)
    assert stale == nl.XdpAttachment("native", old_id)

    with FeedSteering(ifname, [FEED_PORT], namespace=ns) as steering:
        assert steering.replaced == stale
        assert steering.prog_id != old_id
        assert nl.xdp_attachment(ifname, ns) == nl.XdpAttachment("native", steering.prog_id)
    assert nl.xdp_attachment(ifname, ns) == nl.XdpAttachment(None, None)


def test_sigterm_detaches_before_the_process_dies(veth_pair: VethPair) -> None:
    ns, ifname = veth_pair.appliance_ns, veth_pair.appliance_if
    with owner_process(veth_pair, sigterm=True) as proc:
        assert proc.stdout is not None
        prog_id = int(proc.stdout.readline())
        assert nl.xdp_attachment(ifname, ns).prog_id == prog_id
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM  # still dies by the signal, as before us
    assert nl.xdp_attachment(ifname, ns) == nl.XdpAttachment(None, None)


def test_program_name_is_what_the_kernel_keeps() -> None:
    assert len(PROGRAM_NAME) <= 15  # BPF_OBJ_NAME_LEN - 1: stale detection matches on it


# ---- helpers that need the namespace ----------------------------------------------------------


def nl_udp_socket(ns: str, address: str, port: int) -> socket.socket:
    with nl.in_namespace(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, port))
        s.setblocking(False)
    return s


def ping(pair: VethPair) -> bool:
    with (
        nl.in_namespace(pair.venue_ns),
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s,
    ):
        s.settimeout(2.0)
        body = struct.pack("!BBHHH", 8, 0, 0, 0x7E57, 1) + b"tectra"
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        s.sendto(body, (pair.appliance_ip, 0))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            data, _ = s.recvfrom(2048)
            icmp = data[(data[0] & 0x0F) * 4 :]
            if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == 0x7E57:
                return True
    return False


def arp_answered(pair: VethPair) -> bool:
    with (
        nl.in_namespace(pair.venue_ns),
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s,
    ):
        s.bind((pair.venue_if, ETH_P_ARP))
        s.settimeout(2.0)
        request = struct.pack(
            "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac(pair.venue_mac),
            socket.inet_aton(pair.venue_ip), b"\0" * 6, socket.inet_aton(pair.appliance_ip),
        )  # fmt: skip
        s.send(b"\xff" * 6 + mac(pair.venue_mac) + struct.pack("!H", ETH_P_ARP) + request)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            frame = s.recv(2048)
            op = struct.unpack("!H", frame[20:22])[0]
            if op == 2 and frame[28:32] == socket.inet_aton(pair.appliance_ip):
                return True
    return False
