"""Kill-switch triggers: pure, deterministic evaluators of the conditions that halt trading.

This module owns the trigger conditions and nothing else: no clock, no I/O, no engine. Every
evaluator takes observations stamped by the caller (CLOCK_MONOTONIC ns) and is asked
``evaluate(now_ns)``; the same observations and times give the same firings (principle 3).

Triggers (the names `ArmRequest.trigger` and ``[kill.triggers.<name>]`` use):

============  ==========================================  ===================================
name          value compared with the threshold           threshold unit (config)
============  ==========================================  ===================================
estop         1 while the E-stop input is pressed          (fires whenever pressed)
reject_rate   rejected / (accepted + rejected) in window   ratio 0..1
stale_md      now - last market-data update of a key       seconds
latency       decision-latency p99 over the window         seconds
exposure      max - min of open+executed notional in the   currency (converted to 1e-4 units)
              window (plus the last value before it)
venue_down    how long the venue link has been down        seconds (grace)
max_loss      -P&L of the key (a loss is positive)         currency
max_drawdown  peak P&L - current P&L of the key            currency
============  ==========================================  ===================================

A threshold is a limit: a trigger fires when its value *exceeds* it (``value > threshold``;
equal is quiet), on a key with at least ``min_samples`` observations in the window where that
applies. Windows are half-open, ``(now - window, now]``. Values are tracked per key, a
``(Scope, id)`` pair (venue 3, account 7, firm 0, ...), and a firing carries its key as the kill's
scope. Firing is edge-triggered: a key fires once when it goes over the limit and again only
after it has come back under it (so a held condition is one kill, not one per evaluation).

Each trigger can be armed or disarmed (a disarmed trigger still computes its values, for
status, but never fires) and has a dry-run mode: it fires, but the firing says ``dry_run`` and
the engine only records it in the ledger. Money is int64 in 1e-4 units (``PRICE_SCALE``) here
as everywhere on the order side; a float appears only where a threshold is reported back.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from tectra.io.killblock import Scope
from tectra.schema import PRICE_SCALE, KillReason

__all__ = [
    "TRIGGER_NAMES",
    "EStop",
    "ExposureJump",
    "Firing",
    "Key",
    "KillActionName",
    "LatencySpike",
    "MaxDrawdown",
    "MaxLoss",
    "RejectRate",
    "StaleMarketData",
    "Trigger",
    "TriggerError",
    "TriggerSet",
    "TriggerSettings",
    "TriggerStatus",
    "UnknownTriggerError",
    "VenueLinkDown",
]

Key = tuple[Scope, int]
FIRM: Final[Key] = (Scope.FIRM, 0)
NS: Final = 1_000_000_000


class TriggerError(ValueError):
    """A bad observation or setting (negative count, unknown scope, ...)."""


class UnknownTriggerError(TriggerError, LookupError):
    """No trigger of that name."""


class KillActionName(enum.StrEnum):
    """What a firing asks the engine to do (ISOLATE_VENUE is operator-only)."""

    BLOCK = "block"
    CANCEL = "cancel"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    """One trigger's configuration (``[kill.triggers.<name>]``), in config units."""

    armed: bool = False
    dry_run: bool = False
    threshold: float = 0.0
    window_s: float = 1.0
    min_samples: int = 1
    action: KillActionName = KillActionName.BLOCK

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise TriggerError(f"threshold must be a finite number >= 0, got {self.threshold}")
        if not math.isfinite(self.window_s) or self.window_s <= 0:
            raise TriggerError(f"window_s must be a finite number > 0, got {self.window_s}")
        if self.min_samples < 1:
            raise TriggerError(f"min_samples must be >= 1, got {self.min_samples}")


@dataclass(frozen=True, slots=True)
class Firing:
    """A trigger went over its limit on one key at ``now_ns``."""

    trigger: str
    reason: KillReason
    scope: Scope
    scope_id: int
    value: float  # in config units (seconds, ratio, currency)
    threshold: float
    action: KillActionName
    dry_run: bool
    now_ns: int
    detail: str

    @property
    def kill_id(self) -> str:
        """Deterministic and unique per firing (time is part of it, so a restarted role does
        not collide with an earlier firing of the same key)."""
        return f"{self.trigger}:{self.scope.name.lower()}:{self.scope_id}:{self.now_ns}"


@dataclass(frozen=True, slots=True)
class TriggerStatus:
    name: str
    armed: bool
    dry_run: bool
    threshold: float
    value: float  # worst key's last value, config units
    fired: int
    detail: str


def _key(scope: Scope | int, scope_id: int) -> Key:
    try:
        s = Scope(scope)
    except ValueError:
        raise TriggerError(f"unknown scope {scope!r}") from None
    if isinstance(scope_id, bool) or not isinstance(scope_id, int | np.integer) or scope_id < 0:
        raise TriggerError(f"scope id must be an integer >= 0, got {scope_id!r}")
    return (s, 0 if s is Scope.FIRM else int(scope_id))


def _time(now_ns: int) -> int:
    if isinstance(now_ns, bool) or not isinstance(now_ns, int | np.integer):
        raise TriggerError(f"time must be integer ns, got {now_ns!r}")
    return int(now_ns)


@dataclass(slots=True)
class _KeyState:
    latched: bool = False
    value: float = 0.0


class Trigger:
    """Common machinery: settings, arm/disarm, latching per key, counts."""

    name: ClassVar[str]
    reason: ClassVar[KillReason]
    #: config unit -> internal unit (seconds -> ns, currency -> 1e-4 units, ratio -> ratio)
    scale: ClassVar[float] = 1.0

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        self.settings = settings or TriggerSettings()
        self.fired = 0
        self._keys: dict[Key, _KeyState] = {}

    # -- configuration ---------------------------------------------------------------------
    def arm(self, armed: bool, dry_run: bool | None = None) -> None:
        changes: dict[str, bool] = {"armed": armed}
        if dry_run is not None:
            changes["dry_run"] = dry_run
        self.settings = replace(self.settings, **changes)  # type: ignore[arg-type]

    @property
    def limit(self) -> float:
        """The threshold in internal units; whole ns / 1e-4 units (rounded, so 1.001 s is
        exactly 1_001_000_000 ns and the boundary is where the config says)."""
        if self.scale == 1.0:
            return self.settings.threshold
        return float(round(self.settings.threshold * self.scale))

    @property
    def window_ns(self) -> int:
        return round(self.settings.window_s * NS)

    # -- evaluation ------------------------------------------------------------------------
    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        """(key, value in internal units, eligible) for every tracked key at NOW_NS."""
        raise NotImplementedError

    def evaluate(self, now_ns: int) -> list[Firing]:
        now = _time(now_ns)
        out: list[Firing] = []
        for key, value, eligible in self.values(now):
            st = self._keys.setdefault(key, _KeyState())
            st.value = value
            over = eligible and value > self.limit
            if not over:
                st.latched = False
                continue
            if st.latched or not self.settings.armed:
                continue
            st.latched = True
            self.fired += 1
            out.append(
                Firing(
                    trigger=self.name,
                    reason=self.reason,
                    scope=key[0],
                    scope_id=key[1],
                    value=value / self.scale,
                    threshold=self.settings.threshold,
                    action=self.settings.action,
                    dry_run=self.settings.dry_run,
                    now_ns=now,
                    detail=self.describe(key, value),
                )
            )
        return out

    def describe(self, key: Key, value: float) -> str:
        return (
            f"{self.name} on {key[0].name.lower()} {key[1]}: {value / self.scale:.6g} > "
            f"{self.settings.threshold:.6g}"
        )

    def status(self) -> TriggerStatus:
        worst = max(self._keys.items(), key=lambda kv: kv[1].value, default=None)
        value = worst[1].value / self.scale if worst else 0.0
        detail = self.describe(worst[0], worst[1].value) if worst else "no observations"
        return TriggerStatus(
            self.name,
            self.settings.armed,
            self.settings.dry_run,
            self.settings.threshold,
            value,
            self.fired,
            detail,
        )


class _Windowed(Trigger):
    """Per-key deques of (ts, payload) pruned to the window at evaluation."""

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._obs: dict[Key, deque[tuple[int, float]]] = {}

    def _push(self, key: Key, now_ns: int, value: float) -> None:
        self._obs.setdefault(key, deque()).append((now_ns, value))

    def _window(self, key: Key, now_ns: int) -> deque[tuple[int, float]]:
        q = self._obs.get(key, deque())
        cutoff = now_ns - self.window_ns
        while q and q[0][0] <= cutoff:
            q.popleft()
        return q


class EStop(Trigger):
    """Manual E-stop: fires (firm scope) while the E-stop input is pressed."""

    name = "estop"
    reason = KillReason.MANUAL

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._pressed = False

    def observe(self, pressed: bool, now_ns: int) -> None:
        _time(now_ns)
        self._pressed = bool(pressed)

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        # threshold 0 and value 1 while pressed: "pressed" is the only condition.
        yield FIRM, 1.0 if self._pressed else 0.0, True

    @property
    def limit(self) -> float:
        return 0.0

    def describe(self, key: Key, value: float) -> str:
        return "E-stop pressed" if value else "E-stop released"


class RejectRate(_Windowed):
    """Share of orders rejected over the window, per key."""

    name = "reject_rate"
    reason = KillReason.REJECT_RATE

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._counts: dict[Key, deque[tuple[int, int, int]]] = {}

    def observe(
        self,
        accepted: int,
        rejected: int,
        now_ns: int,
        scope: Scope = Scope.FIRM,
        scope_id: int = 0,
    ) -> None:
        now, key = _time(now_ns), _key(scope, scope_id)
        if accepted < 0 or rejected < 0:
            raise TriggerError(f"counts must be >= 0, got {accepted}/{rejected}")
        self._counts.setdefault(key, deque()).append((now, int(accepted), int(rejected)))

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        cutoff = now_ns - self.window_ns
        for key, q in self._counts.items():
            while q and q[0][0] <= cutoff:
                q.popleft()
            acc = sum(a for _, a, _ in q)
            rej = sum(r for _, _, r in q)
            total = acc + rej
            yield key, (rej / total if total else 0.0), total >= self.settings.min_samples


class StaleMarketData(Trigger):
    """Age of the last market-data update per key (venue, or symbol)."""

    name = "stale_md"
    reason = KillReason.STALE_MARKET_DATA
    scale = float(NS)

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._last: dict[Key, int] = {}

    def observe(self, last_update_ns: int, scope: Scope = Scope.SYMBOL, scope_id: int = 0) -> None:
        key = _key(scope, scope_id)
        ts = _time(last_update_ns)
        self._last[key] = max(ts, self._last.get(key, ts))

    def forget(self, scope: Scope, scope_id: int) -> None:
        self._last.pop(_key(scope, scope_id), None)

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        for key, ts in self._last.items():
            yield key, float(now_ns - ts), True


class LatencySpike(_Windowed):
    """Decision-latency p99 over the window (samples in ns), per key (firm by default)."""

    name = "latency"
    reason = KillReason.LATENCY_SPIKE
    scale = float(NS)

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._samples: dict[Key, deque[tuple[int, npt.NDArray[np.int64]]]] = {}

    def observe(
        self,
        samples_ns: npt.ArrayLike,
        now_ns: int,
        scope: Scope = Scope.FIRM,
        scope_id: int = 0,
    ) -> None:
        now, key = _time(now_ns), _key(scope, scope_id)
        arr = np.asarray(samples_ns, dtype=np.int64).reshape(-1)
        if arr.size and int(arr.min()) < 0:
            raise TriggerError("latency samples must be >= 0 ns")
        if arr.size:
            self._samples.setdefault(key, deque()).append((now, arr.copy()))

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        cutoff = now_ns - self.window_ns
        for key, q in self._samples.items():
            while q and q[0][0] <= cutoff:
                q.popleft()
            if not q:
                yield key, 0.0, False
                continue
            arr = np.concatenate([a for _, a in q])
            # "higher": the p99 is a latency that was really observed, never an interpolation.
            p99 = float(np.percentile(arr, 99, method="higher"))
            yield key, p99, arr.size >= self.settings.min_samples


class ExposureJump(_Windowed):
    """Change of open+executed notional (1e-4 units) within the window, per key."""

    name = "exposure"
    reason = KillReason.EXPOSURE_JUMP
    scale = float(PRICE_SCALE)

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._baseline: dict[Key, float] = {}

    def observe(
        self, notional: int, now_ns: int, scope: Scope = Scope.FIRM, scope_id: int = 0
    ) -> None:
        now, key = _time(now_ns), _key(scope, scope_id)
        if isinstance(notional, bool) or not isinstance(notional, int | np.integer):
            raise TriggerError(f"notional must be integer 1e-4 units, got {notional!r}")
        self._push(key, now, float(notional))

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        cutoff = now_ns - self.window_ns
        for key in self._obs:
            q = self._obs[key]
            while q and q[0][0] <= cutoff:
                # The level held before the window is the baseline a jump is measured from.
                self._baseline[key] = q.popleft()[1]
            vals = [v for _, v in q]
            if key in self._baseline:
                vals.append(self._baseline[key])
            if not vals:
                yield key, 0.0, False
                continue
            yield key, max(vals) - min(vals), len(q) >= self.settings.min_samples


class VenueLinkDown(Trigger):
    """How long each venue's link has been down (0 while up)."""

    name = "venue_down"
    reason = KillReason.VENUE_LINK_DOWN
    scale = float(NS)

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._down_since: dict[Key, int | None] = {}

    def observe(self, venue: int, up: bool, now_ns: int) -> None:
        now, key = _time(now_ns), _key(Scope.VENUE, venue)
        if up:
            self._down_since[key] = None
        elif self._down_since.get(key) is None:
            self._down_since[key] = now

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        for key, since in self._down_since.items():
            yield key, (0.0 if since is None else float(now_ns - since)), since is not None


class _Pnl(Trigger):
    scale = float(PRICE_SCALE)

    def __init__(self, settings: TriggerSettings | None = None) -> None:
        super().__init__(settings)
        self._pnl: dict[Key, int] = {}
        self._peak: dict[Key, int] = {}

    def observe(
        self, pnl: int, now_ns: int, scope: Scope = Scope.ACCOUNT, scope_id: int = 0
    ) -> None:
        """P&L (realised + unrealised, 1e-4 units) of an account or strategy at NOW_NS."""
        _time(now_ns)
        key = _key(scope, scope_id)
        if key[0] not in (Scope.ACCOUNT, Scope.STRATEGY, Scope.FIRM):
            raise TriggerError(f"P&L is per account, strategy or firm, not {key[0].name}")
        if isinstance(pnl, bool) or not isinstance(pnl, int | np.integer):
            raise TriggerError(f"P&L must be integer 1e-4 units, got {pnl!r}")
        self._pnl[key] = int(pnl)
        self._peak[key] = max(int(pnl), self._peak.get(key, int(pnl)))


class MaxLoss(_Pnl):
    """Loss (-P&L) per account/strategy."""

    name = "max_loss"
    reason = KillReason.MAX_LOSS

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        for key, pnl in self._pnl.items():
            yield key, float(-pnl), True


class MaxDrawdown(_Pnl):
    """Peak-to-current P&L drop per account/strategy (peak since the role started)."""

    name = "max_drawdown"
    reason = KillReason.MAX_DRAWDOWN

    def values(self, now_ns: int) -> Iterator[tuple[Key, float, bool]]:
        for key, pnl in self._pnl.items():
            yield key, float(self._peak[key] - pnl), True


TRIGGER_CLASSES: Final[tuple[type[Trigger], ...]] = (
    EStop,
    RejectRate,
    StaleMarketData,
    LatencySpike,
    ExposureJump,
    VenueLinkDown,
    MaxLoss,
    MaxDrawdown,
)
TRIGGER_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in TRIGGER_CLASSES)


@dataclass
class TriggerSet:
    """Every trigger, by name; what the kill role evaluates on its timer."""

    estop: EStop = field(default_factory=EStop)
    reject_rate: RejectRate = field(default_factory=RejectRate)
    stale_md: StaleMarketData = field(default_factory=StaleMarketData)
    latency: LatencySpike = field(default_factory=LatencySpike)
    exposure: ExposureJump = field(default_factory=ExposureJump)
    venue_down: VenueLinkDown = field(default_factory=VenueLinkDown)
    max_loss: MaxLoss = field(default_factory=MaxLoss)
    max_drawdown: MaxDrawdown = field(default_factory=MaxDrawdown)

    @classmethod
    def from_settings(cls, settings: Mapping[str, TriggerSettings]) -> TriggerSet:
        unknown = sorted(set(settings) - set(TRIGGER_NAMES))
        if unknown:
            raise UnknownTriggerError(f"unknown trigger(s) {unknown}; known: {TRIGGER_NAMES}")
        out = cls()
        for name, s in settings.items():
            out.get(name).settings = s
        return out

    def get(self, name: str) -> Trigger:
        if name not in TRIGGER_NAMES:
            raise UnknownTriggerError(
                f"unknown trigger {name!r}; known: {', '.join(TRIGGER_NAMES)}"
            )
        trigger: Trigger = getattr(self, name)
        return trigger

    def __iter__(self) -> Iterator[Trigger]:
        return (self.get(n) for n in TRIGGER_NAMES)

    def evaluate(self, now_ns: int) -> list[Firing]:
        return [f for t in self for f in t.evaluate(now_ns)]

    def status(self) -> list[TriggerStatus]:
        return [t.status() for t in self]

    def arm(self, name: str, armed: bool, dry_run: bool | None = None) -> Trigger:
        trigger = self.get(name)
        trigger.arm(armed, dry_run)
        return trigger

    def arm_states(self) -> dict[str, dict[str, bool]]:
        return {t.name: {"armed": t.settings.armed, "dry_run": t.settings.dry_run} for t in self}

    def restore_arm_states(self, states: Mapping[str, Mapping[str, bool]]) -> None:
        for name, st in states.items():
            if name in TRIGGER_NAMES:
                self.arm(name, bool(st.get("armed", False)), bool(st.get("dry_run", False)))
