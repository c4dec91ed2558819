"""OUCH order tokens: allocation that survives crashes, and the ClOrdID <-> token map.

This module owns how the gateway names its orders at a venue, for one venue session (one OUCH
account for one trading day):

* `TokenAllocator`: monotonic, never-reused 14-character alphanumeric tokens. Like a nonce
  manager it reserves numbers in blocks: the block's end (the high-water mark) is written to
  disk and fsync'd *before* any token of the block is handed out, so after a crash, even
  `kill -9` between two tokens, the next start begins at the persisted high-water mark and
  can only skip numbers, never repeat one. The state file is replaced atomically (write a
  temporary file, fsync, rename, fsync the directory) and carries a CRC; an unreadable or
  mismatched file fails closed (`TokenStoreError`), it is never guessed around. An exclusive
  `flock` keeps two processes off one session's tokens.
* `encode_token` / `decode_token`: a number <-> a fixed-width base-62 token (digits, then
  capitals, then small letters: ASCII order, so tokens sort like their numbers), optionally
  behind a short prefix naming the gateway instance.
* `ClOrdIdMap` and `VenueSessionTokens`: each client ClOrdID gets one token; a ClOrdID seen
  before in the session is refused with a typed result (`AssignStatus.DUPLICATE`, mapped to
  `RejectReason.DUPLICATE_CL_ORD_ID`). The map is bounded and persisted as an append-only log
  (one CRC-checked line per assignment, fsync'd per batch before the batch is returned, so
  before any of its orders can reach the venue); a restart rebuilds it from the log.
"""

from __future__ import annotations

import enum
import fcntl
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tectra.schema import CL_ORD_ID_WIDTH, ORDER_TOKEN_WIDTH, RejectReason

__all__ = [
    "TOKEN_ALPHABET",
    "AssignStatus",
    "ClOrdIdMap",
    "GatewayTokens",
    "MemoryAllocator",
    "TokenAllocator",
    "TokenAssignment",
    "TokenStoreError",
    "TokenStoreErrorReason",
    "VenueSessionTokens",
    "decode_token",
    "encode_token",
    "token_capacity",
]

TOKEN_ALPHABET: Final[str] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE: Final[int] = len(TOKEN_ALPHABET)
_DIGIT: Final[dict[str, int]] = {ch: i for i, ch in enumerate(TOKEN_ALPHABET)}
MAX_PREFIX: Final[int] = 4
_NAME_RE: Final[re.Pattern[str]] = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_STATE_MAGIC: Final[str] = "tectra-order-tokens"
_STATE_VERSION: Final[int] = 1


class TokenStoreErrorReason(enum.Enum):
    CORRUPT = "corrupt"  # state or log unreadable, CRC mismatch, inconsistent
    MISMATCH = "mismatch"  # the state file belongs to another venue/session/prefix
    LOCKED = "locked"  # another process holds this session's tokens
    EXHAUSTED = "exhausted"  # every number of the token space is used
    INVALID = "invalid"  # bad argument (prefix, names, block size)
    IO = "io"  # the disk refused a write or fsync


class TokenStoreError(RuntimeError):
    """Token state cannot be trusted or extended; the gateway must not send orders."""

    def __init__(self, reason: TokenStoreErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def _check_prefix(prefix: str) -> None:
    if len(prefix) > MAX_PREFIX or any(ch not in _DIGIT for ch in prefix):
        raise TokenStoreError(
            TokenStoreErrorReason.INVALID,
            f"prefix {prefix!r}: up to {MAX_PREFIX} ASCII letters/digits",
        )


def token_capacity(prefix: str = "") -> int:
    """How many distinct numbers fit after `prefix` (number 0 is never used)."""
    return int(_BASE ** (ORDER_TOKEN_WIDTH - len(prefix)))


def encode_token(number: int, prefix: str = "") -> str:
    """`number` as a 14-character token: `prefix` then zero-padded base-62 digits."""
    _check_prefix(prefix)
    width = ORDER_TOKEN_WIDTH - len(prefix)
    if not 0 <= number < token_capacity(prefix):
        raise TokenStoreError(
            TokenStoreErrorReason.EXHAUSTED, f"number {number} does not fit {width} digits"
        )
    digits = []
    n = number
    for _ in range(width):
        n, r = divmod(n, _BASE)
        digits.append(TOKEN_ALPHABET[r])
    return prefix + "".join(reversed(digits))


def decode_token(token: str, prefix: str = "") -> int:
    """Inverse of encode_token; TokenStoreError INVALID for anything it did not produce."""
    _check_prefix(prefix)
    if len(token) != ORDER_TOKEN_WIDTH or not token.startswith(prefix):
        raise TokenStoreError(TokenStoreErrorReason.INVALID, f"token {token!r}")
    n = 0
    for ch in token[len(prefix) :]:
        d = _DIGIT.get(ch)
        if d is None:
            raise TokenStoreError(TokenStoreErrorReason.INVALID, f"token {token!r}")
        n = n * _BASE + d
    return n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    """Replace `path` by `text` so a crash leaves either the old or the new file, durably."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = text.encode("ascii")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _crc(text: str) -> str:
    return f"{zlib.crc32(text.encode('ascii')):08x}"


class TokenAllocator:
    """Monotonic, never-reused tokens for one venue session, durable across crashes.

    `path` is the session's state file (created if missing); `venue`/`session` are recorded in
    it and checked on open. Tokens are handed out from a block of `block_size` numbers whose end
    is persisted first, so a crash costs at most one block of unused numbers. Numbers start at
    1. Not thread-safe: one allocator per venue session, owned by one thread.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        venue: str,
        session: str,
        prefix: str = "",
        block_size: int = 1024,
    ) -> None:
        for what, name in (("venue", venue), ("session", session)):
            if not _NAME_RE.match(name):
                raise TokenStoreError(
                    TokenStoreErrorReason.INVALID, f"{what} {name!r}: use [A-Za-z0-9_.-]{{1,64}}"
                )
        _check_prefix(prefix)
        if block_size < 1:
            raise TokenStoreError(TokenStoreErrorReason.INVALID, "block_size must be >= 1")
        self.path = Path(path)
        self.venue = venue
        self.session = session
        self.prefix = prefix
        self.block_size = block_size
        self.reservations = 0  # blocks written to disk by this process
        self._lock_fd = self._lock()
        try:
            self._high_water = self._load()
        except BaseException:
            self.close()
            raise
        self._next = self._high_water  # nothing of the persisted range is trusted as unused

    def _lock(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TokenStoreError(
                TokenStoreErrorReason.LOCKED, f"{self.path} is in use by another process"
            ) from None
        return fd

    def close(self) -> None:
        """Release the session lock (the kernel also releases it if the process dies)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> TokenAllocator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _body(self, high_water: int) -> str:
        return (
            f"{_STATE_MAGIC} {_STATE_VERSION} venue={self.venue} session={self.session} "
            f"prefix={self.prefix or '-'} hwm={high_water}"
        )

    def _load(self) -> int:
        try:
            text = self.path.read_text("ascii")
        except FileNotFoundError:
            return 1
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenStoreError(TokenStoreErrorReason.CORRUPT, f"{self.path}: {exc}") from exc
        body, sep, crc = text.rstrip("\n").rpartition(" crc=")
        if not sep or _crc(body) != crc:
            raise TokenStoreError(TokenStoreErrorReason.CORRUPT, f"{self.path}: bad checksum")
        fields = body.split(" ")
        if len(fields) != 6 or fields[0] != _STATE_MAGIC or fields[1] != str(_STATE_VERSION):
            raise TokenStoreError(TokenStoreErrorReason.CORRUPT, f"{self.path}: bad header")
        found = dict(f.split("=", 1) for f in fields[2:] if "=" in f)
        expected = {
            "venue": self.venue,
            "session": self.session,
            "prefix": self.prefix or "-",
        }
        for key, want in expected.items():
            if found.get(key) != want:
                raise TokenStoreError(
                    TokenStoreErrorReason.MISMATCH,
                    f"{self.path}: {key}={found.get(key)!r}, expected {want!r}",
                )
        hwm = found.get("hwm", "")
        if not hwm.isdigit() or int(hwm) < 1:
            raise TokenStoreError(TokenStoreErrorReason.CORRUPT, f"{self.path}: hwm {hwm!r}")
        return int(hwm)

    @property
    def high_water(self) -> int:
        """First number not covered by a persisted reservation."""
        return self._high_water

    @property
    def next_number(self) -> int:
        """Number the next token will carry."""
        return self._next

    def _reserve(self, at_least: int) -> None:
        blocks = -(-at_least // self.block_size)
        new_hwm = self._high_water + blocks * self.block_size
        if new_hwm > token_capacity(self.prefix):
            new_hwm = token_capacity(self.prefix)
            if new_hwm - self._next < at_least:
                raise TokenStoreError(
                    TokenStoreErrorReason.EXHAUSTED, f"session {self.session} is out of tokens"
                )
        body = self._body(new_hwm)
        try:
            _atomic_write(self.path, f"{body} crc={_crc(body)}\n")
        except OSError as exc:
            raise TokenStoreError(TokenStoreErrorReason.IO, f"{self.path}: {exc}") from exc
        # Only now, with the mark on disk, may numbers below it be used.
        self._high_water = new_hwm
        self.reservations += 1

    def next_tokens(self, n: int) -> list[str]:
        """`n` new tokens, increasing (at most one durable write)."""
        if self._lock_fd < 0:
            raise TokenStoreError(TokenStoreErrorReason.INVALID, "allocator is closed")
        if n <= 0:
            return []
        if self._next + n > self._high_water:
            self._reserve(self._next + n - self._high_water)
        first = self._next
        self._next += n
        return [encode_token(first + i, self.prefix) for i in range(n)]

    def next_token(self) -> str:
        return self.next_tokens(1)[0]


# --------------------------------------------------------------------------------------------
# ClOrdID <-> token
# --------------------------------------------------------------------------------------------


class AssignStatus(enum.Enum):
    OK = "ok"
    DUPLICATE = "duplicate"  # ClOrdID already used in this venue session
    FULL = "full"  # the bounded map is full: refuse rather than forget (fail closed)
    INVALID = "invalid"  # empty, too long or not printable ASCII


_REJECT: Final[dict[AssignStatus, RejectReason]] = {
    AssignStatus.OK: RejectReason.NONE,
    AssignStatus.DUPLICATE: RejectReason.DUPLICATE_CL_ORD_ID,
    AssignStatus.FULL: RejectReason.QUEUE_FULL,
    AssignStatus.INVALID: RejectReason.INVALID_ORDER,
}


@dataclass(frozen=True)
class TokenAssignment:
    """Outcome of asking for a token for a ClOrdID. On DUPLICATE, `token` is the token the
    ClOrdID already has; otherwise it is empty unless OK."""

    status: AssignStatus
    cl_ord_id: str
    token: str = ""

    @property
    def ok(self) -> bool:
        return self.status is AssignStatus.OK

    @property
    def reject_reason(self) -> RejectReason:
        return _REJECT[self.status]


def _valid_cl_ord_id(cl_ord_id: str) -> bool:
    # Tab and newline delimit the log; the schema field is 20 bytes.
    return 1 <= len(cl_ord_id) <= CL_ORD_ID_WIDTH and all(" " <= ch <= "~" for ch in cl_ord_id)


class ClOrdIdMap:
    """Bounded ClOrdID <-> token map persisted as an append-only log (or in memory when `path`
    is None). Each line is `cl_ord_id TAB token TAB crc32`. On open the log is replayed; a
    torn last line (no newline: its write was never acknowledged) is cut off, any other bad
    line fails closed."""

    def __init__(self, path: Path | str | None, *, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise TokenStoreError(TokenStoreErrorReason.INVALID, "max_entries must be >= 1")
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self._by_cl: dict[str, str] = {}
        self._by_token: dict[str, str] = {}
        self._fd = -1
        if self.path is not None:
            self._replay(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def __len__(self) -> int:
        return len(self._by_cl)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _replay(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TokenStoreError(TokenStoreErrorReason.CORRUPT, f"{path}: {exc}") from exc
        good_end = data.rfind(b"\n") + 1
        for lineno, raw in enumerate(data[:good_end].splitlines(), 1):
            try:
                cl, token, crc = raw.decode("ascii").split("\t")
            except (UnicodeDecodeError, ValueError):
                raise TokenStoreError(
                    TokenStoreErrorReason.CORRUPT, f"{path}:{lineno}: malformed line"
                ) from None
            if _crc(f"{cl}\t{token}") != crc or cl in self._by_cl or token in self._by_token:
                raise TokenStoreError(
                    TokenStoreErrorReason.CORRUPT, f"{path}:{lineno}: bad checksum or repeat"
                )
            self._by_cl[cl] = token
            self._by_token[token] = cl
        if good_end < len(data):
            # Torn tail from a crash mid-write: never fsync'd, never acknowledged, so never sent.
            with path.open("r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())

    def token_for(self, cl_ord_id: str) -> str | None:
        return self._by_cl.get(cl_ord_id)

    def tokens(self) -> list[str]:
        """Every token in the map, in assignment order."""
        return list(self._by_token)

    def cl_ord_id_for(self, token: str) -> str | None:
        return self._by_token.get(token)

    def check(self, cl_ord_ids: Sequence[str]) -> list[AssignStatus]:
        """What `add` would say for each id, without changing anything (batch duplicates count:
        the second occurrence of an id in `cl_ord_ids` is a DUPLICATE)."""
        out: list[AssignStatus] = []
        seen: set[str] = set()
        room = self.max_entries - len(self._by_cl)
        for cl in cl_ord_ids:
            if not _valid_cl_ord_id(cl):
                out.append(AssignStatus.INVALID)
            elif cl in self._by_cl or cl in seen:
                out.append(AssignStatus.DUPLICATE)
            elif room <= 0:
                out.append(AssignStatus.FULL)
            else:
                seen.add(cl)
                room -= 1
                out.append(AssignStatus.OK)
        return out

    def add(self, pairs: Sequence[tuple[str, str]], *, fsync: bool = True) -> None:
        """Record (cl_ord_id, token) pairs already vetted by `check`; durable on return."""
        if not pairs:
            return
        lines = []
        for cl, token in pairs:
            body = f"{cl}\t{token}"
            lines.append(f"{body}\t{_crc(body)}\n")
        if self._fd >= 0:
            data = "".join(lines).encode("ascii")
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise TokenStoreError(TokenStoreErrorReason.IO, f"{self.path}: {exc}") from exc
        for cl, token in pairs:
            self._by_cl[cl] = token
            self._by_token[token] = cl


class VenueSessionTokens:
    """Tokens and the ClOrdID map of one venue session, under `state_dir`:
    `tokens-<venue>-<session>.hwm` (allocator state) and `.clordid` (map log).

    `assign_many` is the order path's call: one durable write for the batch, then every
    ClOrdID has its token (or a typed refusal) and its orders may be sent."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        venue: str,
        session: str,
        prefix: str = "",
        block_size: int = 1024,
        max_entries: int = 1_000_000,
        fsync: bool = True,
    ) -> None:
        base = Path(state_dir) / f"tokens-{venue}-{session}"
        self.allocator = TokenAllocator(
            base.with_name(base.name + ".hwm"),
            venue=venue,
            session=session,
            prefix=prefix,
            block_size=block_size,
        )
        try:
            self.map = ClOrdIdMap(base.with_name(base.name + ".clordid"), max_entries=max_entries)
        except BaseException:
            self.allocator.close()
            raise
        self.fsync = fsync
        for token in self.map.tokens():
            # The log can only hold tokens from persisted blocks; anything else is corruption.
            if decode_token(token, prefix) >= self.allocator.high_water:
                self.close()
                raise TokenStoreError(
                    TokenStoreErrorReason.CORRUPT,
                    f"token {token} in the ClOrdID log is beyond the high-water mark",
                )

    def close(self) -> None:
        self.map.close()
        self.allocator.close()

    def __enter__(self) -> VenueSessionTokens:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def assign(self, cl_ord_id: str) -> TokenAssignment:
        return self.assign_many([cl_ord_id])[0]

    def assign_many(self, cl_ord_ids: Sequence[str]) -> list[TokenAssignment]:
        statuses = self.map.check(cl_ord_ids)
        fresh = [cl for cl, st in zip(cl_ord_ids, statuses, strict=True) if st is AssignStatus.OK]
        tokens = iter(self.allocator.next_tokens(len(fresh)))
        pairs = [(cl, next(tokens)) for cl in fresh]
        self.map.add(pairs, fsync=self.fsync)
        given = dict(pairs)
        out: list[TokenAssignment] = []
        for cl, st in zip(cl_ord_ids, statuses, strict=True):
            if st is AssignStatus.OK:
                out.append(TokenAssignment(st, cl, given[cl]))
            elif st is AssignStatus.DUPLICATE:
                out.append(TokenAssignment(st, cl, self.map.token_for(cl) or given.get(cl, "")))
            else:
                out.append(TokenAssignment(st, cl))
        return out

    def token_for(self, cl_ord_id: str) -> str | None:
        return self.map.token_for(cl_ord_id)

    def cl_ord_id_for(self, token: str) -> str | None:
        return self.map.cl_ord_id_for(token)


class MemoryAllocator:
    """A TokenAllocator without a file: numbers from `start`, for replay and tests (replay
    must hand out exactly the numbers the live run did, so it starts where the snapshot says)."""

    def __init__(self, start: int = 1, *, prefix: str = "") -> None:
        _check_prefix(prefix)
        if start < 1:
            raise TokenStoreError(TokenStoreErrorReason.INVALID, "start must be >= 1")
        self.prefix = prefix
        self._next = start

    @property
    def next_number(self) -> int:
        return self._next

    def next_tokens(self, n: int) -> list[str]:
        if self._next + n > token_capacity(self.prefix):
            raise TokenStoreError(TokenStoreErrorReason.EXHAUSTED, "out of tokens")
        out = [encode_token(self._next + i, self.prefix) for i in range(n)]
        self._next += n
        return out

    def close(self) -> None:
        """Nothing to release."""


class GatewayTokens:
    """The gateway's token source: one allocator for the venue session (tokens are unique per
    venue session) and one ClOrdID map per FIX client session (ClOrdIDs are unique per client
    session, so two clients may use the same one).

    Durable (`state_dir` given): the allocator's high-water mark is fsync'd before a token of a
    new block is used, and each map is an append-only log flushed on every batch (and fsync'd
    when `fsync`), so after a crash no token is reused and a resent ClOrdID is refused as a
    duplicate instead of reaching the venue twice. In memory (`state_dir` None): for replay.
    """

    def __init__(
        self,
        state_dir: Path | str | None,
        *,
        venue: str,
        session: str,
        prefix: str = "",
        start: int = 1,
        block_size: int = 1024,
        max_entries: int = 1_000_000,
        fsync: bool = False,
    ) -> None:
        self._dir = None if state_dir is None else Path(state_dir)
        self.allocator: TokenAllocator | MemoryAllocator
        if self._dir is None:
            self.allocator = MemoryAllocator(start, prefix=prefix)
        else:
            self.allocator = TokenAllocator(
                self._dir / f"tokens-{venue}-{session}.hwm",
                venue=venue,
                session=session,
                prefix=prefix,
                block_size=block_size,
            )
        self._venue = venue
        self._session = session
        self._max_entries = max_entries
        self.fsync = fsync
        self._maps: dict[int, ClOrdIdMap] = {}

    @property
    def next_number(self) -> int:
        return self.allocator.next_number

    def _map(self, fix_session: int) -> ClOrdIdMap:
        m = self._maps.get(fix_session)
        if m is None:
            path = (
                None
                if self._dir is None
                else self._dir / f"clordid-{self._venue}-{self._session}-{fix_session}.log"
            )
            m = ClOrdIdMap(path, max_entries=self._max_entries)
            self._maps[fix_session] = m
        return m

    def assign(self, fix_session: int, cl_ord_ids: Sequence[str]) -> list[TokenAssignment]:
        """Tokens for the ClOrdIDs of one client session (one durable write for the batch)."""
        m = self._map(fix_session)
        statuses = m.check(cl_ord_ids)
        fresh = [cl for cl, st in zip(cl_ord_ids, statuses, strict=True) if st is AssignStatus.OK]
        tokens = iter(self.allocator.next_tokens(len(fresh)))
        pairs = [(cl, next(tokens)) for cl in fresh]
        if pairs:
            m.add(pairs, fsync=self.fsync)
        given = dict(pairs)
        out: list[TokenAssignment] = []
        for cl, st in zip(cl_ord_ids, statuses, strict=True):
            if st is AssignStatus.OK:
                out.append(TokenAssignment(st, cl, given[cl]))
            elif st is AssignStatus.DUPLICATE:
                out.append(TokenAssignment(st, cl, m.token_for(cl) or given.get(cl, "")))
            else:
                out.append(TokenAssignment(st, cl))
        return out

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()
        self.allocator.close()
