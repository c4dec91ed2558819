"""The lab helpers the demo, benchmarks and tests share build valid appliances."""

from __future__ import annotations

import tomllib

import pytest

from tectra.risk.limits import LimitsSpec
from tectra.sim.lab import limits_toml, venue_process


def test_limits_document_is_valid_and_overrides_apply() -> None:
    text = limits_toml({"AAPL": 1, "MSFT": 2}, {"ACC1": 1}, restricted=("GME",), max_qty=5)
    spec = LimitsSpec.from_document(tomllib.loads(text))
    assert spec.defaults["max_qty"] == 5
    assert {e.name for e in spec.instruments} == {"AAPL", "MSFT"}
    assert spec.restricted == ("GME",)
    with pytest.raises(ValueError, match="max_qtyy"):
        limits_toml({"AAPL": 1}, {}, max_qtyy=5)


def test_venue_process_reports_its_port_and_references() -> None:
    with venue_process(("AAPL", "MSFT"), "--levels", "1") as venue:
        assert venue.port > 0 and venue.proc.poll() is None
        assert set(venue.reference_prices) == {"AAPL", "MSFT"}
    assert venue.proc.poll() is not None
