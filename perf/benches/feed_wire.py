"""feed_wire: the feed on a real link, each receive path side by side in one run.

A veth pair joins a `venue` and an `appliance` network namespace (created here, removed after).
The venue simulator (its own process, pinned to CPU 0, in the venue namespace) publishes a
seeded ITCH 5.0 day over MoldUDP64 and logs CLOCK_MONOTONIC just before each packet's sendto.
The feed (this process, pinned to CPU 1) receives on `xdp` (AF_XDP behind the XDP steering
program), `uring` (io_uring) and `socket` (recvmmsg) in turn, and runs the real hot path
(`FeedLoop` → MoldUDP64 session → ITCH decode → book). Wire-to-book latency of a message is
the time its book outputs are ready minus its packet's send time (same host, same clock).

Per path: a paced run (the latency figures, no queueing from overload) and a flat-out run
(packets/s and messages/s the feed kept up with; the Python publisher may be the limit: both
sides' rates are reported).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benches._stats import latency_summary
from tectra.feed.handler import FeedHandler, FeedLimits
from tectra.feed.service import FeedLoop
from tectra.io.netns import VethTopology, in_namespace, veth_topology
from tectra.io.receive import ReceiveError, open_receiver
from tectra.sim.itch_flow import ItchFlow
from tectra.sim.mold_publisher import MoldPublisher, PublisherConfig, SendLog

CTX = mp.get_context("fork")
FEED_PORT, RETRANS_PORT = 26400, 26401
PUBLISHER_CPU, FEED_CPU = 0, min(1, (os.cpu_count() or 1) - 1)
PATHS = ("xdp", "uring", "socket")


def _publisher(
    topo: VethTopology,
    rate: float | None,
    seconds: float,
    log: Path,
    go: Connection,
    out: Connection,
) -> None:
    from pyroute2 import netns

    os.sched_setaffinity(0, {PUBLISHER_CPU})
    netns.setns(topo.venue_ns)
    config = PublisherConfig(
        dest=(topo.appliance_ip, FEED_PORT),
        retrans_bind=(topo.venue_ip, RETRANS_PORT),
        rate=rate,
        send_log_path=log,
        send_log_capacity=1 << 22,
    )
    flow = ItchFlow(11, symbols=256)
    with MoldPublisher(config, symbols=flow.symbols) as publisher:
        go.recv()
        t0 = time.monotonic()
        sent = publisher.run(flow, seconds=seconds)
        elapsed = time.monotonic() - t0
        out.send((sent, publisher.stats["packets"], elapsed))
        go.recv()


def _run(topo: VethTopology, io: str, rate: float | None, seconds: float) -> dict[str, Any]:
    receiver = open_receiver(
        io,  # type: ignore[arg-type]
        interface=topo.appliance_if,
        netns=topo.appliance_ns,
        port=FEED_PORT,
        batch_size=64,
    )
    with in_namespace(topo.appliance_ns):
        requests = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    requests.setblocking(False)
    handler = FeedHandler(limits=FeedLimits(max_instruments=1024, max_orders=1 << 20))
    loop = FeedLoop(handler, receiver, requests, (topo.venue_ip, RETRANS_PORT))
    seqs: list[np.ndarray] = []
    done: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="tectra-wire-", dir="/dev/shm") as tmp:
        log = Path(tmp) / "send.log"
        go_rx, go_tx = CTX.Pipe(duplex=False)
        out_rx, out_tx = CTX.Pipe(duplex=False)
        child = CTX.Process(target=_publisher, args=(topo, rate, seconds, log, go_rx, out_tx))
        child.start()
        try:
            go_tx.send(True)
            sent: tuple[int, int, float] | None = None
            first_ns = last_ns = 0
            deadline = time.monotonic() + seconds + 30
            while time.monotonic() < deadline:
                for step in loop.poll(64, 2_000_000):
                    if step.events.size:
                        now = time.monotonic_ns()
                        first_ns = first_ns or now
                        last_ns = now
                        seqs.append(step.events["seq"].copy())
                        done.append(np.full(step.events.size, now, dtype=np.int64))
                if sent is None and out_rx.poll():
                    sent = out_rx.recv()
                got = handler.session.counters.messages
                if sent is not None and got >= sent[0] and not handler.session.missing:
                    break
            go_tx.send(True)
        finally:
            child.join(20)
            if child.is_alive():
                child.kill()
            receiver.close()
            requests.close()
        entries = SendLog.read(log)
    assert sent is not None, "publisher did not finish"
    all_seqs = np.concatenate(seqs)
    latency = SendLog.latencies(entries, all_seqs, np.concatenate(done))
    counters = handler.session.counters
    span = max((last_ns - first_ns) / 1e9, 1e-9)
    return {
        "io_path": receiver.io_path,
        "published_msgs": sent[0],
        "publisher_msgs_per_s": round(sent[0] / sent[2]),
        "publisher_packets_per_s": round(sent[1] / sent[2]),
        "received_msgs": counters.messages,
        "received_packets": loop.packets,
        "packets_per_s": round(loop.packets / span),
        "msgs_per_s": round(counters.messages / span),
        "gaps": counters.gaps,
        "retrans_filled": counters.retrans_filled,
        "lost": counters.lost,
        "wire_to_book": latency_summary(latency[latency.size // 100 :]),
    }


def run(quick: bool = False) -> dict[str, Any]:
    os.sched_setaffinity(0, {FEED_CPU})
    seconds = 1.0 if quick else 3.0
    paced_rate = 100_000.0
    metrics: dict[str, Any] = {
        "paced_msgs_per_s": paced_rate,
        "seconds_per_run": seconds,
        "publisher_cpu": PUBLISHER_CPU,
        "feed_cpu": FEED_CPU,
    }
    with veth_topology() as topo:
        for io in PATHS:
            try:
                metrics[io] = {
                    "paced": _run(topo, io, paced_rate, seconds),
                    "flat_out": _run(topo, io, None, seconds),
                }
            except (ReceiveError, OSError) as exc:  # report a path this host lacks, go on
                metrics[io] = {"error": f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(KeyError, TypeError):
        xdp_p99 = metrics["xdp"]["paced"]["wire_to_book"]["p99_ns"]
        sock_p99 = metrics["socket"]["paced"]["wire_to_book"]["p99_ns"]
        metrics["xdp_vs_socket_p99_ratio"] = round(xdp_p99 / sock_p99, 3)
        metrics["xdp_vs_socket_flat_out_msgs_ratio"] = round(
            metrics["xdp"]["flat_out"]["msgs_per_s"] / metrics["socket"]["flat_out"]["msgs_per_s"],
            3,
        )
    return metrics
