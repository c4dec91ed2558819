"""The kill role's durable state: what must survive a restart so that halted stays halted.

One JSON document, replaced atomically after every change (write a temporary file beside it,
fsync it, rename it over the old one, fsync the directory), holding:

* ``block``: the control block's `KillState` (firm flags, scoped entries, epoch, seen ids);
* ``active``: the kills in force, with the string id, target, action, reason, actor and when;
* ``seen``: the string kill ids already applied (the engine's idempotency set; bounded);
* ``triggers``: each trigger's armed / dry-run state (arming is an operator decision, kept).

`StateStore.load` returns None when there is no file yet (a first start) and raises
`StateCorruptError` when there is one that cannot be read: the engine then comes up blocked
firm-wide (fail closed) instead of guessing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tectra.io.killblock import KillState

__all__ = ["PersistedState", "StateCorruptError", "StateError", "StateStore"]

FORMAT: Final = "tectra.kill.state/v1"


class StateError(Exception):
    """The state could not be written (the engine reports it; the block change stands)."""


class StateCorruptError(StateError):
    """A state file exists but cannot be parsed: fail closed."""


@dataclass(slots=True)
class PersistedState:
    block: KillState
    active: list[dict[str, Any]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    triggers: dict[str, dict[str, bool]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "block": self.block.to_dict(),
            "active": self.active,
            "seen": self.seen,
            "triggers": self.triggers,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PersistedState:
        if d.get("format") != FORMAT:
            raise StateCorruptError(f"state format {d.get('format')!r} is not {FORMAT}")
        try:
            return cls(
                block=KillState.from_dict(d["block"]),
                active=[dict(a) for a in d.get("active", [])],
                seen=[str(s) for s in d.get("seen", [])],
                triggers={
                    str(k): {"armed": bool(v["armed"]), "dry_run": bool(v["dry_run"])}
                    for k, v in d.get("triggers", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateCorruptError(f"state document malformed: {exc!r}") from exc


class StateStore:
    """Atomic, durable save and load of `PersistedState` at one path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.saves = 0
        self.failures = 0

    def load(self) -> PersistedState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateCorruptError(f"cannot read kill state {self.path}: {exc}") from exc
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StateCorruptError(f"kill state {self.path} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise StateCorruptError(f"kill state {self.path} is not a JSON object")
        return PersistedState.from_dict(doc)

    def save(self, state: PersistedState) -> None:
        data = json.dumps(state.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            self.failures += 1
            raise StateError(f"cannot save kill state to {self.path}: {exc}") from exc
        self.saves += 1
