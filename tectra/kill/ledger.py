"""Tamper-evident kill-switch ledger: append-only, hash-chained JSON lines, fsync per append.

Each line is one record, serialised as canonical JSON (sorted keys, no whitespace, ASCII only)
and terminated by ``\\n``. A record carries ``seq`` (1, 2, 3, ...), ``ts_realtime_ns``, ``kind``
(trigger|action|ack|clear|arm|disarm), ``kill_id``, ``actor``, ``reason``, ``payload`` (a JSON
object), ``prev_hash`` and ``hash``. ``hash`` is the SHA-256 of the canonical JSON of every other
field (``prev_hash`` included); ``prev_hash`` is the previous record's ``hash``, or for seq 1 the
genesis value ``genesis_hash(name)`` derived from the ledger's name.

`verify_ledger` reads a ledger file and reports, as `LedgerFinding`s with the 1-based line number
and the seq where known: changed records (hash mismatch, non-canonical bytes), removed records
(seq gaps), reordered records, duplicated seqs, broken prev_hash links, a bad genesis, garbled
lines and a torn (unterminated) last line. Removing or rewriting records at the *tail* leaves a
valid shorter chain; pass ``expected_head`` (a head hash recorded elsewhere) to catch that.

`KillLedger` is the single writer. Opening scans the file: a damaged ledger raises
`LedgerCorruptError`; a torn last line (a crash mid-append) raises `LedgerTornTailError` unless
``on_torn_tail="truncate"``, in which case the torn bytes are saved beside the ledger, the file is
cut back to the last complete record and the finding stays visible in ``open_report``.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "KINDS",
    "FindingKind",
    "KillLedger",
    "LedgerCorruptError",
    "LedgerEntry",
    "LedgerError",
    "LedgerFinding",
    "LedgerIOError",
    "LedgerLockedError",
    "LedgerReport",
    "LedgerTornTailError",
    "canonical_json",
    "entry_hash",
    "genesis_hash",
    "verify_ledger",
]

KINDS: Final[frozenset[str]] = frozenset({"trigger", "action", "ack", "clear", "arm", "disarm"})
_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "seq",
        "ts_realtime_ns",
        "kind",
        "kill_id",
        "actor",
        "reason",
        "payload",
        "prev_hash",
        "hash",
    }
)
_HEX: Final[frozenset[str]] = frozenset("0123456789abcdef")
_GENESIS_DOMAIN: Final = b"tectra.kill.ledger/v1/genesis\x00"


class LedgerError(Exception):
    """Base class for every ledger failure."""


class LedgerIOError(LedgerError):
    """A write or fsync failed; further appends are refused (the on-disk state is unknown)."""


class LedgerLockedError(LedgerError):
    """Another writer holds the ledger's lock."""


class LedgerCorruptError(LedgerError):
    """The ledger failed verification on open; ``report`` says where."""

    def __init__(self, message: str, report: LedgerReport) -> None:
        super().__init__(message)
        self.report = report


class LedgerTornTailError(LedgerCorruptError):
    """The last line is unterminated (crash mid-append) and the caller did not ask to truncate."""


class FindingKind(enum.StrEnum):
    TORN_TAIL = "torn_tail"
    GARBLED = "garbled"
    BAD_RECORD = "bad_record"
    NON_CANONICAL = "non_canonical"
    HASH_MISMATCH = "hash_mismatch"
    BAD_GENESIS = "bad_genesis"
    CHAIN_BROKEN = "chain_broken"
    SEQ_GAP = "seq_gap"
    REORDERED = "reordered"
    DUPLICATE_SEQ = "duplicate_seq"
    HEAD_MISMATCH = "head_mismatch"


@dataclass(frozen=True, slots=True)
class LedgerFinding:
    """One problem, located by 1-based line number and seq where known."""

    kind: FindingKind
    line: int | None
    seq: int | None
    detail: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "ledger"
        if self.seq is not None:
            where += f" (seq {self.seq})"
        return f"{self.kind.value:14} {where}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "line": self.line, "seq": self.seq, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger record (the line's fields, parsed)."""

    seq: int
    ts_realtime_ns: int
    kind: str
    kill_id: str
    actor: str
    reason: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts_realtime_ns": self.ts_realtime_ns,
            "kind": self.kind,
            "kill_id": self.kill_id,
            "actor": self.actor,
            "reason": self.reason,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def to_line(self) -> bytes:
        return canonical_json(self.to_dict()) + b"\n"


@dataclass(slots=True)
class LedgerReport:
    """Verification result for one ledger file."""

    path: Path
    name: str
    findings: list[LedgerFinding] = field(default_factory=list)
    records: int = 0
    lines: int = 0
    head_hash: str | None = None
    head_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def kinds(self) -> set[FindingKind]:
        return {f.kind for f in self.findings}

    def at_line(self, line: int) -> list[LedgerFinding]:
        return [f for f in self.findings if f.line == line]

    def format_text(self) -> str:
        head = f"{self.path} ({self.name}): {self.records} records, {self.lines} lines"
        status = "OK" if self.ok else f"DAMAGED: {len(self.findings)} finding(s)"
        return "\n".join([f"{head}, head {self.head_hash}: {status}", *map(str, self.findings)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "ok": self.ok,
            "records": self.records,
            "lines": self.lines,
            "head_hash": self.head_hash,
            "head_seq": self.head_seq,
            "findings": [f.to_dict() for f in self.findings],
        }


def canonical_json(obj: Any) -> bytes:
    """The one byte encoding a record may have: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def genesis_hash(name: str) -> str:
    """The prev_hash of seq 1: bound to the ledger's name, so ledgers cannot be swapped."""
    return hashlib.sha256(_GENESIS_DOMAIN + name.encode("utf-8")).hexdigest()


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every field except ``hash``."""
    return hashlib.sha256(
        canonical_json({k: v for k, v in fields.items() if k != "hash"})
    ).hexdigest()


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_hex64(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and set(v) <= _HEX


def _schema_problem(obj: object) -> str | None:
    if not isinstance(obj, dict):
        return f"record is a JSON {type(obj).__name__}, not an object"
    keys = set(obj)
    if keys != _FIELDS:
        missing, extra = sorted(_FIELDS - keys), sorted(keys - _FIELDS)
        return f"fields wrong (missing {missing}, unexpected {extra})"
    if not _is_int(obj["seq"]) or obj["seq"] < 1:
        return f"seq {obj['seq']!r} is not a positive integer"
    if not _is_int(obj["ts_realtime_ns"]) or obj["ts_realtime_ns"] < 0:
        return f"ts_realtime_ns {obj['ts_realtime_ns']!r} is not a non-negative integer"
    if obj["kind"] not in KINDS:
        return f"kind {obj['kind']!r} is not one of {sorted(KINDS)}"
    for name in ("kill_id", "actor", "reason"):
        if not isinstance(obj[name], str):
            return f"{name} is not a string"
    if not isinstance(obj["payload"], dict):
        return "payload is not an object"
    for name in ("prev_hash", "hash"):
        if not _is_hex64(obj[name]):
            return f"{name} is not 64 lowercase hex digits"
    return None


@dataclass(slots=True)
class _Scan:
    report: LedgerReport
    entries: list[LedgerEntry]  # well-formed records, file order
    good_len: int  # bytes up to the end of the last complete (newline-terminated) line


def _scan(data: bytes, path: Path, name: str, expected_head: str | None = None) -> _Scan:
    report = LedgerReport(path=path, name=name)
    find = report.findings
    raw_lines = data.split(b"\n")
    torn = raw_lines.pop()  # b"" when the file ends with a newline (or is empty)
    good_len = len(data) - len(torn)
    report.lines = len(raw_lines) + (1 if torn else 0)

    parsed: list[tuple[int, LedgerEntry]] = []  # (line number, entry)
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            find.append(LedgerFinding(FindingKind.GARBLED, lineno, None, f"not JSON: {exc}"))
            continue
        problem = _schema_problem(obj)
        if problem is not None:
            seq = obj.get("seq") if isinstance(obj, dict) and _is_int(obj.get("seq")) else None
            find.append(LedgerFinding(FindingKind.BAD_RECORD, lineno, seq, problem))
            continue
        entry = LedgerEntry(**obj)
        try:
            canonical = canonical_json(obj)
        except ValueError as exc:
            find.append(LedgerFinding(FindingKind.BAD_RECORD, lineno, entry.seq, str(exc)))
            continue
        if canonical != raw:
            find.append(
                LedgerFinding(
                    FindingKind.NON_CANONICAL,
                    lineno,
                    entry.seq,
                    "bytes differ from the record's canonical encoding (edited by hand?)",
                )
            )
        computed = entry_hash(obj)
        if computed != entry.hash:
            find.append(
                LedgerFinding(
                    FindingKind.HASH_MISMATCH,
                    lineno,
                    entry.seq,
                    f"record changed: content hashes to {computed[:16]}…, "
                    f"record says {entry.hash[:16]}…",
                )
            )
        parsed.append((lineno, entry))
    if torn:
        find.append(
            LedgerFinding(
                FindingKind.TORN_TAIL,
                report.lines,
                None,
                f"last line is unterminated ({len(torn)} bytes at byte {good_len}): "
                "torn write or truncation",
            )
        )

    # Order, gaps, duplicates.
    first_line: dict[int, int] = {}
    for lineno, e in parsed:
        first_line.setdefault(e.seq, lineno)
    by_seq: dict[int, LedgerEntry] = {}
    for _, e in parsed:
        by_seq.setdefault(e.seq, e)
    max_seq, max_line = 0, 0
    for lineno, e in parsed:
        if first_line[e.seq] != lineno:
            find.append(
                LedgerFinding(
                    FindingKind.DUPLICATE_SEQ,
                    lineno,
                    e.seq,
                    f"seq {e.seq} already appeared at line {first_line[e.seq]}",
                )
            )
            continue
        if e.seq <= max_seq:
            find.append(
                LedgerFinding(
                    FindingKind.REORDERED,
                    lineno,
                    e.seq,
                    f"seq {e.seq} comes after seq {max_seq} (line {max_line})",
                )
            )
        elif e.seq > max_seq + 1:
            missing = range(max_seq + 1, e.seq)
            later = [s for s in missing if s in first_line]
            gone = [s for s in missing if s not in first_line]
            after = f"after line {max_line} (seq {max_seq})" if max_line else "at the start"
            if later:
                where = ", ".join(f"{s} (line {first_line[s]})" for s in later[:5])
                find.append(
                    LedgerFinding(
                        FindingKind.REORDERED,
                        lineno,
                        e.seq,
                        f"seq {e.seq} comes before seq {where}",
                    )
                )
            if gone:
                span = str(gone[0]) if len(gone) == 1 else f"{gone[0]}..{gone[-1]}"
                find.append(
                    LedgerFinding(
                        FindingKind.SEQ_GAP,
                        lineno,
                        e.seq,
                        f"record(s) seq {span} missing {after}, before line {lineno}",
                    )
                )
        if e.seq > max_seq:
            max_seq, max_line = e.seq, lineno

    # Chain links, by seq (so a reorder is reported once, not as broken links too).
    genesis = genesis_hash(name)
    for lineno, e in parsed:
        if first_line[e.seq] != lineno:
            continue
        if e.seq == 1:
            if e.prev_hash != genesis:
                find.append(
                    LedgerFinding(
                        FindingKind.BAD_GENESIS,
                        lineno,
                        e.seq,
                        f"prev_hash is not the genesis of ledger {name!r} "
                        "(wrong ledger, or the start was replaced)",
                    )
                )
        elif (pred := by_seq.get(e.seq - 1)) is not None and e.prev_hash != pred.hash:
            find.append(
                LedgerFinding(
                    FindingKind.CHAIN_BROKEN,
                    lineno,
                    e.seq,
                    f"prev_hash does not match the hash of seq {pred.seq} "
                    f"(line {first_line[pred.seq]}): one of them was replaced or re-hashed",
                )
            )

    find.sort(key=lambda f: f.line if f.line is not None else 1 << 62)
    entries = [e for _, e in parsed]
    report.records = len(entries)
    if entries:
        report.head_hash, report.head_seq = entries[-1].hash, entries[-1].seq
    else:
        report.head_hash, report.head_seq = genesis, 0
    if expected_head is not None and report.head_hash != expected_head:
        find.append(
            LedgerFinding(
                FindingKind.HEAD_MISMATCH,
                None,
                report.head_seq,
                f"head hash {report.head_hash} is not the expected {expected_head}: "
                "records were removed or rewritten at the tail",
            )
        )
    return _Scan(report=report, entries=entries, good_len=good_len)


def verify_ledger(
    path: str | os.PathLike[str], name: str, *, expected_head: str | None = None
) -> LedgerReport:
    """Check every record and link of the ledger at ``path``; read-only."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {p}: {exc}") from exc
    return _scan(data, p, name, expected_head).report


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KillLedger:
    """The single writer of one ledger file. Thread-safe; one process at a time (flock)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        on_torn_tail: Literal["raise", "truncate"] = "raise",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise LedgerError("ledger name must be a non-empty string")
        self.path = Path(path)
        self.name = name
        self._lock = threading.Lock()
        self._broken: str | None = None
        created = not self.path.exists()
        try:
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LedgerLockedError(f"ledger {self.path} is held by another writer") from exc
            if created:
                _fsync_dir(self.path.parent)
            self._load(on_torn_tail)
        except BaseException:
            os.close(self._fd)
            raise

    def _load(self, on_torn_tail: str) -> None:
        data = self.path.read_bytes()
        scan = _scan(data, self.path, self.name)
        self.open_report: LedgerReport = scan.report
        other = [f for f in scan.report.findings if f.kind is not FindingKind.TORN_TAIL]
        if other:
            raise LedgerCorruptError(
                f"ledger {self.path} failed verification:\n{scan.report.format_text()}",
                scan.report,
            )
        if scan.good_len != len(data):
            if on_torn_tail != "truncate":
                raise LedgerTornTailError(
                    f"ledger {self.path} ends in a torn line:\n{scan.report.format_text()}",
                    scan.report,
                )
            torn = data[scan.good_len :]
            aside = self.path.with_name(f"{self.path.name}.torn.{scan.good_len}")
            aside_fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                os.write(aside_fd, torn)
                os.fsync(aside_fd)
            finally:
                os.close(aside_fd)
            os.ftruncate(self._fd, scan.good_len)
            os.fsync(self._fd)
            _fsync_dir(self.path.parent)
        self._entries: list[LedgerEntry] = scan.entries
        self._head = scan.report.head_hash or genesis_hash(self.name)

    @property
    def head_hash(self) -> str:
        return self._head

    @property
    def next_seq(self) -> int:
        return self._entries[-1].seq + 1 if self._entries else 1

    def entries(self) -> tuple[LedgerEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def append(  # noqa: PLR0917 (the documented positional signature)
        self,
        kind: str,
        kill_id: str,
        actor: str,
        reason: str,
        payload: Mapping[str, Any],
        now_realtime_ns: int,
    ) -> LedgerEntry:
        """Append one record and fsync it before returning."""
        if kind not in KINDS:
            raise LedgerError(f"kind {kind!r} is not one of {sorted(KINDS)}")
        for label, value in (("kill_id", kill_id), ("actor", actor), ("reason", reason)):
            if not isinstance(value, str):
                raise LedgerError(f"{label} must be a string")
        if not _is_int(now_realtime_ns) or now_realtime_ns < 0:
            raise LedgerError("now_realtime_ns must be a non-negative integer")
        if not isinstance(payload, Mapping):
            raise LedgerError("payload must be a mapping")
        body = dict(payload)
        try:
            if json.loads(canonical_json(body)) != body:
                raise LedgerError("payload does not survive a JSON round trip (tuples, int keys?)")
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"payload is not JSON-serialisable: {exc}") from exc
        with self._lock:
            if self._broken is not None:
                raise LedgerIOError(f"ledger {self.path} is unusable: {self._broken}")
            if self._fd < 0:
                raise LedgerError("ledger is closed")
            fields: dict[str, Any] = {
                "seq": self.next_seq,
                "ts_realtime_ns": now_realtime_ns,
                "kind": kind,
                "kill_id": kill_id,
                "actor": actor,
                "reason": reason,
                "payload": body,
                "prev_hash": self._head,
            }
            fields["hash"] = entry_hash(fields)
            entry = LedgerEntry(**fields)
            line = entry.to_line()
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = f"append of seq {entry.seq} failed: {exc}"
                raise LedgerIOError(self._broken) from exc
            self._entries.append(entry)
            self._head = entry.hash
            return entry

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)  # releases the flock
                self._fd = -1

    def __enter__(self) -> KillLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
