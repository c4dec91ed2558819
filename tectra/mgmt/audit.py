"""The management audit trail: one JSON line per mutating call, appended and fsync'd.

Each record says who (principal, role, transport), when (realtime ns), what (the full gRPC
method), with which arguments (the request as JSON), under which correlation id, and how it
ended (the gRPC status code name and a short detail). A call is recorded whether it was
allowed, denied, refused for missing confirmation, dry-run, or answered from the replay
cache. The file is only ever appended to (O_APPEND) and each line is fsync'd before the
caller gets its answer, so an acknowledged change is on disk. A line that does not parse
(a torn tail after a power loss) is skipped by the reader and counted, never fatal.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class AuditError(RuntimeError):
    """The audit trail cannot be written: mutating calls must not proceed unrecorded."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts_ns: int
    correlation_id: str
    who: str
    role: str
    transport: str
    method: str
    args: dict[str, Any]
    result: str
    detail: str
    dry_run: bool
    replayed: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since_ns: int = 0
    until_ns: int = 0
    who: str = ""
    method: str = ""
    correlation_id: str = ""
    limit: int = 100

    def matches(self, rec: AuditRecord) -> bool:
        return (
            rec.ts_ns >= self.since_ns
            and (not self.until_ns or rec.ts_ns <= self.until_ns)
            and (not self.who or rec.who == self.who)
            and (not self.method or self.method in rec.method)
            and (not self.correlation_id or rec.correlation_id == self.correlation_id)
        )


def _record_from(obj: object) -> AuditRecord | None:
    if not isinstance(obj, dict):
        return None
    try:
        return AuditRecord(
            seq=int(obj["seq"]),
            ts_ns=int(obj["ts_ns"]),
            correlation_id=str(obj["correlation_id"]),
            who=str(obj["who"]),
            role=str(obj["role"]),
            transport=str(obj["transport"]),
            method=str(obj["method"]),
            args=dict(obj["args"]),
            result=str(obj["result"]),
            detail=str(obj["detail"]),
            dry_run=bool(obj["dry_run"]),
            replayed=bool(obj["replayed"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class AuditTrail:
    """Appends records to PATH (JSONL); one writer per file (mgmtd), any number of readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.bad_lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq = max((rec.seq for rec in self.records()), default=0)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open audit trail {path}: {exc.strerror}") from exc

    def append(
        self,
        *,
        correlation_id: str,
        who: str,
        role: str,
        transport: str,
        method: str,
        args: dict[str, Any],
        result: str,
        detail: str = "",
        dry_run: bool = False,
        replayed: bool = False,
    ) -> AuditRecord:
        """Write one record and fsync it; AuditError when the disk refuses."""
        with self._lock:
            rec = AuditRecord(
                seq=self._seq + 1,
                ts_ns=time.time_ns(),
                correlation_id=correlation_id,
                who=who,
                role=role,
                transport=transport,
                method=method,
                args=args,
                result=result,
                detail=detail[:1000],
                dry_run=dry_run,
                replayed=replayed,
            )
            line = (rec.to_json() + "\n").encode()
            try:
                os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as exc:
                raise AuditError(f"cannot append to audit trail {self.path}: {exc}") from exc
            self._seq = rec.seq
            return rec

    def records(self) -> Iterator[AuditRecord]:
        """Every readable record, oldest first; unparseable lines are counted in bad_lines."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            for raw in fh:
                try:
                    rec = _record_from(json.loads(raw))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    rec = None
                if rec is None:
                    self.bad_lines += 1
                    continue
                yield rec

    def query(self, q: AuditQuery) -> list[AuditRecord]:
        """The newest `q.limit` matching records, oldest first."""
        limit = q.limit if q.limit > 0 else 100
        hits = [rec for rec in self.records() if q.matches(rec)]
        return hits[-limit:]

    def close(self) -> None:
        os.close(self._fd)
