#!/usr/bin/env python3
"""Run one benchmark (or `all`): print one JSON object as the last line and write it to
perf/results/NAME.json.

Output: {"bench": NAME, "commit": <git sha>, "machine": {...}, "metrics": {...}} where metric
names carry their unit (_per_s, _ns with the percentile, _ratio, _pct), as DESIGN.md fixes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PERF_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PERF_DIR / "results"
BENCHES_DIR = PERF_DIR / "benches"
sys.path.insert(0, str(PERF_DIR))


def available() -> list[str]:
    return sorted(p.stem for p in BENCHES_DIR.glob("*.py") if not p.stem.startswith("_"))


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PERF_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PERF_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
    }


def run_one(name: str, quick: bool, argv: list[str] | None = None) -> dict[str, Any]:
    module = importlib.import_module(f"benches.{name}")
    started = time.time()
    # Knobs after `--` go to benchmarks whose run() takes them (e.g. gateway_e2e).
    metrics = module.run(quick=quick, argv=argv) if argv else module.run(quick=quick)
    result = {
        "bench": name,
        "commit": git_commit(),
        "machine": machine(),
        "started_unix": round(started, 3),
        "duration_s": round(time.time() - started, 2),
        "quick": quick,
        "metrics": metrics,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help=f"benchmark name or 'all' ({', '.join(available())})")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.epilog = "Options after -- go to the benchmark (e.g. gateway_e2e -- --help)."
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    bench_args = argv[cut + 1 :]
    names = available() if args.name == "all" else [args.name]
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    for name in names:
        print(json.dumps(run_one(name, args.quick, bench_args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
