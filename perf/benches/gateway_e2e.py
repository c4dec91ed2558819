"""gateway_e2e: FIX orders round trip through the gateway and the venue, against the floor.

Path measured: the load generator (`adapters.fix.loadgen`, a quickfix initiator in this
process) sends a seeded new/cancel/replace mix (80/10/10) -> the gateway role process
(`.venv/bin/tectra run gateway`: quickfix acceptor, kill check, inline risk, order state) ->
OUCH Enter/Cancel/Replace over SoupBinTCP -> the venue simulator process
(`python -m tectra.sim.ouch_venue`) -> Accepted/Canceled/Replaced -> ExecutionReport back to
the client. The round trip is CLOCK_MONOTONIC before `sendToTarget` to the first answer naming
the request's ClOrdID. The gateway sends no PendingNew (`send_pending = false`), so that first
answer is the venue's New/Canceled/Replaced, or a reject (counted: `answers` of each run and
the gateway's own `tectra_gateway_rejects` by reason).

The floor (`adapters.fix.floor`, mode 'new') is the same quickfix acceptor with the same store
and log settings, answering each request itself. Both arms run in one invocation with the same
load generator code, alternating floor/gateway (the first arm alternates between repetitions),
each repetition with fresh processes. Per arm and repetition: p50/p99/p999 at 1 000 orders/s,
then `find_max_rate` (the highest rate whose run is sustained: every request answered, the rate
kept within 5 %, p99 <= 10 ms). Reported: the median over repetitions of each figure, the
ratios against the targets (gateway max rate >= 0.7 x the floor's; gateway p99 at 1 000/s <=
1.5 x the floor's + 100 us), and every raw run.

The gateway's internal figure, FIX message at the application -> OUCH bytes written
(`tectra_gateway_fix_to_venue_ns`, taken inside the process), is scraped from its /metrics
right after the 1 000/s run: it covers that run and its warm-up (the gateway process is fresh).
Its `tectra_gateway_step_ns` (the core step alone) is reported beside it.

Setup: static references of 100.00 for the load generator's symbols (TECA..TECD; its prices are
99.00..101.00), limits far above what the stream reaches with the self-match rule in dry-run
(the stream's buys and sells cross each other; the rule still runs on every order), a kill
control block created here, the venue without seeded liquidity and without a price band. CPU
pinning (2-core machine): the load generator on CPU 0, the acceptor (floor or gateway) on CPU 1,
the venue simulator left to the scheduler by default (pinned with the gateway it starves it:
the venue is not the system under test); every thread of each process is pinned (`pinning` in
the output). `find_max_rate` starts at 250/s (the gateway does not sustain 1 000/s here).

Knobs: `perf/run.py gateway_e2e [--quick] -- --repeats 3 --step-seconds 3 --max-rate 20000
--start-rate 250 --latency-seconds 5 --latency-rate 1000 --loadgen-cpu 0 --acceptor-cpu 1
--venue-cpu -1` (`-1`: do not pin).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from adapters.fix.floor import start_floor_process, stop_floor_process
from adapters.fix.loadgen import LoadResult, Mix, find_max_rate, run_load
from adapters.fix.settings import Credentials
from benches._stats import median

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("TECA", "TECB", "TECC", "TECD")
PRICE = "100"
LOADGEN = "LOADGEN"
TARGET = "TECTRA"
USER, PASSWORD = "bench", "bench-pw"
P99_LIMIT_NS = 10_000_000

LIMITS = """
description = "gateway_e2e benchmark: limits the load generator's stream never reaches"
restricted = []
[defaults]
tick_size = "0.01"
max_qty = 1000000
max_notional = 1000000000000
band_bps = 1000
band_ticks = 0
max_ref_age_ns = 10000000000
credit_limit = 100000000000000
max_position = 1000000000000
max_strategy_position = 1000000000000
session_rate_per_s = 1000000000
session_burst = 1000000000
venue_rate_per_s = 1000000000
venue_burst = 1000000000
[modes]
self_match = "dry_run"
[accounts.ACC1]
id = 1
[venues.SIM]
id = 1
""" + "".join(f"[instruments.{s}]\nid = {i}\n" for i, s in enumerate(SYMBOLS, 1))


def parse_args(argv: Sequence[str], quick: bool) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="perf/run.py gateway_e2e --")
    ap.add_argument("--repeats", type=int, default=1 if quick else 3)
    ap.add_argument("--step-seconds", type=float, default=1.0 if quick else 3.0)
    ap.add_argument("--start-rate", type=float, default=250.0)
    ap.add_argument("--max-rate", type=float, default=3000.0 if quick else 20_000.0)
    ap.add_argument("--step-factor", type=float, default=1.5)
    ap.add_argument("--refine-steps", type=int, default=0 if quick else 2)
    ap.add_argument("--latency-rate", type=float, default=1000.0)
    ap.add_argument("--latency-seconds", type=float, default=2.0 if quick else 5.0)
    ap.add_argument("--warmup-seconds", type=float, default=0.5)
    ap.add_argument("--loadgen-cpu", type=int, default=0)
    ap.add_argument("--acceptor-cpu", type=int, default=1)
    ap.add_argument("--venue-cpu", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    return ap.parse_args(list(argv))


# ---- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_process(pid: int, cpu: int) -> bool:
    """Pin every thread of `pid` (threads created later inherit it). False if not pinned."""
    if cpu < 0:
        return False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), {cpu})
    except OSError:
        return False
    return True


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def venue(cpu: int) -> Iterator[int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tectra.sim.ouch_venue",
            "--port",
            "0",
            "--symbols",
            ",".join(SYMBOLS),
            "--levels",
            "0",
            "--band-pct",
            "0",
            "--heartbeat-timeout",
            "60",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("venue simulator did not start")
        pin_process(proc.pid, cpu)
        yield int(json.loads(line)["listening"].rsplit(":", 1)[1])
    finally:
        stop_process(proc)


def write_gateway_config(root: Path, venue_port: int) -> tuple[Path, int, int]:
    """limits, FIX sessions and tectra.toml under `root`: (config path, fix port, metrics)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "limits.toml").write_text(LIMITS)
    creds = Credentials.from_password(USER, PASSWORD, iterations=1000)
    (root / "fix-sessions.toml").write_text(
        "\n".join(
            [
                'store = "file"',
                "file_log = true",  # as the floor (FileStore + FileLog)
                "",
                "[[sessions]]",
                "session_id = 1",
                f'sender_comp_id = "{TARGET}"',
                f'target_comp_id = "{LOADGEN}"',
                'account = "ACC1"',
                "cancel_on_disconnect = false",
                f'credentials = {{ username = "{USER}", password_hash = "{creds.password_hash}" }}',
                "",
            ]
        )
    )
    fix_port, metrics_port = free_port(), free_port()
    refs = ",".join(f"{s}={PRICE}.00" for s in SYMBOLS)
    (root / "tectra.toml").write_text(
        f"""
[appliance]
name = "gw-bench"
state_dir = "{root / "state"}"
shm_root = "{root / "shm"}"

[roles.gateway]
metrics_port = {metrics_port}

[gateway]
fix_port = {fix_port}
fix_sessions = "{root / "fix-sessions.toml"}"
venue_port = {venue_port}
limits_file = "{root / "limits.toml"}"
references = "static"
static_references = "{refs}"
order_capacity = 1000000
send_pending = false
capture = false
"""
    )
    return root / "tectra.toml", fix_port, metrics_port


def scrape(metrics_port: int) -> dict[str, float]:
    """Flat samples of the role's /metrics: 'name{label=value,...}' -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


def _ready(metrics_port: int) -> bool:
    """/health/ready answers 200 three times in a row, 0.2 s apart. The role is READY only
    while its venue session is logged in (DEGRADED otherwise, checked every 50 ms), so a
    stable READY means the venue link is up. (The gateway's `tectra_gateway_venue_up` gauge
    would say it directly, but it is not exported at the time of writing.)"""
    url = f"http://127.0.0.1:{metrics_port}/health/ready"
    for i in range(3):
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status != 200:
                    return False
        except OSError:
            return False
        if i < 2:
            time.sleep(0.2)
    return True


@contextlib.contextmanager
def gateway(root: Path, venue_port: int, cpu: int) -> Iterator[tuple[int, int, int]]:
    """The gateway role process with its kill block: yields (fix port, metrics port, pid)."""
    from tectra.core.config import load_config
    from tectra.io.killblock import KillBlock

    config_path, fix_port, metrics_port = write_gateway_config(root, venue_port)
    config = load_config(config_path)
    Path(config.appliance.shm_root).mkdir(parents=True, exist_ok=True)
    block = KillBlock.create(
        config.kill.control_block, root=config.appliance.shm_root, exist_ok=True
    )
    tectra = Path(sys.executable).with_name("tectra")
    log = (root / "gateway.log").open("w")
    proc = subprocess.Popen(
        [str(tectra), "run", "gateway", "--config", str(config_path)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(metrics_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not become ready; see {root / 'gateway.log'}")
            time.sleep(0.2)
        pin_process(proc.pid, cpu)
        yield fix_port, metrics_port, proc.pid
    finally:
        stop_process(proc)
        log.close()
        block.close()


@contextlib.contextmanager
def floor(root: Path, cpu: int) -> Iterator[int]:
    port = free_port()
    proc = start_floor_process(
        port, root, mode="new", sender_comp_id=TARGET, target_comp_ids=(LOADGEN,)
    )
    try:
        pin_process(proc.pid, cpu)
        yield port
    finally:
        stop_floor_process(proc)


# ---- measurement ---------------------------------------------------------------------------


def _session(arm: str) -> dict[str, Any]:
    s: dict[str, Any] = {
        "sender_comp_id": LOADGEN,
        "target_comp_id": TARGET,
        "symbols": SYMBOLS,
        "price": PRICE,
    }
    if arm == "gateway":
        s.update(username=USER, password=PASSWORD)
    return s


def _rejects(result: LoadResult) -> int:
    a = result.answers
    return a.get("rejected", 0) + a.get("business_reject", 0) + a.get("session_reject", 0)


def measure(arm: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    mix = Mix()
    at = run_load(
        "127.0.0.1",
        port,
        args.latency_rate,
        args.latency_seconds,
        mix,
        args.seed,
        warmup_s=args.warmup_seconds,
        **_session(arm),
    )
    found = find_max_rate(
        "127.0.0.1",
        port,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        step_factor=args.step_factor,
        refine_steps=args.refine_steps,
        seconds=args.step_seconds,
        p99_limit_ns=P99_LIMIT_NS,
        mix=mix,
        seed=args.seed,
        warmup_s=args.warmup_seconds,
        **_session(arm),
    )
    return {"at_latency_rate": at, "max": found}


def internal_figures(before: dict[str, float]) -> dict[str, Any]:
    def q(name: str, quantile: str) -> float:
        value = before.get(f"{name}_quantile_seconds{{quantile={quantile}}}", math.nan)
        return -1 if math.isnan(value) else round(value * 1e9)  # -1: no samples

    fv, st = "tectra_gateway_fix_to_venue_ns", "tectra_gateway_step_ns"
    return {
        "fix_to_venue_p50_ns": q(fv, "0.5"),
        "fix_to_venue_p99_ns": q(fv, "0.99"),
        "fix_to_venue_p999_ns": q(fv, "0.999"),
        "fix_to_venue_samples": int(before.get(f"{fv}_seconds_count", 0)),
        "step_p50_ns": q(st, "0.5"),
        "step_p99_ns": q(st, "0.99"),
    }


def gateway_rejects(m: dict[str, float]) -> dict[str, int]:
    prefix = "tectra_gateway_rejects_total{reason="
    return {k[len(prefix) : -1]: int(v) for k, v in m.items() if k.startswith(prefix) and v}


def one_arm(arm: str, tmp: Path, rep: int, args: argparse.Namespace) -> dict[str, Any]:
    root = tmp / f"{arm}-{rep}"
    if arm == "floor":
        with floor(root, args.acceptor_cpu) as port:
            got = measure(arm, port, args)
        return got
    with venue(args.venue_cpu) as venue_port, gateway(root, venue_port, args.acceptor_cpu) as gw:
        fix_port, metrics_port, _pid = gw
        at = run_load(
            "127.0.0.1",
            fix_port,
            args.latency_rate,
            args.latency_seconds,
            Mix(),
            args.seed,
            warmup_s=args.warmup_seconds,
            **_session(arm),
        )
        after_latency = scrape(metrics_port)
        found = find_max_rate(
            "127.0.0.1",
            fix_port,
            start_rate=args.start_rate,
            max_rate=args.max_rate,
            step_factor=args.step_factor,
            refine_steps=args.refine_steps,
            seconds=args.step_seconds,
            p99_limit_ns=P99_LIMIT_NS,
            mix=Mix(),
            seed=args.seed,
            warmup_s=args.warmup_seconds,
            **_session(arm),
        )
        final = scrape(metrics_port)
    return {
        "at_latency_rate": at,
        "max": found,
        "internal": internal_figures(after_latency),
        "rejects_at_latency_rate": gateway_rejects(after_latency),
        "rejects_total": gateway_rejects(final),
        "requests_total": int(
            sum(v for k, v in final.items() if k.startswith("tectra_gateway_fix_total"))
        ),
    }


def summarise(arm: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [r["at_latency_rate"] for r in runs]
    mx = [r["max"] for r in runs]
    out: dict[str, Any] = {
        "max_sustained_rate_per_s": median([m.max_rate for m in mx]),
        "max_sustained_rate_runs_per_s": [m.max_rate for m in mx],
        "at_1000_per_s": {
            "p50_ns": median([x.p50_ns for x in lat]),
            "p99_ns": median([x.p99_ns for x in lat]),
            "p999_ns": median([x.p999_ns for x in lat]),
            "p99_runs_ns": [x.p99_ns for x in lat],
            "sent": sum(x.sent for x in lat),
            "answered": sum(x.received for x in lat),
            "rejected": sum(_rejects(x) for x in lat),
            "cancel_rejects": sum(x.answers.get("cancel_reject", 0) for x in lat),
        },
    }
    if arm == "gateway":
        internal = [r["internal"] for r in runs]
        out["internal_fix_to_venue"] = {
            k: median([i[k] for i in internal]) for k in internal[0] if k.endswith("_ns")
        }
        out["internal_fix_to_venue"]["samples"] = sum(i["fix_to_venue_samples"] for i in internal)
        rej: dict[str, int] = {}
        for r in runs:
            for k, v in r["rejects_total"].items():
                rej[k] = rej.get(k, 0) + v
        out["gateway_rejects_by_reason"] = rej
    return out


def run(quick: bool = False, argv: Sequence[str] = ()) -> dict[str, Any]:
    args = parse_args(argv, quick)
    if args.loadgen_cpu >= 0:
        os.sched_setaffinity(0, {args.loadgen_cpu})  # this process: the load generator
    tmp = Path(tempfile.mkdtemp(prefix="tectra-gwe2e-"))
    raw: dict[str, list[dict[str, Any]]] = {"floor": [], "gateway": []}
    order: list[str] = []
    try:
        for rep in range(args.repeats):
            arms = ("floor", "gateway") if rep % 2 == 0 else ("gateway", "floor")
            for arm in arms:
                order.append(arm)
                raw[arm].append(one_arm(arm, tmp, rep, args))
                print(
                    f"gateway_e2e: rep {rep} {arm}: max "
                    f"{raw[arm][-1]['max'].max_rate:.0f}/s, p99@{args.latency_rate:.0f} "
                    f"{raw[arm][-1]['at_latency_rate'].p99_ns / 1000:.0f} us",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    floor_s, gw_s = summarise("floor", raw["floor"]), summarise("gateway", raw["gateway"])
    f_rate, g_rate = floor_s["max_sustained_rate_per_s"], gw_s["max_sustained_rate_per_s"]
    f_p99, g_p99 = floor_s["at_1000_per_s"]["p99_ns"], gw_s["at_1000_per_s"]["p99_ns"]
    p99_budget = 1.5 * f_p99 + 100_000
    targets = {
        "rate_ratio": round(g_rate / f_rate, 3) if f_rate else None,
        "rate_ratio_target": 0.7,
        "rate_met": bool(f_rate and g_rate >= 0.7 * f_rate),
        "p99_at_1000_ratio": round(g_p99 / f_p99, 3) if f_p99 else None,
        "p99_budget_ns": p99_budget,
        "p99_over_budget_ns": g_p99 - p99_budget,
        "p99_met": g_p99 <= p99_budget,
    }
    gw_total = gw_s["at_1000_per_s"]
    valid = gw_total["rejected"] <= 0.05 * max(gw_total["answered"], 1)
    return {
        "floor": floor_s,
        "gateway": gw_s,
        "targets": targets,
        "valid_gateway_measurement": valid,
        "setup": {
            "repeats": args.repeats,
            "order": order,
            "step_seconds": args.step_seconds,
            "start_rate_per_s": args.start_rate,
            "max_rate_per_s": args.max_rate,
            "step_factor": args.step_factor,
            "refine_steps": args.refine_steps,
            "latency_rate_per_s": args.latency_rate,
            "latency_seconds": args.latency_seconds,
            "warmup_seconds": args.warmup_seconds,
            "p99_limit_ns": P99_LIMIT_NS,
            "mix": asdict(Mix()),
            "symbols": list(SYMBOLS),
            "prices": "99.00..101.00 (loadgen 100 +/- 100 ticks), static references 100.00",
            "pinning": {
                "loadgen_cpu": args.loadgen_cpu,
                "acceptor_cpu": args.acceptor_cpu,
                "venue_cpu": args.venue_cpu,
                "note": "-1 = unpinned; every thread of each process is pinned once it is "
                "ready (sched_setaffinity per task; later threads inherit it)",
            },
            "acceptor_store": "FileStore + FileLog on both arms",
            "figures": "medians over repetitions of each arm; runs listed per arm",
        },
        "runs": {arm: [_raw(r) for r in raw[arm]] for arm in raw},
    }


def _raw(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if k not in ("at_latency_rate", "max")}
    out["at_latency_rate"] = r["at_latency_rate"].to_dict()
    out["max"] = r["max"].to_dict()
    return out
