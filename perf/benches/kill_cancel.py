"""kill_cancel: trigger -> cancel messages sent for 10 000 open orders across sessions, and ->
every cancel confirmed by the venue.

The appliance on one host: the OUCH 4.2 venue simulator (its own process), the `kill` role (its
own process: KillControl on its control socket, the control block, the ledger) and a
`GatewayService` in this process (FIX acceptor, core, SoupBinTCP venue link and the embedded
kill subscriber, exactly as `tectra run gateway` builds it). 10 000 resting orders are placed
over two client sessions through the gateway's order path (`on_order`, what the FIX acceptor
calls) and acknowledged by the venue. Then, timed from the `KillControl.Trigger` call
(firm scope, action CANCEL):

* trigger -> all cancels sent: the kill role's own figure, the gateway's first ack latency
  (the subscriber acks after `cancel_scope` has written every cancel to the venue socket);
  also checked here: the ack says 10 000 cancels sent;
* trigger -> all cancels confirmed: polled in this process on the gateway's kill progress (the
  venue's Canceled messages applied), same CLOCK_MONOTONIC as the trigger stamp.

Repeated `rounds` times (orders re-placed after a clear); medians reported.
Target: all cancels sent < 100 ms.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from tectra.core.config import load_config
from tectra.gateway.service import GatewayService
from tectra.kill.wire import kill_id_u64
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tectra.mgmt.v1 import kill_pb2, kill_pb2_grpc
from tectra.schema import OrderAction, OrdType, Side, TimeInForce, encode_symbol, new_records
from tectra.sim.lab import limits_toml, start_venue, stop_process

LIMITS = limits_toml(
    {"AAPL": 1},
    {"ALPHA": 1, "BETA": 2},
    description="kill_cancel bench",
    max_qty=100_000,
    max_notional=1_000_000_000,
    band_bps=5000,
    max_ref_age_ns=60_000_000_000,
    credit_limit=100_000_000_000,
    max_position=10_000_000,
    max_strategy_position=10_000_000,
    session_rate_per_s=1_000_000,
    session_burst=1_000_000,
    venue_rate_per_s=1_000_000,
    venue_burst=1_000_000,
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _appliance(root: Path, venue_port: int, ref_px: int) -> Path:
    (root / "limits.toml").write_text(LIMITS)
    (root / "fix.toml").write_text(
        'store = "memory"\nfile_log = false\n\n'
        + "".join(
            f'[[sessions]]\nsession_id = {i}\nsender_comp_id = "TECTRA"\n'
            f'target_comp_id = "BENCH{i}"\naccount = "{acct}"\n\n'
            for i, acct in ((1, "ALPHA"), (2, "BETA"))
        )
    )
    cfg = root / "tectra.toml"
    cfg.write_text(
        f"""
[appliance]
name = "kill-cancel-bench"
state_dir = "{root}"
shm_root = "{root / "shm"}"
log_level = "warning"
[roles.kill]
metrics_port = 0
[kill]
subscribers = ["gateway"]
ack_timeout_s = 5.0
confirm_timeout_s = 30.0
[gateway]
fix_port = {_free_port()}
fix_sessions = "{root / "fix.toml"}"
venue_port = {venue_port}
limits_file = "{root / "limits.toml"}"
references = "static"
static_references = "AAPL={ref_px / 10_000:.2f}"
order_capacity = 50000
"""
    )
    return cfg


def _order(session: int, account: str, n: int, price: int) -> Any:
    r = new_records("ORDER_REQUEST", 1)
    r["ts_ns"] = time.monotonic_ns()
    r["action"] = OrderAction.NEW
    r["side"] = Side.BUY
    r["ord_type"] = OrdType.LIMIT
    r["time_in_force"] = TimeInForce.DAY
    r["symbol"] = encode_symbol("AAPL")
    r["cl_ord_id"] = f"S{session}-{n}".encode()
    r["qty"] = 1
    r["price"] = price
    r["session_id"] = session
    r["account"] = account.encode()
    return r


def _wait(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.001)


def run(quick: bool = False) -> dict[str, Any]:
    n_orders = 2_000 if quick else 10_000
    rounds = 2 if quick else 3
    root = Path(tempfile.mkdtemp(prefix="tectra-kill-cancel-"))
    venue = start_venue(("AAPL",), "--levels", "0", "--band-pct", "0", "--heartbeat-timeout", "60")
    kill_proc = None
    gw = None
    sent_ns: list[int] = []
    confirmed_ns: list[int] = []
    place_s: list[float] = []
    acks: list[dict[str, Any]] = []
    try:
        ref = 1_000_000
        cfg_path = _appliance(root, venue.port, ref)
        config = load_config(cfg_path)
        kill_proc = subprocess.Popen(
            [sys.executable, "-m", "tectra", "run", "kill", "--config", str(cfg_path)],
            stdout=(root / "kill.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        sock = control_socket_path(root, "kill")

        def kill_ready() -> bool:
            try:
                return fetch_status(sock, 1.0).lifecycle == "READY"
            except RoleControlError:
                return False

        _wait(kill_ready, 30, "kill role READY")
        gw = GatewayService(config)
        gw.start()
        _wait(lambda: gw is not None and gw.venue_up, 10, "venue login")
        stub = kill_pb2_grpc.KillControlStub(grpc.insecure_channel(f"unix:{sock}"))
        for rnd in range(rounds):
            t_place = time.monotonic()
            for n in range(n_orders):
                session = 1 + n % 2
                # Resting bids, all below any ask: nothing trades.
                price = ref - 10_000 - (n % 500) * 100
                gw.on_order(
                    session, _order(session, ("ALPHA", "BETA")[n % 2], rnd * n_orders + n, price)
                )
            _wait(
                lambda: (
                    gw is not None and gw.orders_summary()["by_status"].get("NEW", 0) >= n_orders
                ),
                60,
                "orders acknowledged",
            )
            place_s.append(time.monotonic() - t_place)
            kill_id = f"kc-{rnd}-{time.time_ns()}"
            t0 = time.monotonic_ns()
            reply = stub.Trigger(
                kill_pb2.TriggerRequest(
                    kill_id=kill_id,
                    target=kill_pb2.KillTarget(scope=kill_pb2.FIRM),
                    action=kill_pb2.CANCEL,
                    reason="kill_cancel bench",
                    actor="perf",
                    ack_timeout_s=10.0,
                ),
                timeout=30,
            )
            kid = kill_id_u64(kill_id)

            def confirmed(kid: int = kid) -> bool:
                return gw is not None and gw.cancel_progress(kid).confirmed >= n_orders

            _wait(confirmed, 60, "all cancels confirmed")
            confirmed_ns.append(time.monotonic_ns() - t0)
            ack = next((a for a in reply.acks if a.subscriber == "gateway"), None)
            if ack is None or ack.cancels_sent != n_orders:
                raise RuntimeError(f"gateway ack missing or short: {reply}")
            sent_ns.append(int(ack.latency_ns))
            acks.append(
                {
                    "cancels_sent": ack.cancels_sent,
                    "latency_ns": ack.latency_ns,
                    "missing": list(reply.missing),
                }
            )
            stub.Clear(
                kill_pb2.ClearRequest(kill_id=kill_id, reason="bench round over", actor="perf"),
                timeout=30,
            )
            _wait(lambda: gw is not None and gw.open_orders() == 0, 30, "book empty")
    finally:
        if gw is not None:
            gw.stop()
        if kill_proc is not None:
            kill_proc.terminate()
            kill_proc.wait(15)
        stop_process(venue.proc)
    sent = np.array(sent_ns, dtype=np.int64)
    conf = np.array(confirmed_ns, dtype=np.int64)
    return {
        "orders": n_orders,
        "sessions": 2,
        "rounds": rounds,
        "trigger_to_all_cancels_sent_ns": {
            "median": float(np.median(sent)),
            "max": int(sent.max()),
            "runs": sent.tolist(),
        },
        "trigger_to_all_cancels_confirmed_ns": {
            "median": float(np.median(conf)),
            "max": int(conf.max()),
            "runs": conf.tolist(),
        },
        "cancels_per_s_median": round(n_orders / (float(np.median(sent)) / 1e9)),
        "place_orders_s": [round(x, 2) for x in place_s],
        "acks": acks,
        "target_all_sent_ns": 100_000_000,
        "meets_target": bool(np.median(sent) < 100_000_000),
        "path": "KillControl.Trigger (kill role process) -> unix datagram -> gateway subscriber "
        "-> core mass cancel -> OUCH Cancel over SoupBinTCP -> venue simulator process",
    }
