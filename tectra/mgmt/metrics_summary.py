"""`tectractl metrics`: each role's /metrics scraped and folded into one line per family.

mgmtd reads the metrics port from each role's RoleStatus and fetches the Prometheus text
exposition. A family becomes: counter/gauge → the sum over its label sets; histogram →
observation count, sum and p50/p99 interpolated inside the cumulative buckets (the same
estimate Prometheus' histogram_quantile makes). Only tectra_* families and the process'
memory and CPU are kept: the summary is for a terminal, the full series stay on /metrics.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

KEEP_PREFIXES: Final = ("tectra_",)
KEEP_NAMES: Final = frozenset({"process_resident_memory_bytes", "process_cpu_seconds"})


class ScrapeError(RuntimeError):
    """The endpoint could not be read or did not parse."""


@dataclass(frozen=True, slots=True)
class FamilySummary:
    name: str
    type: str
    value: float
    series: int
    count: float = 0.0
    p50: float = 0.0
    p99: float = 0.0


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Quantile Q from cumulative (upper bound, count) buckets, linear inside a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            span = count - prev_count
            frac = (rank - prev_count) / span if span > 0 else 0.0
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, count
    return prev_bound


def _kept(name: str) -> bool:
    return name.startswith(KEEP_PREFIXES) or name in KEEP_NAMES


def summarise(text: str) -> list[FamilySummary]:
    """One FamilySummary per kept family of a Prometheus text exposition."""
    out: list[FamilySummary] = []
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ScrapeError(f"bad exposition: {exc}") from exc
    for fam in families:
        if not _kept(fam.name):
            continue
        if fam.type == "histogram":
            series_buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
            count = total = 0.0
            for s in fam.samples:
                if s.name.endswith("_bucket"):
                    labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                    series_buckets.setdefault(labels, []).append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    count += s.value
                elif s.name.endswith("_sum"):
                    total += s.value
            # Quantiles over every series together: merge cumulative buckets by bound.
            merged: dict[float, float] = {}
            for buckets in series_buckets.values():
                for bound, c in buckets:
                    merged[bound] = merged.get(bound, 0.0) + c
            pairs = sorted(merged.items())
            out.append(
                FamilySummary(
                    fam.name,
                    fam.type,
                    total,
                    len(series_buckets),
                    count,
                    bucket_quantile(0.5, pairs),
                    bucket_quantile(0.99, pairs),
                )
            )
            continue
        values = [s.value for s in fam.samples if not s.name.endswith("_created")]
        finite = [v for v in values if math.isfinite(v)]
        out.append(FamilySummary(fam.name, fam.type, float(sum(finite)), len(values)))
    return out


def scrape(url: str, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            body: bytes = reply.read(16 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ScrapeError(f"{url}: {exc}") from exc
    return body.decode("utf-8", "replace")
