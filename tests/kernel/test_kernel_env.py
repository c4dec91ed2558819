"""The kernel path the bootstrap prepares really works: bcc compiles an XDP program (kernel
headers linked), it attaches to a veth inside a namespace we made, and counts real packets."""

from __future__ import annotations

import multiprocessing as mp
import socket
from multiprocessing.connection import Connection

import pytest

from tests.kernel.conftest import VethPair

COUNT_ALL = r"""
BPF_PERCPU_ARRAY(seen, u64, 1);
int count_all(struct xdp_md *ctx) {
    int key = 0;
    u64 *value = seen.lookup(&key);
    if (value)
        *value += 1;
    return XDP_PASS;
}
"""
CTX = mp.get_context("fork")
XDP_FLAGS_SKB_MODE = 1 << 1


def _count_in_namespace(
    ns: str, ifname: str, ready: Connection, go: Connection, out: Connection
) -> None:
    from bcc import BPF
    from pyroute2 import netns

    netns.setns(ns)
    bpf = BPF(text=COUNT_ALL)
    fn = bpf.load_func("count_all", BPF.XDP)
    bpf.attach_xdp(ifname, fn, XDP_FLAGS_SKB_MODE)
    try:
        ready.send(True)
        go.recv()
        out.send(int(bpf["seen"].sum(0).value))
    finally:
        bpf.remove_xdp(ifname, XDP_FLAGS_SKB_MODE)


def _send_udp(ns: str, dst: str, n: int) -> None:
    from pyroute2 import netns

    netns.setns(ns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(n):
            sock.sendto(i.to_bytes(8, "little"), (dst, 31337))


@pytest.mark.kernel
def test_bcc_xdp_program_counts_packets_on_veth(veth_pair: VethPair) -> None:
    ready_rx, ready_tx = CTX.Pipe(duplex=False)
    go_rx, go_tx = CTX.Pipe(duplex=False)
    out_rx, out_tx = CTX.Pipe(duplex=False)
    counter = CTX.Process(
        target=_count_in_namespace,
        args=(veth_pair.appliance_ns, veth_pair.appliance_if, ready_tx, go_rx, out_tx),
    )
    counter.start()
    assert ready_rx.poll(120), "XDP program did not attach in time"
    ready_rx.recv()
    sender = CTX.Process(target=_send_udp, args=(veth_pair.venue_ns, veth_pair.appliance_ip, 50))
    sender.start()
    sender.join(30)
    go_tx.send(True)
    assert out_rx.poll(30)
    seen = out_rx.recv()
    counter.join(30)
    assert counter.exitcode == 0
    assert seen >= 50
