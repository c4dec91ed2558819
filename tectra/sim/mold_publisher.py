"""The venue simulator's feed side on the wire: ITCH 5.0 over MoldUDP64 UDP, with a
retransmission request server and seeded fault injection.

This module owns:

* `MoldPublisher`: frames ITCH_EVENT batches (`adapters.itch.frame`), cuts them into MTU-safe
  downstream packets (`adapters.moldudp64.pack_packets`) and sends them to a unicast or
  multicast address (TTL, interface and loopback options), flat out or paced at a message
  rate; heartbeats when idle (a background thread) and during pauses; end of session. It keeps
  every message in a bounded `RetransStore` and can also write the same stream to a NASDAQ
  binary file (`adapters.itch_file.ItchFileWriter`);
* `RetransServer`: a UDP thread answering MoldUDP64 request packets from the store in
  downstream format, at most `retrans_max_count` messages per request;
* `FaultPlan`: drop, duplicate, reorder (swap with the next packet), corrupt (a length, a count
  or a truncation the receiver can detect; optionally flipped message bytes it cannot) and pause
  (stop sending for N ms, heartbeats continue), each by probability or by a schedule of packet
  indices, all drawn from their own seed;
* `SendLog`: the CLOCK_MONOTONIC send time of every live data packet, keyed by the sequence
  number of its first message, in memory or in a shared-memory file, for wire-to-book latency.
  The ITCH stream itself stays truthful (its timestamps are the venue's clock).

Runnable: `python -m tectra.sim.mold_publisher --dest 127.0.0.1:26400 --retrans-port 26401
--rate 100000 --seconds 5 --seed 1` (see --help); or start a `MoldPublisher` from other code
(`run` in a thread, or `publish` batches yourself). Options and faults: docs/simulator.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import ipaddress
import json
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Final, Self

import numpy as np
import numpy.typing as npt

from adapters import itch
from adapters.itch_file import ItchFileWriter
from adapters.moldudp64 import (
    BLOCK_PREFIX_LEN,
    HEADER_LEN,
    MAX_MESSAGE_COUNT,
    encode_end_of_session,
    encode_heartbeat,
    encode_session,
    pack_packets,
    parse_headers,
    parse_request,
)
from tectra.sim.itch_flow import ItchFlow

__all__ = [
    "SEND_LOG_DTYPE",
    "FaultPlan",
    "MoldPublisher",
    "PublisherConfig",
    "RetransServer",
    "RetransStore",
    "SendLog",
    "main",
]

Records = npt.NDArray[np.void]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

FAULTS: Final[tuple[str, ...]] = ("drop", "duplicate", "reorder", "corrupt", "pause")
CORRUPT_MODES: Final[tuple[str, ...]] = ("truncate", "count", "length", "flip")
"""truncate: cut inside the last message; count: header count one too high; length: a block
length past the packet's end (all three are malformed at the MoldUDP64 layer, so the receiver
drops the packet and recovers it by retransmission); flip: bytes inside a message body changed
(MoldUDP64-valid: only the ITCH layer or the book can notice)."""

SEND_LOG_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    [("seq", "<u8"), ("count", "<u4"), ("flags", "<u4"), ("send_ns", "<i8")]
)
"""One live data packet: first message's sequence number, message count, `SendFlag` bits,
CLOCK_MONOTONIC ns just before sendto. seq 0 marks an unused slot."""


class SendFlag:
    """Bits of SEND_LOG_DTYPE.flags."""

    DROPPED = 1
    DUPLICATED = 2
    REORDERED = 4
    CORRUPTED = 8
    PAUSED_BEFORE = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """Faults applied to live data packets (heartbeats, end of session and retransmissions are
    never faulted, except `retrans_drop`). Probabilities are per packet and independent;
    `schedule` maps a live packet index (0-based) to fault names applied to it for sure."""

    seed: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    pause: float = 0.0
    pause_ms: float = 0.0
    corrupt_modes: tuple[str, ...] = ("truncate", "count", "length")
    retrans_drop: float = 0.0
    schedule: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "corrupt", "pause", "retrans_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"fault probability {name} must be within 0..1")
        if self.pause_ms < 0:
            raise ValueError("pause_ms must be >= 0")
        bad = [m for m in self.corrupt_modes if m not in CORRUPT_MODES]
        if bad or not self.corrupt_modes:
            raise ValueError(f"corrupt_modes must be among {CORRUPT_MODES}, got {bad}")
        for index, names in self.schedule.items():
            unknown = [n for n in names if n not in FAULTS]
            if index < 0 or unknown:
                raise ValueError(f"schedule[{index}]: unknown faults {unknown} (know {FAULTS})")

    @property
    def active(self) -> bool:
        return bool(
            self.schedule
            or self.drop
            or self.duplicate
            or self.reorder
            or self.corrupt
            or self.pause
            or self.retrans_drop
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherConfig:
    """Where and how to publish. `dest` may be a multicast group."""

    dest: tuple[str, int]
    session: str = "TECTRA0001"
    max_packet: int = 1400
    """Largest UDP payload (MoldUDP64 header + blocks): 1400 fits a 1500-byte MTU with room for
    IP options, VLAN tags and tunnels."""
    rate: float | None = None
    """Messages per second, paced per packet; None: flat out."""
    heartbeat_s: float = 1.0
    """Heartbeat after this long without a packet (also during pauses)."""
    multicast_ttl: int = 1
    multicast_interface: str | None = None
    """IPv4 address of the interface multicast leaves by; None: the routing table's choice."""
    multicast_loop: bool = True
    bind: tuple[str, int] | None = None
    """Local address of the sending socket (None: any)."""
    retrans_bind: tuple[str, int] | None = None
    """Address of the retransmission request server; None: no server."""
    retrans_capacity: int = 1 << 21
    """Messages kept for retransmission (oldest evicted first)."""
    retrans_max_count: int = 1024
    """Most messages sent in answer to one request."""
    file: Path | None = None
    """Also write the stream to this NASDAQ binary ITCH file (.gz: gzip'd)."""
    send_log_capacity: int = 1 << 20
    send_log_path: Path | None = None
    """Keep the send log in this file (e.g. under /dev/shm) so another process can read it."""
    faults: FaultPlan = field(default_factory=FaultPlan)
    mpid: str = "TECT"
    """MPID for F records packed here (batches without raw bytes)."""

    def __post_init__(self) -> None:
        encode_session(self.session)
        if self.max_packet < HEADER_LEN + BLOCK_PREFIX_LEN + itch.MAX_MESSAGE_LENGTH:
            raise ValueError("max_packet must hold a header and the longest ITCH message")
        if self.max_packet > 65_507:
            raise ValueError("max_packet must fit a UDP datagram (65507 bytes)")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 (or None for flat out)")
        if self.heartbeat_s <= 0:
            raise ValueError("heartbeat_s must be > 0")
        if not 0 < self.retrans_max_count <= MAX_MESSAGE_COUNT:
            raise ValueError(f"retrans_max_count must be 1..{MAX_MESSAGE_COUNT}")
        if self.retrans_capacity < 1 or self.send_log_capacity < 1:
            raise ValueError("retrans_capacity and send_log_capacity must be >= 1")


class SendLog:
    """Send times of live data packets (SEND_LOG_DTYPE), bounded; a full log stops recording
    (`full` counts what was not recorded). Backed by a file (np.memmap) when `path` is set,
    so a benchmark in another process can `SendLog.read(path)` while or after it runs."""

    def __init__(self, capacity: int, path: Path | None = None) -> None:
        self.path = path
        if path is None:
            self._log: npt.NDArray[np.void] = np.zeros(capacity, dtype=SEND_LOG_DTYPE)
        else:
            self._log = np.memmap(path, dtype=SEND_LOG_DTYPE, mode="w+", shape=(capacity,))
        self._n = 0
        self.full = 0

    def add(self, seq: int, count: int, flags: int, send_ns: int) -> None:
        if self._n >= self._log.size:
            self.full += 1
            return
        row = self._log[self._n]
        row["count"] = count
        row["flags"] = flags
        row["send_ns"] = send_ns
        row["seq"] = seq  # last: a reader polling the file treats seq 0 as not yet written
        self._n += 1

    def entries(self) -> npt.NDArray[np.void]:
        """A copy of the recorded entries, in send order."""
        return np.array(self._log[: self._n])

    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        if isinstance(self._log, np.memmap):
            self._log.flush()

    @staticmethod
    def read(path: Path) -> npt.NDArray[np.void]:
        """The entries another process's log has written so far."""
        log = np.memmap(path, dtype=SEND_LOG_DTYPE, mode="r")
        written = np.flatnonzero(log["seq"] != 0)
        return np.array(log[: int(written[-1]) + 1] if written.size else log[:0])

    @staticmethod
    def latencies(log: npt.NDArray[np.void], seqs: npt.ArrayLike, recv_ns: npt.ArrayLike) -> I64:
        """recv_ns - send_ns for messages `seqs` received at `recv_ns`, via the packet that
        carried each (the send-log entry with the greatest first seq <= seq)."""
        q = np.asarray(seqs, dtype=np.uint64)
        order = np.argsort(log["seq"], kind="stable")
        first = log["seq"][order]
        at = np.searchsorted(first, q, side="right") - 1
        out: I64 = np.asarray(recv_ns, dtype=np.int64) - log["send_ns"][order][np.maximum(at, 0)]
        return out


class RetransStore:
    """The last `capacity` published messages by sequence number, as framed chunks."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._firsts: list[int] = []
        self._chunks: deque[tuple[int, U8, I64, I64]] = deque()  # first, framed, offsets, lens
        self._count = 0
        self._lock = threading.Lock()

    def add(self, first_seq: int, framed: U8, lengths: I64) -> None:
        offsets = np.zeros(lengths.size, dtype=np.int64)
        if lengths.size:
            np.cumsum(lengths[:-1] + BLOCK_PREFIX_LEN, out=offsets[1:])
        with self._lock:
            self._chunks.append((first_seq, framed, offsets, lengths))
            self._firsts.append(first_seq)
            self._count += lengths.size
            while self._count - self._chunks[0][3].size >= self.capacity:
                _, _, _, gone = self._chunks.popleft()
                self._firsts.pop(0)
                self._count -= gone.size

    @property
    def first_seq(self) -> int | None:
        with self._lock:
            return self._chunks[0][0] if self._chunks else None

    def get(self, seq: int, count: int) -> tuple[int, U8, I64]:
        """Messages seq..seq+count-1 that are still held, from the first one held at or after
        `seq`: (their first sequence number, framed bytes, message lengths)."""
        parts: list[U8] = []
        lens: list[I64] = []
        first = -1
        with self._lock:
            i = max(bisect.bisect_right(self._firsts, seq) - 1, 0)
            end = seq + count
            for c_first, framed, offsets, lengths in list(self._chunks)[i:]:
                if c_first >= end:
                    break
                lo = max(seq - c_first, 0)
                hi = min(end - c_first, lengths.size)
                if lo >= hi:
                    continue
                if first < 0:
                    first = c_first + lo
                elif c_first + lo != first + sum(x.size for x in lens):
                    break  # never: chunks are contiguous
                a = int(offsets[lo])
                b = int(offsets[hi - 1]) + BLOCK_PREFIX_LEN + int(lengths[hi - 1])
                parts.append(framed[a:b])
                lens.append(lengths[lo:hi])
        if not parts:
            return seq, np.zeros(0, np.uint8), np.zeros(0, np.int64)
        return first, np.concatenate(parts), np.concatenate(lens)


def _sockaddr(host: str, port: int) -> tuple[str, int]:
    return (socket.gethostbyname(host), port)


def _is_multicast(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_multicast
    return False


class RetransServer:
    """UDP request server: answers MoldUDP64 request packets from a `RetransStore`, in a
    thread. Requests for another session or for messages no longer (or not yet) held get no
    answer (counted)."""

    def __init__(
        self,
        bind: tuple[str, int],
        store: RetransStore,
        session: str,
        *,
        max_packet: int,
        max_count: int,
        drop: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.session = encode_session(session)
        self.max_packet = max_packet
        self.max_count = max_count
        self._drop = drop
        self._rng = np.random.default_rng([seed, 1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(_sockaddr(*bind))
        self.sock.settimeout(0.05)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.stats = {
            "requests": 0,
            "bad_requests": 0,
            "wrong_session": 0,
            "unavailable": 0,
            "answered_packets": 0,
            "answered_messages": 0,
            "dropped_answers": 0,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="mold-retrans", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.answer(data, peer)

    def answer(self, data: bytes, peer: tuple[str, int]) -> int:
        """Answer one request datagram; returns messages sent."""
        st = self.stats
        st["requests"] += 1
        req = parse_request(data)
        if req is None:
            st["bad_requests"] += 1
            return 0
        if req.session != self.session:
            st["wrong_session"] += 1
            return 0
        first, framed, lengths = self.store.get(req.seq, min(req.count, self.max_count))
        if first != req.seq or not lengths.size:
            st["unavailable"] += 1  # evicted, or not published yet
            if not lengths.size:
                return 0
        batch = pack_packets(self.session, first, framed, lengths, max_packet=self.max_packet)
        for raw in batch.packets():
            if self._drop and self._rng.random() < self._drop:
                st["dropped_answers"] += 1
                continue
            with contextlib.suppress(OSError):
                self.sock.sendto(raw, peer)
                st["answered_packets"] += 1
        st["answered_messages"] += int(lengths.size)
        return int(lengths.size)


class MoldPublisher:
    """Publishes ITCH over MoldUDP64. `publish` may be called from one thread at a time; the
    heartbeat and retransmission threads (started by `start`) run beside it."""

    def __init__(
        self, config: PublisherConfig, *, symbols: npt.NDArray[np.bytes_] | None = None
    ) -> None:
        self.config = config
        self.symbols = symbols
        self.session = encode_session(config.session)
        self.dest = _sockaddr(*config.dest)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if _is_multicast(self.dest[0]):
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, config.multicast_ttl)
            self.sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(config.multicast_loop)
            )
            if config.multicast_interface:
                self.sock.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_MULTICAST_IF,
                    socket.inet_aton(config.multicast_interface),
                )
        if config.bind is not None:
            self.sock.bind(_sockaddr(*config.bind))
        self.store = RetransStore(config.retrans_capacity)
        self.send_log = SendLog(config.send_log_capacity, config.send_log_path)
        self.retrans: RetransServer | None = None
        if config.retrans_bind is not None:
            self.retrans = RetransServer(
                config.retrans_bind,
                self.store,
                config.session,
                max_packet=config.max_packet,
                max_count=config.retrans_max_count,
                drop=config.faults.retrans_drop,
                seed=config.faults.seed,
            )
        self._file = ItchFileWriter(config.file) if config.file is not None else None
        self._faults = config.faults
        self._fault_rng = np.random.default_rng([config.faults.seed, 0])
        self._lock = threading.Lock()  # socket sends, sequence state, stats
        self._next_seq = 1  # next sequence number to assign
        self._sent_seq = 1  # one past the last packet handed to the wire (or dropped)
        self._last_send = time.monotonic()
        self._packet_index = 0
        self._held: tuple[bytes, int, int, int] | None = None  # reordered: raw, seq, count, flags
        self._pace_t0: float | None = None
        self._paced = 0
        self._ended = False
        self._stop = threading.Event()
        self._hb_thread = threading.Thread(target=self._heartbeats, name="mold-hb", daemon=True)
        self.stats = {
            "packets": 0,
            "messages": 0,
            "bytes": 0,
            "heartbeats": 0,
            "end_of_session": 0,
            "dropped": 0,
            "duplicated": 0,
            "reordered": 0,
            "corrupted": 0,
            "pauses": 0,
            "send_errors": 0,
        }

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the retransmission server and the idle-heartbeat thread."""
        if self.retrans is not None:
            self.retrans.start()
        self._hb_thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._hb_thread.is_alive():
            self._hb_thread.join(timeout=2.0)
        if self.retrans is not None:
            self.retrans.close()
        if self._file is not None:
            self._file.close()
        self.send_log.close()
        self.sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def retrans_address(self) -> tuple[str, int] | None:
        return None if self.retrans is None else self.retrans.address

    # ---- publishing -------------------------------------------------------------------------

    def publish(self, events: Records) -> int:
        """Publish ITCH_EVENT records (packing raw bytes first for records without them, which
        needs `symbols` for A/F/P/Q); returns the first sequence number they got."""
        ev = np.asarray(events)
        if ev.size and bool((ev["raw_len"] == 0).any()):
            ev = ev.copy()
            itch.pack_events(ev, symbols=self.symbols, mpid=self.config.mpid)
        framed = itch.frame(ev) if ev.size else np.zeros(0, np.uint8)
        return self.publish_framed(framed, ev["raw_len"].astype(np.int64))

    def publish_framed(self, framed: U8, lengths: I64) -> int:
        """Publish messages already framed (2-byte BE length + message each)."""
        if self._ended:
            raise RuntimeError("the session has ended")
        first = self._next_seq
        if not lengths.size:
            return first
        batch = pack_packets(
            self.session, first, framed, lengths, max_packet=self.config.max_packet
        )
        self.store.add(first, framed, lengths)
        if self._file is not None:
            self._file.write_framed(framed, int(lengths.size))
        self._next_seq += int(lengths.size)
        hdr = parse_headers(batch.buf, batch.offsets, batch.lengths)
        for i, (seq, count) in enumerate(zip(hdr.seq.tolist(), hdr.count.tolist(), strict=True)):
            self._pace(count)
            self._send_live(batch.packet(i), seq, count)
        return first

    def heartbeat(self) -> None:
        with self._lock:
            self._flush_held()
            self._send(encode_heartbeat(self.session, self._sent_seq))
            self.stats["heartbeats"] += 1

    def end_session(self, repeat: int = 3) -> None:
        """Send end of session `repeat` times (a lost one must not leave receivers waiting).
        Further `publish` calls raise; the retransmission server keeps answering."""
        with self._lock:
            self._flush_held()
            for _ in range(repeat):
                self._send(encode_end_of_session(self.session, self._next_seq))
                self.stats["end_of_session"] += 1
            self._ended = True

    def idle(self, seconds: float) -> None:
        """Stay quiet for `seconds` (heartbeats continue from the heartbeat thread or, if it
        is not running, from here)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.config.heartbeat_s / 4))
            if not self._hb_thread.is_alive():
                self._heartbeat_if_idle()

    def run(
        self,
        flow: ItchFlow,
        *,
        seconds: float | None = None,
        messages: int | None = None,
        batch: int | None = None,
        stop: threading.Event | None = None,
        end: bool = True,
    ) -> int:
        """Publish `flow` until `seconds` pass, `messages` are sent, the day ends or `stop`
        is set; then end the session (unless `end` is False). Returns messages published."""
        if batch is None:
            batch = 4096 if self.config.rate is None else max(int(self.config.rate / 200), 16)
        deadline = None if seconds is None else time.monotonic() + seconds
        sent = 0
        while not flow.done:
            if stop is not None and stop.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            n = batch if messages is None else min(batch, messages - sent)
            if n <= 0:
                break
            events = flow.next_batch(n)
            if not events.size:
                break
            self.publish(events)
            sent += int(events.size)
        if end:
            self.end_session()
        return sent

    # ---- the wire ---------------------------------------------------------------------------

    def _pace(self, count: int) -> None:
        rate = self.config.rate
        if rate is None:
            return
        now = time.perf_counter()
        if self._pace_t0 is None or now - (self._pace_t0 + self._paced / rate) > 0.05:
            self._pace_t0, self._paced = now, 0  # start, or fell behind: no catch-up burst
        due = self._pace_t0 + self._paced / rate
        if due - now > 0.0001:
            time.sleep(due - now)
        self._paced += count

    def _faults_for(self, index: int) -> set[str]:
        f = self._faults
        chosen = set(f.schedule.get(index, ()))
        if f.drop or f.duplicate or f.reorder or f.corrupt or f.pause:
            r = self._fault_rng.random(5)
            probs = (f.drop, f.duplicate, f.reorder, f.corrupt, f.pause)
            chosen |= {name for name, x, p in zip(FAULTS, r, probs, strict=True) if x < p}
        return chosen

    def _send_live(self, raw: bytes, seq: int, count: int) -> None:
        faults = self._faults_for(self._packet_index) if self._faults.active else set()
        self._packet_index += 1
        flags = 0
        if "pause" in faults and self._faults.pause_ms > 0:
            flags |= SendFlag.PAUSED_BEFORE
            self._pause(self._faults.pause_ms / 1000.0)
        with self._lock:
            if "drop" in faults:
                self.stats["dropped"] += 1
                self.send_log.add(seq, count, flags | SendFlag.DROPPED, time.monotonic_ns())
                self._sent_seq = seq + count
                return
            if "corrupt" in faults:
                raw = self._corrupt(raw)
                flags |= SendFlag.CORRUPTED
                self.stats["corrupted"] += 1
            if "reorder" in faults and self._held is None:
                self._held = (raw, seq, count, flags | SendFlag.REORDERED)
                self.stats["reordered"] += 1
                self._sent_seq = seq + count
                return
            copies = 2 if "duplicate" in faults else 1
            if copies == 2:
                flags |= SendFlag.DUPLICATED
                self.stats["duplicated"] += 1
            self.send_log.add(seq, count, flags, time.monotonic_ns())
            for _ in range(copies):
                self._send(raw, data=count)
            self._sent_seq = seq + count
            self._flush_held()

    def _flush_held(self) -> None:
        """Send the packet held back by a reorder fault (after the one that overtook it)."""
        if self._held is None:
            return
        raw, seq, count, flags = self._held
        self._held = None
        self.send_log.add(seq, count, flags, time.monotonic_ns())
        self._send(raw, data=count)

    def _send(self, raw: bytes, *, data: int = 0) -> None:
        try:
            self.sock.sendto(raw, self.dest)
        except OSError:
            self.stats["send_errors"] += 1
            return
        self._last_send = time.monotonic()
        self.stats["packets"] += 1
        self.stats["bytes"] += len(raw)
        self.stats["messages"] += data

    def _corrupt(self, raw: bytes) -> bytes:
        rng = self._fault_rng
        mode = self._faults.corrupt_modes[int(rng.integers(0, len(self._faults.corrupt_modes)))]
        b = bytearray(raw)
        if mode == "truncate":
            del b[len(b) - int(rng.integers(1, 3)) :]  # inside the last message
        elif mode == "count":
            count = int.from_bytes(b[18:20], "big")
            b[18:20] = (count + 1).to_bytes(2, "big")
        elif mode == "length":
            b[HEADER_LEN : HEADER_LEN + 2] = (len(b)).to_bytes(2, "big")  # past the end
        else:  # flip: a body byte of the first message, past its type byte
            n = int.from_bytes(b[HEADER_LEN : HEADER_LEN + 2], "big")
            if n > 1:
                i = HEADER_LEN + 3 + int(rng.integers(0, n - 1))
                b[i] ^= int(rng.integers(1, 256))
        return bytes(b)

    def _pause(self, seconds: float) -> None:
        """Send nothing for `seconds` but heartbeats (the venue is alive, the data stalls)."""
        self.stats["pauses"] += 1
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.config.heartbeat_s / 4))
            self._heartbeat_if_idle()

    def _heartbeat_if_idle(self) -> None:
        if self._ended:
            return
        with self._lock:
            if time.monotonic() - self._last_send < self.config.heartbeat_s:
                return
            self._flush_held()
            self._send(encode_heartbeat(self.session, self._sent_seq))
            self.stats["heartbeats"] += 1

    def _heartbeats(self) -> None:
        period = self.config.heartbeat_s / 4
        while not self._stop.wait(period):
            self._heartbeat_if_idle()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tectra.sim.mold_publisher",
        description="Publish a seeded synthetic ITCH 5.0 day over MoldUDP64, with a "
        "retransmission server and optional faults. Prints JSON stats at the end.",
    )
    p.add_argument("--dest", type=_hostport, default=("127.0.0.1", 26400), help="HOST:PORT")
    p.add_argument("--retrans-host", default="127.0.0.1", help="request server address")
    p.add_argument("--retrans-port", type=int, default=26401, help="0: no request server")
    p.add_argument("--session", default="TECTRA0001")
    p.add_argument("--rate", type=float, default=0.0, help="messages/s; 0: flat out")
    p.add_argument("--seconds", type=float, default=5.0, help="publish for this long")
    p.add_argument("--messages", type=int, default=None, help="flow messages in the day")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--symbols", type=int, default=64)
    p.add_argument("--max-packet", type=int, default=1400)
    p.add_argument("--heartbeat-ms", type=float, default=1000.0)
    p.add_argument("--multicast-ttl", type=int, default=1)
    p.add_argument("--multicast-if", default=None, help="IPv4 address of the interface")
    p.add_argument("--no-multicast-loop", action="store_true")
    p.add_argument("--file", type=Path, default=None, help="also write a NASDAQ ITCH file")
    p.add_argument("--send-log", type=Path, default=None, help="send log file (e.g. /dev/shm)")
    p.add_argument("--linger", type=float, default=1.0, help="serve retransmissions after")
    for name in ("drop", "duplicate", "reorder", "corrupt", "pause"):
        p.add_argument(f"--{name}", type=float, default=0.0, help=f"{name} probability/packet")
    p.add_argument("--pause-ms", type=float, default=50.0)
    p.add_argument("--retrans-drop", type=float, default=0.0)
    p.add_argument("--fault-seed", type=int, default=None, help="default: --seed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faults = FaultPlan(
        seed=args.seed if args.fault_seed is None else args.fault_seed,
        drop=args.drop,
        duplicate=args.duplicate,
        reorder=args.reorder,
        corrupt=args.corrupt,
        pause=args.pause,
        pause_ms=args.pause_ms,
        retrans_drop=args.retrans_drop,
    )
    cfg = PublisherConfig(
        dest=args.dest,
        session=args.session,
        max_packet=args.max_packet,
        rate=args.rate or None,
        heartbeat_s=args.heartbeat_ms / 1000.0,
        multicast_ttl=args.multicast_ttl,
        multicast_interface=args.multicast_if,
        multicast_loop=not args.no_multicast_loop,
        retrans_bind=(args.retrans_host, args.retrans_port) if args.retrans_port else None,
        file=args.file,
        send_log_path=args.send_log,
        faults=faults,
    )
    flow = ItchFlow(args.seed, args.symbols, messages=args.messages)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    with MoldPublisher(cfg, symbols=flow.symbols) as pub:
        sent = pub.run(flow, seconds=args.seconds, stop=stop)
        elapsed = time.monotonic() - started
        stop.wait(args.linger)
        report = {
            "session": args.session,
            "messages": sent,
            "seconds": round(elapsed, 3),
            "messages_per_s": round(sent / elapsed, 1) if elapsed > 0 else 0.0,
            "publisher": dict(pub.stats),
            "retrans": None if pub.retrans is None else dict(pub.retrans.stats),
            "send_log_entries": len(pub.send_log),
        }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
