"""The `feed` role (`tectra run feed`, `tectra@feed`): the I/O shell around `FeedHandler`.

It owns the edges: the receive path (AF_XDP behind the XDP steering program, io_uring or
recvmmsg — whichever `feed.io` picks and actually works), the retransmission request socket,
the md rings the normalised records go out on, the top-of-book reference table risk reads,
periodic book snapshots (and the warm start from the newest), metrics and the lifecycle:
a lost gap or a silent feed is DEGRADED, back to READY once the stream is whole again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.moldudp64 import PacketBatch as MoldPackets
from adapters.moldudp64 import SessionConfig
from tectra.core.clock import monotonic_ns
from tectra.core.config import TectraConfig
from tectra.feed.component import FEED_OUTPUTS, FeedComponent, stamped_packets
from tectra.feed.control import feed_control
from tectra.feed.handler import FeedHandler, FeedLimits, FeedStep
from tectra.feed.refs import RefTable
from tectra.feed.snapshot import SnapshotWriter, warm_start
from tectra.io.netns import in_namespace
from tectra.io.receive import PacketBatch, Receiver, open_receiver
from tectra.io.ring_metrics import register_ring_metrics
from tectra.io.shm import RingKind, RingPolicy, ShmRing
from tectra.journal.shmtap import CaptureMode, ShmCaptureTap
from tectra.journal.writer import WriterOptions
from tectra.roles.shell import RoleShell
from tectra.schema import LAYOUTS, LifecycleState

# Each output record type gets its own ring, named <feed.md_ring>-<suffix>.
MD_RINGS = {"book": "BOOK_UPDATE", "tick": "TICK", "trade": "TRADE"}
RECEIVE_TIMEOUT_NS = 2_000_000  # wake at least this often for deadlines and staleness
MAX_RETRANS_DATAGRAM = 65_535


@dataclass
class FeedTotals:
    """Per-batch counters the metrics layer reads at scrape time."""

    batches: int = 0
    packets: int = 0
    events: int = 0
    updates: int = 0
    ticks: int = 0
    trades: int = 0
    retrans_packets: int = 0


def md_ring_names(prefix: str) -> dict[str, str]:
    return {suffix: f"{prefix}-{suffix}" for suffix in MD_RINGS}


def _open_md_rings(config: TectraConfig) -> dict[str, ShmRing]:
    rings: dict[str, ShmRing] = {}
    root = Path(config.appliance.shm_root)
    for suffix, name in md_ring_names(config.feed.md_ring).items():
        ring_config = config.ring(name)
        layout = LAYOUTS[MD_RINGS[suffix]]
        if ring_config.record != layout.name:
            raise ValueError(f"rings.{name}.record must be {layout.name}")
        (root / name).unlink(missing_ok=True)  # the feed owns its rings: no stale contents
        rings[suffix] = ShmRing.create(
            name,
            layout.dtype,
            ring_config.capacity,
            RingKind.SPSC if ring_config.kind == "spsc" else RingKind.MPMC,
            # Market data never waits for a slow reader: a lagging consumer sees counted loss.
            RingPolicy.OVERWRITE,
            root=root,
        )
    return rings


def _request_socket(config: TectraConfig) -> socket.socket:
    """UDP socket for retransmission requests; the replies come back to it."""
    with in_namespace(config.feed.netns or None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def _drain_retransmissions(sock: socket.socket, now_ns: int) -> MoldPackets | None:
    packets: list[bytes] = []
    while True:
        try:
            packets.append(sock.recv(MAX_RETRANS_DATAGRAM))
        except BlockingIOError:
            break
    if not packets:
        return None
    return MoldPackets.from_packets(packets, [now_ns] * len(packets))


def _open_receiver(config: TectraConfig) -> Receiver:
    feed = config.feed
    return open_receiver(
        feed.io,  # type: ignore[arg-type]
        interface=feed.interface,
        netns=feed.netns or None,
        bind_address=feed.bind_address or None,
        port=feed.udp_port,
        multicast_group=feed.multicast_group or None,
        batch_size=feed.batch,
        xdp_mode=feed.xdp_mode,  # type: ignore[arg-type]
        busy_poll_usecs=50 if feed.busy_poll else 0,
    )


class FeedLoop:
    """One turn of the feed: receive a batch, step it, fetch retransmissions and step them,
    send the session's requests. The role and the kernel tests both drive the feed with it.
    With a `tap` (capture on) every step is also recorded in the capture ring (one C call)."""

    def __init__(
        self,
        handler: FeedHandler,
        receiver: Receiver,
        requests: socket.socket,
        retrans_to: tuple[str, int],
        tap: ShmCaptureTap | None = None,
    ) -> None:
        self.tap = tap
        self.handler = handler
        self.receiver = receiver
        self.requests = requests
        self.retrans_to = retrans_to
        self.packets = 0
        self.retrans_packets = 0
        self.last_packet_ns = monotonic_ns()

    def poll(self, max_packets: int, timeout_ns: int) -> list[FeedStep]:
        batch = self.receiver.receive(max_packets, timeout_ns)
        now = monotonic_ns()
        steps = [self._step(batch, now)]
        if len(batch):
            self.packets += len(batch)
            self.last_packet_ns = now
        retrans = _drain_retransmissions(self.requests, now)
        if retrans is not None:
            self.retrans_packets += len(retrans)
            steps.append(self._step(retrans, now))
        for step in steps:
            for request in step.session.requests_bytes():
                self.requests.sendto(request, self.retrans_to)
        return steps

    def _step(self, packets: PacketBatch | MoldPackets, now_ns: int) -> FeedStep:
        if self.tap is None:
            return self.handler.step(packets, now_ns)
        # Captured: step as FeedComponent.step (what replay runs) does — every packet stamped
        # with now_ns — then one C call copies the packets and the outputs into the capture
        # ring (a full ring drops the step, counted and journaled as a GAP; never blocks).
        mold, payload, offsets, lengths = stamped_packets(packets, now_ns)
        step = self.handler.step(mold, now_ns)
        self.tap.record_packets(
            payload, offsets, lengths, now_ns, (step.updates, step.ticks, step.trades)
        )
        return step


def run_feed(config: TectraConfig) -> int:
    feed = config.feed
    state_dir = Path(config.appliance.state_dir) / "feed"
    snapshot_dir = state_dir / "snapshots"
    limits = FeedLimits()
    restored = warm_start(snapshot_dir, output_capacity=limits.output_capacity)
    start_seq = restored[1].last_seq + 1 if restored else 1
    component = FeedComponent(
        limits,
        SessionConfig(
            request_timeout_ns=int(feed.retrans_timeout_s * 1e9),
            max_retries=feed.retrans_max_retries,
            start_seq=start_seq,
        ),
        book=restored[0] if restored else None,
    )
    handler = component.handler
    tap = _open_capture(config, int(component.component_id)) if feed.capture else None
    receiver = _open_receiver(config)
    # FeedControl (GetBook for tectra-mgmtd) on the feed's control socket.
    control = feed_control(lambda: handler.book)
    with RoleShell("feed", config, io_path=receiver.io_path, services=[control]) as shell:
        shell.lifecycle.transition(LifecycleState.WARMUP, "warming the decode and book path")
        if restored:
            shell.log.info("warm start", snapshot=str(restored[1].path), next_seq=start_seq)
        rings = _open_md_rings(config)
        refs = RefTable.create(
            feed.refs_table,
            limits.max_instruments,
            root=Path(config.appliance.shm_root),
            exist_ok=True,
        )
        requests = _request_socket(config)
        snapshots = (
            SnapshotWriter(snapshot_dir, every_exch_ns=int(feed.snapshot_interval_s * 1e9))
            if feed.snapshot_interval_s
            else None
        )
        totals = FeedTotals()
        edges = FeedEdges(rings, refs, totals)
        loop = FeedLoop(handler, receiver, requests, (feed.retrans_host, feed.retrans_port), tap)
        shell.details["capture"] = lambda: "on" if tap is not None else "off"
        if tap is not None:
            _register_capture_metrics(shell, tap)
        latency = shell.metrics.latency_histogram(
            "tectra_feed_recv_to_book_latency",
            "Packet seen by the receive path to its book outputs ready, per message.",
        )
        _register_metrics(shell, handler, receiver, rings, totals)
        shell.details["io_path"] = lambda: receiver.io_path
        shell.details["session"] = lambda: (handler.session.session or b"").decode(errors="replace")
        shell.details["next_seq"] = lambda: str(handler.session.next_seq)
        shell.ready(f"receiving on {receiver.io_path}")
        stale_ns = int(feed.stale_after_s * 1e9)
        try:
            while not shell.stopping:
                shell.heartbeat()
                steps = loop.poll(feed.batch, RECEIVE_TIMEOUT_NS)
                for step in steps:
                    edges.publish(step)
                    if step.events.size:
                        latency.record_batch(monotonic_ns() - step.events["ts_ns"])
                now = monotonic_ns()
                totals.batches += 1
                totals.packets, totals.retrans_packets = loop.packets, loop.retrans_packets
                refs.touch(now)
                _lifecycle(shell, handler, steps, now - loop.last_packet_ns > stale_ns)
                if snapshots is not None and handler.book is not None:
                    snapshots.maybe_write(handler.book, written_ns=now)
        finally:
            if snapshots is not None and handler.book is not None:
                # A clean stop leaves the freshest warm-start point there can be.
                snapshots.write(handler.book, written_ns=monotonic_ns())
            requests.close()
            receiver.close()
            if tap is not None:
                tap.close()  # the writer process journals what is queued, then seals
            refs.close()
            for ring in rings.values():
                ring.close()
    return 0


@dataclass
class FeedEdges:
    """Where a step's results go: md rings, the reference table, the request socket."""

    rings: dict[str, ShmRing]
    refs: RefTable
    totals: FeedTotals

    def publish(self, step: FeedStep) -> None:
        if step.updates.size:
            self.rings["book"].push(step.updates)
        if step.ticks.size:
            self.rings["tick"].push(step.ticks)
            self.refs.update(step.ticks)
        if step.trades.size:
            self.rings["trade"].push(step.trades)
        self.totals.events += step.events.size
        self.totals.updates += step.updates.size
        self.totals.ticks += step.ticks.size
        self.totals.trades += step.trades.size


def _lifecycle(shell: RoleShell, handler: FeedHandler, steps: list[FeedStep], silent: bool) -> None:
    lost = sum(n for step in steps for _, n in step.session.lost)
    state = shell.lifecycle.state
    if state is LifecycleState.READY:
        if lost:
            shell.lifecycle.transition(LifecycleState.DEGRADED, f"gap lost: {lost} messages")
        elif silent:
            shell.lifecycle.transition(LifecycleState.DEGRADED, "feed silent")
    elif state is LifecycleState.DEGRADED and not silent and not handler.session.missing:
        shell.lifecycle.transition(LifecycleState.READY, "stream whole again")


def _register_metrics(
    shell: RoleShell,
    handler: FeedHandler,
    receiver: Receiver,
    rings: dict[str, ShmRing],
    totals: FeedTotals,
) -> None:
    metrics = shell.metrics
    register_ring_metrics(metrics, lambda: list(rings.values()))
    metrics.gauge_from(
        "tectra_feed_io_path",
        "The receive path in use (1 for the path named by the label).",
        lambda: {(receiver.io_path,): 1.0},
        labels=["path"],
    )
    for name in ("batches", "packets", "events", "updates", "ticks", "trades", "retrans_packets"):
        metrics.counter_from(
            f"tectra_feed_{name}",
            f"Feed {name.replace('_', ' ')} handled.",
            _reader(totals, name),
        )
    metrics.counter_from(
        "tectra_feed_session_events",
        "MoldUDP64 session counters (messages, duplicates, gaps, lost, malformed...).",
        lambda: {(k,): float(v) for k, v in handler.session.counters.as_dict().items()},
        labels=["counter"],
    )
    metrics.counter_from(
        "tectra_feed_decode_events",
        "ITCH decoder counters (messages and each kind of malformed input).",
        lambda: {(k,): float(v) for k, v in handler.decoder.stats.items()},
        labels=["counter"],
    )
    metrics.counter_from(
        "tectra_feed_book_events",
        "Order book counters (adds, executes, ... and each refusal cause).",
        lambda: {
            (k,): float(v) for k, v in (handler.book.counters if handler.book else {}).items()
        },
        labels=["counter"],
    )
    metrics.counter_from(
        "tectra_feed_quality",
        "Data quality totals: crossed books, stale instruments, gaps, resends, drops.",
        lambda: {(k,): float(v) for k, v in handler.quality.totals().items()},
        labels=["counter"],
    )
    metrics.counter_from(
        "tectra_feed_receive",
        "Receive-path counters (frames, empty polls, fill failures, drops ...).",
        lambda: {(k,): float(v) for k, v in receiver.stats().items() if isinstance(v, int)},
        labels=["counter"],
    )


def _open_capture(config: TectraConfig, component_id: int) -> ShmCaptureTap:
    """Feed capture: a shared-memory capture ring under shm_root and its writer, a child
    process on the CPUs the feed is not pinned to, owning STATE_DIR/journal/feed."""
    shm_root = Path(config.appliance.shm_root)
    shm_root.mkdir(parents=True, exist_ok=True)
    ring_path = shm_root / f"capture-feed-{os.getpid()}"
    ring_path.unlink(missing_ok=True)
    return ShmCaptureTap.with_writer_process(
        Path(config.appliance.state_dir) / "journal" / "feed",
        WriterOptions.from_config(config.journal, journal="feed", component=component_id),
        component_id,
        ring_path=ring_path,
        outputs=FEED_OUTPUTS,
        mode=CaptureMode.FULL,
        avoid_cpus=config.role("feed").cpus,
    )


def _register_capture_metrics(shell: RoleShell, tap: ShmCaptureTap) -> None:
    shell.metrics.counter_from(
        "tectra_feed_capture_steps",
        "Feed steps captured: recorded (queued), written (journaled), dropped (queue full or "
        "writer failed; journaled as a GAP).",
        lambda: {
            ("recorded",): float(tap.recorded_steps),
            ("written",): float(tap.written_steps),
            ("dropped",): float(tap.dropped_steps),
        },
        labels=["state"],
    )
    shell.metrics.counter_from(
        "tectra_feed_capture_gaps", "Runs of dropped capture steps.", lambda: float(tap.gaps)
    )
    shell.metrics.gauge_from(
        "tectra_feed_capture_queued_bytes",
        "Bytes waiting in the capture ring for the writer process.",
        lambda: float(tap.counters.queued_bytes),
    )


def _reader(totals: FeedTotals, name: str) -> Callable[[], float]:
    return lambda: float(getattr(totals, name))
