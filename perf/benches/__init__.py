"""Benchmarks run by perf/run.py; each module exposes run(quick: bool) -> metrics dict."""
