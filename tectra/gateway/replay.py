"""Replay of a gateway capture: `tectra journal replay DIR --from-snapshot --component
tectra.gateway.replay:replay_component`.

The live gateway journals a snapshot of its core when it starts (and the core's snapshot
carries everything replay needs: order state, positions, risk state, references, the OUCH
tracker, limits document and version, core config, the next order id, exec id and token
number), then every step's inputs and outputs. Replay builds a core with placeholder settings,
restores the snapshot over it, and feeds the recorded inputs through the same `step`. Tokens
come from memory starting at the snapshot's number, so the OUCH bytes replay produces are the
ones live sent. Nothing is sent anywhere: the core has no I/O.

Known limit: ClOrdIDs a client used before the snapshot are not in the replayed token maps, so a
duplicate of one of those would be refused live but not in replay (a divergence, reported).
"""

from __future__ import annotations

from tectra.gateway.core import GatewayCore, GatewayCoreConfig
from tectra.gateway.tokens import GatewayTokens
from tectra.risk.engine import EngineConfig, RiskEngine
from tectra.risk.limits import LimitsSpec, compile_limits
from tectra.risk.references import InMemoryReferences

__all__ = ["replay_component"]

_PLACEHOLDER = {
    "description": "replay placeholder (the snapshot's limits replace it)",
    "defaults": {
        "tick_size": "0.01",
        "max_qty": 1,
        "max_notional": 1,
        "band_bps": 1,
        "band_ticks": 0,
        "max_ref_age_ns": 1,
        "credit_limit": 1,
        "max_position": 1,
        "max_strategy_position": 1,
        "session_rate_per_s": 1,
        "session_burst": 1,
        "venue_rate_per_s": 1,
        "venue_burst": 1,
    },
    "modes": {},
    "instruments": {},
    "accounts": {},
    "venues": {},
    "sessions": {},
    "restricted": [],
}


def replay_component() -> GatewayCore:
    """A gateway core to restore a captured snapshot into (use with --from-snapshot)."""
    limits = compile_limits(LimitsSpec.from_document(_PLACEHOLDER), 0)
    cfg = EngineConfig()
    refs = InMemoryReferences(cfg.max_instruments)
    tokens = GatewayTokens(None, venue="REPLAY", session="REPLAY")
    return GatewayCore(GatewayCoreConfig(), RiskEngine(limits, refs, cfg), refs, tokens)
