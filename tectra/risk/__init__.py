"""Pre-trade risk, inline on the order path (tectra.risk).

The package owns the risk rules and their evaluation: `rules` (catalogue, priority, modes,
RejectReason -> FIX 4.4 mapping), `limits` (validated limits, SQLite store with versions,
compiled snapshots), `references` (reference-price source protocol, in-memory table) and
`engine` (`RiskEngine` over the C engine in csrc/risk.c). docs/risk.md describes it all.
"""

from __future__ import annotations

from tectra.risk.engine import EngineConfig, RiskEngine, RiskError, RuleCounters
from tectra.risk.limits import Limits, LimitsError, LimitsSpec, LimitsStore, compile_limits
from tectra.risk.references import InMemoryReferences, ReferenceSource
from tectra.risk.rules import Rule, RuleMode, fix_reject

__all__ = [
    "EngineConfig",
    "InMemoryReferences",
    "Limits",
    "LimitsError",
    "LimitsSpec",
    "LimitsStore",
    "ReferenceSource",
    "RiskEngine",
    "RiskError",
    "Rule",
    "RuleCounters",
    "RuleMode",
    "compile_limits",
    "fix_reject",
]
