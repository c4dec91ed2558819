"""One-host lab pieces shared by the demo, the benchmarks and the tests: a limits document with
chosen instruments and accounts, and the OUCH venue simulator as a child process.

Nothing here is on a live path; it exists so the demo, `perf/` and the tests build the same
appliance the same way instead of each keeping its own copy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["VenueProcess", "limits_toml", "start_venue", "stop_process", "venue_process"]

# Generous by default: what the lab exercises is the path, not the limits (callers tighten).
_DEFAULTS: dict[str, Any] = {
    "tick_size": "0.01",
    "max_qty": 10_000,
    "max_notional": 10_000_000,
    "band_bps": 1000,
    "band_ticks": 0,
    "max_ref_age_ns": 5_000_000_000,
    "credit_limit": 100_000_000,
    "max_position": 1_000_000,
    "max_strategy_position": 1_000_000,
    "session_rate_per_s": 100_000,
    "session_burst": 100_000,
    "venue_rate_per_s": 100_000,
    "venue_burst": 100_000,
}


def limits_toml(
    instruments: Mapping[str, int],
    accounts: Mapping[str, int],
    *,
    venue: str = "SIM",
    venue_id: int = 1,
    restricted: tuple[str, ...] = (),
    modes: Mapping[str, str] | None = None,
    description: str = "lab limits",
    **defaults: Any,
) -> str:
    """A complete limits file (docs/risk.md): `defaults` override the generous lab defaults."""
    values = {**_DEFAULTS, **defaults}
    unknown = sorted(set(values) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown default limit(s) {unknown}")
    lines = [
        f"description = {json.dumps(description)}",
        f"restricted = {json.dumps(list(restricted))}",
    ]
    lines.append("[defaults]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines.append("[modes]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in (modes or {}).items()]
    for sym, iid in instruments.items():
        lines += [f"[instruments.{sym}]", f"id = {iid}"]
    for acct, aid in accounts.items():
        lines += [f"[accounts.{acct}]", f"id = {aid}"]
    lines += [f"[venues.{venue}]", f"id = {venue_id}"]
    return "\n".join(lines) + "\n"


@dataclass
class VenueProcess:
    """A running `python -m tectra.sim.ouch_venue` and what it said at start."""

    proc: subprocess.Popen[str]
    port: int
    reference_prices: dict[str, int]
    info: dict[str, Any]


def start_venue(
    symbols: tuple[str, ...] = ("AAPL",),
    *args: str,
    cwd: Path | None = None,
    stderr: IO[bytes] | int | None = None,
) -> VenueProcess:
    """Start the venue simulator on an ephemeral port (extra CLI `args` as given) and read its
    start-up JSON line. RuntimeError if it exits before saying where it listens."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tectra.sim.ouch_venue",
            "--port",
            "0",
            "--symbols",
            ",".join(symbols),
            *args,
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        info = json.loads(line)
    except json.JSONDecodeError as exc:
        stop_process(proc)
        raise RuntimeError(f"venue simulator did not start: {line!r}") from exc
    return VenueProcess(
        proc,
        int(info["listening"].rsplit(":", 1)[1]),
        {s: int(px) for s, px in info.get("reference_prices", {}).items()},
        info,
    )


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 15.0) -> int | None:
    """SIGTERM, wait, SIGKILL if it will not go; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def venue_process(symbols: tuple[str, ...] = ("AAPL",), *args: str) -> Iterator[VenueProcess]:
    venue = start_venue(symbols, *args)
    try:
        yield venue
    finally:
        stop_process(venue.proc)
