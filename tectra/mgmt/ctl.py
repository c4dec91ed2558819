"""`tectractl`: the operator's command line, over tectra-mgmtd.

Talks to mgmtd on its local socket by default (you are who the kernel says: your uid), or
with `--target HOST:PORT --ca --cert --key` over mutual TLS (you are your certificate's CN).
Human tables by default, `--json` for scripts. Destructive commands (kill trigger/clear,
sessions disconnect, limits set/load) need `--yes` or `--dry-run`.

Exit codes scripts can rely on:
  0  success; the answer says all is well
  1  the answer says something is wrong: a role not READY, an action refused by the role
     (ok = false), a damaged kill ledger
  2  usage or configuration error
  3  mgmtd (or the role behind it) unreachable or timed out, after retries
  4  not authenticated, or your role may not do this
  5  refused before acting: confirmation missing, bad argument, unknown name

Retries: only UNAVAILABLE and DEADLINE_EXCEEDED, `--retries` times, with the same correlation
id (and the same kill id for `kill trigger`), so a retry can never apply a change twice.
`status` falls back to reading the roles' control sockets directly when no mgmtd socket
exists (and says so); `kill verify` reads the ledger file itself unless `--online`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import grpc
from google.protobuf.json_format import MessageToDict

from tectra.core.config import ConfigError, TectraConfig, load_config
from tectra.mgmt.client import MgmtClient, MgmtClientError, local_channel, tls_channel
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tectra.mgmt.v1 import feed_pb2, gateway_pb2, kill_pb2, mgmt_pb2, mgmt_pb2_grpc

EXIT_OK: Final = 0
EXIT_NOT_READY: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_DENIED: Final = 4
EXIT_REFUSED: Final = 5

_EXIT_BY_CODE: Final = {
    grpc.StatusCode.UNAVAILABLE: EXIT_UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNREACHABLE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_REFUSED,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_REFUSED,
    grpc.StatusCode.NOT_FOUND: EXIT_REFUSED,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_REFUSED,
}

KILL_SCOPES: Final = ("firm", "venue", "account", "strategy", "symbol")
KILL_ACTIONS: Final = ("block", "cancel", "slow", "isolate-venue")


class UsageError(ValueError):
    """A bad command line or input file (exit 2)."""


def _dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def _print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    lines = [tuple(header), *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _money(fixed: int) -> str:
    """1e-4 fixed point as a decimal string (exact)."""
    sign = "-" if fixed < 0 else ""
    whole, frac = divmod(abs(int(fixed)), 10_000)
    return f"{sign}{whole}.{frac:04d}"


# -------------------------------------------------------------------------------- connection


def _config(args: argparse.Namespace) -> TectraConfig:
    return load_config(args.config)


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    config = _config(args)
    return config.mgmt.socket or Path(config.appliance.state_dir) / "run" / "mgmt.sock"


def _client(args: argparse.Namespace) -> MgmtClient:
    if args.target:
        if not (args.ca and args.cert and args.key):
            raise UsageError("--target needs --ca, --cert and --key (mutual TLS)")
        channel = tls_channel(args.target, args.ca, args.cert, args.key, args.server_name)
    else:
        channel = local_channel(_socket_path(args))
    return MgmtClient(channel, timeout_s=args.timeout, retries=args.retries)


def _call(args: argparse.Namespace, stub: Any, method: str, request: Any) -> Any:
    client = _client(args)
    try:
        return client.call(stub, method, request, correlation_id=args.correlation_id).reply
    finally:
        client.close()


def _emit(args: argparse.Namespace, reply: Any, human: Any) -> None:
    if args.json:
        print(json.dumps(_dict(reply), indent=2))
    else:
        human(reply)


def _confirm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="confirm this destructive action")
    p.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")


# -------------------------------------------------------------------------------- status


def _status_direct(
    config: TectraConfig, roles: list[str], timeout_s: float
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for role in roles:
        try:
            status = fetch_status(
                control_socket_path(Path(config.appliance.state_dir), role), timeout_s
            )
        except RoleControlError as exc:
            rows.append({"role": role, "lifecycle": "DOWN", "health": "down", "error": str(exc)})
            continue
        row = _dict(status)
        row["health"] = "ok" if status.lifecycle == "READY" else status.lifecycle.lower()
        rows.append(row)
    return rows


def _status_rows_via_mgmtd(reply: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in reply.roles:
        if r.reachable:
            row = _dict(r.status)
        else:
            row = {"role": r.role, "lifecycle": "DOWN", "error": r.error}
        row["health"] = r.health
        rows.append(row)
    return rows


def _print_status(rows: list[dict[str, Any]]) -> None:
    _print_table(
        ("ROLE", "STATE", "HEALTH", "IO PATH", "PID", "CPUS", "METRICS", "UPTIME", "NOTE"),
        [
            (
                row["role"],
                row["lifecycle"],
                row.get("health", "-"),
                row.get("io_path") or "-",
                row.get("pid", "-"),
                ",".join(str(c) for c in row.get("cpus", [])) or "-",
                f":{row['metrics_port']}" if row.get("metrics_port") else "-",
                f"{row['uptime_s']:.0f}s" if "uptime_s" in row else "-",
                row.get("error") or row.get("lifecycle_reason", ""),
            )
            for row in rows
        ],
    )


def _cmd_status(args: argparse.Namespace) -> int:
    direct = not args.target and not args.via_mgmtd and not _socket_path(args).exists()
    if direct:
        config = _config(args)
        roles = args.role or [r for r in config.roles if r != "mgmtd"]
        rows = _status_direct(config, roles, args.timeout)
        source = "direct"
        print(
            "tectractl: no mgmtd socket; read the roles' control sockets directly", file=sys.stderr
        )
    else:
        reply = _call(
            args,
            mgmt_pb2_grpc.StatusServiceStub,
            "GetStatus",
            mgmt_pb2.ApplianceStatusRequest(roles=args.role or []),
        )
        rows = _status_rows_via_mgmtd(reply)
        source = "mgmtd"
    if args.json:
        print(json.dumps({"source": source, "roles": rows}, indent=2))
    else:
        _print_status(rows)
    return EXIT_OK if rows and all(r["lifecycle"] == "READY" for r in rows) else EXIT_NOT_READY


def _cmd_whoami(args: argparse.Namespace) -> int:
    reply = _call(args, mgmt_pb2_grpc.StatusServiceStub, "WhoAmI", mgmt_pb2.WhoAmIRequest())
    _emit(args, reply, lambda r: print(f"{r.principal} via {r.transport}: role {r.role}"))
    return EXIT_OK


# -------------------------------------------------------------------------------- limits


def _cmd_limits_show(args: argparse.Namespace) -> int:
    reply = _call(args, mgmt_pb2_grpc.LimitsServiceStub, "GetLimits", mgmt_pb2.GetLimitsRequest())
    if args.json:
        print(
            json.dumps(
                {"version": reply.version, "limits": json.loads(reply.limits_json or "{}")},
                indent=2,
            )
        )
    else:
        print(f"# limits version {reply.version}")
        print(json.dumps(json.loads(reply.limits_json or "{}"), indent=2, sort_keys=True))
    return EXIT_OK


def _cmd_limits_export(args: argparse.Namespace) -> int:
    reply = _call(args, mgmt_pb2_grpc.LimitsServiceStub, "GetLimits", mgmt_pb2.GetLimitsRequest())
    text = json.dumps(json.loads(reply.limits_json or "{}"), indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
        print(f"limits version {reply.version} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _print_change(reply: Any) -> None:
    if not reply.ok:
        print(f"refused: {reply.error}")
    elif reply.dry_run:
        print(f"dry run: the gateway accepts it (version stays {reply.version})")
    else:
        print(f"limits version {reply.previous_version} -> {reply.version}")


def _cmd_limits_set(args: argparse.Namespace) -> int:
    request = mgmt_pb2.SetLimitRequest(
        path=args.path,
        value_json=args.value or "",
        remove=args.remove,
        reason=args.reason or "",
        confirm=args.yes,
        dry_run=args.dry_run,
    )
    if not args.remove and args.value is None:
        raise UsageError("limits set PATH VALUE (or --remove)")
    reply = _call(args, mgmt_pb2_grpc.LimitsServiceStub, "SetLimit", request)
    _emit(args, reply, _print_change)
    return EXIT_OK if reply.ok else EXIT_NOT_READY


def _read_limits_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}"
        ) from exc
    return json.dumps(doc, sort_keys=True)


def _cmd_limits_load(args: argparse.Namespace) -> int:
    request = mgmt_pb2.ReplaceLimitsRequest(
        limits_json=_read_limits_file(args.file),
        reason=args.reason or "",
        confirm=args.yes,
        dry_run=args.dry_run,
        source=str(args.file),
    )
    reply = _call(args, mgmt_pb2_grpc.LimitsServiceStub, "LoadLimits", request)
    _emit(args, reply, _print_change)
    return EXIT_OK if reply.ok else EXIT_NOT_READY


# -------------------------------------------------------------------------------- kill


def _target(args: argparse.Namespace) -> Any:
    scope = args.scope.upper()  # the enum value's name (protobuf accepts names)
    if scope != "FIRM" and not (args.id or args.name):
        raise UsageError(f"--scope {args.scope} needs --id or --name")
    return kill_pb2.KillTarget(scope=scope, scope_id=args.id or 0, scope_name=args.name or "")


def _kill_reply(reply: Any) -> None:
    print(f"{'ok' if reply.ok else 'REFUSED'}: {reply.message}")


def _cmd_kill_arm(args: argparse.Namespace, armed: bool) -> int:
    request = kill_pb2.ArmRequest(
        trigger=args.trigger, armed=armed, dry_run=getattr(args, "drill", False), reason=args.reason
    )
    reply = _call(args, mgmt_pb2_grpc.KillServiceStub, "Arm", request)
    _emit(args, reply, _kill_reply)
    return EXIT_OK if reply.ok else EXIT_NOT_READY


def _print_trigger(reply: Any) -> None:
    what = "DRY RUN" if reply.dry_run else ("applied" if reply.applied else "already applied")
    print(f"kill {reply.kill_id}: {what}; trigger->block {reply.trigger_to_block_ns / 1e3:.1f} us")
    _print_table(
        ("SUBSCRIBER", "OK", "BLOCKED", "CANCELS SENT", "CONFIRMED", "LATENCY", "ERROR"),
        [
            (
                a.subscriber,
                a.ok,
                a.orders_blocked,
                a.cancels_sent,
                a.cancels_confirmed,
                f"{a.latency_ns / 1e3:.1f}us",
                a.error or "",
            )
            for a in reply.acks
        ],
    )
    for name in reply.missing:
        print(f"NO ACK from {name}")


def _cmd_kill_trigger(args: argparse.Namespace) -> int:
    # The kill id is made here, so a retried call carries the same one: one effect.
    request = mgmt_pb2.KillTriggerRequest(
        trigger=kill_pb2.TriggerRequest(
            kill_id=args.kill_id or f"ctl-{uuid.uuid4().hex[:16]}",
            target=_target(args),
            action=args.action.upper().replace("-", "_"),
            reason=args.reason,
            dry_run=args.dry_run,
            ack_timeout_s=args.ack_timeout or 0.0,
        ),
        confirm=args.yes,
    )
    reply = _call(args, mgmt_pb2_grpc.KillServiceStub, "Trigger", request)
    _emit(args, reply, _print_trigger)
    return EXIT_NOT_READY if reply.missing or any(not a.ok for a in reply.acks) else EXIT_OK


def _cmd_kill_clear(args: argparse.Namespace) -> int:
    request = mgmt_pb2.KillClearRequest(
        clear=kill_pb2.ClearRequest(
            kill_id=args.kill_id or "",
            target=_target(args),
            reason=args.reason,
            dry_run=args.dry_run,
        ),
        confirm=args.yes,
    )
    reply = _call(args, mgmt_pb2_grpc.KillServiceStub, "Clear", request)
    _emit(args, reply, _kill_reply)
    return EXIT_OK if reply.ok else EXIT_NOT_READY


def _print_kill_status(reply: Any) -> None:
    subscribers = ",".join(reply.subscribers) or "-"
    print(f"blocked_all={reply.blocked_all} epoch={reply.epoch} subscribers={subscribers}")
    _print_table(
        ("KILL ID", "SCOPE", "ACTION", "ACTOR", "REASON"),
        [
            (
                k.kill_id,
                f"{kill_pb2.KillScope.Name(k.target.scope)}:"
                f"{k.target.scope_name or k.target.scope_id}",
                kill_pb2.KillAction.Name(k.action),
                k.actor,
                k.reason,
            )
            for k in reply.active
        ],
    )
    _print_table(
        ("TRIGGER", "ARMED", "DRY RUN", "THRESHOLD", "VALUE", "FIRED"),
        [(t.name, t.armed, t.dry_run, t.threshold, t.value, t.fired) for t in reply.triggers],
    )


def _cmd_kill_status(args: argparse.Namespace) -> int:
    reply = _call(args, mgmt_pb2_grpc.KillServiceStub, "GetStatus", kill_pb2.KillStatusRequest())
    _emit(args, reply, _print_kill_status)
    return EXIT_OK


def _cmd_kill_history(args: argparse.Namespace) -> int:
    reply = _call(
        args, mgmt_pb2_grpc.KillServiceStub, "History", kill_pb2.HistoryRequest(limit=args.limit)
    )
    _emit(
        args,
        reply,
        lambda r: _print_table(
            ("SEQ", "KIND", "HASH", "RECORD"),
            [(e.seq, e.kind, e.hash[:12], e.json) for e in r.entries],
        ),
    )
    return EXIT_OK


def _cmd_kill_verify(args: argparse.Namespace) -> int:
    if args.online:
        reply = _call(
            args,
            mgmt_pb2_grpc.KillServiceStub,
            "Verify",
            kill_pb2.VerifyRequest(expected_head=args.expected_head or ""),
        )
        _emit(
            args,
            reply,
            lambda r: print(
                f"{'OK' if r.ok else 'DAMAGED'}: {r.records} records, head {r.head}"
                + "".join(f"\n  {p}" for p in r.problems)
            ),
        )
        return EXIT_OK if reply.ok else EXIT_NOT_READY
    from tectra.kill.ledger import LedgerError, verify_ledger

    path = args.ledger or Path(_config(args).appliance.state_dir) / "kill" / "ledger.jsonl"
    try:
        report = verify_ledger(path, args.name, expected_head=args.expected_head)
    except LedgerError as exc:
        print(f"tectractl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
    return EXIT_OK if report.ok else EXIT_NOT_READY


# -------------------------------------------------------------------------------- gateway views


def _cmd_sessions_list(args: argparse.Namespace) -> int:
    reply = _call(
        args, mgmt_pb2_grpc.SessionsServiceStub, "ListSessions", gateway_pb2.ListSessionsRequest()
    )
    _emit(
        args,
        reply,
        lambda r: _print_table(
            ("ID", "SENDER", "TARGET", "ACCOUNT", "LOGGED ON", "OPEN ORDERS", "SEQ OUT/IN", "COD"),
            [
                (
                    s.session_id,
                    s.sender_comp_id,
                    s.target_comp_id,
                    s.account,
                    s.logged_on,
                    s.open_orders,
                    f"{s.next_sender_seq}/{s.next_target_seq}",
                    s.cancel_on_disconnect,
                )
                for s in r.sessions
            ],
        ),
    )
    return EXIT_OK


def _cmd_sessions_disconnect(args: argparse.Namespace) -> int:
    request = mgmt_pb2.SessionDisconnectRequest(
        session_id=args.session_id, reason=args.reason or "", confirm=args.yes, dry_run=args.dry_run
    )
    reply = _call(args, mgmt_pb2_grpc.SessionsServiceStub, "Disconnect", request)
    _emit(args, reply, lambda r: print(f"{'ok' if r.ok else 'REFUSED'}: {r.message} ({r.count})"))
    return EXIT_OK if reply.ok else EXIT_NOT_READY


def _cmd_positions(args: argparse.Namespace) -> int:
    reply = _call(
        args,
        mgmt_pb2_grpc.PositionsServiceStub,
        "GetPositions",
        gateway_pb2.PositionsRequest(account=args.account or ""),
    )
    _emit(
        args,
        reply,
        lambda r: _print_table(
            (
                "ACCOUNT",
                "STRATEGY",
                "SYMBOL",
                "NET",
                "AVG OPEN",
                "REALISED",
                "UNREALISED",
                "FEES",
                "MARK",
            ),
            [
                (
                    p.account,
                    p.strategy_id,
                    p.symbol,
                    p.net_qty,
                    _money(p.avg_open_px),
                    _money(p.realised_pnl),
                    _money(p.unrealised_pnl) if p.marked else "-",
                    _money(p.fees),
                    _money(p.mark_px) if p.marked else "-",
                )
                for p in r.positions
            ],
        ),
    )
    return EXIT_OK


def _print_book(r: Any) -> None:
    print(f"{r.symbol} (instrument {r.instrument_id}) seq {r.sequence}")
    depth = max(len(r.bids), len(r.asks))
    rows = []
    for i in range(depth):
        b = r.bids[i] if i < len(r.bids) else None
        a = r.asks[i] if i < len(r.asks) else None
        rows.append(
            (
                b.orders if b else "",
                b.qty if b else "",
                _money(b.price) if b else "",
                _money(a.price) if a else "",
                a.qty if a else "",
                a.orders if a else "",
            )
        )
    _print_table(("ORDERS", "BID QTY", "BID", "ASK", "ASK QTY", "ORDERS"), rows)
    if r.has_last_trade:
        print(
            f"last trade {r.last_trade.qty} @ {_money(r.last_trade.price)} "
            f"(match {r.last_trade.match_number})"
        )


def _cmd_book(args: argparse.Namespace) -> int:
    reply = _call(
        args,
        mgmt_pb2_grpc.MarketServiceStub,
        "GetBook",
        feed_pb2.BookRequest(symbol=args.symbol, depth=args.depth),
    )
    _emit(args, reply, _print_book)
    return EXIT_OK


def _print_metrics(r: Any) -> None:
    for role in r.roles:
        if not role.reachable:
            print(f"{role.role}: unreachable: {role.error}")
            continue
        print(f"{role.role}: {role.url}")
        rows = []
        for f in role.families:
            if f.type == "histogram":
                value = f"n={f.count:.0f} p50={f.p50:.6g} p99={f.p99:.6g}"
            else:
                value = f"{f.value:.6g}"
            rows.append((f"  {f.name}", f.type, f.series, value))
        _print_table(("  FAMILY", "TYPE", "SERIES", "VALUE"), rows)


def _cmd_metrics(args: argparse.Namespace) -> int:
    reply = _call(
        args,
        mgmt_pb2_grpc.MetricsServiceStub,
        "Summary",
        mgmt_pb2.MetricsSummaryRequest(roles=args.role or []),
    )
    _emit(args, reply, _print_metrics)
    return EXIT_OK if all(r.reachable for r in reply.roles) else EXIT_NOT_READY


def _cmd_audit(args: argparse.Namespace) -> int:
    request = mgmt_pb2.AuditQueryRequest(
        who=args.who or "",
        method=args.method or "",
        correlation_id=args.cid or "",
        limit=args.limit,
    )
    reply = _call(args, mgmt_pb2_grpc.AuditServiceStub, "Query", request)
    _emit(
        args,
        reply,
        lambda r: _print_table(
            ("SEQ", "WHO", "ROLE", "METHOD", "RESULT", "DRY", "CORRELATION", "ARGS"),
            [
                (
                    a.seq,
                    a.who,
                    a.role,
                    a.method.rsplit(".", 1)[-1],
                    a.result,
                    "y" if a.dry_run else "",
                    a.correlation_id[:12],
                    a.args_json[:60],
                )
                for a in r.records
            ],
        ),
    )
    return EXIT_OK


# -------------------------------------------------------------------------------- parser


def _scope_flags(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--scope", choices=KILL_SCOPES, default=default or "firm")
    p.add_argument("--id", type=int, default=0, help="venue/account/strategy/instrument id")
    p.add_argument("--name", default="", help="venue/account/symbol name")
    p.add_argument("--kill-id", default="", help="idempotency key (default: a fresh one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tectractl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=None, help="appliance TOML config")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-attempt deadline, seconds")
    parser.add_argument("--retries", type=int, default=2, help="retries on UNAVAILABLE/DEADLINE")
    parser.add_argument("--socket", type=Path, default=None, help="mgmtd's local socket")
    parser.add_argument("--target", default=None, help="HOST:PORT of mgmtd's mutual-TLS port")
    parser.add_argument("--ca", type=Path, default=None, help="CA certificate (PEM)")
    parser.add_argument("--cert", type=Path, default=None, help="client certificate (PEM)")
    parser.add_argument("--key", type=Path, default=None, help="client key (PEM)")
    parser.add_argument("--server-name", default=None, help="expected server name (TLS)")
    parser.add_argument("--correlation-id", default=None, help="default: a fresh one per call")
    sub = parser.add_subparsers(dest="command", required=True)

    status = sub.add_parser("status", help="roles, lifecycle state, health, I/O path")
    status.add_argument("--role", action="append", help="only this role (repeatable)")
    status.add_argument("--via-mgmtd", action="store_true", help="never read roles directly")
    status.set_defaults(func=_cmd_status)
    sub.add_parser("whoami", help="who mgmtd thinks you are").set_defaults(func=_cmd_whoami)

    limits = sub.add_parser("limits", help="risk limits")
    lsub = limits.add_subparsers(dest="limits_command", required=True)
    lsub.add_parser("show", help="the active limits").set_defaults(func=_cmd_limits_show)
    export = lsub.add_parser("export", help="write the active limits (JSON)")
    export.add_argument("--out", type=Path, default=None)
    export.set_defaults(func=_cmd_limits_export)
    lset = lsub.add_parser("set", help="change one value: PATH VALUE")
    lset.add_argument("path", help="dotted path, e.g. instruments.AAPL.max_qty")
    lset.add_argument(
        "value", nargs="?", default=None, help='JSON value; decimals stay exact ("0.01")'
    )
    lset.add_argument("--remove", action="store_true")
    lset.add_argument("--reason", default="")
    _confirm_flags(lset)
    lset.set_defaults(func=_cmd_limits_set)
    lload = lsub.add_parser("load", help="replace the limits with a .toml/.json file (atomic)")
    lload.add_argument("file", type=Path)
    lload.add_argument("--reason", default="")
    _confirm_flags(lload)
    lload.set_defaults(func=_cmd_limits_load)

    kill = sub.add_parser("kill", help="kill switch")
    ksub = kill.add_subparsers(dest="kill_command", required=True)
    arm = ksub.add_parser("arm", help="arm a trigger")
    arm.add_argument("trigger")
    arm.add_argument("--drill", action="store_true", help="armed in dry-run: ledger only")
    arm.add_argument("--reason", required=True)
    arm.set_defaults(func=lambda a: _cmd_kill_arm(a, True))
    disarm = ksub.add_parser("disarm", help="disarm a trigger")
    disarm.add_argument("trigger")
    disarm.add_argument("--reason", required=True)
    disarm.set_defaults(func=lambda a: _cmd_kill_arm(a, False))
    trig = ksub.add_parser("trigger", help="kill: block/cancel/slow/isolate a scope")
    _scope_flags(trig, "firm")
    trig.add_argument("--action", choices=KILL_ACTIONS, default="block")
    trig.add_argument("--reason", required=True)
    trig.add_argument("--ack-timeout", type=float, default=0.0)
    _confirm_flags(trig)
    trig.set_defaults(func=_cmd_kill_trigger)
    clear = ksub.add_parser("clear", help="lift a kill (risk-officer)")
    _scope_flags(clear, "firm")
    clear.add_argument("--reason", required=True)
    _confirm_flags(clear)
    clear.set_defaults(func=_cmd_kill_clear)
    ksub.add_parser("status", help="active kills and triggers").set_defaults(func=_cmd_kill_status)
    hist = ksub.add_parser("history", help="ledger records")
    hist.add_argument("--limit", type=int, default=50)
    hist.set_defaults(func=_cmd_kill_history)
    verify = ksub.add_parser(
        "verify", help="check the kill ledger's hash chain; exit 1 and say where if damaged"
    )
    verify.add_argument("--online", action="store_true", help="ask the kill role via mgmtd")
    verify.add_argument(
        "--ledger", type=Path, default=None, help="default: STATE_DIR/kill/ledger.jsonl"
    )
    verify.add_argument("--name", default="kill", help="ledger name (seeds the genesis hash)")
    verify.add_argument(
        "--expected-head", default=None, help="last known head hash (catches tail cuts)"
    )
    verify.set_defaults(func=_cmd_kill_verify)

    sessions = sub.add_parser("sessions", help="FIX client sessions")
    ssub = sessions.add_subparsers(dest="sessions_command", required=True)
    ssub.add_parser("list").set_defaults(func=_cmd_sessions_list)
    disc = ssub.add_parser("disconnect", help="log a session out")
    disc.add_argument("session_id", type=int)
    disc.add_argument("--reason", default="")
    _confirm_flags(disc)
    disc.set_defaults(func=_cmd_sessions_disconnect)

    book = sub.add_parser("book", help="the feed's live book for SYMBOL")
    book.add_argument("symbol")
    book.add_argument("--depth", type=int, default=5)
    book.set_defaults(func=_cmd_book)
    pos = sub.add_parser("positions", help="positions and P&L")
    pos.add_argument("--account", default="")
    pos.set_defaults(func=_cmd_positions)
    met = sub.add_parser("metrics", help="each role's key metrics, summarised")
    met.add_argument("--role", action="append")
    met.set_defaults(func=_cmd_metrics)
    audit = sub.add_parser("audit", help="the management audit trail (admin)")
    audit.add_argument("--who", default="")
    audit.add_argument("--method", default="")
    audit.add_argument("--cid", default="", help="correlation id")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=_cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"tectractl: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"tectractl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MgmtClientError as exc:
        print(
            f"tectractl: {exc.code.name}: {exc.details} "
            f"(correlation id {exc.correlation_id}, {exc.attempts} attempt(s))",
            file=sys.stderr,
        )
        return _EXIT_BY_CODE.get(exc.code, EXIT_NOT_READY)
    return code


if __name__ == "__main__":
    sys.exit(main())
