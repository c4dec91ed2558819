"""The metrics summary folds a Prometheus exposition into one line per family."""

from __future__ import annotations

import pytest

from tectra.mgmt.metrics_summary import ScrapeError, bucket_quantile, summarise

TEXT = """# TYPE tectra_orders_total counter
tectra_orders_total{venue="a"} 3
tectra_orders_total{venue="b"} 4
# TYPE tectra_lat_seconds histogram
tectra_lat_seconds_bucket{le="0.001"} 50
tectra_lat_seconds_bucket{le="0.01"} 100
tectra_lat_seconds_bucket{le="+Inf"} 100
tectra_lat_seconds_count 100
tectra_lat_seconds_sum 0.3
# TYPE other_thing gauge
other_thing 1
"""


def test_summarise_counters_and_histograms() -> None:
    fams = {f.name: f for f in summarise(TEXT)}
    assert set(fams) == {"tectra_orders", "tectra_lat_seconds"}
    assert fams["tectra_orders"].value == 7 and fams["tectra_orders"].series == 2
    lat = fams["tectra_lat_seconds"]
    assert lat.count == 100 and lat.p50 == pytest.approx(0.001)
    assert 0.001 < lat.p99 <= 0.01


def test_quantile_edges_and_bad_input() -> None:
    assert bucket_quantile(0.5, []) == 0.0
    assert bucket_quantile(0.99, [(1.0, 0.0), (float("inf"), 0.0)]) == 0.0
    with pytest.raises(ScrapeError):
        summarise("# TYPE x counter\nx{ 1\n")
