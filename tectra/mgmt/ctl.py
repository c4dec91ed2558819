"""`tectractl`: the operator's command line over the roles' control channels.

Exit codes scripts can rely on: 0 success (`status`: every queried role is READY; `kill
verify`: the ledger is intact), 1 not so (a role not READY or unreachable; a damaged ledger,
with where), 2 usage or configuration error. Human tables by default, `--json` for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from tectra.core.config import ConfigError, load_config
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2


def _status_rows(state_dir: Path, roles: list[str], timeout_s: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for role in roles:
        try:
            status = fetch_status(control_socket_path(state_dir, role), timeout_s)
        except RoleControlError as exc:
            rows.append({"role": role, "lifecycle": "DOWN", "error": str(exc)})
            continue
        rows.append(
            MessageToDict(
                status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
        )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ("ROLE", "STATE", "IO PATH", "PID", "CPUS", "METRICS", "UPTIME", "NOTE")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row["role"],
                row["lifecycle"],
                row.get("io_path", "-") or "-",
                str(row.get("pid", "-")),
                ",".join(str(c) for c in row.get("cpus", [])) or "-",
                f":{row['metrics_port']}" if row.get("metrics_port") else "-",
                f"{row['uptime_s']:.0f}s" if "uptime_s" in row else "-",
                row.get("error") or row.get("lifecycle_reason", ""),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    roles = args.role or list(config.roles)
    rows = _status_rows(Path(config.appliance.state_dir), roles, args.timeout)
    if args.json:
        print(json.dumps({"roles": rows}, indent=2))
    else:
        _print_table(rows)
    return EXIT_OK if all(row["lifecycle"] == "READY" for row in rows) else EXIT_NOT_READY


def _cmd_kill_verify(args: argparse.Namespace) -> int:
    from tectra.kill.ledger import LedgerError, verify_ledger

    config = load_config(args.config)
    path = args.ledger or Path(config.appliance.state_dir) / "kill" / "ledger.jsonl"
    try:
        report = verify_ledger(path, args.name, expected_head=args.expected_head)
    except LedgerError as exc:
        print(f"tectractl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
    return EXIT_OK if report.ok else EXIT_NOT_READY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tectractl", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="appliance TOML config")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-call timeout, seconds")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="roles, lifecycle state, I/O path, health")
    status.add_argument("--role", action="append", help="only this role (repeatable)")
    status.set_defaults(func=_cmd_status)

    kill = sub.add_parser("kill", help="kill switch")
    kill_sub = kill.add_subparsers(dest="kill_command", required=True)
    verify = kill_sub.add_parser(
        "verify", help="check the kill ledger's hash chain; exit 1 and say where if damaged"
    )
    verify.add_argument(
        "--ledger", type=Path, default=None, help="default: STATE_DIR/kill/ledger.jsonl"
    )
    verify.add_argument("--name", default="kill", help="ledger name (seeds the genesis hash)")
    verify.add_argument(
        "--expected-head", default=None, help="last known head hash (catches tail cuts)"
    )
    verify.set_defaults(func=_cmd_kill_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"tectractl: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
