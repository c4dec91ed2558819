"""MoldUDP64: the packet codec and the receiving session state machine (no I/O).

This module owns:

* the wire layouts of MoldUDP64 (downstream packet header, message block, request packet) as
  big-endian numpy dtypes, encoders for every packet kind, and `pack_packets`, which cuts a
  framed message stream (2-byte big-endian length + message, NASDAQ's file format and Mold's
  message block format alike) into MTU-safe downstream packets;
* vectorised parsing of a batch of packets held in one uint8 buffer with per-packet offsets and
  lengths: `parse_headers` (one structured big-endian view for the whole batch) and
  `message_blocks` (per-message block offsets, lengths, sequence numbers), which validates every
  packet and names the cause (`Malformed`) of any it rejects;
* `MoldUdp64Session`, the receiver's state machine: `step(packets, now_ns) -> SessionOutput`
  delivers message blocks exactly once and in sequence order, drops duplicates, buffers packets
  that arrive ahead of a gap (bounded), asks for retransmission with bounded retries and a
  timeout, declares a gap lost when retries run out, follows heartbeats, end of session and
  session changes, and counts everything in `SessionCounters`.

Sockets and clocks belong to the caller: `now_ns` and per-packet receive times are inputs, and
retransmission requests come out as 20-byte request packets for the caller to send. The module
imports numpy only: MoldUDP64 carries opaque message blocks, so it needs none of tectra.schema's
records and none of tectra's business modules. Behaviour and policy: docs/moldudp64.md.
"""

from __future__ import annotations

import bisect
import enum
import importlib
import itertools
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

# The C block walk (csrc/mold.c); imported by name so type checkers treat it as Any.
_mold = importlib.import_module("tectra._mold")

__all__ = [
    "BLOCK_PREFIX_LEN",
    "COUNTERS_DTYPE",
    "COUNTER_NAMES",
    "END_OF_SESSION",
    "HEADER_DTYPE",
    "HEADER_LEN",
    "MAX_MESSAGE_COUNT",
    "REQUEST_DTYPE",
    "REQUEST_LEN",
    "SESSION_LEN",
    "DeliveredBlocks",
    "Malformed",
    "MessageBlocks",
    "MoldUdp64Session",
    "PacketBatch",
    "PacketHeaders",
    "Request",
    "SessionConfig",
    "SessionCounters",
    "SessionOutput",
    "encode_end_of_session",
    "encode_heartbeat",
    "encode_packet",
    "encode_request",
    "encode_session",
    "frame_messages",
    "message_blocks",
    "pack_packets",
    "parse_headers",
    "parse_request",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

SESSION_LEN: Final[int] = 10
HEADER_LEN: Final[int] = 20  # session(10) + sequence number(8) + message count(2)
REQUEST_LEN: Final[int] = 20  # session(10) + sequence number(8) + requested message count(2)
BLOCK_PREFIX_LEN: Final[int] = 2  # each message block: u16 BE length, then the message
END_OF_SESSION: Final[int] = 0xFFFF  # message count of an end-of-session packet
MAX_MESSAGE_COUNT: Final[int] = 0xFFFE  # largest count a data packet (or a request) may carry

HEADER_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    {
        "names": ["session", "seq", "count"],
        "formats": ["S10", ">u8", ">u2"],
        "offsets": [0, 10, 18],
        "itemsize": HEADER_LEN,
    }
)
"""Downstream packet header as on the wire (big-endian, packed)."""

REQUEST_DTYPE: Final[np.dtype[np.void]] = HEADER_DTYPE
"""Request packet: the same 20 bytes; `seq` is the first sequence wanted, `count` how many."""

_HEADER = struct.Struct(">10sQH")
_PRINTABLE_LO: Final[int] = 0x20
_PRINTABLE_HI: Final[int] = 0x7E


class Malformed(enum.IntEnum):
    """Why a packet was rejected (0: it was not). Each cause has its own counter."""

    OK = 0
    TOO_SHORT = 1  # shorter than the 20-byte header (or outside the batch buffer)
    BAD_SESSION = 2  # session field is not printable ASCII
    BLOCK_OVERRUN = 3  # a block's length prefix or body runs past the end of the packet
    COUNT_MISMATCH = 4  # bytes left over after `count` blocks (or a heartbeat/EOS with payload)
    BAD_SEQUENCE = 5  # sequence number 0, or the next sequence (seq + count) past 2**64 - 1


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_session(session: str | bytes) -> bytes:
    """A session name as its 10-byte field: printable ASCII, right-padded with spaces."""
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_LEN:
        raise ValueError(f"session {raw!r} is longer than {SESSION_LEN} bytes")
    if not all(_PRINTABLE_LO <= b <= _PRINTABLE_HI for b in raw):
        raise ValueError(f"session {raw!r} must be printable ASCII")
    return raw.ljust(SESSION_LEN, b" ")


def _check_seq(seq: int, count: int) -> None:
    if not 0 <= seq < 1 << 64:
        raise ValueError(f"sequence number {seq} does not fit in 64 bits")
    if not 0 <= count <= END_OF_SESSION:
        raise ValueError(f"message count {count} does not fit in 16 bits")


def encode_packet(session: str | bytes, seq: int, messages: Iterable[bytes]) -> bytes:
    """A downstream packet carrying `messages` (sequence numbers seq, seq+1, ...)."""
    msgs = list(messages)
    if not 0 < len(msgs) <= MAX_MESSAGE_COUNT:
        raise ValueError(f"a data packet carries 1 to {MAX_MESSAGE_COUNT} messages")
    _check_seq(seq, len(msgs))
    parts = [_HEADER.pack(encode_session(session), seq, len(msgs))]
    for msg in msgs:
        if len(msg) > 0xFFFF:
            raise ValueError(f"message of {len(msg)} bytes does not fit a message block")
        parts.append(len(msg).to_bytes(2, "big"))
        parts.append(bytes(msg))
    return b"".join(parts)


def encode_heartbeat(session: str | bytes, next_seq: int) -> bytes:
    """A heartbeat: count 0, sequence number = the next message the server will send."""
    _check_seq(next_seq, 0)
    return _HEADER.pack(encode_session(session), next_seq, 0)


def encode_end_of_session(session: str | bytes, next_seq: int) -> bytes:
    """End of session: count 0xFFFF, sequence number = one past the session's last message."""
    _check_seq(next_seq, END_OF_SESSION)
    return _HEADER.pack(encode_session(session), next_seq, END_OF_SESSION)


@dataclass(frozen=True, slots=True)
class Request:
    """A retransmission request: `count` messages from `seq` of `session` (10-byte field)."""

    session: bytes
    seq: int
    count: int


def encode_request(session: str | bytes, seq: int, count: int) -> bytes:
    """A request packet for the venue's retransmission request server."""
    if not 0 < count <= MAX_MESSAGE_COUNT:
        raise ValueError(f"a request asks for 1 to {MAX_MESSAGE_COUNT} messages, not {count}")
    _check_seq(seq, count)
    return _HEADER.pack(encode_session(session), seq, count)


def parse_request(data: bytes | bytearray | memoryview) -> Request | None:
    """A request packet, or None when it is not exactly 20 well-formed bytes."""
    raw = bytes(data)
    if len(raw) != REQUEST_LEN:
        return None
    session, seq, count = _HEADER.unpack(raw)
    if not all(_PRINTABLE_LO <= b <= _PRINTABLE_HI for b in session):
        return None
    if not 0 < count <= MAX_MESSAGE_COUNT:
        return None
    return Request(session, int(seq), int(count))


def frame_messages(messages: Iterable[bytes]) -> tuple[U8, I64]:
    """Messages as one framed buffer (2-byte BE length + message each) and their lengths."""
    msgs = [bytes(m) for m in messages]
    lengths = np.fromiter((len(m) for m in msgs), dtype=np.int64, count=len(msgs))
    if lengths.size and int(lengths.max()) > 0xFFFF:
        raise ValueError("a message longer than 65535 bytes cannot be framed")
    joined = b"".join(len(m).to_bytes(2, "big") + m for m in msgs)
    return np.frombuffer(joined, dtype=np.uint8).copy(), lengths


# --------------------------------------------------------------------------------------------
# Packet batches and vectorised parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketBatch:
    """Packets held in one byte buffer: packet i is buf[offsets[i] : offsets[i] + lengths[i]].

    `recv_ns` (optional) is each packet's receive time; the session stamps delivered messages
    with it (else with `now_ns`). This is also what `pack_packets` returns for a sender.
    """

    buf: U8
    offsets: I64
    lengths: I64
    recv_ns: I64 | None = None

    def __len__(self) -> int:
        return int(self.offsets.size)

    def packet(self, i: int) -> bytes:
        """Packet i as bytes (for a socket send; not for the hot path)."""
        start = int(self.offsets[i])
        return self.buf[start : start + int(self.lengths[i])].tobytes()

    def packets(self) -> list[bytes]:
        return [self.packet(i) for i in range(len(self))]

    @classmethod
    def from_packets(
        cls, packets: Sequence[bytes], recv_ns: Sequence[int] | I64 | None = None
    ) -> PacketBatch:
        """A batch from separate datagrams (tests, the socket fallback)."""
        lengths = np.fromiter((len(p) for p in packets), dtype=np.int64, count=len(packets))
        offsets = np.zeros(len(packets), dtype=np.int64)
        if lengths.size:
            np.cumsum(lengths[:-1], out=offsets[1:])
        buf = np.frombuffer(b"".join(packets), dtype=np.uint8).copy()
        times = None if recv_ns is None else np.asarray(recv_ns, dtype=np.int64)
        if times is not None and times.shape != offsets.shape:
            raise ValueError("recv_ns needs one time per packet")
        return cls(buf, offsets, lengths, times)

    @classmethod
    def empty(cls) -> PacketBatch:
        return cls(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass(frozen=True, slots=True)
class PacketHeaders:
    """Per-packet header fields of a batch (native byte order) and validation status."""

    session: npt.NDArray[np.bytes_]  # S10
    seq: U64
    count: I64  # 0 heartbeat, 1..0xFFFE data, 0xFFFF end of session
    status: npt.NDArray[np.uint8]  # Malformed code per packet


@dataclass(frozen=True, slots=True)
class MessageBlocks:
    """Every message block of the batch's valid data packets, packet by packet.

    `offsets` index the batch buffer at the block's 2-byte length prefix (the message starts 2
    bytes later); messages of packet p are rows first[p] : first[p] + n[p].
    """

    offsets: I64
    lengths: I64
    seqs: U64
    packet: I64
    first: I64
    n: I64


def _clip(buf: U8, offsets: I64, lengths: I64) -> tuple[I64, I64]:
    """Offsets/lengths clipped into the buffer, so no index can fall outside it."""
    offs = np.clip(np.asarray(offsets, dtype=np.int64), 0, buf.size)
    lens = np.clip(np.asarray(lengths, dtype=np.int64), 0, None)
    return offs, np.minimum(lens, buf.size - offs)


def parse_headers(buf: U8, offsets: I64, lengths: I64) -> PacketHeaders:
    """Header of every packet of a batch through one big-endian structured view.

    Packets shorter than a header are TOO_SHORT; a session field that is not printable ASCII is
    BAD_SESSION (corruption, never a new session); sequence number 0, or a packet whose next
    sequence number (seq + count) would not fit 64 bits, is BAD_SEQUENCE. Block-level checks
    are `message_blocks`'.
    """
    offs, lens = _clip(buf, offsets, lengths)
    n = offs.size
    status = np.zeros(n, dtype=np.uint8)
    session = np.zeros(n, dtype=f"S{SESSION_LEN}")
    seq = np.zeros(n, dtype=np.uint64)
    count = np.zeros(n, dtype=np.int64)
    ok = lens >= HEADER_LEN
    status[~ok] = Malformed.TOO_SHORT
    rows = np.flatnonzero(ok)
    if rows.size:
        raw = buf[offs[rows, None] + np.arange(HEADER_LEN, dtype=np.int64)]
        hdr = np.ascontiguousarray(raw).view(HEADER_DTYPE).reshape(-1)
        name = raw[:, :SESSION_LEN]
        printable = ((name >= _PRINTABLE_LO) & (name <= _PRINTABLE_HI)).all(axis=1)
        session[rows] = hdr["session"]
        seq[rows] = hdr["seq"]
        count[rows] = hdr["count"]
        n_msgs = np.where(count[rows] == END_OF_SESSION, 0, count[rows]).astype(np.uint64)
        overflow = (seq[rows] == 0) | (seq[rows] > np.uint64((1 << 64) - 1) - n_msgs)
        status[rows[overflow]] = Malformed.BAD_SEQUENCE
        status[rows[~printable]] = Malformed.BAD_SESSION
    return PacketHeaders(session, seq, count, status)


def message_blocks(buf: U8, offsets: I64, lengths: I64, headers: PacketHeaders) -> MessageBlocks:
    """Walk the message blocks of every valid data packet, all packets at once.

    Block k of every packet is read in one vector step (packets sorted by count so the packets
    still walking are a prefix), so the Python cost is per block index, not per message.
    Updates `headers.status` in place: BLOCK_OVERRUN when a length prefix or a body crosses the
    packet's end, COUNT_MISMATCH when bytes remain after `count` blocks or a heartbeat / end of
    session carries a payload. Messages of rejected packets are left out.
    """
    offs, lens = _clip(buf, offsets, lengths)
    status = headers.status
    count = headers.count
    valid = status == Malformed.OK
    data = valid & (count != 0) & (count != END_OF_SESSION)
    control = valid & ~data
    status[control & (lens != HEADER_LEN)] = Malformed.COUNT_MISMATCH
    # Every block takes at least its 2-byte prefix: a count the bytes cannot hold is an overrun
    # found up front, so a forged count costs nothing (the walk is one step per block index).
    short = data & (count * BLOCK_PREFIX_LEN > lens - HEADER_LEN)
    status[short] = Malformed.BLOCK_OVERRUN
    data &= ~short
    per = np.where(data, count, 0)
    base = np.zeros(per.size, dtype=np.int64)
    if per.size:
        np.cumsum(per[:-1], out=base[1:])
    total = int(per.sum())
    boff = np.zeros(total, dtype=np.int64)
    blen = np.zeros(total, dtype=np.int64)
    if total:
        # The per-block walk is a C loop over the batch (csrc/mold.c); it marks BLOCK_OVERRUN
        # and COUNT_MISMATCH in `status` itself.
        walk = np.ascontiguousarray(data, dtype=np.uint8)
        counts = np.ascontiguousarray(count, dtype=np.int64)
        ffi, lib = _mold.ffi, _mold.lib
        rc = lib.mold_walk_blocks(
            ffi.from_buffer("uint8_t[]", buf),
            buf.size,
            ffi.from_buffer("int64_t[]", offs),
            ffi.from_buffer("int64_t[]", lens),
            ffi.from_buffer("int64_t[]", counts),
            ffi.from_buffer("uint8_t[]", walk),
            ffi.from_buffer("int64_t[]", base),
            per.size,
            ffi.from_buffer("uint8_t[]", status),
            ffi.from_buffer("int64_t[]", boff),
            ffi.from_buffer("int64_t[]", blen),
        )
        if rc < 0:  # packets are clipped to the buffer above: a broken invariant, not input
            raise RuntimeError(f"mold_walk_blocks: {rc}")
    good = data & (status == Malformed.OK)
    n = np.where(good, per, 0)
    keep = np.repeat(good, per)
    packet = np.repeat(np.arange(per.size, dtype=np.int64), n)
    first = np.zeros(n.size, dtype=np.int64)
    if n.size:
        np.cumsum(n[:-1], out=first[1:])
    rank = np.arange(packet.size, dtype=np.int64) - first[packet]  # block index in its packet
    seqs = headers.seq[packet] + rank.astype(np.uint64)
    return MessageBlocks(boff[keep], blen[keep], seqs, packet, first, n)


def pack_packets(
    session: str | bytes,
    first_seq: int,
    framed: U8,
    lengths: I64,
    *,
    max_packet: int = 1400,
    max_count: int = MAX_MESSAGE_COUNT,
) -> PacketBatch:
    """Cut a framed stream (message i has length lengths[i] and its 2-byte prefix) into
    downstream packets of at most `max_packet` bytes and `max_count` messages, greedily.

    The result is a `PacketBatch` (one buffer, offsets, lengths) ready for sendmmsg or a loop
    of sendto; packet headers carry `session` and the sequence number of their first message.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lens + BLOCK_PREFIX_LEN)
    if (ends[-1] if ends.size else 0) != framed.size:
        raise ValueError("lengths do not add up to the framed buffer")
    budget = max_packet - HEADER_LEN
    if lens.size and int(lens.max()) + BLOCK_PREFIX_LEN > budget:
        raise ValueError(f"a message does not fit a {max_packet}-byte packet")
    if not 0 < max_count <= MAX_MESSAGE_COUNT:
        raise ValueError(f"max_count must be 1..{MAX_MESSAGE_COUNT}")
    name = encode_session(session)
    cuts = [0]  # message index where each packet starts
    n = lens.size
    while cuts[-1] < n:
        start = cuts[-1]
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + budget, side="right"))
        cuts.append(min(stop, start + max_count, n))
    first = np.asarray(cuts[:-1], dtype=np.int64)
    stop_idx = np.asarray(cuts[1:], dtype=np.int64)
    count = stop_idx - first
    src_start = np.where(first > 0, ends[np.maximum(first - 1, 0)], 0) if n else first
    src_end = ends[stop_idx - 1] if n else first
    payload = src_end - src_start
    pkt_len = payload + HEADER_LEN
    offsets = np.zeros(pkt_len.size, dtype=np.int64)
    if pkt_len.size:
        np.cumsum(pkt_len[:-1], out=offsets[1:])
    out = np.empty(int(pkt_len.sum()), dtype=np.uint8)
    hdr = np.zeros(pkt_len.size, dtype=HEADER_DTYPE)
    hdr["session"] = name
    hdr["seq"] = first.astype(np.uint64) + np.uint64(first_seq)
    hdr["count"] = count
    hdr_bytes = hdr.view(np.uint8).reshape(-1, HEADER_LEN)
    for i, (o, a, b) in enumerate(
        zip(offsets.tolist(), src_start.tolist(), src_end.tolist(), strict=True)
    ):
        out[o : o + HEADER_LEN] = hdr_bytes[i]
        out[o + HEADER_LEN : o + HEADER_LEN + b - a] = framed[a:b]
    return PacketBatch(out, offsets, pkt_len)


# --------------------------------------------------------------------------------------------
# The receiving session
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Retransmission and buffering policy of a `MoldUdp64Session` (docs/moldudp64.md)."""

    request_timeout_ns: int = 50_000_000
    """How long to wait for a retransmission before asking again ([feed] retrans_timeout_s)."""
    max_retries: int = 5
    """Requests per gap before it is declared lost ([feed] retrans_max_retries)."""
    max_request_count: int = 1024
    """Most messages asked for in one request; a longer gap is asked for in several requests
    (its front first, at most `max_requests_per_step` of them per step)."""
    gap_grace_ns: int = 1_000_000
    """Wait this long after a gap appears before the first request: a packet that was merely
    reordered fills it for free."""
    reorder_capacity: int = 65_536
    """Most messages held ahead of a gap; beyond it new data is dropped (and asked for again)."""
    max_requests_per_step: int = 64
    """Most requests one step emits, so a huge gap cannot flood the request server."""
    start_seq: int | None = 1
    """First sequence number expected in a session (1: recover everything from the start of
    session; a warm start passes its snapshot's next sequence). None joins late: the first
    packet's sequence number is taken as the start and nothing before it is asked for."""
    retired_sessions: int = 4
    """How many previous session names are remembered, so a stray late packet of an old session
    is dropped (counted stale_session) instead of flipping the session back."""

    def __post_init__(self) -> None:
        if self.request_timeout_ns <= 0 or self.gap_grace_ns < 0:
            raise ValueError("request_timeout_ns must be > 0 and gap_grace_ns >= 0")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < self.max_request_count <= MAX_MESSAGE_COUNT:
            raise ValueError(f"max_request_count must be 1..{MAX_MESSAGE_COUNT}")
        if self.reorder_capacity < 0 or self.max_requests_per_step <= 0:
            raise ValueError("reorder_capacity must be >= 0, max_requests_per_step > 0")
        if self.start_seq is not None and self.start_seq < 1:
            raise ValueError("start_seq must be >= 1 (or None to join late)")


COUNTER_NAMES: Final[tuple[str, ...]] = (
    "packets",
    "data_packets",
    "messages",
    "heartbeats",
    "end_of_session",
    "duplicates",
    "duplicate_packets",
    "gaps",
    "gap_messages",
    "retrans_requests",
    "retrans_filled",
    "reorder_filled",
    "reorder_overflow",
    "lost",
    "lost_gaps",
    "sessions",
    "stale_session",
    "malformed_too_short",
    "malformed_bad_session",
    "malformed_block_overrun",
    "malformed_count_mismatch",
    "malformed_bad_sequence",
)

COUNTERS_DTYPE: Final[np.dtype[np.void]] = np.dtype([(n, "<u8") for n in COUNTER_NAMES])
"""One record of every session counter, for copying into shared memory at scrape time."""


@dataclass(slots=True)
class SessionCounters:
    """Cumulative counts of a session (all sessions it has followed). Identities that hold:

    * packets = data_packets + heartbeats + end_of_session + stale_session + malformed_total
    * messages carried by data packets = messages + duplicates + reorder_overflow + held
    * with no reorder_overflow: gap_messages = reorder_filled + retrans_filled + lost
      + messages still missing
    """

    packets: int = 0  # every packet handed to step
    data_packets: int = 0  # well-formed packets with 1..0xFFFE messages of a current session
    messages: int = 0  # messages delivered
    heartbeats: int = 0
    end_of_session: int = 0  # end-of-session packets (servers repeat them)
    duplicates: int = 0  # messages received again after delivery or while already held
    duplicate_packets: int = 0  # packets made only of duplicates
    gaps: int = 0  # times a jump in sequence numbers was seen
    gap_messages: int = 0  # messages missing when those jumps were seen
    retrans_requests: int = 0  # request packets emitted
    retrans_filled: int = 0  # gap messages that arrived after being asked for
    reorder_filled: int = 0  # gap messages that arrived before any request (reordering)
    reorder_overflow: int = 0  # messages dropped because the reorder buffer was full
    lost: int = 0  # messages declared lost (retries exhausted, or abandoned by a new session)
    lost_gaps: int = 0
    sessions: int = 0  # sessions followed (the first one included)
    stale_session: int = 0  # packets of a previous session, dropped
    malformed_too_short: int = 0
    malformed_bad_session: int = 0
    malformed_block_overrun: int = 0
    malformed_count_mismatch: int = 0
    malformed_bad_sequence: int = 0

    @property
    def malformed(self) -> int:
        return (
            self.malformed_too_short
            + self.malformed_bad_session
            + self.malformed_block_overrun
            + self.malformed_count_mismatch
            + self.malformed_bad_sequence
        )

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in COUNTER_NAMES}

    def as_record(self) -> npt.NDArray[np.void]:
        rec = np.zeros(1, dtype=COUNTERS_DTYPE)
        for name in COUNTER_NAMES:
            rec[name] = getattr(self, name)
        return rec


@dataclass(slots=True)
class _Gap:
    start: int
    end: int
    first_seen_ns: int
    requests: int = 0  # rounds of requests sent (the retry count)
    last_request_ns: int = 0
    asked_end: int = 0  # the last round asked for start..asked_end-1


@dataclass(slots=True)
class _Fragment:
    """Messages start..end-1 held or about to be delivered; data None marks a lost range."""

    start: int
    end: int
    data: U8 | None = None  # the blocks, back to back (length prefixes included)
    offsets: I64 | None = None  # block offsets within data
    lengths: I64 | None = None
    recv_ns: int = 0
    owned: bool = True  # False while `data` is a view of the caller's buffer


class DeliveredBlocks(NamedTuple):
    """Runs of delivered messages as (offsets, lengths, first_seqs, recv_ns) into
    `SessionOutput.data`: the argument order of `ItchDecoder.decode_blocks`."""

    offsets: I64
    lengths: I64
    first_seqs: U64
    recv_ns: I64


@dataclass(frozen=True, slots=True)
class SessionOutput:
    """What one step produced.

    Delivered messages are `data` (their blocks back to back: 2-byte BE length + message, the
    NASDAQ framed format the ITCH decoder reads) with per-message `offsets` (of the length
    prefix), `lengths` (of the message), `seqs` and `recv_ns`, in delivery order: strictly
    increasing sequence numbers within a session, jumping only over `lost` ranges.
    `requests` are request packets to send now (REQUEST_DTYPE records; `requests_bytes()`).
    """

    data: U8
    offsets: I64
    lengths: I64
    seqs: U64
    recv_ns: I64
    requests: npt.NDArray[np.void]
    lost: list[tuple[int, int]]  # (first seq, count) declared lost in this step
    gaps: list[tuple[int, int]]  # (first seq, count) of sequence jumps seen in this step
    session_starts: list[tuple[int, bytes]]  # (output row where it starts, session name)
    duplicates: int
    malformed: int
    heartbeats: int
    end_of_session: bool  # an end-of-session packet was seen for the first time
    next_deadline_ns: int | None  # call step again by then even without packets
    precomputed_blocks: DeliveredBlocks | None = field(default=None, repr=False, compare=False)
    """`blocks()` already worked out by the session's in-order fast path (None: compute it)."""

    @property
    def count(self) -> int:
        return int(self.seqs.size)

    @property
    def message_offsets(self) -> I64:
        return self.offsets + BLOCK_PREFIX_LEN

    def message(self, i: int) -> bytes:
        start = int(self.offsets[i]) + BLOCK_PREFIX_LEN
        return self.data[start : start + int(self.lengths[i])].tobytes()

    def messages(self) -> list[bytes]:
        return [self.message(i) for i in range(self.count)]

    def requests_bytes(self) -> list[bytes]:
        return [r.tobytes() for r in self.requests]

    def blocks(self) -> DeliveredBlocks:
        """The delivery as ITCH decoder blocks (`ItchDecoder.decode_blocks(out.data, *blocks)`):
        maximal runs of rows with consecutive sequence numbers, one session and one receive
        time, each run one contiguous stretch of `data`."""
        if self.precomputed_blocks is not None:
            return self.precomputed_blocks
        n = self.count
        if not n:
            return DeliveredBlocks(_EMPTY_I64, _EMPTY_I64, np.zeros(0, np.uint64), _EMPTY_I64)
        brk = np.zeros(n, dtype=bool)
        brk[0] = True
        brk[1:] = (np.diff(self.seqs.astype(np.int64)) != 1) | (np.diff(self.recv_ns) != 0)
        for row, _ in self.session_starts:
            if row < n:
                brk[row] = True
        first = np.flatnonzero(brk)
        last = np.append(first[1:], n) - 1
        start = self.offsets[first]
        end = self.offsets[last] + BLOCK_PREFIX_LEN + self.lengths[last]
        return DeliveredBlocks(start, end - start, self.seqs[first], self.recv_ns[first])

    def runs(self) -> list[tuple[int, int]]:
        """Row ranges [a, b) of consecutive sequence numbers in one session: each is one
        framed buffer data[offsets[a] : end of row b-1] for `ItchDecoder.decode(buf, seq)`."""
        if not self.count:
            return []
        breaks = np.flatnonzero(np.diff(self.seqs.astype(np.int64)) != 1) + 1
        cuts = {0, self.count, *breaks.tolist(), *(row for row, _ in self.session_starts)}
        edges = sorted(c for c in cuts if 0 <= c <= self.count)
        return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


_EMPTY_U8: Final[U8] = np.zeros(0, dtype=np.uint8)
_EMPTY_U64: Final[U64] = np.zeros(0, dtype=np.uint64)
_EMPTY_I64: Final[I64] = np.zeros(0, dtype=np.int64)


class MoldUdp64Session:
    """Receiver side of one MoldUDP64 stream (live packets and retransmissions alike).

    `step(packets, now_ns)` is the whole interface: call it with every received batch (from
    the feed socket, the retransmission socket, or both merged) and also with an empty batch
    by `next_deadline_ns`, so requests time out and retry. It never raises on packet content.
    """

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.counters = SessionCounters()
        self.session: bytes | None = None
        self.next_seq: int | None = None  # next sequence number to deliver
        self.high_seq: int = 0  # one past the highest sequence number known to exist
        self.ended = False
        self.eos_seq: int | None = None
        self.last_packet_ns: int | None = None  # liveness: last well-formed packet
        self._retired: deque[bytes] = deque(maxlen=max(self.config.retired_sessions, 1))
        self._gaps: list[_Gap] = []  # sorted and disjoint
        self._held: dict[int, _Fragment] = {}  # by first sequence number, all >= next_seq
        self._held_messages = 0
        # per-step output, collected as the step goes
        self._out: list[tuple[_Fragment, I64 | None]] = []
        self._out_lost: list[tuple[int, int]] = []
        self._out_gaps: list[tuple[int, int]] = []
        self._out_sessions: list[tuple[int, bytes]] = []
        self._out_rows = 0
        self.fast_path = True
        """Take in-order batches through the C fast path (False: always the general path, for
        cross-checking; the outputs and counters are the same either way)."""
        self.fast_steps = 0  # steps the fast path handled (diagnostics and tests)
        self._scratch_init()

    def _scratch_init(self) -> None:
        # Reused output buffers of the fast path (grown on demand, never pickled).
        self._fx_data = np.zeros(0, dtype=np.uint8)
        self._fx_msg = np.zeros((4, 0), dtype=np.int64)
        self._fx_blk = np.zeros((4, 0), dtype=np.int64)
        self._fx_res = np.zeros(6, dtype=np.uint64)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_fx_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("fast_path", True)
        self.__dict__.setdefault("fast_steps", 0)
        self._scratch_init()

    # ---- queries ----------------------------------------------------------------------------

    @property
    def held_messages(self) -> int:
        """Messages buffered ahead of a gap."""
        return self._held_messages

    @property
    def missing(self) -> list[tuple[int, int]]:
        """Outstanding gaps as (first seq, count)."""
        return [(g.start, g.end - g.start) for g in self._gaps]

    @property
    def complete(self) -> bool:
        """End of session seen and every message before it delivered or declared lost."""
        return bool(
            self.ended
            and self.eos_seq is not None
            and self.next_seq is not None
            and self.next_seq >= self.eos_seq
            and not self._gaps
        )

    def next_deadline_ns(self) -> int | None:
        """When a request is next due (or a gap is to be declared lost); None: nothing pending."""
        cfg = self.config
        room = self._held_messages < cfg.reorder_capacity
        due = [
            g.first_seen_ns + cfg.gap_grace_ns
            if g.requests == 0
            else g.last_request_ns + cfg.request_timeout_ns
            for g in self._gaps
            if room or g.start == self.next_seq  # the others wait for packets, not time
        ]
        return min(due) if due else None

    # ---- the step ---------------------------------------------------------------------------

    def step(self, packets: PacketBatch, now_ns: int) -> SessionOutput:
        """Consume a batch of packets received by `now_ns`; see `SessionOutput`."""
        self._out, self._out_lost, self._out_gaps, self._out_sessions = [], [], [], []
        self._out_rows = 0
        if self.fast_path and packets.offsets.size:
            fast = self._in_order(packets, now_ns)
            if fast is not None:
                return fast
        c = self.counters
        dup_before, hb_before, ended_before = c.duplicates, c.heartbeats, self.ended
        malformed = 0
        if len(packets):
            buf = np.asarray(packets.buf, dtype=np.uint8)
            hdr = parse_headers(buf, packets.offsets, packets.lengths)
            blocks = message_blocks(buf, packets.offsets, packets.lengths, hdr)
            causes = np.bincount(hdr.status, minlength=len(Malformed))
            c.packets += len(packets)
            c.malformed_too_short += int(causes[Malformed.TOO_SHORT])
            c.malformed_bad_session += int(causes[Malformed.BAD_SESSION])
            c.malformed_block_overrun += int(causes[Malformed.BLOCK_OVERRUN])
            c.malformed_count_mismatch += int(causes[Malformed.COUNT_MISMATCH])
            c.malformed_bad_sequence += int(causes[Malformed.BAD_SEQUENCE])
            malformed = len(packets) - int(causes[Malformed.OK])
            if malformed < len(packets):
                self.last_packet_ns = now_ns
            recv = None if packets.recv_ns is None else np.asarray(packets.recv_ns, np.int64)
            if not self._fast_path(buf, hdr, blocks, recv, now_ns):
                self._slow_path(buf, hdr, blocks, recv, now_ns)
        self._drain()
        requests = self._timers(now_ns)
        self._drain()
        self._detach()
        return self._output(
            requests,
            duplicates=c.duplicates - dup_before,
            malformed=malformed,
            heartbeats=c.heartbeats - hb_before,
            end_of_session=self.ended and not ended_before,
        )

    def _in_order(self, packets: PacketBatch, now_ns: int) -> SessionOutput | None:
        """The common case in one C call (csrc/mold.c mold_fast_batch): an established session
        with nothing missing, held or asked for, and a batch of well-formed data packets and
        heartbeats of that session carrying exactly the next sequence numbers. None when it is
        anything else: the general path then takes the batch from scratch (nothing changed).
        Counters and output are what the general path gives for such a batch."""
        session, next_seq = self.session, self.next_seq
        if (
            session is None
            or next_seq is None
            or self.high_seq != next_seq  # something beyond next_seq is known (held, missing)
            or self._gaps
            or self._held
            or self.ended
            or len(session) != SESSION_LEN
        ):
            return None
        buf, recv = packets.buf, packets.recv_ns
        if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
            return None
        offs = _i64(packets.offsets)
        lens = _i64(packets.lengths)
        if offs is None or lens is None or lens.shape != offs.shape:
            return None
        if recv is not None:
            recv = _i64(recv)
            if recv is None or recv.shape != offs.shape:
                return None
        n = int(offs.size)
        if self._fx_blk.shape[1] < n:
            self._fx_blk = np.zeros((4, max(n, 16)), dtype=np.int64)
        ffi, lib = _mold.ffi, _mold.lib
        res = self._fx_res
        while True:
            data, msg, blk = self._fx_data, self._fx_msg, self._fx_blk
            try:
                rc = lib.mold_fast_batch(
                    ffi.from_buffer("uint8_t[]", buf),
                    buf.size,
                    ffi.from_buffer("int64_t[]", offs),
                    ffi.from_buffer("int64_t[]", lens),
                    n,
                    session,
                    next_seq,
                    ffi.NULL if recv is None else ffi.from_buffer("int64_t[]", recv),
                    now_ns,
                    ffi.from_buffer("uint8_t[]", data),
                    data.size,
                    ffi.from_buffer("int64_t[]", msg),
                    msg.shape[1],
                    ffi.from_buffer("int64_t[]", blk),
                    blk.shape[1],
                    ffi.from_buffer("uint64_t[]", res),
                )
            except (OverflowError, TypeError, ValueError):  # e.g. now_ns outside int64
                return None
            if rc != lib.MOLD_FAST_ROOM:
                break
            need_msgs, need_bytes = int(res[3]), int(res[5])
            if need_bytes > data.size:
                self._fx_data = np.zeros(max(need_bytes, 2 * data.size, 4096), dtype=np.uint8)
            if need_msgs > msg.shape[1]:
                self._fx_msg = np.zeros((4, max(need_msgs, 2 * msg.shape[1], 256)), np.int64)
        if rc != lib.MOLD_FAST_OK:
            return None
        end, n_data, n_hb, n_msgs, n_runs, n_bytes = res.tolist()
        c = self.counters
        c.packets += n
        c.data_packets += n_data
        c.heartbeats += n_hb
        c.messages += n_msgs
        self.last_packet_ns = now_ns
        self.next_seq = self.high_seq = end  # high_seq was next_seq: nothing beyond it known
        self._out_rows = n_msgs
        self.fast_steps += 1
        if n_msgs:
            out_data = data[:n_bytes].copy()
            rows = msg[:, :n_msgs].copy()
            runs = blk[:, :n_runs].copy()
            offsets, lengths, seqs, recv_ns = rows[0], rows[1], rows[2].view(np.uint64), rows[3]
            blocks: DeliveredBlocks | None = DeliveredBlocks(
                runs[0], runs[1], runs[2].view(np.uint64), runs[3]
            )
        else:
            out_data, offsets, lengths, seqs, recv_ns = (
                _EMPTY_U8,
                _EMPTY_I64,
                _EMPTY_I64,
                np.zeros(0, np.uint64),
                _EMPTY_I64,
            )
            blocks = None
        return SessionOutput(
            data=out_data,
            offsets=offsets,
            lengths=lengths,
            seqs=seqs,
            recv_ns=recv_ns,
            requests=np.zeros(0, dtype=REQUEST_DTYPE),
            lost=self._out_lost,
            gaps=self._out_gaps,
            session_starts=self._out_sessions,
            duplicates=0,
            malformed=0,
            heartbeats=n_hb,
            end_of_session=False,
            next_deadline_ns=None,  # nothing missing, so no timer
            precomputed_blocks=blocks,
        )

    def _fast_path(
        self, buf: U8, hdr: PacketHeaders, blocks: MessageBlocks, recv: I64 | None, now_ns: int
    ) -> bool:
        """The common case in whole-batch numpy, no per-packet Python: one known session, every
        packet valid, in order and contiguous from next_seq, nothing missing or held."""
        if (
            self.session is None
            or self.next_seq is None
            or self._gaps
            or self._held
            or self.ended
            or bool(hdr.status.any())
            or not bool((hdr.session == self.session).all())
            or bool((hdr.count == END_OF_SESSION).any())
            or int(hdr.seq[0]) != self.next_seq
            or int(hdr.seq.max()) >= 1 << 62  # keeps the int64 arithmetic below exact
        ):
            return False
        seq = hdr.seq.astype(np.int64)
        if seq.size > 1 and not bool((seq[1:] == seq[:-1] + hdr.count[:-1]).all()):
            return False
        c = self.counters
        has_data = hdr.count > 0
        n_data = int(has_data.sum())
        c.data_packets += n_data
        c.heartbeats += int(hdr.count.size) - n_data
        total = int(blocks.offsets.size)
        if total:
            first_rows = blocks.first[has_data]
            last_rows = first_rows + blocks.n[has_data] - 1
            a = blocks.offsets[first_rows]  # each data packet's payload is buf[a:b]
            b = blocks.offsets[last_rows] + BLOCK_PREFIX_LEN + blocks.lengths[last_rows]
            sizes = b - a
            out_start = np.zeros(sizes.size, dtype=np.int64)
            np.cumsum(sizes[:-1], out=out_start[1:])
            data = np.concatenate([buf[x:y] for x, y in zip(a.tolist(), b.tolist(), strict=True)])
            rank = (np.cumsum(has_data) - 1)[blocks.packet]  # row -> its data packet's rank
            offsets = blocks.offsets - a[rank] + out_start[rank]
            times = np.full(total, now_ns, np.int64) if recv is None else recv[blocks.packet]
            frag = _Fragment(self.next_seq, self.next_seq + total, data, offsets, blocks.lengths)
            self._emit(frag, times)
        end = int(seq[-1]) + int(hdr.count[-1])
        self.next_seq = end
        self.high_seq = max(self.high_seq, end)
        return True

    def _slow_path(
        self, buf: U8, hdr: PacketHeaders, blocks: MessageBlocks, recv: I64 | None, now_ns: int
    ) -> None:
        c = self.counters
        status = hdr.status.tolist()
        sessions = hdr.session.tolist()
        seqs = hdr.seq.tolist()
        counts = hdr.count.tolist()
        firsts = blocks.first.tolist()
        times = None if recv is None else recv.tolist()
        for p, bad in enumerate(status):
            if bad:
                continue
            name = bytes(sessions[p])
            if name != self.session:
                if name in self._retired:
                    c.stale_session += 1
                    continue
                self._new_session(name)
            seq, count = int(seqs[p]), int(counts[p])
            if self.next_seq is None:  # joining late: this packet says where the stream is
                self.next_seq = self.high_seq = seq
            if count == END_OF_SESSION:
                c.end_of_session += 1
                self._extend(seq, now_ns)
                if not self.ended:
                    self.ended, self.eos_seq = True, seq
            elif count == 0:
                c.heartbeats += 1
                self._extend(seq, now_ns)
            else:
                c.data_packets += 1
                t = now_ns if times is None else int(times[p])
                self._accept(_Packet(buf, blocks, int(firsts[p]), seq, t), count, now_ns)

    def _accept(self, pkt: _Packet, count: int, now_ns: int) -> None:
        """Take what is new in a valid data packet's messages seq..seq+count-1."""
        c = self.counters
        assert self.next_seq is not None
        start, end = pkt.seq, pkt.seq + count
        if end <= self.next_seq:
            c.duplicates += count
            c.duplicate_packets += 1
            return
        if start < self.next_seq:
            c.duplicates += self.next_seq - start
            start = self.next_seq
        old_high = self.high_seq
        fresh = 0
        if end > old_high:  # new territory, with a gap before it if it starts beyond
            lo = max(start, old_high)
            self._extend(lo, now_ns)
            self.high_seq = end
            if not self._take(pkt, lo, end):
                self._add_gap(lo, end, now_ns, new=False)
            fresh = end - lo
        top = min(end, old_high)  # below old_high, only what meets a gap is new
        if start < top:
            filled, dropped = self._fill(pkt, start, top, now_ns)
            c.duplicates += (top - start) - filled - dropped
            if filled == 0 and fresh == 0:
                c.duplicate_packets += 1

    def _fill(self, pkt: _Packet, start: int, stop: int, now_ns: int) -> tuple[int, int]:
        """Fill the gaps [start, stop) meets; returns how many messages filled a gap and how
        many would have but found the reorder buffer full."""
        c = self.counters
        i = max(bisect.bisect_right(self._gaps, start, key=_gap_start) - 1, 0)
        j = i
        filled = dropped = 0
        pieces: list[_Gap] = []
        while j < len(self._gaps) and self._gaps[j].start < stop:
            g = self._gaps[j]
            j += 1
            lo, hi = max(g.start, start), min(g.end, stop)
            if lo >= hi:
                pieces.append(g)
                continue
            if not self._take(pkt, lo, hi):
                # The answer came but we had no room for it: that is not the server's failure,
                # so the gap starts over instead of spending its retries.
                g.requests, g.first_seen_ns, g.asked_end = 0, now_ns, 0
                pieces.append(g)
                dropped += hi - lo
                continue
            filled += hi - lo
            if g.requests:
                c.retrans_filled += hi - lo
            else:
                c.reorder_filled += hi - lo
            # Progress restarts the retry budget of what remains. A part that was asked for
            # waits a timeout from now (the rest of a multi-packet answer is usually still in
            # flight); a part never asked for is due at once (the answer to the front arrived).
            if g.start < lo:
                pieces.append(self._remainder(g, g.start, lo, now_ns))
            if hi < g.end:
                pieces.append(self._remainder(g, hi, g.end, now_ns))
        self._gaps[i:j] = pieces
        self._drain()
        return filled, dropped

    @staticmethod
    def _remainder(g: _Gap, start: int, end: int, now_ns: int) -> _Gap:
        if g.requests and start < g.asked_end:
            return _Gap(start, end, g.first_seen_ns, 1, now_ns, min(g.asked_end, end))
        return _Gap(start, end, g.first_seen_ns)

    def _take(self, pkt: _Packet, lo: int, hi: int) -> bool:
        """Hold messages lo..hi-1 of `pkt` for delivery; False when the reorder buffer is full
        (the range is then still missing, to be asked for again)."""
        n = hi - lo
        if lo != self.next_seq and self._held_messages + n > self.config.reorder_capacity:
            self.counters.reorder_overflow += n
            return False
        r0 = pkt.row0 + (lo - pkt.seq)
        offs = pkt.blocks.offsets[r0 : r0 + n]
        lens = pkt.blocks.lengths[r0 : r0 + n]
        a = int(offs[0])
        b = int(offs[-1]) + BLOCK_PREFIX_LEN + int(lens[-1])
        self._held[lo] = _Fragment(lo, hi, pkt.buf[a:b], offs - a, lens, pkt.recv_ns, False)
        self._held_messages += n
        if lo == self.next_seq:
            self._drain()
        return True

    def _extend(self, upto: int, now_ns: int) -> None:
        """The stream is known to reach `upto` (exclusive): whatever is new before it is a gap."""
        if upto > self.high_seq:
            self._add_gap(self.high_seq, upto, now_ns, new=True)
            self.high_seq = upto

    def _add_gap(self, start: int, end: int, now_ns: int, *, new: bool) -> None:
        if new:
            self.counters.gaps += 1
            self.counters.gap_messages += end - start
            self._out_gaps.append((start, end - start))
        i = bisect.bisect_left(self._gaps, start, key=_gap_start)
        self._gaps.insert(i, _Gap(start, end, now_ns))

    def _new_session(self, name: bytes) -> None:
        """A new session name: give up the old session (its gaps are lost, what is held is
        delivered) and expect the new one from `start_seq`."""
        if self.session is not None:
            for g in self._gaps:
                self._declare_lost(g)
            self._gaps = []
            self._drain()
            self._retired.append(self.session)
        self.session = name
        self.counters.sessions += 1
        self._out_sessions.append((self._out_rows, name))
        self.next_seq = self.config.start_seq
        self.high_seq = self.next_seq or 0
        self.ended, self.eos_seq = False, None
        self._held.clear()
        self._held_messages = 0

    def _declare_lost(self, g: _Gap) -> None:
        self.counters.lost += g.end - g.start
        self.counters.lost_gaps += 1
        self._out_lost.append((g.start, g.end - g.start))
        self._held[g.start] = _Fragment(g.start, g.end)  # a marker delivery skips over

    def _timers(self, now_ns: int) -> npt.NDArray[np.void]:
        """Ask for gaps whose grace or timeout has passed; give up on those out of retries."""
        cfg = self.config
        wanted: list[tuple[int, int]] = []
        keep: list[_Gap] = []
        budget = cfg.max_requests_per_step
        # With the reorder buffer full, only the gap at the head (whose answer is delivered at
        # once) is worth asking for; the others wait, without spending retries.
        room = self._held_messages < cfg.reorder_capacity
        for g in self._gaps:
            if g.requests == 0:
                due = g.first_seen_ns + cfg.gap_grace_ns
            else:
                due = g.last_request_ns + cfg.request_timeout_ns
            if now_ns >= due and not room and g.start != self.next_seq:
                keep.append(g)
                continue
            if now_ns >= due and g.requests >= cfg.max_retries:
                self._declare_lost(g)
                continue
            if now_ns >= due and budget > 0:
                # a long gap is asked for front first, in pieces; one retry per round
                size = cfg.max_request_count
                g.asked_end = min(g.end, g.start + budget * size)
                for first in range(g.start, g.asked_end, size):
                    wanted.append((first, min(size, g.end - first)))
                    budget -= 1
                g.requests += 1
                g.last_request_ns = now_ns
            keep.append(g)
        self._gaps = keep
        self.counters.retrans_requests += len(wanted)
        req = np.zeros(len(wanted), dtype=REQUEST_DTYPE)
        if wanted and self.session is not None:
            req["session"] = self.session
            req["seq"] = [w[0] for w in wanted]
            req["count"] = [w[1] for w in wanted]
        return req

    def _drain(self) -> None:
        """Deliver held fragments from next_seq on, in order, skipping lost ranges."""
        while self.next_seq is not None and self.next_seq in self._held:
            frag = self._held.pop(self.next_seq)
            if frag.data is not None:
                self._held_messages -= frag.end - frag.start
                self._emit(frag, None)
            self.next_seq = frag.end

    def _emit(self, frag: _Fragment, times: I64 | None) -> None:
        n = frag.end - frag.start
        self.counters.messages += n
        self._out_rows += n
        self._out.append((frag, times))

    def _detach(self) -> None:
        """Copy held fragments out of the caller's buffer, which it may reuse after the step."""
        for frag in self._held.values():
            if not frag.owned and frag.data is not None:
                frag.data = frag.data.copy()
                frag.owned = True

    def _output(
        self,
        requests: npt.NDArray[np.void],
        *,
        duplicates: int,
        malformed: int,
        heartbeats: int,
        end_of_session: bool,
    ) -> SessionOutput:
        out = [(f, t) for f, t in self._out if f.data is not None]
        self._out = []
        if out:
            sizes = [0, *(int(f.data.size) for f, _ in out if f.data is not None)]
            base = np.cumsum(sizes[:-1]).tolist()
            parts = [(f.data, f.offsets, f.lengths) for f, _ in out]
            data = np.concatenate([d for d, _, _ in parts if d is not None])
            offsets = np.concatenate(
                [o + b for (_, o, _), b in zip(parts, base, strict=True) if o is not None]
            )
            lengths = np.concatenate([x for _, _, x in parts if x is not None])
            seqs = np.concatenate([np.arange(f.start, f.end, dtype=np.uint64) for f, _ in out])
            recv = np.concatenate(
                [np.full(f.end - f.start, f.recv_ns, np.int64) if t is None else t for f, t in out]
            )
        else:
            data, offsets, lengths = _EMPTY_U8, _EMPTY_I64, _EMPTY_I64
            seqs, recv = np.zeros(0, np.uint64), _EMPTY_I64
        return SessionOutput(
            data=data,
            offsets=offsets,
            lengths=lengths,
            seqs=seqs,
            recv_ns=recv,
            requests=requests,
            lost=self._out_lost,
            gaps=self._out_gaps,
            session_starts=self._out_sessions,
            duplicates=duplicates,
            malformed=malformed,
            heartbeats=heartbeats,
            end_of_session=end_of_session,
            next_deadline_ns=self.next_deadline_ns(),
        )


@dataclass(frozen=True, slots=True)
class _Packet:
    """A valid data packet being accepted: its batch, first block row and first sequence."""

    buf: U8
    blocks: MessageBlocks
    row0: int
    seq: int
    recv_ns: int


def _gap_start(g: _Gap) -> int:
    return g.start


def _i64(values: Any) -> I64 | None:
    """A 1-D contiguous int64 array of integer `values` (no copy when it already is one), or
    None when they are not a 1-D integer array."""
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in "iu":
        return None
    if values.dtype == np.int64 and values.flags.c_contiguous:
        return values
    return np.ascontiguousarray(values, dtype=np.int64)
