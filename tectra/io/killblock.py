"""Kill-switch control block: the one-host fan-out of the kill switch (issue 5).

The kill role owns a 4 KiB block in `/dev/shm/tectra/<name>` (csrc/killblock.h): a 64-bit atomic
state word (firm BLOCK_ALL and SLOW flags, "some scoped entry blocks/slows", a WRITING bit and a
generation), a 64-bit epoch bumped (release) on every change, the last kill id, a bounded table
of scoped blocks (venue/account/strategy/symbol ids, 64 entries) and the last 64 applied kill ids.
Every gateway reads it on every order: with no scoped entries the check is one acquire load of the
state word plus the epoch, so a block takes effect on the very next order after `set` returns.

Idempotency: a `set` carrying a kill id already applied (one of the last 64) changes nothing and
does not bump the epoch. A set or clear that changes nothing does not bump it either.

Fail closed: `open_gateway_view` returns a reader that answers BLOCKED ("control block
unavailable") when the block is missing or corrupt, and a reader that cannot get a consistent view
(a writer died mid-update) answers BLOCKED too.

Persistence is the kill role's job: after every change it saves `KillBlock.state()` (a
`KillState`; `to_dict`/`from_dict` give JSON-ready form) durably, and on start-up it calls
`KillBlock.create(name, restore=saved, exist_ok=True)`, so a host restart while halted comes back
halted. Gateways never write the block.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import importlib
import mmap
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, NoReturn, Self

import numpy as np
import numpy.typing as npt

_kb: Any = importlib.import_module("tectra._killblock")
ffi: Any = _kb.ffi
lib: Any = _kb.lib

__all__ = [
    "DEFAULT_ROOT",
    "UNAVAILABLE_REASON",
    "BatchVerdicts",
    "Check",
    "Flag",
    "GatewayView",
    "KillBlock",
    "KillBlockError",
    "KillBlockExistsError",
    "KillBlockFormatError",
    "KillBlockFullError",
    "KillBlockNotFoundError",
    "KillState",
    "Scope",
    "ScopeEntry",
    "Verdict",
    "open_gateway_view",
]

DEFAULT_ROOT = Path("/dev/shm/tectra")
UNAVAILABLE_REASON = "control block unavailable"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_PROT = mmap.PROT_READ | mmap.PROT_WRITE


class KillBlockError(Exception):
    """Base of every control-block error."""


class KillBlockNotFoundError(KillBlockError):
    """No control block of that name under the root."""


class KillBlockFormatError(KillBlockError):
    """The file is not a control block (bad magic, size) or another layout version."""


class KillBlockExistsError(KillBlockError):
    """`create` found a block of that name (and `exist_ok` was false)."""


class KillBlockFullError(KillBlockError):
    """The scoped-block table is full (64 entries)."""


class Scope(enum.IntEnum):
    FIRM = lib.KB_SCOPE_FIRM
    VENUE = lib.KB_SCOPE_VENUE
    ACCOUNT = lib.KB_SCOPE_ACCOUNT
    STRATEGY = lib.KB_SCOPE_STRATEGY
    SYMBOL = lib.KB_SCOPE_SYMBOL


class Flag(enum.IntFlag):
    BLOCK = lib.KB_F_BLOCK  # reject new orders in scope
    SLOW = lib.KB_F_SLOW  # tight throttle in scope


class Verdict(enum.IntEnum):
    OK = lib.KB_OK
    SLOW = lib.KB_SLOW
    BLOCKED = lib.KB_BLOCKED


_REASONS: dict[int, str] = {
    int(lib.KB_SCOPE_FIRM): "firm",
    int(lib.KB_SCOPE_VENUE): "venue",
    int(lib.KB_SCOPE_ACCOUNT): "account",
    int(lib.KB_SCOPE_STRATEGY): "strategy",
    int(lib.KB_SCOPE_SYMBOL): "symbol",
    int(lib.KB_REASON_NONE): "",
    int(lib.KB_REASON_INCONSISTENT): "control block inconsistent",
    int(lib.KB_REASON_BAD_BLOCK): UNAVAILABLE_REASON,
}


class Check(NamedTuple):
    """One order's verdict, why (the deciding scope, or a fail-closed reason) and the epoch seen."""

    verdict: Verdict
    reason: str
    epoch: int


@dataclass(frozen=True, slots=True)
class BatchVerdicts:
    """Per-order verdicts (`Verdict` values), reason codes (scope, or 253/254/255) and epochs."""

    verdicts: npt.NDArray[np.uint8]
    reasons: npt.NDArray[np.uint8]
    epochs: npt.NDArray[np.uint64]
    blocked: int

    def reason(self, i: int) -> str:
        return _REASONS.get(int(self.reasons[i]), "unknown")


@dataclass(frozen=True, slots=True)
class ScopeEntry:
    scope: Scope
    id: int
    flags: Flag
    kill_id: int = 0
    updated_ns: int = 0


@dataclass(frozen=True, slots=True)
class KillState:
    """A consistent snapshot of the block; what the kill role persists and restores."""

    firm: Flag
    epoch: int
    last_kill_id: int
    entries: tuple[ScopeEntry, ...] = ()
    seen_kill_ids: tuple[int, ...] = field(default=())

    @property
    def blocked_all(self) -> bool:
        return Flag.BLOCK in self.firm

    def to_dict(self) -> dict[str, Any]:
        return {
            "firm": int(self.firm),
            "epoch": self.epoch,
            "last_kill_id": self.last_kill_id,
            "entries": [
                {
                    "scope": e.scope.name.lower(),
                    "id": e.id,
                    "flags": int(e.flags),
                    "kill_id": e.kill_id,
                    "updated_ns": e.updated_ns,
                }
                for e in self.entries
            ],
            "seen_kill_ids": list(self.seen_kill_ids),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KillState:
        return cls(
            firm=Flag(int(d["firm"])),
            epoch=int(d["epoch"]),
            last_kill_id=int(d["last_kill_id"]),
            entries=tuple(
                ScopeEntry(
                    Scope[str(e["scope"]).upper()],
                    int(e["id"]),
                    Flag(int(e["flags"])),
                    int(e.get("kill_id", 0)),
                    int(e.get("updated_ns", 0)),
                )
                for e in d.get("entries", ())
            ),
            seen_kill_ids=tuple(int(k) for k in d.get("seen_kill_ids", ())),
        )


def _path(root: str | os.PathLike[str], name: str) -> Path:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise KillBlockError(f"block name must match {_NAME_RE.pattern}, got {name!r}")
    return Path(root) / name


def _raise_for(rc: int, what: str) -> NoReturn:
    code = -rc
    if code == errno.EBADMSG:
        raise KillBlockFormatError(f"{what}: not a kill control block (bad magic or size)")
    if code == errno.EPROTONOSUPPORT:
        raise KillBlockFormatError(f"{what}: layout version is not {lib.KB_LAYOUT_VERSION}")
    if code == errno.ENOSPC:
        raise KillBlockFullError(f"{what}: scoped table full ({lib.KB_MAX_SCOPED} entries)")
    if code == errno.EINVAL:
        raise KillBlockError(f"{what}: invalid argument")
    raise KillBlockError(f"{what}: {os.strerror(code)} (errno {code})")


def _ids(a: npt.ArrayLike, n: int | None, what: str) -> npt.NDArray[np.uint64]:
    arr = np.ascontiguousarray(a, dtype=np.uint64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise KillBlockError(f"{what} must be a 1-D array of the same length as the others")
    return arr


class KillBlock:
    """A mapped control block: the kill role's writer and the gateway's reader."""

    __slots__ = ("_base", "_check_c", "_epoch", "_mm", "_name", "_path", "_reason")

    def __init__(self, name: str, path: Path, mm: mmap.mmap) -> None:
        """Private: use `create` or `attach`."""
        self._name = name
        self._path = path
        self._mm: mmap.mmap | None = mm
        self._base: Any = ffi.from_buffer(mm, require_writable=True)
        rc = lib.kb_validate(self._base, len(mm))
        if rc < 0:
            self.close()
            _raise_for(rc, f"attach kill block {name!r}")
        self._epoch = ffi.new("uint64_t *")
        self._reason = ffi.new("int *")
        self._check_c = lib.kb_check

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        name: str,
        *,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        restore: KillState | None = None,
        exist_ok: bool = False,
    ) -> Self:
        """Create `root/name` (formatted under a temp name, then linked into place, so no reader
        sees a half-made block), loaded from `restore` when given (epoch continues past it).
        With `exist_ok` an existing valid block is attached as is (it is newer than any saved
        state: /dev/shm survived, only the process restarted)."""
        path = _path(root, name)
        size = int(lib.kb_block_bytes())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o660)
        except OSError as exc:
            raise KillBlockError(
                f"cannot create kill block {name!r} in {path.parent}: {exc}"
            ) from exc
        try:
            try:
                os.posix_fallocate(fd, 0, size)
                mm = mmap.mmap(fd, size, flags=_MAP_FLAGS, prot=_PROT)
            except OSError as exc:
                raise KillBlockError(f"cannot reserve kill block {name!r}: {exc}") from exc
            base = ffi.from_buffer(mm, require_writable=True)
            try:
                epoch = 0 if restore is None else restore.epoch
                rc = lib.kb_init(base, size, epoch, time.time_ns())
                if rc >= 0 and restore is not None:
                    rc = lib.kb_restore(base, _to_snapshot(restore))
            finally:
                ffi.release(base)
            if rc < 0:
                mm.close()
                _raise_for(rc, f"create kill block {name!r}")
            try:
                os.link(tmp, path)
            except FileExistsError:
                mm.close()
                if not exist_ok:
                    raise KillBlockExistsError(
                        f"kill block {name!r} already exists in {path.parent}"
                    ) from None
                return cls.attach(name, root=root)
            except OSError as exc:
                mm.close()
                raise KillBlockError(f"cannot publish kill block at {path}: {exc}") from exc
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return cls(name, path, mm)

    @classmethod
    def attach(cls, name: str, *, root: str | os.PathLike[str] = DEFAULT_ROOT) -> Self:
        """Map an existing block; KillBlockNotFoundError / KillBlockFormatError otherwise."""
        path = _path(root, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KillBlockNotFoundError(f"no kill block {name!r} in {path.parent}") from None
        except OSError as exc:
            raise KillBlockError(f"cannot open kill block {name!r}: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            if size < int(lib.kb_block_bytes()):
                raise KillBlockFormatError(f"{path} is {size} bytes, not a kill control block")
            mm = mmap.mmap(fd, size, flags=_MAP_FLAGS, prot=_PROT)
        except OSError as exc:
            raise KillBlockError(f"cannot map kill block {name!r}: {exc}") from exc
        finally:
            os.close(fd)
        return cls(name, path, mm)

    def close(self) -> None:
        if self._mm is None:
            return
        ffi.release(self._base)
        self._base = ffi.NULL
        self._mm.close()
        self._mm = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _live(self) -> Any:
        if self._mm is None:
            raise KillBlockError(f"kill block {self._name!r} is closed")
        return self._base

    # ------------------------------------------------------------------ writer (kill role)

    def set(self, flags: Flag, scope: Scope = Scope.FIRM, id: int = 0, *, kill_id: int = 0) -> bool:
        """Apply FLAGS to one scope. True when the block changed (epoch bumped); False for a
        kill id already applied or a set that changes nothing. Visible to every reader when
        this returns."""
        rc = lib.kb_set(self._live(), int(flags), int(scope), id, kill_id, time.time_ns())
        if rc < 0:
            _raise_for(rc, f"set {Flag(flags)!r} on {Scope(scope).name} {id}")
        return bool(rc)

    def clear(
        self, flags: Flag, scope: Scope = Scope.FIRM, id: int = 0, *, kill_id: int = 0
    ) -> bool:
        """Remove FLAGS from one scope; True when the block changed."""
        rc = lib.kb_clear(self._live(), int(flags), int(scope), id, kill_id, time.time_ns())
        if rc < 0:
            _raise_for(rc, f"clear {Flag(flags)!r} on {Scope(scope).name} {id}")
        return bool(rc)

    def state(self) -> KillState:
        """A consistent snapshot (what the kill role persists after every change)."""
        snap = ffi.new("kb_snapshot_t *")
        rc = lib.kb_snapshot(self._live(), snap)
        if rc < 0:
            _raise_for(rc, f"snapshot kill block {self._name!r}")
        entries = tuple(
            ScopeEntry(
                Scope(int(e.scope)),
                int(e.id),
                Flag(int(e.flags)),
                int(e.kill_id),
                int(e.updated_ns),
            )
            for e in (snap.entries[i] for i in range(int(snap.nentries)))
        )
        return KillState(
            firm=Flag(int(snap.state) & int(lib.KB_S_BLOCK_ALL | lib.KB_S_SLOW)),
            epoch=int(snap.epoch),
            last_kill_id=int(snap.last_kill_id),
            entries=entries,
            seen_kill_ids=tuple(int(snap.seen[i]) for i in range(int(snap.nseen))),
        )

    # ------------------------------------------------------------------ reader (gateway)

    @property
    def epoch(self) -> int:
        return int(lib.kb_load_epoch(self._live()))

    def check(self, venue: int = 0, account: int = 0, strategy: int = 0, symbol: int = 0) -> Check:
        """The verdict for one order (lock-free; one acquire load when nothing is scoped)."""
        v = self._check_c(self._live(), venue, account, strategy, symbol, self._epoch, self._reason)
        return Check(Verdict(v), _REASONS.get(self._reason[0], "unknown"), int(self._epoch[0]))

    def check_batch(
        self,
        venue: npt.ArrayLike,
        account: npt.ArrayLike,
        strategy: npt.ArrayLike,
        symbol: npt.ArrayLike,
    ) -> BatchVerdicts:
        """Verdicts for a batch of orders (uint64 id arrays of one length), one C call."""
        v = _ids(venue, None, "venue")
        n = int(v.shape[0])
        a, s, y = (
            _ids(account, n, "account"),
            _ids(strategy, n, "strategy"),
            _ids(symbol, n, "symbol"),
        )
        verdicts = np.empty(n, dtype=np.uint8)
        reasons = np.empty(n, dtype=np.uint8)
        epochs = np.empty(n, dtype=np.uint64)
        fb = ffi.from_buffer
        blocked = lib.kb_check_batch(
            self._live(),
            fb("uint64_t[]", v),
            fb("uint64_t[]", a),
            fb("uint64_t[]", s),
            fb("uint64_t[]", y),
            n,
            fb("uint8_t[]", verdicts, require_writable=True),
            fb("uint8_t[]", reasons, require_writable=True),
            fb("uint64_t[]", epochs, require_writable=True),
        )
        return BatchVerdicts(verdicts, reasons, epochs, int(blocked))


def _to_snapshot(st: KillState) -> Any:
    if len(st.entries) > int(lib.KB_MAX_SCOPED):
        raise KillBlockFullError(f"state holds {len(st.entries)} scoped entries")
    snap = ffi.new("kb_snapshot_t *")
    snap.state = int(st.firm)
    snap.epoch = st.epoch
    snap.last_kill_id = st.last_kill_id
    snap.nentries = len(st.entries)
    for i, e in enumerate(st.entries):
        d = snap.entries[i]
        d.scope, d.id, d.flags = int(e.scope), e.id, int(e.flags)
        d.kill_id, d.updated_ns = e.kill_id, e.updated_ns
    seen = st.seen_kill_ids[-int(lib.KB_SEEN_IDS) :]
    snap.nseen = len(seen)
    for i, k in enumerate(seen):
        snap.seen[i] = k
    return snap


class GatewayView:
    """The gateway's reader. Without a block (missing, corrupt, closed) it fails closed: every
    check is BLOCKED with reason "control block unavailable". `reopen()` retries the attach."""

    __slots__ = ("_block", "_name", "_root", "error")

    def __init__(
        self, name: str, root: str | os.PathLike[str], block: KillBlock | None, error: str | None
    ) -> None:
        self._name = name
        self._root = root
        self._block = block
        self.error = error

    @property
    def available(self) -> bool:
        return self._block is not None

    def reopen(self) -> bool:
        """Try to attach again (call off the hot path, e.g. on a timer); True when attached."""
        if self._block is None:
            try:
                self._block = KillBlock.attach(self._name, root=self._root)
                self.error = None
            except KillBlockError as exc:
                self.error = str(exc)
        return self._block is not None

    def check(self, venue: int = 0, account: int = 0, strategy: int = 0, symbol: int = 0) -> Check:
        if self._block is None:
            return Check(Verdict.BLOCKED, UNAVAILABLE_REASON, 0)
        return self._block.check(venue, account, strategy, symbol)

    def check_batch(
        self,
        venue: npt.ArrayLike,
        account: npt.ArrayLike,
        strategy: npt.ArrayLike,
        symbol: npt.ArrayLike,
    ) -> BatchVerdicts:
        if self._block is not None:
            return self._block.check_batch(venue, account, strategy, symbol)
        n = int(_ids(venue, None, "venue").shape[0])
        return BatchVerdicts(
            np.full(n, int(Verdict.BLOCKED), dtype=np.uint8),
            np.full(n, int(lib.KB_REASON_BAD_BLOCK), dtype=np.uint8),
            np.zeros(n, dtype=np.uint64),
            n,
        )

    def close(self) -> None:
        if self._block is not None:
            self._block.close()
            self._block = None
            self.error = "closed"


def open_gateway_view(name: str, root: str | os.PathLike[str] = DEFAULT_ROOT) -> GatewayView:
    """Attach the gateway's reader; never raises for a missing or corrupt block (fails closed)."""
    try:
        return GatewayView(name, root, KillBlock.attach(name, root=root), None)
    except KillBlockError as exc:
        return GatewayView(name, root, None, str(exc))
