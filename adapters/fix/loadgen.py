"""FIX load generator: a quickfix initiator sending a seeded new/cancel/replace mix at a rate.

This module owns the client side of `gateway_e2e` and of the demo's order flow:

* `LoadGenerator`: one logged-on initiator session (MemoryStore, ResetSeqNumFlag on every
  logon, so it never depends on the acceptor's stored sequence numbers); `run(rate, seconds,
  mix, seed)` sends open-loop at `rate` (due times fixed in advance, so a slow answer never
  slows the sender) and measures each request's round trip: CLOCK_MONOTONIC just before
  `sendToTarget` to CLOCK_MONOTONIC when the first answer naming its ClOrdID arrives
  (ExecutionReport, OrderCancelReject or BusinessMessageReject);
* `LoadResult`: sent, received, p50/p99/p999/max round trip in ns, achieved send rate;
* `run_load(...)` and `find_max_rate(...)`: the API the benchmark calls. `find_max_rate` steps
  the rate up until a run is not sustained (an answer missing, the sender more than 5 % short of
  the rate, or p99 above the limit, 10 ms by default), then bisects;
* `main`: `python -m adapters.fix.loadgen ...` prints one JSON line per run and a JSON summary
  as the last line; `--spawn-floor` starts the floor (`adapters.fix.floor`) itself.

The order mix, sides, symbols, prices and quantities come from `random.Random(seed)`; ClOrdIDs
are `<run token>-<n>` with a fresh token per run so they never repeat within a session day.
Prices are exact decimal strings built from integer ticks (`tectra.schema.fixed_to_str`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import quickfix as fix

from adapters.fix.settings import FixInitiatorConfig, initiator_settings, stop_engine
from tectra.schema import fixed_to_str, price_to_fixed

__all__ = [
    "LoadGenError",
    "LoadGenerator",
    "LoadResult",
    "MaxRateResult",
    "Mix",
    "find_max_rate",
    "main",
    "run_load",
]

DEFAULT_P99_LIMIT_NS: Final[int] = 10_000_000
_RATE_TOLERANCE: Final[float] = 0.95
_MAX_LIVE_ORDERS: Final[int] = 10_000


class LoadGenError(RuntimeError):
    """The load generator could not log on or was given bad parameters."""


@dataclass(frozen=True)
class Mix:
    """Fractions of new orders, cancels and replaces (normalised; cancel/replace act on a
    random live order, and become new orders while none is live)."""

    new: float = 0.8
    cancel: float = 0.1
    replace: float = 0.1

    def __post_init__(self) -> None:
        if (
            min(self.new, self.cancel, self.replace) < 0
            or self.new + self.cancel + self.replace <= 0
        ):
            raise LoadGenError(f"bad mix {self}: fractions are >= 0 and not all 0")

    @classmethod
    def parse(cls, text: str) -> Mix:
        """'new=0.8,cancel=0.1,replace=0.1' (missing kinds are 0)."""
        values = {"new": 0.0, "cancel": 0.0, "replace": 0.0}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in values:
                raise LoadGenError(f"bad mix {text!r}: use new=F,cancel=F,replace=F")
            values[key.strip()] = float(value)
        return cls(**values)

    def thresholds(self) -> tuple[float, float]:
        total = self.new + self.cancel + self.replace
        return self.new / total, (self.new + self.cancel) / total


@dataclass(frozen=True)
class LoadResult:
    """One run at one target rate. Latencies are round trips in ns over answered requests."""

    target_rate: float
    seconds: float
    sent: int
    received: int
    p50_ns: int
    p99_ns: int
    p999_ns: int
    max_ns: int
    mean_ns: int
    achieved_rate: float
    """Requests sent per second over the measured sending span."""
    max_send_lag_ns: int
    """How far the sender fell behind its schedule at worst."""
    answers: dict[str, int] = field(default_factory=dict)
    """Answers by kind: execution_report, rejected (OrdStatus 8), cancel_reject,
    business_reject, session_reject, stale (from an earlier run)."""

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def sustained(self, p99_limit_ns: int = DEFAULT_P99_LIMIT_NS) -> bool:
        """Every request sent and answered, the rate kept within 5 %, p99 under the limit."""
        return (
            self.sent >= max(1, round(self.target_rate * self.seconds))  # nothing stalled
            and self.lost == 0
            and self.achieved_rate >= _RATE_TOLERANCE * self.target_rate
            and self.p99_ns <= p99_limit_ns
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with units in the names (docs/DESIGN.md benchmark conventions)."""
        return {
            "target_rate_per_s": round(self.target_rate, 1),
            "achieved_rate_per_s": round(self.achieved_rate, 1),
            "seconds": self.seconds,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "p50_ns": self.p50_ns,
            "p99_ns": self.p99_ns,
            "p999_ns": self.p999_ns,
            "max_ns": self.max_ns,
            "mean_ns": self.mean_ns,
            "max_send_lag_ns": self.max_send_lag_ns,
            "answers": dict(self.answers),
        }


@dataclass(frozen=True)
class MaxRateResult:
    """`find_max_rate`'s answer: the highest sustained rate (0 if none) and every step."""

    max_rate: float
    at_max: LoadResult | None
    steps: tuple[LoadResult, ...]
    p99_limit_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_sustained_rate_per_s": round(self.max_rate, 1),
            "p99_limit_ns": self.p99_limit_ns,
            "at_max": self.at_max.to_dict() if self.at_max else None,
            "steps": [s.to_dict() for s in self.steps],
        }


class _Run:
    """Bookkeeping of one run; written by the sender (send_ns) and quickfix's thread (the rest)."""

    def __init__(self, prefix: str, total: int) -> None:
        self.prefix = prefix
        self.plen = len(prefix)
        self.send_ns: npt.NDArray[np.int64] = np.zeros(total, dtype=np.int64)
        self.recv_ns: npt.NDArray[np.int64] = np.zeros(total, dtype=np.int64)
        self.received = 0
        self.answers: dict[str, int] = {}
        self.done = threading.Event()
        self.expect = total

    def count(self, kind: str) -> None:
        self.answers[kind] = self.answers.get(kind, 0) + 1


class _LoadApplication(fix.Application):  # type: ignore[misc]  # quickfix is untyped
    def __init__(self, owner: LoadGenerator) -> None:
        super().__init__()
        self._owner = owner

    def onCreate(self, session_id: Any) -> None:  # noqa: N802
        pass

    def onLogon(self, session_id: Any) -> None:  # noqa: N802
        self._owner._logged_on.set()

    def onLogout(self, session_id: Any) -> None:  # noqa: N802
        self._owner._logged_on.clear()

    def toAdmin(self, message: Any, session_id: Any) -> None:  # noqa: N802
        try:
            if message.getHeader().getField(35) == "A" and self._owner.username is not None:
                message.setField(553, self._owner.username)
                message.setField(554, self._owner.password or "")
        except Exception:
            self._owner.callback_errors += 1

    def fromAdmin(self, message: Any, session_id: Any) -> None:  # noqa: N802
        try:
            msg_type = message.getHeader().getField(35)
            if msg_type == "5":
                if message.isSetField(58):
                    self._owner.last_logout_text = message.getField(58)
                if not self._owner._logged_on.is_set():
                    self._owner._refused.set()  # logon refused: fail fast, do not wait it out
            elif msg_type == "3":
                run = self._owner._run
                if run is not None:
                    run.count("session_reject")
        except Exception:
            self._owner.callback_errors += 1

    def toApp(self, message: Any, session_id: Any) -> None:  # noqa: N802
        pass

    def fromApp(self, message: Any, session_id: Any) -> None:  # noqa: N802
        now = time.monotonic_ns()
        try:
            self._owner._on_answer(message, now)
        except Exception:
            self._owner.callback_errors += 1


class _Clock:
    """TransactTime text, strftime once per second."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def now(self) -> str:
        sec, rem = divmod(time.time_ns(), 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{rem // 1_000_000:03d}"


class LoadGenerator:
    """One initiator session for load runs. `start()` logs on; `run()` may be called repeatedly.

    Only one LoadGenerator per CompID pair may run in a process (quickfix sessions are global).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender_comp_id: str = "LOADGEN",
        target_comp_id: str = "TECTRA",
        username: str | None = None,
        password: str | None = None,
        account: str | None = None,
        symbols: Sequence[str] = ("TECA", "TECB", "TECC", "TECD"),
        price: str = "100",
        price_range_ticks: int = 100,
        tick: str = "0.01",
        heartbeat_s: int = 30,
        state_dir: Path | None = None,
        logon_timeout_s: float = 15.0,
    ) -> None:
        if not symbols:
            raise LoadGenError("at least one symbol")
        self.username = username
        self.password = password
        self.account = account
        self.symbols = tuple(symbols)
        self._mid = price_to_fixed(price)
        self._tick = price_to_fixed(tick)
        self._range = price_range_ticks
        if self._tick <= 0 or self._mid - self._range * self._tick <= 0:
            raise LoadGenError("price - price_range_ticks * tick must stay positive")
        self._logon_timeout_s = logon_timeout_s
        # Every price and quantity the generator can pick, formatted once (exact decimals).
        self._prices = [
            fixed_to_str(self._mid + self._tick * k) for k in range(-self._range, self._range + 1)
        ]
        self._qtys = [str(100 * k) for k in range(1, 11)]
        for text in (*self.symbols, account or ""):
            if not text.isprintable() or "=" in text or "\x01" in text:
                raise LoadGenError(f"{text!r} cannot go into a FIX field")
        self._account_field = f"1={account}\x01" if account else ""
        self.config = FixInitiatorConfig(
            host=host,
            port=port,
            sender_comp_id=sender_comp_id,
            target_comp_id=target_comp_id,
            state_dir=state_dir,
            heartbeat_s=heartbeat_s,
            reconnect_s=1,
            reset_on_logon=True,
            use_data_dictionary=False,  # the client trusts the answers: cheaper parsing
        )
        self._settings = initiator_settings(self.config)
        self._app = _LoadApplication(self)
        store = (
            fix.FileStoreFactory(self._settings)
            if state_dir is not None
            else fix.MemoryStoreFactory()
        )
        log = fix.FileLogFactory(self._settings) if state_dir is not None else None
        self._initiator = fix.ThreadedSocketInitiator(self._app, store, self._settings, log)
        self._session_id = fix.SessionID("FIX.4.4", sender_comp_id, target_comp_id)
        self._logged_on = threading.Event()
        self._refused = threading.Event()
        self._run: _Run | None = None
        self._runs = 0
        self._clock = _Clock()
        self._started = False
        self.callback_errors = 0
        self.last_logout_text = ""

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect and log on; LoadGenError if not logged on within the timeout."""
        if self._initiator is None:
            raise LoadGenError("this load generator was stopped; create a new one")
        self._initiator.start()
        self._started = True
        deadline = time.monotonic() + self._logon_timeout_s
        while not self._logged_on.is_set() and not self._refused.is_set():
            if time.monotonic() >= deadline:
                break
            self._logged_on.wait(0.01)
        if not self._logged_on.is_set():
            self.stop()
            why = f": {self.last_logout_text}" if self.last_logout_text else ""
            raise LoadGenError(
                f"no logon to {self.config.host}:{self.config.port} as "
                f"{self.config.sender_comp_id}->{self.config.target_comp_id}{why}"
            )

    def stop(self) -> None:
        if self._started:
            stop_engine(self._initiator, [self._session_id])
            self._started = False
        # quickfix sessions are process-wide: the next LoadGenerator with the same CompIDs can
        # only log on once this engine (and its session) is destroyed.
        self._initiator = None

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- answers (quickfix thread) ------------------------------------------------------

    def _on_answer(self, m: Any, now: int) -> None:
        run = self._run
        if run is None:
            return
        msg_type = m.getHeader().getField(35)
        if msg_type == "8":
            cl = m.getField(11)
            run.count("rejected" if m.getField(39) == "8" else "execution_report")
        elif msg_type == "9":
            cl = m.getField(11)
            run.count("cancel_reject")
        elif msg_type == "j":
            run.count("business_reject")
            if not m.isSetField(379):
                return
            cl = m.getField(379)
        else:
            return
        if not cl.startswith(run.prefix):
            run.count("stale")
            return
        i = int(cl[run.plen :])
        if 0 <= i < run.expect and run.recv_ns[i] == 0:
            run.recv_ns[i] = now
            run.received += 1
            if run.received == run.expect:
                run.done.set()

    # ---- sending ------------------------------------------------------------------------

    def run(
        self,
        rate: float,
        seconds: float,
        mix: Mix | None = None,
        seed: int = 1,
        *,
        warmup_s: float = 0.0,
        drain_s: float = 3.0,
        max_in_flight: int = 2000,
    ) -> LoadResult:
        """Send for `warmup_s` + `seconds` at `rate` requests/s; statistics cover the last
        `seconds` only. Waits up to `drain_s` after the last send for outstanding answers.

        At most `max_in_flight` requests go unanswered: beyond that the sender waits (the run
        then falls short of its rate and is not sustained), and after `drain_s` without progress
        it stops sending. quickfix sends block while holding the session lock, so letting the
        TCP buffers fill both ways would deadlock the generator against a saturated acceptor.
        """
        if rate <= 0 or seconds <= 0:
            raise LoadGenError("rate and seconds must be positive")
        if not self._logged_on.is_set():
            raise LoadGenError("not logged on")
        mix = mix or Mix()
        rng = random.Random(seed)
        p_new, p_cancel = mix.thresholds()
        warm = round(rate * warmup_s)
        total = warm + max(1, round(rate * seconds))
        self._runs += 1
        token = f"{os.getpid() % 1000:03d}{self._runs:03d}{os.urandom(2).hex()}"
        run = _Run(f"{token}-", total)
        self._run = run
        live: list[tuple[str, str, str, str, str]] = []  # (cl_ord_id, side, symbol, qty, px)
        interval = 1e9 / rate
        sid = self._session_id
        send = fix.Session.sendToTarget
        max_lag = 0
        start = time.monotonic_ns() + 1_000_000
        for i in range(total):
            if i - run.received > max_in_flight and not self._wait_for_answers(
                run, i - max_in_flight, drain_s
            ):
                run.expect = i  # stalled: stop here, the unsent requests are not counted
                break
            due = start + int(i * interval)
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            elif i >= warm:
                max_lag = max(max_lag, now - due)
            msg = self._request(
                i, prefix=run.prefix, rng=rng, live=live, p_new=p_new, p_cancel=p_cancel
            )
            run.send_ns[i] = time.monotonic_ns()
            send(msg, sid)
        if run.received < run.expect:
            run.done.wait(drain_s)
        self._run = None
        return self._result(run, rate, seconds, warm, max_lag)

    @staticmethod
    def _wait_for_answers(run: _Run, at_least: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while run.received < at_least:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.0005)
        return True

    def _request(
        self,
        i: int,
        *,
        prefix: str,
        rng: random.Random,
        live: list[tuple[str, str, str, str, str]],
        p_new: float,
        p_cancel: float,
    ) -> Any:
        # The message is built as FIX text and parsed once by quickfix: ten setField calls
        # through SWIG cost three times as much, and the sender's CPU is the generator's limit.
        # quickfix fills in the header (CompIDs, MsgSeqNum, SendingTime) and BodyLength/CheckSum.
        cl = f"{prefix}{i}"
        u = rng.random()
        orig = ""
        if u < p_new or not live:
            msg_type = "D"
            side = "1" if rng.random() < 0.5 else "2"
            symbol = self.symbols[rng.randrange(len(self.symbols))]
            qty = self._qtys[rng.randrange(len(self._qtys))]
            px = self._prices[rng.randrange(len(self._prices))]
            live.append((cl, side, symbol, qty, px))
            if len(live) > _MAX_LIVE_ORDERS:  # keep the book bounded: forget the oldest
                live.pop(0)
        else:
            j = rng.randrange(len(live))
            orig_cl, side, symbol, qty, px = live[j]
            orig = f"41={orig_cl}\x01"
            if u < p_cancel:
                msg_type = "F"
                live[j] = live[-1]
                live.pop()
            else:
                msg_type = "G"
                qty = self._qtys[rng.randrange(len(self._qtys))]
                px = self._prices[rng.randrange(len(self._prices))]
                live[j] = (cl, side, symbol, qty, px)
        priced = "" if msg_type == "F" else f"40=2\x0144={px}\x0159=0\x01"
        body = (
            f"35={msg_type}\x01{self._account_field}11={cl}\x0138={qty}\x01{orig}{priced}"
            f"54={side}\x0155={symbol}\x0160={self._clock.now()}\x01"
        )
        return fix.Message(f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01", False)

    @staticmethod
    def _result(run: _Run, rate: float, seconds: float, warm: int, max_lag: int) -> LoadResult:
        send_ns = run.send_ns[warm : max(warm, run.expect)]
        recv_ns = run.recv_ns[warm : max(warm, run.expect)]
        answered = recv_ns > 0
        lat = (recv_ns[answered] - send_ns[answered]).astype(np.int64)
        n = len(send_ns)
        span = int(send_ns[-1] - send_ns[0]) if n > 1 else 0
        achieved = (n - 1) * 1e9 / span if span > 0 else float(rate if n else 0)
        if len(lat):
            p50, p99, p999 = (
                int(x) for x in np.percentile(lat, [50.0, 99.0, 99.9], method="higher")
            )
            worst, mean = int(lat.max()), int(lat.mean())
        else:
            p50 = p99 = p999 = worst = mean = 0
        return LoadResult(
            target_rate=float(rate),
            seconds=float(seconds),
            sent=n,
            received=int(answered.sum()),
            p50_ns=p50,
            p99_ns=p99,
            p999_ns=p999,
            max_ns=worst,
            mean_ns=mean,
            achieved_rate=achieved,
            max_send_lag_ns=max_lag,
            answers=dict(run.answers),
        )


# --------------------------------------------------------------------------------------------
# API for benchmarks
# --------------------------------------------------------------------------------------------


def run_load(  # noqa: PLR0917  (the benchmark's positional API)
    host: str,
    port: int,
    rate: float,
    seconds: float,
    mix: Mix | None = None,
    seed: int = 1,
    *,
    warmup_s: float = 0.5,
    **session: Any,
) -> LoadResult:
    """Log on, run once at `rate` for `seconds` (after `warmup_s`), log out.

    `session` goes to `LoadGenerator` (sender_comp_id, target_comp_id, username, password,
    account, symbols, price, ...)."""
    with LoadGenerator(host, port, **session) as gen:
        return gen.run(rate, seconds, mix, seed, warmup_s=warmup_s)


def find_max_rate(
    host: str,
    port: int,
    *,
    start_rate: float = 1000.0,
    max_rate: float = 50_000.0,
    step_factor: float = 1.5,
    refine_steps: int = 2,
    seconds: float = 3.0,
    p99_limit_ns: int = DEFAULT_P99_LIMIT_NS,
    mix: Mix | None = None,
    seed: int = 1,
    warmup_s: float = 0.5,
    settle_s: float = 0.5,
    **session: Any,
) -> MaxRateResult:
    """The highest rate whose run is sustained with p99 <= `p99_limit_ns`.

    Steps from `start_rate` by `step_factor` until a run is not sustained (or `max_rate` is
    passed), then bisects `refine_steps` times between the last good and first bad rate. One
    session serves every step; `settle_s` lets the previous step's backlog drain.
    """
    if step_factor <= 1.0:
        raise LoadGenError("step_factor must be above 1")
    steps: list[LoadResult] = []
    good: LoadResult | None = None
    bad: float | None = None
    with LoadGenerator(host, port, **session) as gen:

        def attempt(rate: float) -> LoadResult:
            result = gen.run(rate, seconds, mix, seed, warmup_s=warmup_s)
            steps.append(result)
            time.sleep(settle_s)
            return result

        rate = start_rate
        while rate <= max_rate:
            result = attempt(rate)
            if not result.sustained(p99_limit_ns):
                bad = rate
                break
            good = result
            rate *= step_factor
        if good is not None and bad is not None:
            lo, hi = good.target_rate, bad
            for _ in range(refine_steps):
                mid = round((lo + hi) / 2)
                result = attempt(mid)
                if result.sustained(p99_limit_ns):
                    good, lo = result, mid
                else:
                    hi = mid
    return MaxRateResult(
        max_rate=good.target_rate if good else 0.0,
        at_max=good,
        steps=tuple(steps),
        p99_limit_ns=p99_limit_ns,
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": sys.platform, "python": sys.version.split()[0]}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m adapters.fix.loadgen`: JSON line per run, JSON summary last."""
    ap = argparse.ArgumentParser(prog="python -m adapters.fix.loadgen", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="acceptor port (0 with --spawn-floor)")
    ap.add_argument("--rate", type=float, action="append", help="requests/s (repeatable)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds excluded from stats")
    ap.add_argument("--mix", default="new=0.8,cancel=0.1,replace=0.1")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sender", default="LOADGEN")
    ap.add_argument("--target", default="TECTRA")
    ap.add_argument("--username")
    ap.add_argument("--password")
    ap.add_argument("--account")
    ap.add_argument("--symbols", default="TECA,TECB,TECC,TECD")
    ap.add_argument("--price", default="100")
    ap.add_argument("--find-max", action="store_true", help="step the rate to the p99 limit")
    ap.add_argument("--p99-limit-ms", type=float, default=10.0)
    ap.add_argument("--start-rate", type=float, default=1000.0)
    ap.add_argument("--max-rate", type=float, default=50_000.0)
    ap.add_argument("--step-factor", type=float, default=1.5)
    ap.add_argument("--refine-steps", type=int, default=2)
    ap.add_argument(
        "--spawn-floor",
        choices=("new", "fill"),
        help="start adapters.fix.floor in this mode on a free port and measure against it",
    )
    args = ap.parse_args(argv)
    session = {
        "sender_comp_id": args.sender,
        "target_comp_id": args.target,
        "username": args.username,
        "password": args.password,
        "account": args.account,
        "symbols": tuple(args.symbols.split(",")),
        "price": args.price,
    }
    mix = Mix.parse(args.mix)
    floor_proc = None
    port = args.port
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.spawn_floor:
        from adapters.fix.floor import start_floor_process

        tmp = tempfile.TemporaryDirectory(prefix="tectra-floor-")
        if port == 0:
            port = _free_port()
        floor_proc = start_floor_process(
            port,
            Path(tmp.name),
            mode=args.spawn_floor,
            sender_comp_id=args.target,
            target_comp_ids=(args.sender,),
        )
    if port == 0:
        ap.error("--port is required without --spawn-floor")
    summary: dict[str, Any] = {
        "bench": "fix_loadgen",
        "machine": _machine(),
        "target": "floor:" + args.spawn_floor if args.spawn_floor else f"{args.host}:{port}",
        "mix": asdict(mix),
        "seed": args.seed,
    }
    try:
        if args.find_max:
            found = find_max_rate(
                args.host,
                port,
                start_rate=args.start_rate,
                max_rate=args.max_rate,
                step_factor=args.step_factor,
                refine_steps=args.refine_steps,
                seconds=args.seconds,
                p99_limit_ns=int(args.p99_limit_ms * 1e6),
                mix=mix,
                seed=args.seed,
                warmup_s=args.warmup,
                **session,
            )
            for step in found.steps:
                print(json.dumps(step.to_dict()), flush=True)
            summary["metrics"] = found.to_dict()
        else:
            runs = []
            with LoadGenerator(args.host, port, **session) as gen:
                for rate in args.rate or [1000.0]:
                    result = gen.run(rate, args.seconds, mix, args.seed, warmup_s=args.warmup)
                    print(json.dumps(result.to_dict()), flush=True)
                    runs.append(result.to_dict())
                    time.sleep(0.5)
            summary["metrics"] = {"runs": runs}
    except LoadGenError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    finally:
        if floor_proc is not None:
            from adapters.fix.floor import stop_floor_process

            summary["floor"] = stop_floor_process(floor_proc)
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps(summary), flush=True)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
