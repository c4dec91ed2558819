"""tectra.core.metrics: batched latency histogram, scrape-time collectors, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client.parser import text_string_to_metric_families

from tectra.core.metrics import (
    EXPORTED_BOUNDS_NS,
    LATENCY_BOUNDS_NS,
    QUANTILES,
    LatencyHistogram,
    MetricsRegistry,
)


def scrape(reg: MetricsRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(reg.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def bucket_edges(value: float) -> tuple[float, float]:
    """The (lower, upper] edges of the internal bucket holding `value`."""
    i = int(np.searchsorted(LATENCY_BOUNDS_NS, value, side="left"))
    lower = 0.0 if i == 0 else float(LATENCY_BOUNDS_NS[i - 1])
    upper = float(LATENCY_BOUNDS_NS[i]) if i < len(LATENCY_BOUNDS_NS) else math.inf
    return lower, upper


def test_bucket_bounds_are_log_linear_100ns_to_10s() -> None:
    b = LATENCY_BOUNDS_NS
    assert b[0] == 100 and b[-1] == 10**10
    assert np.all(np.diff(b) > 0)
    # Every bucket above 100 ns is at most 10% of its lower edge wide.
    assert np.all(np.diff(b) / b[:-1] <= 0.1 + 1e-12)
    assert set(EXPORTED_BOUNDS_NS.tolist()) <= set(b.tolist())


def test_batch_and_single_recording_agree() -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 10**11, size=5000)
    one, many = LatencyHistogram("a", "a"), LatencyHistogram("b", "b")
    for v in data.tolist():
        one.record(v)
    many.record_batch(data[:1234])
    many.record_batch(data[1234:])
    assert np.array_equal(one.snapshot().counts, many.snapshot().counts)
    assert one.count == many.count == 5000
    assert one.sum == many.sum == int(data.sum())
    for q in QUANTILES:
        assert one.quantile(q) == many.quantile(q)


def test_edges_belong_to_the_bucket_they_close() -> None:
    # Prometheus buckets are `le`: a value equal to an edge counts in that bucket.
    h = LatencyHistogram("e", "e")
    h.record_batch(np.array([100, 101, 110, 10**10, 10**10 + 1]))
    counts = h.snapshot().counts
    assert counts[0] == 1  # [0, 100]
    assert counts[1] == 2  # (100, 110]
    assert counts[len(LATENCY_BOUNDS_NS) - 1] == 1  # (9.9e9, 1e10]
    assert counts[-1] == 1  # > 10 s


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        np.int64,
        st.integers(1, 3000),
        elements=st.one_of(st.integers(0, 2_000), st.integers(0, 10**9), st.integers(0, 10**11)),
    ),
    st.sampled_from([0.0, 0.01, *QUANTILES, 1.0]),
)
def test_quantiles_are_within_one_bucket_of_numpy(data: np.ndarray, q: float) -> None:
    h = LatencyHistogram("q", "q")
    h.record_batch(data)
    estimate = h.quantile(q)
    exact = float(np.quantile(data, q, method="higher"))
    lower, upper = bucket_edges(exact)
    if math.isinf(upper):
        upper = float(data.max())
    # Same bucket as the exact sample, so the error is at most that bucket's width ...
    assert lower <= estimate <= upper
    assert abs(estimate - exact) <= upper - lower
    # ... and never outside the observed range.
    assert data.min() <= estimate <= data.max()


def test_quantiles_on_a_realistic_distribution() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(mean=np.log(2_000), sigma=0.6, size=200_000).astype(np.int64)
    h = LatencyHistogram("l", "l")
    for chunk in np.array_split(data, 50):
        h.record_batch(chunk)
    for q in QUANTILES:
        exact = float(np.percentile(data, q * 100))
        assert abs(h.quantile(q) - exact) / exact < 0.10


def test_empty_histogram_and_reset() -> None:
    h = LatencyHistogram("r", "r")
    assert math.isnan(h.quantile(0.5)) and h.count == 0
    h.record_batch(np.array([], dtype=np.int64))
    assert h.count == 0
    h.record_batch(np.array([5, 500, 5000]))
    assert h.count == 3 and h.sum == 5505
    h.reset()
    assert h.count == 0 and h.sum == 0 and math.isnan(h.quantile(0.99))
    with pytest.raises(ValueError):
        h.quantile(1.5)


def test_negative_latencies_are_counted_and_clamped() -> None:
    h = LatencyHistogram("n", "n")
    h.record_batch(np.array([-5, -1, 200]))
    h.record(-3)
    assert h.negatives == 3 and h.count == 4 and h.sum == 200
    assert h.quantile(0.0) == 0.0


def test_histogram_export_in_seconds() -> None:
    reg = MetricsRegistry(process_metrics=False)
    h = reg.latency_histogram("tectra_ring_latency", "Producer-to-consumer latency.")
    data = np.array([50, 150, 900, 1_000, 1_500, 2_000_000, 20 * 10**9], dtype=np.int64)
    h.record_batch(data)
    samples = scrape(reg)
    buckets = samples["tectra_ring_latency_seconds_bucket"]
    for edge in EXPORTED_BOUNDS_NS.tolist():
        le = next(v for k, v in buckets.items() if math.isclose(float(k[0][1]), edge / 1e9))
        assert le == np.count_nonzero(data <= edge)
    assert buckets[(("le", "+Inf"),)] == len(data)
    assert len(buckets) == len(EXPORTED_BOUNDS_NS) + 1
    assert samples["tectra_ring_latency_seconds_count"][()] == len(data)
    assert samples["tectra_ring_latency_seconds_sum"][()] == pytest.approx(data.sum() / 1e9)
    quantiles = samples["tectra_ring_latency_quantile_seconds"]
    assert {dict(k)["quantile"] for k in quantiles} == {"0.5", "0.95", "0.99", "0.999"}
    assert quantiles[(("quantile", "0.5"),)] == pytest.approx(h.quantile(0.5) / 1e9)


def test_callback_collectors_read_at_scrape_time() -> None:
    reg = MetricsRegistry(process_metrics=False)
    depth = {"demo": 12, "orders": 0}
    pushed = [0]
    reg.gauge_from(
        "tectra_ring_depth",
        "Records in the ring.",
        lambda: {(k,): v for k, v in depth.items()},
        labels=["ring"],
    )
    reg.counter_from("tectra_ring_pushed", "Records pushed.", lambda: pushed[0])
    reg.gauge_from("tectra_up", "Always 1.", lambda: 1)
    first = scrape(reg)
    assert first["tectra_ring_depth"] == {(("ring", "demo"),): 12, (("ring", "orders"),): 0}
    assert first["tectra_ring_pushed_total"][()] == 0
    assert first["tectra_up"][()] == 1
    depth["demo"] = 3
    pushed[0] = 1_000_000
    second = scrape(reg)
    assert second["tectra_ring_depth"][(("ring", "demo"),)] == 3
    assert second["tectra_ring_pushed_total"][()] == 1_000_000


def test_a_failing_source_does_not_break_the_scrape() -> None:
    reg = MetricsRegistry(process_metrics=False)

    def broken() -> float:
        raise RuntimeError("shm detached")

    reg.gauge_from("tectra_broken", "Broken.", broken)
    reg.gauge_from("tectra_wrong_shape", "Labels mismatch.", lambda: {("a", "b"): 1}, ["x"])
    reg.gauge_from("tectra_fine", "Fine.", lambda: 2.5)
    s1 = scrape(reg)
    assert s1["tectra_fine"][()] == 2.5
    assert "tectra_broken" not in s1
    s2 = scrape(reg)
    errors = s2["tectra_metrics_callback_errors_total"]
    assert errors[(("metric", "tectra_broken"),)] == 2
    assert errors[(("metric", "tectra_wrong_shape"),)] == 2


def test_registry_rejects_duplicates_and_bad_names() -> None:
    reg = MetricsRegistry(process_metrics=False)
    reg.gauge_from("tectra_x", "x", lambda: 1)
    with pytest.raises(ValueError):
        reg.gauge_from("tectra_x", "x again", lambda: 2)
    with pytest.raises(ValueError):
        reg.latency_histogram("bad name", "x")
    with pytest.raises(ValueError):
        reg.gauge_from("tectra_y", "y", lambda: 1, labels=["bad-label"])


def test_process_metrics_and_target_info() -> None:
    reg = MetricsRegistry(target_info={"role": "feed", "appliance": "t1"})
    text = reg.exposition().decode()
    assert "process_cpu_seconds_total" in text and "python_info" in text
    assert 'target_info{appliance="t1",role="feed"} 1.0' in text
