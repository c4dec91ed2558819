"""quickfix SessionSettings built from plain Python data, and the FIX credentials check.

This module owns:

* `FixSessionConfig`: one client session as Tectra knows it: CompIDs, Tectra's numeric session
  id, the account and limits profile it trades under, credentials, cancel-on-disconnect;
* `FixAcceptorConfig`: the acceptor's port, state directory (FileStore and FileLog live under
  it, so sequence numbers survive a restart, even `kill -9`), dictionary and validation switches;
* `FixInitiatorConfig`: the client side (load generator, tests) with heartbeat and reconnect;
* `Credentials`: a salted PBKDF2 hash of a session password and its constant-time check;
* `find_data_dictionary`: the FIX44.xml shipped with the installed quickfix package;
* `acceptor_settings` / `initiator_settings`: the `quickfix.SessionSettings` for a config, and
  `render_ini` for the same content as the INI text quickfix documents (for operators and logs);
* `stop_engine`: the shutdown every quickfix engine here shares (log out, wait, stop).

Every config is a frozen dataclass validated on construction; a bad value raises
`FixConfigError` naming the field. `from_mapping` builds them from TOML-style dictionaries.
quickfix 1.16 has no bind-address setting for acceptors: the listener binds every interface, so
restricting it is the network namespace's or the firewall's job.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal

import quickfix as fix

__all__ = [
    "BEGIN_STRING",
    "Credentials",
    "FixAcceptorConfig",
    "FixConfigError",
    "FixInitiatorConfig",
    "FixSessionConfig",
    "acceptor_settings",
    "find_data_dictionary",
    "initiator_settings",
    "render_ini",
    "session_key",
    "stop_engine",
]

BEGIN_STRING: Final[str] = "FIX.4.4"
DEFAULT_PBKDF2_ITERATIONS: Final[int] = 100_000  # ~20 ms per logon check on this class of host
_COMP_ID_RE: Final[re.Pattern[str]] = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
_HASH_RE: Final[re.Pattern[str]] = re.compile(
    r"^pbkdf2_sha256\$(\d{1,9})\$([0-9a-f]{16,128})\$([0-9a-f]{64})$"
)
_TIME_RE: Final[re.Pattern[str]] = re.compile(r"^\d{2}:\d{2}:\d{2}$")
_ACCOUNT_WIDTH: Final[int] = 16  # tectra.schema ACCOUNT_WIDTH (ORDER_REQUEST.account)


class FixConfigError(ValueError):
    """A FIX session or acceptor configuration value is invalid; the message names it."""


def session_key(begin_string: str, sender_comp_id: str, target_comp_id: str) -> str:
    """The quickfix SessionID string, 'FIX.4.4:SENDER->TARGET', used as a dictionary key."""
    return f"{begin_string}:{sender_comp_id}->{target_comp_id}"


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Username(553) and a salted hash of Password(554) a client must present at Logon.

    `password_hash` is `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`; the clear password is
    never stored. Build one with `Credentials.from_password`.
    """

    username: str
    password_hash: str

    def __post_init__(self) -> None:
        if not self.username or not self.username.isprintable():
            raise FixConfigError("credentials.username must be non-empty printable text")
        if not _HASH_RE.match(self.password_hash):
            raise FixConfigError(
                "credentials.password_hash must be pbkdf2_sha256$<iterations>$<salt>$<hash> "
                "(make one with Credentials.from_password)"
            )

    @classmethod
    def from_password(
        cls, username: str, password: str, *, iterations: int = DEFAULT_PBKDF2_ITERATIONS
    ) -> Credentials:
        """Hash `password` with a fresh random salt."""
        if not password:
            raise FixConfigError("credentials: empty password")
        salt = os.urandom(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        return cls(username, f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}")

    def verify(self, username: str | None, password: str | None) -> bool:
        """True when both match; comparisons are constant-time."""
        if username is None or password is None:
            return False
        match = _HASH_RE.match(self.password_hash)
        assert match is not None  # checked in __post_init__
        iterations, salt, want = int(match[1]), bytes.fromhex(match[2]), bytes.fromhex(match[3])
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        return hmac.compare_digest(got, want) and user_ok


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _check_comp_id(name: str, value: str) -> None:
    if not _COMP_ID_RE.match(value):
        raise FixConfigError(f"{name} {value!r} must be 1-32 of [A-Za-z0-9_.-]")


@dataclass(frozen=True)
class FixSessionConfig:
    """One FIX 4.4 client session of the acceptor."""

    session_id: int
    """Tectra's numeric id of the session (ORDER_REQUEST/EXECUTION_REPORT.session_id), 1..2^32-1."""
    sender_comp_id: str
    """Our CompID on this session (SenderCompID(49) of what we send)."""
    target_comp_id: str
    """The client's CompID (SenderCompID(49) of what it sends)."""
    account: str = ""
    """Account(1) the session trades for. Orders without Account get it; orders naming another
    account are refused (BusinessMessageReject, not authorized). Empty: the session is not bound
    to an account and orders carry their own."""
    account_id: int = 0
    """Interned id of `account` put in ORDER_REQUEST.account_id (0: the gateway interns it)."""
    strategy_id: int = 0
    """ORDER_REQUEST.strategy_id for this session's orders."""
    limits_profile: str = "default"
    """Name of the risk limits profile the session's orders are checked against."""
    credentials: Credentials | None = None
    """Username/Password required at Logon; None accepts any Logon (floor and tests only)."""
    cancel_on_disconnect: bool = True
    """On logout or disconnect, ask the sink to cancel every open order of the session."""
    dedupe_capacity: int = 1_000_000
    """ClOrdIDs remembered per session to drop PossDup/PossResend copies of orders already
    handed to the sink (oldest forgotten first)."""

    def __post_init__(self) -> None:
        if not 1 <= self.session_id <= 0xFFFF_FFFF:
            raise FixConfigError(f"session_id {self.session_id} outside 1..4294967295")
        _check_comp_id("sender_comp_id", self.sender_comp_id)
        _check_comp_id("target_comp_id", self.target_comp_id)
        if len(self.account) > _ACCOUNT_WIDTH or not all(" " < c <= "~" for c in self.account):
            raise FixConfigError(
                f"account {self.account!r} must be at most {_ACCOUNT_WIDTH} printable ASCII "
                "characters without spaces"
            )
        for name in ("account_id", "strategy_id"):
            if not 0 <= getattr(self, name) <= 0xFFFF_FFFF:
                raise FixConfigError(f"{name} {getattr(self, name)} outside 0..4294967295")
        if not self.limits_profile:
            raise FixConfigError("limits_profile must not be empty")
        if self.dedupe_capacity < 1:
            raise FixConfigError("dedupe_capacity must be at least 1")

    @property
    def key(self) -> str:
        """The acceptor-side quickfix SessionID string."""
        return session_key(BEGIN_STRING, self.sender_comp_id, self.target_comp_id)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FixSessionConfig:
        """From a TOML-style table; `credentials` is {username, password_hash}."""
        values = _known_keys(cls, data, "fix session")
        creds = values.get("credentials")
        if isinstance(creds, Mapping):
            values["credentials"] = Credentials(**_known_keys(Credentials, creds, "credentials"))
        return cls(**values)


StoreKind = Literal["file", "memory"]


@dataclass(frozen=True)
class FixAcceptorConfig:
    """The FIX acceptor: one listening port, any number of sessions."""

    port: int
    """TCP port quickfix listens on (every interface; see the module docstring)."""
    state_dir: Path
    """Root of the persistent state: `store/` (FileStore: sequence numbers and sent messages),
    `log/` (FileLog: messages and events per session), `dedupe/` (ClOrdIDs handed to the sink)."""
    sessions: tuple[FixSessionConfig, ...]
    """The sessions; CompID pairs and session ids are unique."""
    data_dictionary: Path | None = None
    """FIX44.xml to validate incoming messages with; None: the one quickfix installed."""
    store: StoreKind = "file"
    """'file' persists sequence numbers and messages (resume after restart); 'memory' does not."""
    file_log: bool = True
    """Write quickfix's per-session message and event logs under state_dir/log."""
    start_time: str | None = None
    """Session start, 'HH:MM:SS' UTC; None (with end_time None) is a non-stop session."""
    end_time: str | None = None
    """Session end, 'HH:MM:SS' UTC; at the boundary quickfix resets sequence numbers."""
    logon_timeout_s: int = 10
    """Seconds a connection may take to log on."""
    validate_fields_out_of_order: bool = False
    """Reject body fields that arrive out of the dictionary's order (strict, seldom wanted)."""
    validate_user_defined_fields: bool = True
    """Reject undefined tags >= 5000 (user-defined) as quickfix does by default."""
    check_latency: bool = True
    """Reject messages whose SendingTime is further than max_latency_s from our clock."""
    max_latency_s: int = 120
    """Allowed SendingTime skew, seconds."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise FixConfigError(f"port {self.port} outside 1..65535")
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        if not self.sessions:
            raise FixConfigError("at least one session is required")
        object.__setattr__(self, "sessions", tuple(self.sessions))
        _unique(self.sessions)
        if self.store not in ("file", "memory"):
            raise FixConfigError(f"store {self.store!r} must be 'file' or 'memory'")
        if (self.start_time is None) != (self.end_time is None):
            raise FixConfigError("start_time and end_time are set together or not at all")
        for name in ("start_time", "end_time"):
            value = getattr(self, name)
            if value is not None and not _TIME_RE.match(value):
                raise FixConfigError(f"{name} {value!r} must be HH:MM:SS")
        if self.logon_timeout_s < 1 or self.max_latency_s < 1:
            raise FixConfigError("logon_timeout_s and max_latency_s must be positive")

    @property
    def store_dir(self) -> Path:
        return self.state_dir / "store"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def dedupe_dir(self) -> Path:
        return self.state_dir / "dedupe"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FixAcceptorConfig:
        """From a TOML-style table with a `sessions` array of tables."""
        values = _known_keys(cls, data, "fix acceptor")
        values["sessions"] = tuple(
            FixSessionConfig.from_mapping(s) for s in values.get("sessions", ())
        )
        if "state_dir" in values:
            values["state_dir"] = Path(values["state_dir"])
        if values.get("data_dictionary") is not None:
            values["data_dictionary"] = Path(values["data_dictionary"])
        return cls(**values)


@dataclass(frozen=True)
class FixInitiatorConfig:
    """A FIX 4.4 client session (load generator, tests, demo clients)."""

    host: str
    port: int
    sender_comp_id: str
    target_comp_id: str
    state_dir: Path | None = None
    """Where FileStore/FileLog go; None uses a MemoryStore and no log."""
    heartbeat_s: int = 30
    """HeartBtInt(108) sent at Logon; the acceptor adopts it."""
    reconnect_s: int = 5
    """Seconds between connection attempts."""
    reset_on_logon: bool = False
    """Send ResetSeqNumFlag(141)=Y at Logon (fresh sequence numbers each connection)."""
    use_data_dictionary: bool = True
    """Validate incoming messages against the dictionary (off makes a cheaper load client)."""
    data_dictionary: Path | None = None
    file_log: bool = True
    """With state_dir: also write quickfix's message and event logs."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Further quickfix session settings, verbatim (tests use these)."""

    def __post_init__(self) -> None:
        _check_comp_id("sender_comp_id", self.sender_comp_id)
        _check_comp_id("target_comp_id", self.target_comp_id)
        if not 1 <= self.port <= 65535:
            raise FixConfigError(f"port {self.port} outside 1..65535")
        if self.heartbeat_s < 1 or self.reconnect_s < 1:
            raise FixConfigError("heartbeat_s and reconnect_s must be positive")
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir))

    @property
    def key(self) -> str:
        return session_key(BEGIN_STRING, self.sender_comp_id, self.target_comp_id)


def _known_keys(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FixConfigError(f"{what}: unknown keys {unknown}; known: {sorted(names)}")
    return dict(data)


def _unique(sessions: Iterable[FixSessionConfig]) -> None:
    ids: set[int] = set()
    keys: set[str] = set()
    for s in sessions:
        if s.session_id in ids:
            raise FixConfigError(f"session_id {s.session_id} used twice")
        if s.key in keys:
            raise FixConfigError(f"session {s.key} configured twice")
        ids.add(s.session_id)
        keys.add(s.key)


# --------------------------------------------------------------------------------------------
# quickfix SessionSettings
# --------------------------------------------------------------------------------------------


def find_data_dictionary(name: str = "FIX44.xml") -> Path:
    """The data dictionary shipped with the installed quickfix distribution (its share/ dir)."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("quickfix")
        for entry in dist.files or ():
            if entry.name == name:
                candidates.append(Path(str(dist.locate_file(entry))).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sys.prefix) / "share" / "quickfix" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FixConfigError(
        f"quickfix data dictionary {name} not found (looked at {[str(p) for p in candidates]})"
    )


def _yn(flag: bool) -> str:
    return "Y" if flag else "N"


def _acceptor_defaults(config: FixAcceptorConfig) -> dict[str, str]:
    dictionary = config.data_dictionary or find_data_dictionary()
    values = {
        "ConnectionType": "acceptor",
        "SocketAcceptPort": str(config.port),
        "SocketReuseAddress": "Y",  # restart (even after kill -9) must rebind at once
        "SocketNodelay": "Y",
        "DataDictionary": str(dictionary),
        "UseDataDictionary": "Y",  # quickfix rejects missing tags / bad enums / bad formats
        "ValidateFieldsOutOfOrder": _yn(config.validate_fields_out_of_order),
        "ValidateFieldsHaveValues": "Y",
        "ValidateUserDefinedFields": _yn(config.validate_user_defined_fields),
        "AllowUnknownMsgFields": "N",
        "CheckLatency": _yn(config.check_latency),
        "MaxLatency": str(config.max_latency_s),
        "LogonTimeout": str(config.logon_timeout_s),
        # Sequence numbers survive logout, disconnect and restart: the counterparty resumes.
        "ResetOnLogon": "N",
        "ResetOnLogout": "N",
        "ResetOnDisconnect": "N",
        "PersistMessages": "Y",  # needed to answer ResendRequests with the real messages
        "FileStorePath": str(config.store_dir),
    }
    if config.file_log:
        values["FileLogPath"] = str(config.log_dir)
    if config.start_time is None:
        values["NonStopSession"] = "Y"
    else:
        assert config.end_time is not None
        values["StartTime"] = config.start_time
        values["EndTime"] = config.end_time
    return values


def _initiator_defaults(config: FixInitiatorConfig) -> dict[str, str]:
    values = {
        "ConnectionType": "initiator",
        "SocketConnectHost": config.host,
        "SocketConnectPort": str(config.port),
        "SocketNodelay": "Y",
        "HeartBtInt": str(config.heartbeat_s),
        "ReconnectInterval": str(config.reconnect_s),
        "NonStopSession": "Y",
        "ResetOnLogon": _yn(config.reset_on_logon),
        "ResetOnLogout": "N",
        "ResetOnDisconnect": "N",
        "PersistMessages": "Y",
        "UseDataDictionary": _yn(config.use_data_dictionary),
    }
    if config.use_data_dictionary:
        values["DataDictionary"] = str(config.data_dictionary or find_data_dictionary())
    if config.state_dir is not None:
        values["FileStorePath"] = str(config.state_dir / "store")
        if config.file_log:
            values["FileLogPath"] = str(config.state_dir / "log")
    values.update(config.extra)
    return values


def _sections(
    config: FixAcceptorConfig | FixInitiatorConfig,
) -> tuple[dict[str, str], list[tuple[tuple[str, str], dict[str, str]]]]:
    if isinstance(config, FixAcceptorConfig):
        return _acceptor_defaults(config), [
            ((s.sender_comp_id, s.target_comp_id), {"BeginString": BEGIN_STRING})
            for s in config.sessions
        ]
    return _initiator_defaults(config), [
        ((config.sender_comp_id, config.target_comp_id), {"BeginString": BEGIN_STRING})
    ]


def _build(config: FixAcceptorConfig | FixInitiatorConfig) -> Any:
    defaults, sessions = _sections(config)
    settings = fix.SessionSettings()
    base = fix.Dictionary()
    for key, value in defaults.items():
        base.setString(key, value)
    settings.set(base)
    for (sender, target), values in sessions:
        section = fix.Dictionary()
        for key, value in values.items():
            section.setString(key, value)
        settings.set(fix.SessionID(BEGIN_STRING, sender, target), section)
    return settings


def acceptor_settings(config: FixAcceptorConfig) -> Any:
    """`quickfix.SessionSettings` for the acceptor; creates the state directories."""
    for path in (config.store_dir, config.log_dir, config.dedupe_dir):
        path.mkdir(parents=True, exist_ok=True)
    return _build(config)


def initiator_settings(config: FixInitiatorConfig) -> Any:
    """`quickfix.SessionSettings` for one initiator session."""
    if config.state_dir is not None:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    return _build(config)


def render_ini(config: FixAcceptorConfig | FixInitiatorConfig) -> str:
    """The settings as quickfix's INI text (what `acceptor_settings` builds), for humans."""
    defaults, sessions = _sections(config)
    lines = ["[DEFAULT]", *(f"{k}={v}" for k, v in defaults.items())]
    for (sender, target), values in sessions:
        lines += ["", "[SESSION]", *(f"{k}={v}" for k, v in values.items())]
        lines += [f"SenderCompID={sender}", f"TargetCompID={target}"]
    return "\n".join(lines) + "\n"


def stop_engine(engine: Any, session_ids: Iterable[Any], timeout_s: float = 2.0) -> None:
    """Log out every logged-on session, wait (polling) until they are out, then stop `engine`.

    quickfix's own `stop()` waits for the logouts in whole seconds (up to 10); logging out here
    first and then stopping with force=True makes a clean shutdown take milliseconds."""
    sessions = [s for s in (fix.Session.lookupSession(i) for i in session_ids) if s is not None]
    for session in sessions:
        if session.isLoggedOn():
            session.logout()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(s.isLoggedOn() for s in sessions):
        time.sleep(0.005)
    engine.stop(True)
