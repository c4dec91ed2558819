"""Tectra configuration: one TOML file → frozen, validated dataclasses.

This module owns the config schema (every key, its type, default and meaning), its validation,
and the loading of the packaged default ``tectra/config/tectra.toml``.

Design:

* Every section is a frozen dataclass; every field is declared with :func:`setting`, which
  carries the field's documentation and its parser. The parser is table-driven: one generic
  routine walks a dataclass's fields, so adding a section (``[feed]``, ``[risk]``, ...) means
  writing one dataclass and adding one field to :class:`TectraConfig` — no parsing code.
* Unknown keys are errors, so a typo never passes silently. Every error is a
  :class:`ConfigError` naming the dotted key (``roles.feed.cpus[1]``), the bad value and why.
* ``docs/configuration.md`` documents every key; :func:`config_keys` lists them from the
  schema itself so a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

__all__ = [
    "KNOWN_ROLES",
    "ApplianceConfig",
    "ConfigError",
    "ConfigKey",
    "KillConfig",
    "KillTriggerConfig",
    "MetricsConfig",
    "MgmtConfig",
    "RingConfig",
    "RoleConfig",
    "TectraConfig",
    "config_keys",
    "load_config",
    "parse_config",
]

#: Roles a process can run as (``tectra run ROLE``). publisher/consumer are the demo's ring roles.
KNOWN_ROLES: Final = ("feed", "gateway", "kill", "journal", "mgmtd", "publisher", "consumer")

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
RING_KINDS: Final = ("spsc", "mpmc")
RING_POLICIES: Final = ("overwrite", "backpressure")

# Bounds the ring implementation can honour: indices are 64-bit, slots live in one shm file.
RING_CAPACITY_MIN: Final = 2
RING_CAPACITY_MAX: Final = 1 << 30

DEFAULT_STATE_DIR: Final = Path("/var/lib/tectra")
DEFAULT_SHM_ROOT: Final = Path("/dev/shm/tectra")

_PACKAGED_DEFAULT: Final = "config/tectra.toml"
# Names that become file names (/dev/shm/tectra/<ring>) and metric labels: no separators, no dots.
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class _Missing:
    """Stands for a required key that is absent (shown as ``<missing>`` in errors)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING_VALUE: Final = _Missing()


class ConfigError(ValueError):
    """A bad configuration: names the dotted key, the offending value and the reason."""

    def __init__(self, key: str, value: object, reason: str, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        what = f"{key} = {value!r}" if key else f"{value!r}"
        super().__init__(f"{where}{what}: {reason}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, attributed to ``source`` (the file it came from)."""
        return ConfigError(self.key, self.value, self.reason, source)


# --------------------------------------------------------------------------------------------
# Field parsers. Each takes the raw TOML value and its dotted key, returns the typed value or
# raises ConfigError. TOML booleans are Python ints, so every numeric parser rejects bool first.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What parsers may consult beyond the value itself (kept explicit for tests)."""

    cpu_count: int


Parser = Callable[[object, str, _Context], object]


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, f"expected a string, got {type(value).__name__}")
    return value


def _name(value: object, key: str, _ctx: _Context) -> str:
    s = _string(value, key)
    if not _NAME_RE.match(s):
        raise ConfigError(key, value, "expected 1-64 characters of [A-Za-z0-9_-]")
    return s


def _choice(*options: str) -> Parser:
    def parse(value: object, key: str, _ctx: _Context) -> str:
        s = _string(value, key)
        if s not in options:
            raise ConfigError(key, value, f"expected one of: {', '.join(options)}")
        return s

    return parse


def _integer(lo: int, hi: int | None = None) -> Parser:
    def parse(value: object, key: str, _ctx: _Context) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, f"expected an integer, got {type(value).__name__}")
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ConfigError(key, value, f"out of range (expected {bound})")
        return value

    return parse


def _text_value(value: object, key: str, _ctx: _Context) -> str:
    text = _string(value, key)
    if not text.isprintable():
        raise ConfigError(key, value, "must be printable text")
    return text


def _seconds(value: object, key: str, _ctx: _Context) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, value, f"expected a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(key, value, "expected a finite number >= 0")
    return float(value)


def _abs_path(value: object, key: str, _ctx: _Context) -> Path:
    s = _string(value, key)
    if not s or "\0" in s:
        raise ConfigError(key, value, "expected a non-empty path")
    p = Path(s)
    # Services run from systemd with an unspecified working directory: relative paths would
    # resolve somewhere surprising.
    if not p.is_absolute():
        raise ConfigError(key, value, "expected an absolute path")
    return p


def _host(value: object, key: str, _ctx: _Context) -> str:
    s = _string(value, key)
    try:
        ipaddress.ip_address(s)
    except ValueError:
        if not _HOSTNAME_RE.match(s):
            raise ConfigError(key, value, "expected an IP address or a host name") from None
    return s


def _cpus(value: object, key: str, ctx: _Context) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, value, f"expected a list of CPU numbers, got {type(value).__name__}")
    seen: set[int] = set()
    for i, cpu in enumerate(value):
        item = f"{key}[{i}]"
        if isinstance(cpu, bool) or not isinstance(cpu, int):
            raise ConfigError(item, cpu, f"expected a CPU number, got {type(cpu).__name__}")
        if not 0 <= cpu < ctx.cpu_count:
            raise ConfigError(
                item,
                cpu,
                f"CPU out of range 0..{ctx.cpu_count - 1} (os.cpu_count() = {ctx.cpu_count})",
            )
        if cpu in seen:
            raise ConfigError(item, cpu, "CPU listed twice")
        seen.add(cpu)
    return tuple(value)


def _power_of_two(lo: int, hi: int) -> Parser:
    as_int = _integer(lo, hi)

    def parse(value: object, key: str, ctx: _Context) -> int:
        n = as_int(value, key, ctx)
        assert isinstance(n, int)
        # Rings index slots with `seq & (capacity - 1)`: only powers of two make that a modulo.
        if n & (n - 1):
            raise ConfigError(key, value, "expected a power of two")
        return n

    return parse


def _bool(value: object, key: str, _ctx: _Context) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, f"expected true or false, got {type(value).__name__}")
    return value


def _optional_ip(value: object, key: str, _ctx: _Context) -> str:
    """An IP address, or "" for none."""
    s = _string(value, key)
    if s:
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise ConfigError(key, value, "expected an IP address or an empty string") from None
    return s


def _optional_name(value: object, key: str, ctx: _Context) -> str:
    """A name of [A-Za-z0-9_-], or "" for none (e.g. no network namespace)."""
    return _name(value, key, ctx) if value != "" else ""


def _identifier(value: object, key: str, _ctx: _Context) -> str:
    s = _string(value, key)
    if not (s.isidentifier() and s.isascii()):
        raise ConfigError(key, value, "expected an ASCII identifier (a schema layout name)")
    return s


T = TypeVar("T")


def setting(default: Any = MISSING, *, doc: str, parse: Parser) -> Any:
    """Declare a config key: its default (omit for a required key), documentation and parser."""
    meta = {"doc": doc, "parse": parse}
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults are not allowed; use a tuple")
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------
# Sections. Add a section: write a frozen dataclass of `setting`s, then add one `section(...)`
# or `named_sections(...)` field to TectraConfig. Nothing else changes.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplianceConfig:
    """``[appliance]``: what this appliance is called and where it keeps its state."""

    name: str = setting("tectra", doc="Appliance name, carried in logs and metrics.", parse=_name)
    # setting() returns a dataclasses.field spec; Path defaults are immutable (hence noqa).
    state_dir: Path = setting(  # noqa: RUF009
        DEFAULT_STATE_DIR,
        doc="Directory for journals, stores and ledgers (absolute path).",
        parse=_abs_path,
    )
    shm_root: Path = setting(  # noqa: RUF009
        DEFAULT_SHM_ROOT,
        doc="Directory of the shared-memory rings; ring NAME lives at SHM_ROOT/NAME.",
        parse=_abs_path,
    )
    log_level: str = setting(
        "info",
        doc="Lowest log level emitted: debug, info, warning or error.",
        parse=_choice(*LOG_LEVELS),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """``[metrics]``: the per-process Prometheus / health endpoint."""

    host: str = setting(
        "127.0.0.1",
        doc="Bind address of every role's /metrics and /health endpoint (IP or host name).",
        parse=_host,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleConfig:
    """``[roles.NAME]``: how one role process runs."""

    cpus: tuple[int, ...] = setting(
        (),
        doc="CPUs the role's process is pinned to (os.sched_setaffinity); empty = no pinning. "
        "Each must be in 0..os.cpu_count()-1, no repeats.",
        parse=_cpus,
    )
    metrics_port: int = setting(
        0,
        doc="TCP port of the role's /metrics endpoint; 0 = pick a free port. "
        "Non-zero ports must be unique across roles.",
        parse=_integer(0, 65535),
    )
    watchdog_s: float = setting(
        10.0,
        doc="systemd watchdog interval hint in seconds: the role must ping the watchdog "
        "(WATCHDOG=1) within it; 0 disables.",
        parse=_seconds,
    )
    warmup_ticks: int = setting(
        10_000,
        doc="Synthetic ticks pushed through the hot path during WARMUP, before READY.",
        parse=_integer(0),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RingConfig:
    """``[rings.NAME]``: one shared-memory ring."""

    capacity: int = setting(
        4096,
        doc=f"Number of record slots; a power of two in {RING_CAPACITY_MIN}..{RING_CAPACITY_MAX}.",
        parse=_power_of_two(RING_CAPACITY_MIN, RING_CAPACITY_MAX),
    )
    kind: str = setting(
        "spsc",
        doc="spsc (one producer, one consumer) or mpmc (many of each).",
        parse=_choice(*RING_KINDS),
    )
    policy: str = setting(
        "backpressure",
        doc="overwrite (producer never blocks; a lagging consumer sees counted overruns — market "
        "data) or backpressure (push on a full ring is refused — orders).",
        parse=_choice(*RING_POLICIES),
    )
    record: str = setting(
        doc="Name of the record layout in tectra.schema (e.g. RING_PROBE). Required; checked "
        "here as an identifier and resolved by the ring's user.",
        parse=_identifier,
    )


FEED_IO_PATHS: Final = ("auto", "xdp", "uring", "socket")
XDP_MODES: Final = ("auto", "native", "generic")
FSYNC_POLICIES: Final = ("always", "batch", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedConfig:
    """``[feed]``: the market-data feed handler (``tectra run feed``)."""

    io: str = setting(
        "auto",
        doc="Receive path: xdp (AF_XDP behind an XDP steering program), uring (io_uring batched "
        "recv), socket (recvmmsg), or auto (the first that works, in that order).",
        parse=_choice(*FEED_IO_PATHS),
    )
    interface: str = setting(
        "lo", doc="Network interface the venue's feed arrives on.", parse=_name
    )
    netns: str = setting(
        "",
        doc="Network namespace of the interface; empty = the process's own.",
        parse=_optional_name,
    )
    bind_address: str = setting(
        "0.0.0.0", doc="Local address the socket paths bind to.", parse=_optional_ip
    )
    udp_port: int = setting(
        26400, doc="UDP destination port of the feed (MoldUDP64).", parse=_integer(1, 65535)
    )
    multicast_group: str = setting(
        "", doc="Multicast group of the feed; empty = unicast.", parse=_optional_ip
    )
    retrans_host: str = setting(
        "127.0.0.1",
        doc="Address of the venue's MoldUDP64 retransmission request server.",
        parse=_optional_ip,
    )
    retrans_port: int = setting(
        26401, doc="UDP port of the retransmission request server.", parse=_integer(1, 65535)
    )
    retrans_timeout_s: float = setting(
        0.05, doc="How long to wait for a retransmission before asking again.", parse=_seconds
    )
    retrans_max_retries: int = setting(
        5,
        doc="Requests per gap before the gap is declared lost (feed goes DEGRADED).",
        parse=_integer(0, 1000),
    )
    xdp_mode: str = setting(
        "auto",
        doc="XDP attach mode: native (driver), generic (skb), or auto (native, then "
        "generic); the mode actually attached is logged and exported.",
        parse=_choice(*XDP_MODES),
    )
    busy_poll: bool = setting(False, doc="AF_XDP busy polling (SO_BUSY_POLL).", parse=_bool)
    batch: int = setting(64, doc="Frames per receive batch.", parse=_integer(1, 4096))
    umem_frames: int = setting(
        4096, doc="AF_XDP UMEM frames (power of two).", parse=_power_of_two(64, 1 << 20)
    )
    frame_size: int = setting(
        2048, doc="AF_XDP UMEM frame size in bytes (2048 or 4096).", parse=_integer(2048, 4096)
    )
    md_ring: str = setting(
        "md",
        doc="Prefix of the feed's output rings: PREFIX-book (BOOK_UPDATE), PREFIX-tick "
        "(TICK), PREFIX-trade (TRADE), each a [rings.NAME] table.",
        parse=_identifier,
    )
    refs_table: str = setting(
        "refs",
        doc="Shared-memory top-of-book reference table (shm_root/NAME) for risk.",
        parse=_name,
    )
    stale_after_s: float = setting(
        5.0,
        doc="An instrument with no update for this long is stale (risk rejects on it).",
        parse=_seconds,
    )
    snapshot_interval_s: float = setting(
        10.0, doc="Seconds between durable book snapshots; 0 disables.", parse=_seconds
    )
    capture: bool = setting(
        False,
        doc="Journal every receive batch (raw packets) and the records it produced under "
        "STATE_DIR/journal/feed, for exact replay (`tectra journal replay`).",
        parse=_bool,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalConfig:
    """``[journal]``: append-only checksummed journal segments (``tectra run journal``)."""

    ring: str = setting(
        "journal",
        doc="Ring (a [rings.NAME] table) producers hand journal records to.",
        parse=_identifier,
    )
    segment_max_bytes: int = setting(
        64 << 20, doc="Rotate a segment when it reaches this size.", parse=_integer(4096)
    )
    segment_max_age_s: float = setting(
        3600.0, doc="Rotate a segment when it is this old; 0 = size only.", parse=_seconds
    )
    fsync: str = setting(
        "batch",
        doc="Durability: always (fsync before an append is acknowledged), batch "
        "(fsync every batch_interval_s), none (page cache; survives a process crash, not a "
        "power loss).",
        parse=_choice(*FSYNC_POLICIES),
    )
    batch_interval_s: float = setting(0.01, doc="fsync period under fsync = batch.", parse=_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """``[demo]``: the ring demo's publisher and consumer roles (``make demo``)."""

    ring: str = setting(
        "demo",
        doc="Ring (a [rings.NAME] table) the publisher writes and the consumer reads.",
        parse=_identifier,
    )
    rate: int = setting(
        1_000_000,
        doc="Records per second the publisher offers; 0 = as fast as it can.",
        parse=_integer(0),
    )
    batch: int = setting(256, doc="Records per push (one batch).", parse=_integer(1, 65536))


class _FrozenMap(Mapping[str, T]):
    """A read-only, picklable name → section mapping (MappingProxyType does not pickle)."""

    __slots__ = ("_d",)

    def __init__(self, items: Mapping[str, T] | None = None) -> None:
        self._d: dict[str, T] = dict(items or {})

    def __getitem__(self, key: str) -> T:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: {v!r}' for k, v in self._d.items())}}}"

    def __hash__(self) -> int:
        return hash(tuple(self._d.items()))

    def __getstate__(self) -> dict[str, T]:
        return self._d

    def __setstate__(self, state: dict[str, T]) -> None:
        self._d = state


KILL_TRIGGERS: Final = (
    "estop",
    "reject_rate",
    "stale_md",
    "latency",
    "exposure",
    "venue_down",
    "max_loss",
    "max_drawdown",
)
KILL_TRIGGER_ACTIONS: Final = ("block", "cancel", "slow")
_SUBJECT_RE: Final = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_VENUE_RE: Final = re.compile(
    r"^(?P<name>[A-Za-z0-9_-]{1,16})=(?P<id>\d+)@(?P<addr>[0-9.]+)(?::(?P<port>\d+))?$"
)


def _optional_abs_path(value: object, key: str, ctx: _Context) -> Path | None:
    """An absolute path, or "" for the documented default."""
    if value == "":
        return None
    return _abs_path(value, key, ctx)


def _nats_url(value: object, key: str, _ctx: _Context) -> str:
    s = _string(value, key)
    if s and not re.match(r"^(nats|tls)://[^\s/]+(:\d+)?$", s):
        raise ConfigError(key, value, "expected nats://HOST:PORT (or tls://), or empty for none")
    return s


def _subject(value: object, key: str, _ctx: _Context) -> str:
    s = _string(value, key)
    if not _SUBJECT_RE.match(s):
        raise ConfigError(
            key, value, "expected NATS subject tokens of [A-Za-z0-9_-] joined by dots"
        )
    return s


def _short_names(value: object, key: str, _ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, value, f"expected a list of names, got {type(value).__name__}")
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not re.match(r"^[A-Za-z0-9_.-]{1,16}$", item):
            raise ConfigError(f"{key}[{i}]", item, "expected 1-16 characters of [A-Za-z0-9_.-]")
        if item in seen:
            raise ConfigError(f"{key}[{i}]", item, "listed twice")
        seen.add(item)
    return tuple(value)


def _venue_specs(value: object, key: str, _ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, value, f"expected a list of venue specs, got {type(value).__name__}")
    names: set[str] = set()
    for i, item in enumerate(value):
        m = _VENUE_RE.match(item) if isinstance(item, str) else None
        if m is None:
            raise ConfigError(f"{key}[{i}]", item, "expected NAME=ID@IPV4[:PORT]")
        try:
            ipaddress.IPv4Address(m["addr"])
        except ValueError:
            raise ConfigError(f"{key}[{i}]", item, "not an IPv4 address") from None
        if m["port"] is not None and not 0 < int(m["port"]) < 65536:
            raise ConfigError(f"{key}[{i}]", item, "port out of range 1..65535")
        if not 0 < int(m["id"]) < (1 << 32):
            raise ConfigError(f"{key}[{i}]", item, "venue id out of range 1..2^32-1")
        if m["name"] in names:
            raise ConfigError(f"{key}[{i}]", item, "venue named twice")
        names.add(m["name"])
    return tuple(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class KillTriggerConfig:
    """``[kill.triggers.<name>]``: one kill-switch trigger."""

    armed: bool = setting(False, doc="Evaluate and act (false: values only).", parse=_bool)
    dry_run: bool = setting(
        False, doc="Fire into the ledger only, no action (drills).", parse=_bool
    )
    threshold: float = setting(
        0.0,
        doc="Limit the value must exceed to fire (unit per trigger: docs/kill-switch.md).",
        parse=_seconds,
    )
    window_s: float = setting(1.0, doc="Observation window in seconds.", parse=_seconds)
    min_samples: int = setting(
        1, doc="Observations needed in the window before the trigger may fire.", parse=_integer(1)
    )
    action: str = setting(
        "block",
        doc="What a firing does in the firing key's scope: block, cancel or slow.",
        parse=_choice(*KILL_TRIGGER_ACTIONS),
    )

    def _validate(self, key: str) -> None:
        if self.window_s <= 0:
            raise ConfigError(f"{key}.window_s", self.window_s, "must be > 0")


def _kill_triggers(value: object, key: str, ctx: _Context) -> _FrozenMap[KillTriggerConfig]:
    table = _expect_table(value, key)
    out: dict[str, KillTriggerConfig] = {}
    for name, raw in table.items():
        sub = f"{key}.{name}"
        if name not in KILL_TRIGGERS:
            raise ConfigError(sub, raw, _unknown(name, KILL_TRIGGERS, "unknown trigger"))
        out[name] = _parse_table(KillTriggerConfig, raw, sub, ctx)
    return _FrozenMap(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class KillConfig:
    """``[kill]``: the kill switch (``tectra run kill``)."""

    control_block: str = setting(
        "kill",
        doc="Shared-memory kill control block (shm_root/NAME) every gateway reads per order.",
        parse=_name,
    )
    ledger: Path | None = setting(  # noqa: RUF009
        None,
        doc='Hash-chained kill ledger file; "" = STATE_DIR/kill/ledger.jsonl.',
        parse=_optional_abs_path,
    )
    state_file: Path | None = setting(  # noqa: RUF009
        None,
        doc='Persisted kill state (restored at start: halted stays halted); "" = '
        "STATE_DIR/kill/state.json.",
        parse=_optional_abs_path,
    )
    nats_url: str = setting(
        "",
        doc="NATS server for fan-out to other hosts (nats://HOST:PORT); empty = local only.",
        parse=_nats_url,
    )
    subject_prefix: str = setting(
        "tectra.kill",
        doc="NATS subject prefix: PREFIX.<appliance>.cmd.<scope> and PREFIX.<appliance>.ack.",
        parse=_subject,
    )
    subscribers: tuple[str, ...] = setting(
        (),
        doc="Subscriber names (gateways, remote kill mirrors) expected to ack every command; "
        "one that does not ack in time is reported by name.",
        parse=_short_names,
    )
    ack_timeout_s: float = setting(
        0.25, doc="Default deadline for acks of a kill command.", parse=_seconds
    )
    ack_retry_s: float = setting(
        0.05,
        doc="Re-send a command to subscribers that have not acked after this long; 0 = never.",
        parse=_seconds,
    )
    confirm_timeout_s: float = setting(
        5.0,
        doc="How long subscribers report venue cancel confirmations after a kill.",
        parse=_seconds,
    )
    slow_max_orders_per_s: int = setting(
        10, doc="Order-rate cap per session that SLOW asks gateways for.", parse=_integer(1)
    )
    evaluate_interval_s: float = setting(
        0.05, doc="Period of trigger evaluation in the kill role.", parse=_seconds
    )
    estop_file: Path | None = setting(  # noqa: RUF009
        None,
        doc='E-stop input: the estop trigger fires while this file exists; "" = '
        "STATE_DIR/run/kill.estop.",
        parse=_optional_abs_path,
    )
    venues: tuple[str, ...] = setting(
        (),
        doc="Venues as NAME=ID@IPV4[:PORT]: names for scope_name, addresses for ISOLATE_VENUE.",
        parse=_venue_specs,
    )
    egress_interface: str = setting(
        "",
        doc="Interface venue traffic leaves by, where the TC egress guard attaches for "
        "ISOLATE_VENUE; empty = no kernel isolation (reported as unavailable).",
        parse=_optional_name,
    )
    egress_netns: str = setting(
        "",
        doc="Network namespace of egress_interface; empty = the role's own.",
        parse=_optional_name,
    )
    mirror: bool = setting(
        False,
        doc="Also apply kill commands other appliances publish on NATS to this host's control "
        "block (and ack them as APPLIANCE-kill).",
        parse=_bool,
    )
    triggers: Mapping[str, KillTriggerConfig] = setting(
        _FrozenMap(),
        doc="[kill.triggers.<name>] tables (estop, reject_rate, stale_md, latency, exposure, "
        "venue_down, max_loss, max_drawdown), each with armed, dry_run, threshold, window_s, "
        "min_samples, action.",
        parse=_kill_triggers,
    )


def section(cls: type[Any], *, doc: str) -> Any:
    """A ``[name]`` table parsed into ``cls``; absent → all of ``cls``'s defaults."""

    def parse(value: object, key: str, ctx: _Context) -> object:
        return _parse_table(cls, value, key, ctx)

    return field(default_factory=cls, metadata={"doc": doc, "parse": parse, "section": cls})


def named_sections(
    cls: type[Any], *, doc: str, names: tuple[str, ...] | None = None, what: str = "name"
) -> Any:
    """``[name.X]`` tables, each parsed into ``cls``; ``names`` restricts X when given."""

    def parse(value: object, key: str, ctx: _Context) -> _FrozenMap[Any]:
        table = _expect_table(value, key)
        out: dict[str, object] = {}
        for sub, raw in table.items():
            sub_key = f"{key}.{sub}"
            if names is not None and sub not in names:
                raise ConfigError(sub_key, raw, _unknown(sub, names, f"unknown {what}"))
            _name(sub, sub_key, ctx)
            out[sub] = _parse_table(cls, raw, sub_key, ctx)
        return _FrozenMap(out)

    return field(
        default_factory=_FrozenMap,
        metadata={"doc": doc, "parse": parse, "section": cls, "named": what},
    )


MGMT_ROLES: Final = ("viewer", "operator", "risk-officer", "admin")
_USER_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


def _role_map(key_kind: str) -> Parser:
    """A table identity -> role (`viewer`, `operator`, `risk-officer`, `admin`), kept as a
    sorted tuple of pairs so the config stays frozen and hashable."""

    def parse(value: object, key: str, _ctx: _Context) -> tuple[tuple[str, str], ...]:
        table = _expect_table(value, key)
        out: list[tuple[str, str]] = []
        for ident, role in table.items():
            item = f"{key}.{ident}"
            if key_kind == "user" and not _USER_KEY_RE.match(ident):
                raise ConfigError(item, ident, "expected a user name or a numeric uid")
            if key_kind == "cn" and not 0 < len(ident) <= 64:
                raise ConfigError(item, ident, "expected a certificate CN of 1-64 characters")
            if role not in MGMT_ROLES:
                raise ConfigError(item, role, f"expected one of: {', '.join(MGMT_ROLES)}")
            out.append((ident, str(role)))
        return tuple(sorted(out))

    return parse


@dataclass(frozen=True, slots=True, kw_only=True)
class MgmtConfig:
    """``[mgmt]``: tectra-mgmtd, its listeners, identities and audit trail."""

    socket: Path | None = setting(  # noqa: RUF009
        None,
        doc="Local unix socket of tectra-mgmtd (callers identified by SO_PEERCRED uid); "
        '"" = STATE_DIR/run/mgmt.sock.',
        parse=_optional_abs_path,
    )
    tls: bool = setting(
        False,
        doc="Also listen on TCP with mutual TLS (needs tls_cert, tls_key and tls_client_ca).",
        parse=_bool,
    )
    listen_host: str = setting("127.0.0.1", doc="Address of the mutual-TLS listener.", parse=_host)
    listen_port: int = setting(
        9443, doc="Port of the mutual-TLS listener; 0 = pick a free port.", parse=_integer(0, 65535)
    )
    tls_cert: Path | None = setting(  # noqa: RUF009
        None,
        doc='Server certificate (PEM); "" = STATE_DIR/mgmt/tls/server.pem.',
        parse=_optional_abs_path,
    )
    tls_key: Path | None = setting(  # noqa: RUF009
        None,
        doc='Server private key (PEM); "" = STATE_DIR/mgmt/tls/server.key.',
        parse=_optional_abs_path,
    )
    tls_client_ca: Path | None = setting(  # noqa: RUF009
        None,
        doc='CA (PEM) client certificates must chain to; "" = STATE_DIR/mgmt/tls/ca.pem.',
        parse=_optional_abs_path,
    )
    uid_roles: tuple[tuple[str, str], ...] = setting(
        (("root", "admin"),),
        doc="Local callers: user name or numeric uid -> role (viewer, operator, "
        "risk-officer, admin). A numeric entry wins over a name. Unlisted: no role.",
        parse=_role_map("user"),
    )
    cert_roles: tuple[tuple[str, str], ...] = setting(
        (),
        doc="TLS callers: client certificate subject CN -> role. Unlisted: no role.",
        parse=_role_map("cn"),
    )
    audit_log: Path | None = setting(  # noqa: RUF009
        None,
        doc="Append-only audit trail (JSON lines, fsync per record); "
        '"" = STATE_DIR/mgmt/audit.jsonl.',
        parse=_optional_abs_path,
    )
    role_timeout_s: float = setting(
        2.0, doc="Deadline of each call mgmtd makes to a role's control socket.", parse=_seconds
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """``[gateway]``: the order gateway (``tectra run gateway``): FIX 4.4 client sessions,
    pre-trade risk, OUCH 4.2 over SoupBinTCP to one venue."""

    fix_port: int = setting(
        9878,
        doc="TCP port the FIX acceptor listens on (every interface).",
        parse=_integer(1, 65535),
    )
    fix_sessions: Path | None = setting(  # noqa: RUF009
        None,
        doc="TOML file with the FIX client sessions ([[sessions]] tables: session_id, "
        "sender_comp_id, target_comp_id, account, account_id, credentials, "
        "cancel_on_disconnect) and acceptor options (store, heartbeat_s, ...); "
        '"" = no client sessions (the gateway refuses to start).',
        parse=_optional_abs_path,
    )
    venue_name: str = setting(
        "SIM", doc="Venue name (limits [venues.NAME], token files, logs).", parse=_identifier
    )
    venue_id: int = setting(
        1, doc="Venue id put on every order (ORDER_REQUEST.venue_id).", parse=_integer(1, 65535)
    )
    venue_host: str = setting(
        "127.0.0.1", doc="Venue order-entry (SoupBinTCP) address.", parse=_optional_ip
    )
    venue_port: int = setting(
        15000, doc="Venue order-entry (SoupBinTCP) port.", parse=_integer(1, 65535)
    )
    venue_username: str = setting(
        "GW1", doc="SoupBinTCP login username (up to 6 characters).", parse=_name
    )
    venue_password: str = setting(
        "", doc="SoupBinTCP login password (up to 10 characters).", parse=_text_value
    )
    venue_session: str = setting(
        "", doc='SoupBinTCP session to log into; "" = the venue\'s current one.', parse=_text_value
    )
    limits_file: Path | None = setting(  # noqa: RUF009
        None,
        doc="Risk limits file (docs/risk.md) applied at start when it differs from the active "
        'version in STATE_DIR/risk/limits.sqlite; "" = use the stored limits.',
        parse=_optional_abs_path,
    )
    references: str = setting(
        "feed",
        doc="Reference prices for price bands and staleness: feed (the feed's [feed] refs_table "
        "in shared memory; missing or stale rejects, fail closed) or static (static_references, "
        "re-stamped on every order: tests, benchmarks, venues without a feed).",
        parse=_choice("feed", "static"),
    )
    static_references: str = setting(
        "",
        doc='With references = static: "SYMBOL=PRICE,..." (prices in currency units).',
        parse=_text_value,
    )
    order_capacity: int = setting(
        100_000, doc="Orders the order store holds (live + recently final).", parse=_integer(16)
    )
    send_pending: bool = setting(
        False, doc="Send PendingNew/PendingCancel/PendingReplace reports to clients.", parse=_bool
    )
    slow_rate_per_s: int = setting(
        10, doc="Kill SLOW mode: orders per second per session.", parse=_integer(1)
    )
    tokens_fsync: bool = setting(
        False,
        doc="fsync the ClOrdID-token log on every batch (else flushed: survives a process "
        "crash, not a host crash; the token high-water mark is always fsync'd).",
        parse=_bool,
    )
    snapshot_interval_s: float = setting(
        60.0,
        doc="With capture: journal a snapshot of the gateway's state this often, so replay can "
        "start from one instead of the beginning; 0 = only at start.",
        parse=_seconds,
    )
    kill_name: str = setting(
        "gateway",
        doc="Name this gateway acknowledges kill commands under (list it in [kill] subscribers "
        "so a missing ack is reported by name).",
        parse=_identifier,
    )
    capture: bool = setting(
        False,
        doc="Journal every gateway step (client requests, venue messages, kill verdicts, "
        "limits reloads, and outputs) under STATE_DIR/journal/gateway for replay.",
        parse=_bool,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TectraConfig:
    """The whole configuration of one appliance (one TOML file)."""

    # section()/named_sections() return dataclasses.field(...) specs (hence the noqa).
    appliance: ApplianceConfig = section(ApplianceConfig, doc="Appliance identity and paths.")  # noqa: RUF009
    metrics: MetricsConfig = section(MetricsConfig, doc="Metrics / health endpoint.")  # noqa: RUF009
    roles: Mapping[str, RoleConfig] = named_sections(
        RoleConfig, doc="One table per role process.", names=KNOWN_ROLES, what="role"
    )
    rings: Mapping[str, RingConfig] = named_sections(
        RingConfig, doc="One table per shared-memory ring.", what="ring"
    )
    feed: FeedConfig = section(FeedConfig, doc="Market-data feed handler.")  # noqa: RUF009
    journal: JournalConfig = section(JournalConfig, doc="Journal writer.")  # noqa: RUF009
    demo: DemoConfig = section(DemoConfig, doc="The ring demo's publisher and consumer.")  # noqa: RUF009
    kill: KillConfig = section(KillConfig, doc="The kill switch.")  # noqa: RUF009
    gateway: GatewayConfig = section(GatewayConfig, doc="The order gateway.")  # noqa: RUF009
    mgmt: MgmtConfig = section(MgmtConfig, doc="The management daemon tectra-mgmtd.")  # noqa: RUF009
    # Where this config came from (for error messages); not a TOML key (no parser).
    source: str = field(default="<defaults>", compare=False)

    def role(self, name: str) -> RoleConfig:
        """The config of role ``name``; unknown or unconfigured roles raise ConfigError."""
        key = f"roles.{name}"
        if name not in KNOWN_ROLES:
            raise ConfigError(key, name, _unknown(name, KNOWN_ROLES, "unknown role"), self.source)
        try:
            return self.roles[name]
        except KeyError:
            raise ConfigError(
                key, name, f"role is not configured (no [roles.{name}] table)", self.source
            ) from None

    def ring(self, name: str) -> RingConfig:
        """The config of ring ``name``; an unconfigured ring raises ConfigError."""
        try:
            return self.rings[name]
        except KeyError:
            raise ConfigError(
                f"rings.{name}",
                name,
                _unknown(name, tuple(self.rings), "no such ring"),
                self.source,
            ) from None

    def _validate(self, _key: str) -> None:
        # Two roles on one fixed port would make the second fail to start at bind time,
        # far from the cause; say it here instead.
        owners: dict[int, str] = {}
        for name, role in self.roles.items():
            port = role.metrics_port
            if port == 0:
                continue
            if port in owners:
                raise ConfigError(
                    f"roles.{name}.metrics_port",
                    port,
                    f"port already used by roles.{owners[port]}.metrics_port",
                )
            owners[port] = name


# --------------------------------------------------------------------------------------------
# The table-driven parser.
# --------------------------------------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _expect_table(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, f"expected a table, got {type(value).__name__}")
    return value


def _unknown(name: str, known: tuple[str, ...] | list[str], reason: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(known) if known else "none"
    return f"{reason}{hint}; known: {listed}"


def _keys_of(cls: type[Any]) -> dict[str, Field[Any]]:
    return {f.name: f for f in fields(cls) if "parse" in f.metadata}


def _parse_table(cls: type[T], value: object, prefix: str, ctx: _Context) -> T:
    table = _expect_table(value, prefix or "<root>")
    specs = _keys_of(cls)
    for key, raw in table.items():
        if key not in specs:
            raise ConfigError(_join(prefix, key), raw, _unknown(key, list(specs), "unknown key"))
    kwargs: dict[str, object] = {}
    for name, spec in specs.items():
        key = _join(prefix, name)
        if name in table:
            kwargs[name] = spec.metadata["parse"](table[name], key, ctx)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(key, MISSING_VALUE, "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "_validate", None)
    if validate is not None:
        validate(prefix)
    return obj


def parse_config(
    data: Mapping[str, object], source: str = "<memory>", *, cpu_count: int | None = None
) -> TectraConfig:
    """Validate already-decoded TOML (a mapping) into a :class:`TectraConfig`.

    ``cpu_count`` overrides ``os.cpu_count()`` for CPU validation (tests, config for another
    host). Raises :class:`ConfigError` naming ``source``, the key and the value.
    """
    ctx = _Context(cpu_count=cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    try:
        cfg = _parse_table(TectraConfig, data, "", ctx)
    except ConfigError as e:
        raise e.with_source(source) from None
    # `source` is not a TOML key; set it after validation so errors above stay attributable.
    object.__setattr__(cfg, "source", source)
    return cfg


def load_config(path: Path | str | None = None, *, cpu_count: int | None = None) -> TectraConfig:
    """Load a TOML config file; ``None`` loads the packaged default ``tectra/config/tectra.toml``.

    Unreadable files and TOML syntax errors are reported as :class:`ConfigError` too, so a
    caller handles one exception type for "bad config".
    """
    if path is None:
        source = f"tectra/{_PACKAGED_DEFAULT} (packaged default)"
        try:
            raw = resources.files("tectra").joinpath(_PACKAGED_DEFAULT).read_bytes()
        except OSError as e:
            raise ConfigError("", _PACKAGED_DEFAULT, f"packaged default missing: {e}") from e
    else:
        source = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError("", source, f"cannot read config file: {e.strerror}", source) from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError("", source, f"invalid TOML: {e}", source) from e
    return parse_config(data, source, cpu_count=cpu_count)


# --------------------------------------------------------------------------------------------
# Introspection, for docs and `tectractl`.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One documented key: ``roles.<role>.cpus``, its default (repr) and documentation."""

    key: str
    default: str
    doc: str
    required: bool


def _toml_literal(value: object) -> str:
    """How a default is written in TOML (for docs)."""
    if isinstance(value, Path | str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


def config_keys() -> list[ConfigKey]:
    """Every key the schema accepts, in declaration order (named tables as ``<what>``)."""
    out: list[ConfigKey] = []
    for sec in _keys_of(TectraConfig).values():
        cls = sec.metadata["section"]
        prefix = sec.name
        if "named" in sec.metadata:
            prefix = f"{sec.name}.<{sec.metadata['named']}>"
        for f in _keys_of(cls).values():
            required = f.default is MISSING
            default = "" if required else _toml_literal(f.default)
            out.append(ConfigKey(f"{prefix}.{f.name}", default, f.metadata["doc"], required))
    return out
