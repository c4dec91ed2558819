"""Shared statistics helpers for benchmarks: percentiles and medians with unit-named keys."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np


def latency_summary(samples_ns: np.ndarray) -> dict[str, float]:
    """p50/p99/p999/max of a latency sample in ns, plus the sample count."""
    p50, p99, p999 = np.percentile(samples_ns, [50, 99, 99.9])
    return {
        "p50_ns": round(float(p50), 1),
        "p99_ns": round(float(p99), 1),
        "p999_ns": round(float(p999), 1),
        "max_ns": float(samples_ns.max()),
        "samples": int(samples_ns.size),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
