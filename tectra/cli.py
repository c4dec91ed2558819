"""The `tectra` command: run a role process, run the one-host demo, check a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tectra.core.config import ConfigError, load_config
from tectra.core.log import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from tectra.roles.registry import UnknownRoleError, role_entry

    config = load_config(args.config)
    configure_logging(config.appliance.log_level)
    try:
        entry = role_entry(args.role)
    except UnknownRoleError as exc:
        print(f"tectra: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return entry(config)


def _cmd_demo(args: argparse.Namespace) -> int:
    from tectra.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            seconds=args.seconds,
            rate=args.rate,
            batch=args.batch,
            json_out=args.json,
            feed_seconds=args.feed_seconds,
            feed_rate=args.feed_rate,
            gateway_seconds=args.gateway_seconds,
            gateway_rate=args.gateway_rate,
            stages=tuple(args.stage or ("ring", "feed", "gateway")),
        )
    )


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.path)
    print(f"config ok: appliance {config.appliance.name!r}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tectra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one role process (what tectra@ROLE.service runs)")
    run.add_argument("role", help="feed, gateway, kill, journal, publisher, consumer")
    run.add_argument("--config", type=Path, default=None, help="TOML config (default: packaged)")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run the appliance end to end on this host")
    demo.add_argument(
        "--stage", action="append", choices=("ring", "feed", "gateway"), help="repeatable"
    )
    demo.add_argument("--seconds", type=float, default=5.0, help="ring stage length")
    demo.add_argument("--rate", type=int, default=1_000_000, help="ring records/s (0: flat out)")
    demo.add_argument("--batch", type=int, default=256, help="ring records per push")
    demo.add_argument("--feed-seconds", type=float, default=10.0, help="feed stage length")
    demo.add_argument("--feed-rate", type=int, default=100_000, help="venue ITCH messages/s")
    demo.add_argument(
        "--gateway-seconds", type=float, default=12.0, help="gateway stage trading time"
    )
    demo.add_argument(
        "--gateway-rate", type=float, default=100.0, help="orders/s per FIX client session"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=_cmd_demo)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", type=Path, nargs="?", default=None)
    check.set_defaults(func=_cmd_config_check)

    from tectra.journal.cli import add_journal_commands

    add_journal_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"tectra: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
