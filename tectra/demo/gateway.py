"""`tectra demo --stage gateway`: client sessions trading through pre-trade risk to the venue,
then a kill drill through `tectractl`.

The appliance on one host: the OUCH 4.2 venue simulator (its own process, seeded liquidity),
and the `kill`, `gateway` and `mgmtd` roles as processes, each with its control socket and
/metrics. Two FIX 4.4 client sessions (quickfix initiators from `adapters.fix.loadgen`) send a
seeded mix of new/cancel/replace orders around each symbol's price; live lines show orders,
fills, rejects by reason, positions and P&L (read through `tectractl --json`). Part way through,
the drill: `tectractl kill trigger --action cancel` (firm scope), the gateway's ack with cancels
sent and confirmed, new orders refused HALTED, `tectractl kill verify` on the ledger, then
`tectractl kill clear` and trading resumes. At the end the gateway's capture is verified and
replayed with zero diffs, and its Merkle roots printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tectra.demo import Appliance, DemoOptions, _free_port
from tectra.sim.lab import limits_toml, start_venue, stop_process

LIMITS = limits_toml(
    {"AAPL": 1, "MSFT": 2},
    {"ALPHA": 1, "BETA": 2},
    restricted=("GME",),
    description="demo limits",
    max_qty=800,
    max_notional=2_000_000,
    band_bps=200,
    credit_limit=50_000_000,
    max_position=20_000,
    max_strategy_position=20_000,
    session_rate_per_s=400,
    session_burst=100,
    venue_rate_per_s=1000,
    venue_burst=200,
)

# Both clients trade AAPL, so besides the venue's own liquidity they also meet each other (the
# self-match rule stops each from crossing its own resting orders).
SESSIONS = (
    ("ALPHA", "CLIENT1", "AAPL"),
    ("BETA", "CLIENT2", "AAPL"),
)


def _ctl(config: Path, *args: str) -> tuple[int, Any]:
    ctl = Path(sys.executable).with_name("tectractl")
    cmd = [str(ctl), "--config", str(config), "--json", *args]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    try:
        return run.returncode, json.loads(run.stdout) if run.stdout.strip() else {}
    except json.JSONDecodeError:
        return run.returncode, {"stdout": run.stdout, "stderr": run.stderr}


def _write(workdir: Path, venue_port: int, refs: dict[str, int], shm_root: Path) -> Path:
    (workdir / "limits.toml").write_text(LIMITS)
    lines = ['store = "file"', "file_log = true", ""]
    for i, (account, comp, _sym) in enumerate(SESSIONS, start=1):
        lines += [
            "[[sessions]]",
            f"session_id = {i}",
            'sender_comp_id = "TECTRA"',
            f'target_comp_id = "{comp}"',
            f'account = "{account}"',
            "cancel_on_disconnect = true",
            "",
        ]
    (workdir / "fix-sessions.toml").write_text("\n".join(lines))
    static = ",".join(f"{s}={px / 10_000:.2f}" for s, px in refs.items())
    config = workdir / "tectra.toml"
    ports = {r: _free_port() for r in ("kill", "gateway", "mgmtd")}
    config.write_text(
        f"""
[appliance]
name = "tectra-demo"
state_dir = "{workdir}"
shm_root = "{shm_root}"

[roles.kill]
metrics_port = {ports["kill"]}
[roles.gateway]
metrics_port = {ports["gateway"]}
[roles.mgmtd]
metrics_port = {ports["mgmtd"]}

[kill]
subscribers = ["gateway"]

[gateway]
fix_port = {_free_port()}
fix_sessions = "{workdir / "fix-sessions.toml"}"
venue_port = {venue_port}
limits_file = "{workdir / "limits.toml"}"
references = "static"
static_references = "{static}"
capture = true
"""
    )
    return config


def _positions_line(config: Path) -> str:
    code, reply = _ctl(config, "positions")
    rows = reply.get("positions", []) if isinstance(reply, dict) else []
    parts = []
    for p in rows:
        pnl = (int(p.get("realised_pnl", 0)) + int(p.get("unrealised_pnl", 0))) / 10_000
        parts.append(
            f"{p.get('account')}/{p.get('symbol')} {int(p.get('net_qty', 0)):+d} P&L {pnl:+,.2f}"
        )
    return "; ".join(parts) if parts else f"(no positions yet, tectractl exit {code})"


def _summary_line(elapsed: float, s: dict[str, Any]) -> str:
    counters = s.get("counters", {})
    rejects = s.get("rejects_by_reason", {})
    rej = ", ".join(f"{k} {v}" for k, v in sorted(rejects.items())) or "none"
    return (
        f"t={elapsed:4.1f}s  requests {int(counters.get('requests', 0)):,}"
        f"  to venue {int(counters.get('venue_messages_out', 0)):,}"
        f"  open {int(s.get('open_orders', 0))}"
        f"  filled {int(s.get('by_status', {}).get('FILLED', 0))}"
        f"  rejects: {rej}"
    )


def _orders_summary(workdir: Path) -> dict[str, Any]:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from tectra.mgmt.role_control import control_socket_path
    from tectra.mgmt.v1 import gateway_pb2, gateway_pb2_grpc

    with grpc.insecure_channel(f"unix:{control_socket_path(workdir, 'gateway')}") as ch:
        reply = gateway_pb2_grpc.GatewayControlStub(ch).OrdersSummary(
            gateway_pb2.OrdersSummaryRequest(), timeout=2
        )
    out: dict[str, Any] = MessageToDict(reply, preserving_proto_field_name=True)
    return out


def run_gateway_stage(opts: DemoOptions) -> dict[str, Any]:
    say = (lambda *_: None) if opts.json_out else print
    workdir = Path(tempfile.mkdtemp(prefix="tectra-gateway-demo-"))
    shm_root = Path("/dev/shm/tectra") / workdir.name
    summary: dict[str, Any] = {"ok": False, "workdir": str(workdir)}
    venue = start_venue(
        ("AAPL", "MSFT"),
        *("--seed", "11", "--levels", "5", "--level-qty", "300"),
        stderr=(workdir / "venue.log").open("wb"),
    )
    appliance: Appliance | None = None
    try:
        refs = venue.reference_prices
        venue_port = venue.port
        config = _write(workdir, venue_port, refs, shm_root)
        say("\n== Gateway stage: FIX clients -> risk -> OUCH 4.2 venue, then a kill drill ==")
        say(f"  venue simulator on 127.0.0.1:{venue_port}, references {refs}")
        appliance = Appliance(config, workdir, roles=("kill", "gateway", "mgmtd"))
        appliance.start()
        appliance.wait_ready()
        code, status = _ctl(config, "status")
        say(
            f"  tectractl status: exit {code}; roles "
            + ", ".join(f"{r.get('role')} {r.get('lifecycle')}" for r in status.get("roles", []))
            if isinstance(status, dict)
            else ""
        )
        summary.update(_trade_and_drill(opts, config, workdir, refs, say))
    except Exception as exc:  # the demo reports, never hides, what broke
        summary["error"] = repr(exc)
        say(f"  gateway stage FAILED: {exc!r}")
        if appliance is not None:
            for role in appliance.roles:
                say(f"--- {role} log tail ---\n{appliance.log_tail(role)}")
    finally:
        if appliance is not None:
            summary["exit_codes"] = appliance.stop()
        stop_process(venue.proc)
    if "error" not in summary:
        summary.update(_replay(workdir / "journal" / "gateway", say))
        summary["ok"] = bool(summary.get("checks_ok")) and summary.get("replay_divergences") == 0
    say(f"  gateway stage: {'OK' if summary['ok'] else 'FAILED'} (logs in {workdir})")
    return summary


def _trade_and_drill(
    opts: DemoOptions, config: Path, workdir: Path, refs: dict[str, int], say: Any
) -> dict[str, Any]:
    from adapters.fix.loadgen import LoadGenerator, Mix
    from tectra.core.config import load_config

    cfg = load_config(config)
    seconds = opts.gateway_seconds
    gens = []
    for account, comp, sym in SESSIONS:
        g = LoadGenerator(
            "127.0.0.1",
            cfg.gateway.fix_port,
            sender_comp_id=comp,
            target_comp_id="TECTRA",
            account=account,
            symbols=(sym,),
            price=f"{refs[sym] / 10_000:.2f}",
            price_range_ticks=40,
        )
        g.start()
        gens.append(g)
    results: list[Any] = [None] * len(gens)

    def drive(k: int) -> None:
        results[k] = gens[k].run(
            opts.gateway_rate, seconds, Mix(new=0.6, cancel=0.3, replace=0.1), seed=100 + k
        )

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(len(gens))]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    drill: dict[str, Any] = {}
    drilled = False
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        elapsed = time.monotonic() - t0
        s = _orders_summary(workdir)
        say("  " + _summary_line(elapsed, s))
        say("    positions: " + _positions_line(config))
        if not drilled and elapsed >= seconds * 0.5:
            drilled = True
            drill = _kill_drill(config, workdir, say)
    for t in threads:
        t.join()
    for g in gens:
        g.stop()
    final = _orders_summary(workdir)
    rejects = final.get("rejects_by_reason", {})
    filled = int(final.get("by_status", {}).get("FILLED", 0)) + int(
        final.get("by_status", {}).get("PARTIALLY_FILLED", 0)
    )
    say("\n  Final: " + _summary_line(time.monotonic() - t0, final))
    say("  Positions: " + _positions_line(config))
    checks = {
        "orders_filled": filled > 0,
        "rejects_reported": sum(int(v) for v in rejects.values()) > 0,
        "kill_acked": bool(drill.get("acked")),
        "kill_blocked_orders": int(drill.get("halted_during_kill", 0)) > 0,
        "ledger_verified": bool(drill.get("ledger_ok")),
        "cleared": bool(drill.get("cleared")),
    }
    say("  Checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    return {
        "loadgen": [r.to_dict() if r is not None else None for r in results],
        "final": final,
        "drill": drill,
        "checks": checks,
        "checks_ok": all(checks.values()),
    }


def _kill_drill(config: Path, workdir: Path, say: Any) -> dict[str, Any]:
    say("\n  -- kill drill: tectractl kill trigger --scope firm --action cancel --yes --")
    before = _orders_summary(workdir).get("rejects_by_reason", {}).get("HALTED", 0)
    code, reply = _ctl(
        config,
        "kill",
        "trigger",
        "--scope",
        "firm",
        "--action",
        "cancel",
        "--reason",
        "demo drill",
        "--yes",
        "--ack-timeout",
        "3",
    )
    acks = reply.get("acks", []) if isinstance(reply, dict) else []
    say(
        f"  trigger exit {code}: kill id {reply.get('kill_id') if isinstance(reply, dict) else '?'}"
    )
    for a in acks:
        say(
            f"    ack from {a.get('subscriber')}: ok={a.get('ok')} cancels sent "
            f"{a.get('cancels_sent', 0)}, confirmed {a.get('cancels_confirmed', 0)},"
            f" latency {int(a.get('latency_ns', 0)) / 1000:.0f}µs"
        )
    if isinstance(reply, dict) and reply.get("missing"):
        say(f"    missing acks: {reply['missing']}")
    time.sleep(1.5)
    _, history = _ctl(config, "kill", "history", "--limit", "50")
    entries = history.get("entries", []) if isinstance(history, dict) else []
    confirmed = [json.loads(e["json"]) for e in entries if e.get("kind") == "ack" and "json" in e]
    if confirmed:
        last = confirmed[-1].get("payload", {})
        say(
            f"    final ack in the ledger: cancels sent {last.get('cancels_sent')}, confirmed by"
            f" the venue {last.get('cancels_confirmed')}, failed {last.get('cancels_failed')}"
        )
    s = _orders_summary(workdir)
    halted = int(s.get("rejects_by_reason", {}).get("HALTED", 0)) - int(before)
    say(f"  while halted: {halted} new orders refused HALTED, {s.get('open_orders', 0)} open")
    vcode, verify = _ctl(config, "kill", "verify")
    say(f"  tectractl kill verify: exit {vcode} {verify if vcode else 'ledger intact'}")
    ccode, cleared = _ctl(config, "kill", "clear", "--reason", "drill over", "--yes")
    say(f"  tectractl kill clear: exit {ccode}")
    say("  -- trading resumes --\n")
    return {
        "trigger_exit": code,
        "reply": reply,
        "acked": code == 0 and any(a.get("subscriber") == "gateway" for a in acks),
        "halted_during_kill": halted,
        "ledger_ok": vcode == 0,
        "cleared": ccode == 0,
        "clear_reply": cleared,
    }


def _replay(journal_dir: Path, say: Any) -> dict[str, Any]:
    from tectra.gateway.replay import replay_component
    from tectra.journal.manifest import load_manifest
    from tectra.journal.replay import ReplayOptions, replay_journal
    from tectra.journal.verify import verify_journal

    verified = verify_journal(journal_dir)
    report = replay_journal(
        journal_dir, replay_component(), options=ReplayOptions(from_snapshot=True)
    )
    manifest = load_manifest(journal_dir)
    roots = [s.merkle_root for s in manifest.segments] if manifest else []
    say("\n  Gateway capture and replay")
    state = "OK" if verified.ok else "FAILED"
    say(f"  journal {journal_dir}: {len(roots)} segment(s), verify {state}")
    for i, root in enumerate(roots):
        say(f"  segment {i} Merkle root {root}")
    say("  " + report.format_text().replace("\n", "\n  "))
    return {
        "journal_verified": verified.ok,
        "segment_merkle_roots": roots,
        "replay_steps": report.steps,
        "replay_divergences": report.divergences,
    }
