"""Risk limits: the validated model, its SQLite store with a version number, and the compiled
immutable snapshot the C engine reads.

This module owns:

* the limits schema: which parameters exist at which level (defaults, instruments, accounts,
  venues, sessions), their units and their validity rules (`LimitsSpec.from_document`). A
  limits file is the whole limit set, TOML or JSON; docs/risk.md shows one.
* `LimitsStore(path)`: the SQLite tables (`limits_*`), `apply_file` / `apply_document` (one
  transaction: a bad file is refused with `LimitsError` naming every bad entry and the old
  limits stay; every successful change takes the next version number), `load()` and the
  version history.
* `Limits`: one version compiled to read-only numpy arrays whose rows mirror the
  `rk_*_limits_t` structs of csrc/risk.h. The engine swaps its `Limits` by reference between
  batches, so an order is judged against exactly one version.

Money and prices are fixed point (1e-4 units, `tectra.schema.PRICE_SCALE`): files write them as
whole currency integers or decimal strings ("0.01"); floats are refused everywhere, so no
float ever reaches a limit.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.risk.rules import (
    CONFIGURABLE_RULES,
    MODE_NAMES,
    NUM_RULES,
    RULES,
    Rule,
    RuleMode,
    resolve_mode,
)
from tectra.schema import PRICE_SCALE, SchemaError, encode_symbol, fixed_to_str, price_to_fixed

__all__ = [
    "ACCOUNT_COLUMNS",
    "DEFAULT_PARAMS",
    "INSTRUMENT_COLUMNS",
    "THROTTLE_COLUMNS",
    "EntityLimits",
    "Limits",
    "LimitsError",
    "LimitsSpec",
    "LimitsStore",
    "LimitsVersion",
    "Unit",
    "compile_limits",
]

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


class LimitsError(ValueError):
    """A limits file, document or store refused. `problems` lists every bad entry, each
    message starting with the entry's path (`accounts.ACC7.max_notional = -5: must be > 0`)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


class Unit(enum.Enum):
    """How a parameter is written in a file and stored."""

    QTY = "quantity (integer)"
    MONEY = "money (whole currency integer or decimal string; stored in 1e-4 units)"
    BPS = "basis points (integer)"
    TICKS = "ticks (integer)"
    NS = "nanoseconds (integer)"
    RATE = "per second / tokens (integer)"


@dataclass(frozen=True)
class _Param:
    unit: Unit
    minimum: int  # in stored units
    maximum: int
    doc: str


_MAX_QTY: Final[int] = 10**15  # keeps every product and sum far inside int64 after checks
_MAX_MONEY: Final[int] = 2**62
_INSTRUMENT_PARAMS: Final[Mapping[str, _Param]] = MappingProxyType(
    {
        "tick_size": _Param(Unit.MONEY, 1, 10**12, "price increment (band_ticks unit)"),
        "max_qty": _Param(Unit.QTY, 1, _MAX_QTY, "largest order quantity"),
        "max_notional": _Param(Unit.MONEY, 1, _MAX_MONEY, "largest price x qty of one order"),
        "band_bps": _Param(Unit.BPS, 0, 1_000_000, "price band around the reference, bps"),
        "band_ticks": _Param(Unit.TICKS, 0, 10**9, "price band around the reference, ticks"),
        "max_ref_age_ns": _Param(Unit.NS, 1, 10**15, "a reference older than this is stale"),
    }
)
_ACCOUNT_PARAMS: Final[Mapping[str, _Param]] = MappingProxyType(
    {
        "credit_limit": _Param(Unit.MONEY, 1, _MAX_MONEY, "open + executed notional cap"),
        "max_position": _Param(Unit.QTY, 1, _MAX_QTY, "worst-case position per instrument"),
        "max_strategy_position": _Param(
            Unit.QTY, 1, _MAX_QTY, "worst-case position per strategy and instrument"
        ),
        "max_qty": _Param(Unit.QTY, 1, _MAX_QTY, "account cap on order quantity (optional)"),
        "max_notional": _Param(
            Unit.MONEY, 1, _MAX_MONEY, "account cap on order notional (optional)"
        ),
    }
)
_ACCOUNT_OPTIONAL: Final[frozenset[str]] = frozenset({"max_qty", "max_notional"})
_THROTTLE_PARAMS: Final[Mapping[str, _Param]] = MappingProxyType(
    {
        "rate_per_s": _Param(Unit.RATE, 1, 10**9, "token bucket refill, orders per second"),
        "burst": _Param(Unit.RATE, 1, 10**9, "token bucket capacity, orders"),
    }
)

DEFAULT_PARAMS: Final[Mapping[str, _Param]] = MappingProxyType(
    {
        **_INSTRUMENT_PARAMS,
        **{k: v for k, v in _ACCOUNT_PARAMS.items() if k not in _ACCOUNT_OPTIONAL},
        **{f"session_{k}": v for k, v in _THROTTLE_PARAMS.items()},
        **{f"venue_{k}": v for k, v in _THROTTLE_PARAMS.items()},
    }
)
"""Every key of [defaults]; all are required (no limit is ever implicit)."""

INSTRUMENT_COLUMNS: Final[tuple[str, ...]] = (
    "known",
    "symbol",
    "tick_size",
    "max_qty",
    "max_notional",
    "band_bps",
    "band_ticks",
    "max_ref_age_ns",
    "restricted",
)
"""Columns of `Limits.instruments` (= fields of rk_instrument_limits_t)."""
ACCOUNT_COLUMNS: Final[tuple[str, ...]] = tuple(_ACCOUNT_PARAMS)
"""Columns of `Limits.accounts` (= fields of rk_account_limits_t); optional caps 0 = none."""
THROTTLE_COLUMNS: Final[tuple[str, ...]] = tuple(_THROTTLE_PARAMS)
"""Columns of `Limits.sessions` / `Limits.venues` (= fields of rk_throttle_limits_t)."""

_MAX_ID: Final[Mapping[str, int]] = MappingProxyType(
    {"instruments": 1 << 20, "accounts": 1 << 20, "venues": 1 << 16, "sessions": 1 << 20}
)
_TABLE_PARAMS: Final[Mapping[str, Mapping[str, _Param]]] = MappingProxyType(
    {
        "instruments": _INSTRUMENT_PARAMS,
        "accounts": _ACCOUNT_PARAMS,
        "venues": _THROTTLE_PARAMS,
        "sessions": _THROTTLE_PARAMS,
    }
)
_HAS_MODES: Final[frozenset[str]] = frozenset({"instruments", "venues"})
_TOP_KEYS: Final[frozenset[str]] = frozenset(
    {"description", "defaults", "modes", "restricted", *_TABLE_PARAMS}
)


def _show(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _parse_value(path: str, raw: object, param: _Param, problems: list[str]) -> int | None:
    """A file value -> stored int, or None with a problem naming `path`."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        kind = "a float" if isinstance(raw, float) else type(raw).__name__
        want = "an integer or a decimal string" if param.unit is Unit.MONEY else "an integer"
        problems.append(f"{path} = {_show(raw)}: must be {want}, not {kind}")
        return None
    if param.unit is Unit.MONEY:
        try:
            value = price_to_fixed(raw)
        except SchemaError as exc:
            problems.append(f"{path} = {_show(raw)}: {exc}")
            return None
    elif isinstance(raw, str):
        problems.append(f"{path} = {_show(raw)}: must be an integer ({param.unit.value})")
        return None
    else:
        value = raw
    if value < param.minimum:
        problems.append(f"{path} = {_show(raw)}: must be {'> 0' if param.minimum else '>= 0'}")
        return None
    if value > param.maximum:
        shown = fixed_to_str(param.maximum) if param.unit is Unit.MONEY else str(param.maximum)
        problems.append(f"{path} = {_show(raw)}: must be <= {shown}")
        return None
    return value


def _to_file_value(value: int, param: _Param) -> int | str:
    if param.unit is Unit.MONEY:
        return value // PRICE_SCALE if value % PRICE_SCALE == 0 else fixed_to_str(value)
    return value


def _check_range(path: str, value: int, param: _Param, problems: list[str]) -> None:
    if not param.minimum <= value <= param.maximum:
        problems.append(f"{path} = {value}: outside [{param.minimum}, {param.maximum}]")


# --------------------------------------------------------------------------------------------
# The validated model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityLimits:
    """One configured instrument, account, venue or session: its name (the symbol for an
    instrument), its id in ORDER_REQUEST, the parameters it overrides (stored units) and, for
    instruments and venues, its rule mode overrides."""

    name: str
    id: int
    params: Mapping[str, int] = field(default_factory=dict)
    modes: Mapping[str, RuleMode] = field(default_factory=dict)


@dataclass(frozen=True)
class LimitsSpec:
    """A complete, validated limit set in stored units (what one version holds).

    `defaults` has every `DEFAULT_PARAMS` key; `modes` every configurable rule. Build one with
    `from_document` (a parsed file) or read one with `LimitsStore.load`.
    """

    defaults: Mapping[str, int]
    modes: Mapping[str, RuleMode]
    instruments: tuple[EntityLimits, ...] = ()
    accounts: tuple[EntityLimits, ...] = ()
    venues: tuple[EntityLimits, ...] = ()
    sessions: tuple[EntityLimits, ...] = ()
    restricted: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> LimitsSpec:
        """Validate a parsed limits file. Raises LimitsError listing every bad entry."""
        problems: list[str] = []
        if not isinstance(doc, Mapping):
            raise LimitsError([f"limits document must be a table, not {type(doc).__name__}"])
        problems += [f"{key}: unknown top-level key" for key in doc if key not in _TOP_KEYS]
        description = doc.get("description", "")
        if not isinstance(description, str):
            problems.append(f"description = {_show(description)}: must be a string")
            description = ""

        defaults: dict[str, int] = {}
        raw_defaults = doc.get("defaults")
        if not isinstance(raw_defaults, Mapping):
            problems.append("defaults: missing table (every default limit must be set)")
            raw_defaults = {}
        for key, raw in raw_defaults.items():
            param = DEFAULT_PARAMS.get(key)
            if param is None:
                problems.append(f"defaults.{key}: unknown parameter")
                continue
            value = _parse_value(f"defaults.{key}", raw, param, problems)
            if value is not None:
                defaults[key] = value
        problems += [
            f"defaults.{key}: missing (every default limit must be set)"
            for key in DEFAULT_PARAMS
            if key not in raw_defaults
        ]

        modes = dict.fromkeys(CONFIGURABLE_RULES, RuleMode.ENFORCE)
        modes.update(_parse_modes("modes", doc.get("modes", {}), problems))

        tables: dict[str, tuple[EntityLimits, ...]] = {}
        for table in _TABLE_PARAMS:
            tables[table] = _parse_table(table, doc.get(table, {}), problems)

        restricted: list[str] = []
        raw_restricted = doc.get("restricted", [])
        if not isinstance(raw_restricted, list):
            problems.append(f"restricted = {_show(raw_restricted)}: must be a list of symbols")
            raw_restricted = []
        for i, sym in enumerate(raw_restricted):
            if not isinstance(sym, str):
                problems.append(f"restricted[{i}] = {_show(sym)}: must be a symbol string")
                continue
            try:
                encode_symbol(sym)
            except SchemaError as exc:
                problems.append(f"restricted[{i}] = {_show(sym)}: {exc}")
                continue
            if sym not in restricted:
                restricted.append(sym)

        spec = cls(
            defaults=MappingProxyType(defaults),
            modes=MappingProxyType(modes),
            instruments=tables["instruments"],
            accounts=tables["accounts"],
            venues=tables["venues"],
            sessions=tables["sessions"],
            restricted=tuple(restricted),
            description=description,
        )
        if not problems:
            problems += spec._band_problems()
        if problems:
            raise LimitsError(problems)
        return spec

    def _band_problems(self) -> list[str]:
        out = []
        for inst in self.instruments:
            bps = inst.params.get("band_bps", self.defaults["band_bps"])
            ticks = inst.params.get("band_ticks", self.defaults["band_ticks"])
            if bps == 0 and ticks == 0:
                out.append(
                    f"instruments.{inst.name}: band_bps and band_ticks are both 0 "
                    "(a price band needs one of them; disable the price_band rule instead)"
                )
        return out

    def validate_stored(self) -> None:
        """Re-check a spec read back from SQLite (the tables may have been edited by hand)."""
        problems: list[str] = []
        for key, param in DEFAULT_PARAMS.items():
            if key not in self.defaults:
                problems.append(f"defaults.{key}: missing")
            else:
                _check_range(f"defaults.{key}", self.defaults[key], param, problems)
        for table, params in _TABLE_PARAMS.items():
            seen: dict[int, str] = {}
            for ent in getattr(self, table):
                if not 0 <= ent.id < _MAX_ID[table] or ent.id in seen:
                    problems.append(f"{table}.{ent.name}.id = {ent.id}: out of range or reused")
                seen[ent.id] = ent.name
                for key, value in ent.params.items():
                    if key not in params:
                        problems.append(f"{table}.{ent.name}.{key}: unknown parameter")
                    else:
                        _check_range(f"{table}.{ent.name}.{key}", value, params[key], problems)
        problems += self._band_problems()
        if problems:
            raise LimitsError(problems)

    def to_document(self) -> dict[str, Any]:
        """The file form of this spec (money as currency units): from_document inverts it."""

        def entity(table: str, ent: EntityLimits) -> dict[str, Any]:
            params = _TABLE_PARAMS[table]
            out: dict[str, Any] = {"id": ent.id}
            out.update({k: _to_file_value(v, params[k]) for k, v in ent.params.items()})
            if ent.modes:
                out["modes"] = {k: _mode_name(m) for k, m in ent.modes.items()}
            return out

        doc: dict[str, Any] = {
            "defaults": {k: _to_file_value(v, DEFAULT_PARAMS[k]) for k, v in self.defaults.items()},
            "modes": {k: _mode_name(m) for k, m in self.modes.items()},
            "restricted": list(self.restricted),
        }
        if self.description:
            doc["description"] = self.description
        for table in _TABLE_PARAMS:
            ents = getattr(self, table)
            if ents:
                doc[table] = {e.name: entity(table, e) for e in ents}
        return doc

    def digest(self) -> str:
        """sha256 of the canonical JSON form: equal specs have equal digests."""
        text = json.dumps(self.to_document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _mode_name(mode: RuleMode) -> str:
    return next(name for name, m in MODE_NAMES.items() if m == mode)


def _parse_modes(path: str, raw: object, problems: list[str]) -> dict[str, RuleMode]:
    if not isinstance(raw, Mapping):
        problems.append(f"{path} = {_show(raw)}: must be a table of rule = mode")
        return {}
    out: dict[str, RuleMode] = {}
    structural = {r.name for r in RULES if not r.configurable}
    for rule, mode in raw.items():
        where = f"{path}.{rule}"
        if rule in structural:
            problems.append(f"{where}: rule {rule} is always enforced and takes no mode")
        elif rule not in CONFIGURABLE_RULES:
            problems.append(f"{where}: unknown rule (known: {', '.join(CONFIGURABLE_RULES)})")
        elif not isinstance(mode, str) or mode not in MODE_NAMES:
            problems.append(f"{where} = {_show(mode)}: must be one of {', '.join(MODE_NAMES)}")
        else:
            out[rule] = MODE_NAMES[mode]
    return out


def _parse_table(table: str, raw: object, problems: list[str]) -> tuple[EntityLimits, ...]:
    if not isinstance(raw, Mapping):
        problems.append(f"{table} = {_show(raw)}: must be a table of named entries")
        return ()
    params = _TABLE_PARAMS[table]
    out: list[EntityLimits] = []
    ids: dict[int, str] = {}
    for name, body in raw.items():
        where = f"{table}.{name}"
        if table == "instruments":
            try:
                encode_symbol(name)
            except SchemaError as exc:
                problems.append(f"{where}: {exc}")
                continue
        elif not (isinstance(name, str) and name and name.isascii() and name.isprintable()):
            problems.append(f"{where}: names are printable ASCII")
            continue
        if not isinstance(body, Mapping):
            problems.append(f"{where} = {_show(body)}: must be a table")
            continue
        ident = body.get("id")
        if ident is None:
            problems.append(f"{where}.id: missing (an integer id is required)")
            continue
        if isinstance(ident, bool) or not isinstance(ident, int):
            problems.append(f"{where}.id = {_show(ident)}: an integer id is required")
            continue
        if not 0 <= ident < _MAX_ID[table]:
            problems.append(f"{where}.id = {ident}: must be in [0, {_MAX_ID[table]})")
            continue
        if ident in ids:
            problems.append(f"{where}.id = {ident}: already used by {table}.{ids[ident]}")
            continue
        ids[ident] = name
        values: dict[str, int] = {}
        modes: dict[str, RuleMode] = {}
        for key, value in body.items():
            if key == "id":
                continue
            if key == "modes" and table in _HAS_MODES:
                modes = _parse_modes(f"{where}.modes", value, problems)
                continue
            param = params.get(key)
            if param is None:
                problems.append(f"{where}.{key}: unknown parameter")
                continue
            parsed = _parse_value(f"{where}.{key}", value, param, problems)
            if parsed is not None:
                values[key] = parsed
        out.append(EntityLimits(name, ident, MappingProxyType(values), MappingProxyType(modes)))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# The compiled snapshot
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Limits:
    """One limits version compiled for the C engine. Immutable: every array is read-only.

    Row k of `instruments` / `accounts` / `sessions` / `venues` holds id k; ids past the end of
    `accounts`, `sessions` and `venues` use the `*_default` row, ids past `instruments` (or
    rows with known = 0) are unknown instruments. Mode tables hold `RuleMode` values per
    `Rule` column; INHERIT (0) in the override tables means no override.
    """

    version: int
    spec: LimitsSpec
    instruments: I64
    accounts: I64
    account_default: I64
    sessions: I64
    session_default: I64
    venues: I64
    venue_default: I64
    modes_default: U8
    modes_venue: U8
    modes_instrument: U8
    symbols: Mapping[str, int]
    account_ids: Mapping[str, int]
    venue_ids: Mapping[str, int]
    session_ids: Mapping[str, int]

    def instrument_id(self, symbol: str) -> int:
        """The configured id of `symbol` (KeyError if not configured)."""
        return self.symbols[symbol]

    def mode(self, rule: Rule, *, venue_id: int = -1, instrument_id: int = -1) -> RuleMode:
        """The mode `rule` has for an order on this venue and instrument."""
        default = RuleMode(int(self.modes_default[rule]))
        venue = (
            RuleMode(int(self.modes_venue[venue_id, rule]))
            if 0 <= venue_id < self.modes_venue.shape[0]
            else RuleMode.INHERIT
        )
        inst = (
            RuleMode(int(self.modes_instrument[instrument_id, rule]))
            if 0 <= instrument_id < self.modes_instrument.shape[0]
            else RuleMode.INHERIT
        )
        return resolve_mode(default, venue, inst)


def _symbol_word(symbol: str) -> int:
    return int(np.frombuffer(encode_symbol(symbol), dtype="<i8")[0])


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


def compile_limits(spec: LimitsSpec, version: int) -> Limits:
    """Compile a validated spec into the arrays the C engine reads."""
    d = spec.defaults
    restricted = set(spec.restricted)
    n_instr = max((e.id for e in spec.instruments), default=-1) + 1
    instruments = np.zeros((max(n_instr, 1), len(INSTRUMENT_COLUMNS)), dtype=np.int64)
    modes_instrument = np.zeros((max(n_instr, 1), NUM_RULES), dtype=np.uint8)
    rule_col = {r.name: int(r.rule) for r in RULES}
    for e in spec.instruments:
        p = {k: e.params.get(k, d[k]) for k in _INSTRUMENT_PARAMS}
        instruments[e.id] = (
            1,
            _symbol_word(e.name),
            p["tick_size"],
            p["max_qty"],
            p["max_notional"],
            p["band_bps"],
            p["band_ticks"],
            p["max_ref_age_ns"],
            int(e.name in restricted),
        )
        for rule, mode in e.modes.items():
            modes_instrument[e.id, rule_col[rule]] = mode

    def account_row(params: Mapping[str, int]) -> list[int]:
        return [params.get(k, 0 if k in _ACCOUNT_OPTIONAL else d[k]) for k in ACCOUNT_COLUMNS]

    account_default = np.array(account_row({}), dtype=np.int64)
    n_acct = max((e.id for e in spec.accounts), default=-1) + 1
    accounts = np.tile(account_default, (max(n_acct, 1), 1))
    for e in spec.accounts:
        accounts[e.id] = account_row(e.params)

    def throttle(prefix: str, ents: tuple[EntityLimits, ...]) -> tuple[I64, I64]:
        default = np.array([d[f"{prefix}_{k}"] for k in THROTTLE_COLUMNS], dtype=np.int64)
        n = max((e.id for e in ents), default=-1) + 1
        rows = np.tile(default, (max(n, 1), 1))
        for e in ents:
            rows[e.id] = [e.params.get(k, d[f"{prefix}_{k}"]) for k in THROTTLE_COLUMNS]
        return rows, default

    sessions, session_default = throttle("session", spec.sessions)
    venues, venue_default = throttle("venue", spec.venues)
    modes_venue = np.zeros((venues.shape[0], NUM_RULES), dtype=np.uint8)
    for e in spec.venues:
        for rule, mode in e.modes.items():
            modes_venue[e.id, rule_col[rule]] = mode
    modes_default = np.full(NUM_RULES, RuleMode.ENFORCE, dtype=np.uint8)
    for rule, mode in spec.modes.items():
        modes_default[rule_col[rule]] = mode

    return Limits(
        version=version,
        spec=spec,
        instruments=_frozen(instruments),
        accounts=_frozen(accounts),
        account_default=_frozen(account_default),
        sessions=_frozen(sessions),
        session_default=_frozen(session_default),
        venues=_frozen(venues),
        venue_default=_frozen(venue_default),
        modes_default=_frozen(modes_default),
        modes_venue=_frozen(modes_venue),
        modes_instrument=_frozen(modes_instrument),
        symbols=MappingProxyType({e.name: e.id for e in spec.instruments}),
        account_ids=MappingProxyType({e.name: e.id for e in spec.accounts}),
        venue_ids=MappingProxyType({e.name: e.id for e in spec.venues}),
        session_ids=MappingProxyType({e.name: e.id for e in spec.sessions}),
    )


# --------------------------------------------------------------------------------------------
# The SQLite store
# --------------------------------------------------------------------------------------------

_ENTITY_TABLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "instruments": "limits_instruments",
        "accounts": "limits_accounts",
        "venues": "limits_venues",
        "sessions": "limits_sessions",
    }
)


def _schema_sql() -> list[str]:
    stmts = [
        "CREATE TABLE IF NOT EXISTS limits_version ("
        " version INTEGER PRIMARY KEY, applied_unix_ns INTEGER NOT NULL,"
        " source TEXT NOT NULL, sha256 TEXT NOT NULL, description TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS limits_defaults ("
        " param TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS limits_restricted (symbol TEXT PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS limits_rule_modes ("
        " scope TEXT NOT NULL CHECK (scope IN ('default', 'venues', 'instruments')),"
        " name TEXT NOT NULL, rule TEXT NOT NULL, mode TEXT NOT NULL,"
        " PRIMARY KEY (scope, name, rule))",
    ]
    for table, sql_table in _ENTITY_TABLES.items():
        cols = ", ".join(f"{k} INTEGER" for k in _TABLE_PARAMS[table])
        stmts.append(
            f"CREATE TABLE IF NOT EXISTS {sql_table} ("
            f" name TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE, {cols})"
        )
    return stmts


@dataclass(frozen=True)
class LimitsVersion:
    """One row of the version history."""

    version: int
    applied_unix_ns: int
    source: str
    sha256: str
    description: str


def _write_spec(conn: sqlite3.Connection, spec: LimitsSpec) -> None:
    """Replace every limits table's rows with `spec` (inside the caller's transaction)."""
    for sql_table in (
        "limits_defaults",
        "limits_restricted",
        "limits_rule_modes",
        *_ENTITY_TABLES.values(),
    ):
        conn.execute(f"DELETE FROM {sql_table}")
    conn.executemany(
        "INSERT INTO limits_defaults (param, value) VALUES (?, ?)", sorted(spec.defaults.items())
    )
    conn.executemany(
        "INSERT INTO limits_restricted (symbol) VALUES (?)", [(s,) for s in spec.restricted]
    )
    mode_rows = [("default", "", rule, _mode_name(m)) for rule, m in spec.modes.items()]
    for table, sql_table in _ENTITY_TABLES.items():
        keys = list(_TABLE_PARAMS[table])
        placeholders = ", ".join("?" for _ in range(len(keys) + 2))
        rows = []
        for e in getattr(spec, table):
            rows.append((e.name, e.id, *(e.params.get(k) for k in keys)))
            mode_rows += [(table, e.name, rule, _mode_name(m)) for rule, m in e.modes.items()]
        conn.executemany(
            f"INSERT INTO {sql_table} (name, id, {', '.join(keys)}) VALUES ({placeholders})",
            rows,
        )
    conn.executemany(
        "INSERT INTO limits_rule_modes (scope, name, rule, mode) VALUES (?, ?, ?, ?)", mode_rows
    )


def _read_spec(conn: sqlite3.Connection, description: str) -> LimitsSpec:
    defaults = dict(conn.execute("SELECT param, value FROM limits_defaults").fetchall())
    modes_rows = conn.execute("SELECT scope, name, rule, mode FROM limits_rule_modes").fetchall()
    problems: list[str] = []
    modes: dict[tuple[str, str], dict[str, RuleMode]] = {}
    for scope, name, rule, mode in modes_rows:
        if rule not in CONFIGURABLE_RULES or mode not in MODE_NAMES:
            problems.append(f"limits_rule_modes: {scope}.{name}.{rule} = {mode!r} is invalid")
            continue
        modes.setdefault((scope, name), {})[rule] = MODE_NAMES[mode]
    tables: dict[str, tuple[EntityLimits, ...]] = {}
    for table, sql_table in _ENTITY_TABLES.items():
        keys = list(_TABLE_PARAMS[table])
        ents = []
        for row in conn.execute(f"SELECT name, id, {', '.join(keys)} FROM {sql_table} ORDER BY id"):
            params = {k: int(v) for k, v in zip(keys, row[2:], strict=True) if v is not None}
            ents.append(
                EntityLimits(
                    row[0],
                    int(row[1]),
                    MappingProxyType(params),
                    MappingProxyType(modes.get((table, row[0]), {})),
                )
            )
        tables[table] = tuple(ents)
    default_modes = dict.fromkeys(CONFIGURABLE_RULES, RuleMode.ENFORCE)
    default_modes.update(modes.get(("default", ""), {}))
    restricted = tuple(r[0] for r in conn.execute("SELECT symbol FROM limits_restricted"))
    if problems:
        raise LimitsError(problems)
    spec = LimitsSpec(
        defaults=MappingProxyType({k: int(v) for k, v in defaults.items()}),
        modes=MappingProxyType(default_modes),
        instruments=tables["instruments"],
        accounts=tables["accounts"],
        venues=tables["venues"],
        sessions=tables["sessions"],
        restricted=restricted,
        description=description,
    )
    spec.validate_stored()
    return spec


def parse_limits_file(path: str | Path) -> dict[str, Any]:
    """Read a .toml or .json limits file into a document (LimitsError if unreadable)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LimitsError([f"{p}: cannot read: {exc}"]) from exc
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise LimitsError([f"{p}: the JSON document must be an object"])
            return doc
    except tomllib.TOMLDecodeError as exc:
        raise LimitsError([f"{p}: not valid TOML: {exc}"]) from exc
    except json.JSONDecodeError as exc:
        raise LimitsError([f"{p}: not valid JSON: {exc}"]) from exc
    raise LimitsError([f"{p}: limits files are .toml or .json"])


class LimitsStore:
    """Versioned limits in one SQLite file.

    Every operation opens its own connection, so a store may be used from several threads
    (a reloader and an evaluator). The database runs in WAL mode: `load` reads one
    consistent snapshot inside a read transaction while a writer commits the next version.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for stmt in _schema_sql():
                conn.execute(stmt)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    def version(self) -> int:
        """The current version, 0 when no limits were ever applied."""
        with self._connect() as conn:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM limits_version").fetchone()
        return int(row[0])

    def history(self) -> list[LimitsVersion]:
        """Every applied version, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT version, applied_unix_ns, source, sha256, description "
                "FROM limits_version ORDER BY version"
            ).fetchall()
        return [LimitsVersion(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]

    def load(self) -> Limits:
        """The current version, compiled. LimitsError when nothing was applied yet (an
        engine without limits must not start: fail closed) or the stored rows are invalid."""
        with self._connect() as conn:
            conn.execute("BEGIN")  # one read snapshot for every table
            try:
                row = conn.execute(
                    "SELECT version, description FROM limits_version ORDER BY version DESC LIMIT 1"
                ).fetchone()
                if row is None:
                    raise LimitsError([f"{self.path}: no limits have been applied"])
                spec = _read_spec(conn, row[1])
            finally:
                conn.execute("COMMIT")
        return compile_limits(spec, int(row[0]))

    def apply_file(self, path: str | Path) -> int:
        """Validate a .toml/.json limits file and make it the next version, atomically.
        Returns the new version; LimitsError (old limits kept) if anything is wrong."""
        return self.apply_document(parse_limits_file(path), source=str(path))

    def apply_document(self, doc: Mapping[str, Any], *, source: str = "<document>") -> int:
        """Like apply_file for an already parsed document."""
        spec = LimitsSpec.from_document(doc)
        return self.apply_spec(spec, source=source)

    def apply_spec(self, spec: LimitsSpec, *, source: str = "<spec>") -> int:
        """Store a validated spec as the next version in one transaction."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading the version
            try:
                current = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM limits_version"
                ).fetchone()[0]
                _write_spec(conn, spec)
                version = int(current) + 1
                conn.execute(
                    "INSERT INTO limits_version "
                    "(version, applied_unix_ns, source, sha256, description) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (version, time.time_ns(), source, spec.digest(), spec.description),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return version
