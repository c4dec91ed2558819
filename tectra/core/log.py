"""Structured logs: one JSON object per line, with correlation ids.

This module owns the log format and the correlation-id context. Logging is control-plane only
(never per message on the hot path). A line looks like::

    {"ts": "2026-05-09T07:35:25.123456Z", "level": "info", "component": "gateway",
     "msg": "session logon", "correlation_id": "9f2c4e1a0b7d3e55", "session": "CLIENT1"}

``ts`` is realtime (RFC 3339, UTC) because it is read by people and log shippers; ordering
and latency questions belong to the monotonic stamps in journals, not to log lines.

Usage::

    configure_logging("info")                 # once per process; safe to repeat
    log = get_logger("gateway")
    with correlation():                       # or correlation(cid_from_the_wire)
        log.info("order accepted", order_id=42, venue="XNAS")

Correlation ids live in a :mod:`contextvars` variable, so they follow the code through threads'
own contexts and asyncio tasks without being passed around by hand.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Final, TextIO

__all__ = [
    "LEVELS",
    "ComponentLogger",
    "JsonFormatter",
    "configure_logging",
    "correlation",
    "current_correlation_id",
    "get_logger",
    "new_correlation_id",
]

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Keys every line has (or may have); extra fields with these names are prefixed with "_".
RESERVED: Final = frozenset({"ts", "level", "component", "msg", "correlation_id", "exc", "stack"})

_ROOT_NAME: Final = "tectra"
# Attribute names on a LogRecord that carry our data; namespaced so they never collide with
# LogRecord's own attributes (logging raises KeyError on extra={"msg": ...}).
_ATTR_COMPONENT: Final = "tectra_component"
_ATTR_FIELDS: Final = "tectra_fields"
_ATTR_CID: Final = "tectra_cid"
_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", _ATTR_COMPONENT, _ATTR_FIELDS, _ATTR_CID}
)

_correlation_id: ContextVar[str | None] = ContextVar("tectra_correlation_id", default=None)


def new_correlation_id() -> str:
    """A fresh random correlation id (16 hex characters, 64 bits)."""
    return secrets.token_hex(8)


def current_correlation_id() -> str | None:
    """The correlation id of the current context, if any."""
    return _correlation_id.get()


@contextmanager
def correlation(cid: str | None = None) -> Iterator[str]:
    """Run a block under correlation id ``cid`` (a new one if None); restores the previous id."""
    value = cid if cid is not None else new_correlation_id()
    token = _correlation_id.set(value)
    try:
        yield value
    finally:
        _correlation_id.reset(token)


def _json_default(value: object) -> object:
    # Log fields often carry numpy scalars, paths and enums; a log call must never raise
    # because a value is not JSON-native.
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def _rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: ts, level, component, msg, correlation_id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "component": getattr(record, _ATTR_COMPONENT, record.name),
            "msg": record.getMessage(),
        }
        # The adapter captures the id when the call is made; for plain stdlib loggers read the
        # context now (StreamHandler formats synchronously, in the caller's context).
        cid = getattr(record, _ATTR_CID) if hasattr(record, _ATTR_CID) else _correlation_id.get()
        if cid is not None:
            out["correlation_id"] = cid
        fields: dict[str, object] = {}
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS:
                fields[key] = value
        fields.update(getattr(record, _ATTR_FIELDS, {}))
        for key, value in fields.items():
            out[f"_{key}" if key in RESERVED else key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=_json_default, ensure_ascii=False)


class ComponentLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger for one component that takes structured fields as keyword arguments.

    ``log.info("msg", order_id=1)`` puts ``"order_id": 1`` on the line; ``bind(**fields)``
    returns a logger that adds ``fields`` to every line. Fields named ``msg`` or ``level``
    clash with the call's own parameters: pass those through ``extra={...}``. Fields named like
    a core key (see ``RESERVED``) are written with a leading underscore.
    """

    _PASSTHROUGH: Final = frozenset({"exc_info", "stack_info", "stacklevel"})

    def __init__(
        self, logger: logging.Logger, component: str, fields: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(logger, {})
        self.component = component
        self.fields: Mapping[str, object] = dict(fields or {})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        fields = dict(self.fields)
        fields.update(kwargs.pop("extra", None) or {})
        passthrough: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in self._PASSTHROUGH:
                passthrough[key] = value
            else:
                fields[key] = value
        passthrough["extra"] = {
            _ATTR_COMPONENT: self.component,
            _ATTR_FIELDS: fields,
            _ATTR_CID: _correlation_id.get(),
        }
        return msg, passthrough

    def bind(self, **fields: object) -> ComponentLogger:
        """A logger for the same component adding ``fields`` to every line."""
        return ComponentLogger(self.logger, self.component, {**self.fields, **fields})


def get_logger(component: str) -> ComponentLogger:
    """The logger of ``component`` (a ``tectra.<component>`` stdlib logger underneath)."""
    return ComponentLogger(logging.getLogger(f"{_ROOT_NAME}.{component}"), component)


class _JsonHandler(logging.StreamHandler[TextIO]):
    """Marker type so configure_logging can find and replace its own handler."""


def configure_logging(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process as JSON lines to ``stream`` (default stderr).

    Idempotent: calling it again replaces the handler it installed before (never stacks a
    second one) and updates the level; handlers installed by others are left alone.
    """
    try:
        levelno = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}") from None
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _JsonHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(levelno)
    return handler
