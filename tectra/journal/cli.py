"""`tectra journal verify | cut | replay | diff | export`: the journal's operator tools.

This module owns the argument parsing and printing of the journal subcommands;
`add_journal_commands(subparsers)` registers them on the `tectra` parser (tectra/cli.py calls
it). Each command returns the process exit code: 0 when all is well, 1 when the journal is
damaged or a replay diverged, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from tectra.journal.format import ClockDomain, RecordType
from tectra.schema import LAYOUTS
from tectra.schema import Component as ComponentId

__all__ = ["add_journal_commands", "load_components"]

EXIT_OK, EXIT_DAMAGED, EXIT_USAGE = 0, 1, 2


def _type_code(name: str) -> int:
    if name in LAYOUTS:
        return LAYOUTS[name].type_id
    if name in RecordType.__members__:
        return int(RecordType[name])
    return int(name, 0)


def _component_id(name: str) -> int:
    if name.upper() in ComponentId.__members__:
        return int(ComponentId[name.upper()])
    return int(name, 0)


def load_components(spec: str) -> list[Any]:
    """Components from "package.module:factory" (factory() returns one or a list)."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--component wants MODULE:FACTORY, got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    made = factory()
    return list(made) if isinstance(made, list | tuple) else [made]


def _verify(args: argparse.Namespace) -> int:
    from tectra.journal.verify import verify_journal

    report = verify_journal(args.path)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format_text())
    return EXIT_OK if report.ok else EXIT_DAMAGED


def _cut(args: argparse.Namespace) -> int:
    from tectra.journal.cut import CutError, cut_journal

    try:
        result = cut_journal(
            args.source,
            args.destination,
            start_seq=args.from_seq,
            end_seq=args.to_seq,
            start_ns=args.from_ns,
            end_ns=args.to_ns,
            clock=args.clock,
        )
    except CutError as exc:
        print(f"tectra journal cut: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"cut seq {result.first_seq}..{result.last_seq} ({result.records} records, "
        f"{result.segments} segments) into {result.directory}; journal root {result.journal_root}"
    )
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from tectra.journal.replay import ReplayEngine, ReplayMode, ReplayOptions, StepView
    from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions

    components = load_components(args.component)
    mode = ReplayMode(args.mode)
    hook = None
    if mode is ReplayMode.STEP:

        def hook(view: StepView) -> bool:
            print(
                f"step {view.step} t={view.now_ns} inputs={len(view.inputs or [])} "
                f"outputs={sum(len(o) for o in view.outputs)}"
                + (" DIVERGED" if view.diverged else "")
            )
            try:
                return input("[enter]=next, q=quit> ").strip().lower() != "q"
            except EOFError:
                return False

    writer = None
    if args.out is not None:
        writer = JournalWriter(
            args.out,
            WriterOptions(
                journal="replay",
                component=int(ComponentId.REPLAY),
                clock_domain=int(ClockDomain.VIRTUAL),
                fsync=FsyncPolicy.NONE,
            ),
        )
    try:
        engine = ReplayEngine(
            args.path,
            components,
            options=ReplayOptions(
                mode=mode,
                speed=args.speed,
                from_snapshot=args.from_snapshot,
                snapshot_step=args.snapshot_step,
            ),
            output_writer=writer,
            hook=hook,
        )
        report = engine.run()
    finally:
        if writer is not None:
            writer.close()
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format_text())
    return EXIT_OK if report.zero and report.complete else EXIT_DAMAGED


def _diff(args: argparse.Namespace) -> int:
    from tectra.journal.replay import diff_journals

    comps = [_component_id(c) for c in args.component] if args.component else None
    report = diff_journals(args.expected, args.actual, comps)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format_text())
    return EXIT_OK if report.zero else EXIT_DAMAGED


def _export(args: argparse.Namespace) -> int:
    from tectra.journal.export import ExportError, export_parquet

    types = [_type_code(t) for t in args.types.split(",")] if args.types else None
    try:
        files = export_parquet(
            args.path, args.out, types=types, start_seq=args.from_seq, end_seq=args.to_seq
        )
    except ExportError as exc:
        print(f"tectra journal export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for name, path in sorted(files.items()):
        print(f"{name}: {path}")
    return EXIT_OK


def add_journal_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register `journal` and its subcommands on a `tectra` subparsers object."""
    journal = subparsers.add_parser(
        "journal", help="journal tools: verify, cut, replay, diff, export"
    )
    sub = journal.add_subparsers(dest="journal_command", required=True)

    verify = sub.add_parser("verify", help="check CRCs, sequences, hashes, Merkle roots")
    verify.add_argument("path", type=Path, help="journal directory")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=_verify)

    cut = sub.add_parser("cut", help="copy a sequence or time window into a new journal")
    cut.add_argument("source", type=Path)
    cut.add_argument("destination", type=Path, help="new (empty) journal directory")
    cut.add_argument("--from-seq", type=int, default=None)
    cut.add_argument("--to-seq", type=int, default=None)
    cut.add_argument("--from-ns", type=int, default=None, help="window start, ns (see --clock)")
    cut.add_argument("--to-ns", type=int, default=None, help="window end, ns (inclusive)")
    cut.add_argument("--clock", choices=("mono", "real"), default="mono")
    cut.set_defaults(func=_cut)

    replay = sub.add_parser("replay", help="replay recorded inputs and diff the outputs")
    replay.add_argument("path", type=Path, help="journal directory")
    replay.add_argument(
        "--component",
        required=True,
        help="MODULE:FACTORY returning the component(s), e.g. "
        "tectra.journal.reference:VwapComponent",
    )
    replay.add_argument(
        "--mode", choices=("instant", "realtime", "speed", "step"), default="instant"
    )
    replay.add_argument("--speed", type=float, default=10.0, help="N for --mode speed")
    replay.add_argument("--from-snapshot", action="store_true")
    replay.add_argument("--snapshot-step", type=int, default=None)
    replay.add_argument("--out", type=Path, default=None, help="journal the replayed outputs")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(func=_replay)

    diff = sub.add_parser("diff", help="compare the outputs of two journals step by step")
    diff.add_argument("expected", type=Path)
    diff.add_argument("actual", type=Path)
    diff.add_argument("--component", action="append", default=[], help="name or id; repeat")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(func=_diff)

    export = sub.add_parser("export", help="write Parquet, one file per record type")
    export.add_argument("path", type=Path)
    export.add_argument("out", type=Path)
    export.add_argument("--types", default="", help="comma-separated layout/opaque names")
    export.add_argument("--from-seq", type=int, default=None)
    export.add_argument("--to-seq", type=int, default=None)
    export.set_defaults(func=_export)
    return journal  # type: ignore[no-any-return]
