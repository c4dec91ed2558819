"""Prometheus metrics for one process, read at scrape time.

This module owns the per-process metrics registry, scrape-time callback collectors and the
batched latency histogram. The rule (DESIGN.md): metrics are read at scrape time from shared
memory or counters that already exist, never incremented per message in Python. So:

* :meth:`MetricsRegistry.counter_from` / :meth:`MetricsRegistry.gauge_from` register a metric
  whose value is a callable evaluated only when Prometheus scrapes (e.g. a ring's pushed count
  read from its shared-memory header, a queue depth);
* :class:`LatencyHistogram` takes latencies a batch at a time (one ``searchsorted`` +
  ``bincount`` per batch) and is turned into Prometheus samples only at scrape time.

Control-plane events that have no counter elsewhere (a rejected command, a config reload) may
use prometheus_client's own ``Counter`` registered on ``MetricsRegistry.registry``.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tectra.core.log import get_logger

__all__ = [
    "EXPORTED_BOUNDS_NS",
    "LATENCY_BOUNDS_NS",
    "QUANTILES",
    "CallbackCollector",
    "HistogramSnapshot",
    "LatencyHistogram",
    "MetricsRegistry",
]

_log = get_logger("metrics")
_METRIC_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Quantiles exported as ``<name>_quantile_seconds{quantile=...}``.
QUANTILES: Final = (0.5, 0.95, 0.99, 0.999)

Sample = float | Mapping[tuple[str, ...], float]
SampleSource = Callable[[], Sample]


def _log_linear_bounds(lo_exp: int, hi_exp: int) -> npt.NDArray[np.int64]:
    # 90 linear steps per decade: (100, 110, ..., 990, 1000, 1100, ...). Every bucket is at most
    # 10% of its lower edge wide, and the classic 1-2-5 edges are all present (exact export).
    edges: list[int] = []
    for e in range(lo_exp, hi_exp):
        step = 10 ** (e - 1)
        edges.extend(m * step for m in range(10, 100))
    edges.append(10**hi_exp)
    return np.array(edges, dtype=np.int64)


#: Upper bucket edges in ns, 100 ns .. 10 s (721 edges). Bucket i holds (edge[i-1], edge[i]];
#: bucket 0 holds [0, 100]; one more bucket holds everything above 10 s.
LATENCY_BOUNDS_NS: Final = _log_linear_bounds(2, 10)

#: The subset of edges exported to Prometheus (1-2-5 per decade): cumulative counts at these
#: edges are exact, and 25 buckets keep scrapes small.
EXPORTED_BOUNDS_NS: Final = np.array(
    [m * 10**e for e in range(2, 10) for m in (1, 2, 5)] + [10**10], dtype=np.int64
)
_EXPORTED_INDEX: Final = np.searchsorted(LATENCY_BOUNDS_NS, EXPORTED_BOUNDS_NS)
assert np.array_equal(LATENCY_BOUNDS_NS[_EXPORTED_INDEX], EXPORTED_BOUNDS_NS)
_go_float: Callable[[float], str] = floatToGoString  # Prometheus' own `le` formatting
_EXPORTED_LE: Final = tuple(_go_float(b / 1e9) for b in EXPORTED_BOUNDS_NS.tolist())


def _check_name(name: str) -> str:
    if not _METRIC_NAME_RE.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A consistent copy of a histogram's state (counts per bucket, sum/min/max in ns)."""

    counts: npt.NDArray[np.int64]
    sum_ns: int
    min_ns: int | None
    max_ns: int | None

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """Estimated ``q``-quantile in ns (NaN when empty). See LatencyHistogram.quantile."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        n = self.count
        if n == 0 or self.min_ns is None or self.max_ns is None:
            return math.nan
        # Fractional 1-based rank of numpy's linear method; the bucket reached is the one that
        # holds the order statistic at ceil(rank), i.e. numpy's method="higher" sample.
        if q == 0.0:
            return float(self.min_ns)
        if q == 1.0:
            return float(self.max_ns)
        rank = q * (n - 1) + 1
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank, side="left"))
        before = int(cum[i - 1]) if i > 0 else 0
        lower = float(LATENCY_BOUNDS_NS[i - 1]) if i > 0 else 0.0
        upper = float(LATENCY_BOUNDS_NS[i]) if i < len(LATENCY_BOUNDS_NS) else float(self.max_ns)
        in_bucket = int(self.counts[i])
        estimate = lower + (upper - lower) * (rank - before) / in_bucket
        # The exact extremes are known: they tighten the first and last occupied buckets.
        return min(max(estimate, float(self.min_ns)), float(self.max_ns))


class LatencyHistogram:
    """Latencies in ns, recorded in batches, exported as a Prometheus histogram in seconds.

    Buckets are log-linear from 100 ns to 10 s (:data:`LATENCY_BOUNDS_NS`): 90 equal steps per
    decade. :meth:`quantile` interpolates linearly inside the bucket that holds the sample of
    rank ``ceil(q·(n-1))`` (numpy's ``method="higher"``), clamped to the exact min/max, so:

    * its error against that sample is at most one bucket width: <= 10% of the value for
      latencies >= 100 ns, <= 100 ns below 100 ns, and unbounded only above 10 s (where the
      estimate lies between 10 s and the exact max);
    * numpy's default (linear) percentile additionally interpolates between neighbouring
      samples, so it can differ by the gap between those two samples as well.

    Negative inputs (clock misuse) are counted in ``negatives`` and recorded as 0.

    At scrape time it yields ``<name>_seconds`` (histogram: 25 exact 1-2-5 buckets, count,
    sum) and ``<name>_quantile_seconds{quantile="0.5|0.95|0.99|0.999"}`` (gauge).
    """

    def __init__(self, name: str, help: str) -> None:
        self.name = _check_name(name)
        self.help = help
        self._bounds: list[int] = LATENCY_BOUNDS_NS.tolist()
        self._lock = threading.Lock()
        self._counts = np.zeros(len(LATENCY_BOUNDS_NS) + 1, dtype=np.int64)
        self._sum = 0
        self._min: int | None = None
        self._max: int | None = None
        self.negatives = 0

    def record(self, ns: int) -> None:
        """Record one latency (control-plane use; the hot path calls :meth:`record_batch`)."""
        ns = int(ns)
        with self._lock:
            if ns < 0:
                self.negatives += 1
                ns = 0
            self._counts[bisect.bisect_left(self._bounds, ns)] += 1
            self._sum += ns
            self._min = ns if self._min is None else min(self._min, ns)
            self._max = ns if self._max is None else max(self._max, ns)

    def record_batch(self, ns_array: npt.ArrayLike) -> None:
        """Record a batch of latencies in ns (any integer or float array; floats truncate)."""
        arr = np.asarray(ns_array)
        if arr.size == 0:
            return
        arr = arr.astype(np.int64, copy=False).ravel()
        lo = int(arr.min())
        negatives = 0
        if lo < 0:
            negatives = int(np.count_nonzero(arr < 0))
            arr = np.maximum(arr, 0)
            lo = 0
        hi = int(arr.max())
        idx = np.searchsorted(LATENCY_BOUNDS_NS, arr, side="left")
        binned = np.bincount(idx, minlength=len(self._counts))
        total = int(arr.sum(dtype=np.int64))
        with self._lock:
            self._counts += binned
            self._sum += total
            self.negatives += negatives
            self._min = lo if self._min is None else min(self._min, lo)
            self._max = hi if self._max is None else max(self._max, hi)

    def snapshot(self) -> HistogramSnapshot:
        """A consistent copy (taken under the lock) for quantiles and export."""
        with self._lock:
            return HistogramSnapshot(self._counts.copy(), self._sum, self._min, self._max)

    def quantile(self, q: float) -> float:
        """Estimated ``q``-quantile in ns; NaN when empty. Error bound: see the class doc."""
        return self.snapshot().quantile(q)

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._counts.sum())

    @property
    def sum(self) -> int:
        """Sum of recorded latencies in ns."""
        return self._sum

    def reset(self) -> None:
        with self._lock:
            self._counts[:] = 0
            self._sum = 0
            self._min = None
            self._max = None
            self.negatives = 0

    # -- Prometheus collector protocol ----------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(f"{self.name}_seconds", self.help)
        yield GaugeMetricFamily(f"{self.name}_quantile_seconds", self.help, labels=["quantile"])

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        cumulative = np.cumsum(snap.counts)
        total = int(cumulative[-1])
        buckets: list[tuple[str, float]] = [
            (le, float(c))
            for le, c in zip(_EXPORTED_LE, cumulative[_EXPORTED_INDEX].tolist(), strict=True)
        ]
        buckets.append(("+Inf", float(total)))
        yield HistogramMetricFamily(
            f"{self.name}_seconds", self.help, buckets=buckets, sum_value=snap.sum_ns / 1e9
        )
        gauge = GaugeMetricFamily(
            f"{self.name}_quantile_seconds",
            f"{self.help} (quantile estimate)",
            labels=["quantile"],
        )
        for q in QUANTILES:
            gauge.add_metric([str(q)], snap.quantile(q) / 1e9)
        yield gauge


class CallbackCollector:
    """A counter or gauge whose value is read from ``source()`` at scrape time.

    ``source`` returns a number when ``labels`` is empty, else a mapping from a tuple of label
    values (one per label name) to a number. A source that raises or returns the wrong shape
    does not break the scrape: the family is exported without samples, the error is logged,
    and ``on_error(name)`` is called (the registry counts it in
    ``tectra_metrics_callback_errors_total``).
    """

    def __init__(
        self,
        name: str,
        help: str,
        kind: Literal["counter", "gauge"],
        source: SampleSource,
        *,
        labels: Sequence[str] = (),
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        if kind not in ("counter", "gauge"):
            raise ValueError(f"kind must be 'counter' or 'gauge', got {kind!r}")
        for label in labels:
            if not _LABEL_NAME_RE.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self.name = _check_name(name)
        self.help = help
        self.kind = kind
        self.labels = tuple(labels)
        self._source = source
        self._on_error = on_error

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)

    def _samples(self) -> list[tuple[list[str], float]]:
        value = self._source()
        if not self.labels:
            if isinstance(value, Mapping):
                raise TypeError("source returned a mapping but the metric has no labels")
            return [([], float(value))]
        if not isinstance(value, Mapping):
            raise TypeError(f"source returned {type(value).__name__}, expected a mapping")
        out: list[tuple[list[str], float]] = []
        for key, v in value.items():
            if not isinstance(key, tuple) or len(key) != len(self.labels):
                raise TypeError(f"label values {key!r} do not match labels {self.labels}")
            out.append(([str(k) for k in key], float(v)))
        return out

    def describe(self) -> Iterable[Metric]:
        yield self._family()

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        try:
            samples = self._samples()
        except Exception:
            # One broken source must not take down /metrics for everything else.
            _log.warning("metric source failed at scrape time", metric=self.name, exc_info=True)
            if self._on_error is not None:
                self._on_error(self.name)
            samples = []
        for label_values, value in samples:
            family.add_metric(label_values, value)
        yield family


class MetricsRegistry:
    """The metrics of one process: a prometheus_client ``CollectorRegistry`` and helpers.

    Create one per process (the service shell does) and pass it to components that export
    metrics; never use prometheus_client's global default registry.
    """

    def __init__(
        self, *, process_metrics: bool = True, target_info: Mapping[str, str] | None = None
    ) -> None:
        self.registry = CollectorRegistry(target_info=dict(target_info) if target_info else None)
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self._errors_lock = threading.Lock()
        self._callback_errors: dict[str, int] = {}
        self._errors_collector = CallbackCollector(
            "tectra_metrics_callback_errors_total",
            "Scrape-time metric sources that raised or returned a bad shape.",
            "counter",
            self._error_counts,
            labels=["metric"],
        )
        self.registry.register(self._errors_collector)

    def _error_counts(self) -> Mapping[tuple[str, ...], float]:
        with self._errors_lock:
            return {(name,): float(n) for name, n in self._callback_errors.items()}

    def _count_error(self, name: str) -> None:
        with self._errors_lock:
            self._callback_errors[name] = self._callback_errors.get(name, 0) + 1

    def register(self, collector: Collector) -> None:
        """Register any collector (raises ValueError on a duplicate metric name)."""
        self.registry.register(collector)
        # Collectors are scraped in registration order; keep the error counter last so a scrape
        # reports the errors of that same scrape, not the previous one.
        self.registry.unregister(self._errors_collector)
        self.registry.register(self._errors_collector)

    def unregister(self, collector: Collector) -> None:
        self.registry.unregister(collector)

    def counter_from(
        self, name: str, help: str, source: SampleSource, labels: Sequence[str] = ()
    ) -> CallbackCollector:
        """A counter read from ``source()`` at scrape time (exported as ``<name>_total``)."""
        collector = CallbackCollector(
            name, help, "counter", source, labels=labels, on_error=self._count_error
        )
        self.register(collector)
        return collector

    def gauge_from(
        self, name: str, help: str, source: SampleSource, labels: Sequence[str] = ()
    ) -> CallbackCollector:
        """A gauge read from ``source()`` at scrape time, e.g. ring depth per ring::

        registry.gauge_from("tectra_ring_depth", "Records in the ring.",
                            lambda: {("demo",): ring.depth()}, labels=["ring"])
        """
        collector = CallbackCollector(
            name, help, "gauge", source, labels=labels, on_error=self._count_error
        )
        self.register(collector)
        return collector

    def latency_histogram(self, name: str, help: str) -> LatencyHistogram:
        """A new :class:`LatencyHistogram`, registered (exported as ``<name>_seconds``)."""
        histogram = LatencyHistogram(name, help)
        self.register(histogram)
        return histogram

    def exposition(self) -> bytes:
        """The Prometheus text exposition of everything registered."""
        return generate_latest(self.registry)
