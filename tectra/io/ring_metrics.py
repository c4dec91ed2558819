"""Prometheus view of shared-memory rings, read from the ring header at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from tectra.core.metrics import MetricsRegistry
from tectra.io.shm import RingStats, ShmRing

_COUNTERS = (
    ("pushed", "Records pushed into the ring."),
    ("popped", "Records popped from the ring."),
    ("overruns", "Records a lagging consumer lost to the overwrite policy."),
    ("full", "Records refused because the ring was full (backpressure policy)."),
)


def register_ring_metrics(metrics: MetricsRegistry, rings: Callable[[], list[ShmRing]]) -> None:
    """Export pushed/popped/overruns/full counters and depth/capacity gauges, labelled by ring.

    RINGS is called at every scrape, so rings opened or closed later are followed; a closed
    ring simply disappears from the output.
    """

    def snapshot() -> dict[str, RingStats]:
        return {ring.name: ring.stats() for ring in rings() if not ring.closed}

    def counter(field: str) -> Callable[[], dict[tuple[str, ...], float]]:
        return lambda: {(n,): getattr(s, field) for n, s in snapshot().items()}

    for field, help_text in _COUNTERS:
        metrics.counter_from(f"tectra_ring_{field}", help_text, counter(field), labels=["ring"])
    metrics.gauge_from(
        "tectra_ring_depth",
        "Records in the ring now (written, not yet read).",
        lambda: {(n,): s.depth for n, s in snapshot().items()},
        labels=["ring"],
    )
    metrics.gauge_from(
        "tectra_ring_capacity",
        "Slots in the ring.",
        lambda: {(n,): s.capacity for n, s in snapshot().items()},
        labels=["ring"],
    )
