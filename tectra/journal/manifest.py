"""The journal manifest: the ordered list of sealed segments, with their hashes, checksummed.

This module owns ``manifest.json`` in a journal directory: one entry per sealed segment, in
journal order, with its file name, first/last sequence, record count, byte size, SHA-256 of the
whole file, RFC 6962 Merkle root over its frames, time ranges and the previous segment's hash
(the chain also stored in each segment header). A root over the segment hashes (`journal_root`)
identifies the whole sealed journal in one line.

The document is canonical JSON (sorted keys, no spaces) of everything but ``checksum``, and
``checksum`` is the SHA-256 of those bytes, so an edited, truncated or reordered manifest is
detected. It is replaced atomically: written to a temporary file, fsynced, renamed over the old
one, then the directory is fsynced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from tectra.journal.merkle import leaf_hash, merkle_root

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Manifest",
    "ManifestError",
    "SegmentEntry",
    "fsync_dir",
    "load_manifest",
    "save_manifest",
]

MANIFEST_NAME: Final[str] = "manifest.json"
MANIFEST_FORMAT: Final[str] = "tectra-journal-manifest/1"


class ManifestError(ValueError):
    """The manifest is missing a field, malformed, or its checksum does not match."""


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """One sealed segment as the manifest lists it (hashes as lowercase hex)."""

    index: int
    file: str
    first_seq: int
    last_seq: int
    records: int
    bytes: int
    sha256: str
    merkle_root: str
    prev_sha256: str
    first_mono_ns: int
    last_mono_ns: int
    first_real_ns: int
    last_real_ns: int


@dataclass(slots=True)
class Manifest:
    """A journal's identity and its sealed segments in order."""

    journal: str
    component: int
    host: str
    segments: list[SegmentEntry] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        """The sequence the next segment starts at (1 for an empty journal)."""
        return self.segments[-1].last_seq + 1 if self.segments else 1

    @property
    def journal_root(self) -> str:
        """RFC 6962 root over the segments' SHA-256 hashes (as leaves), hex."""
        leaves = [leaf_hash(bytes.fromhex(s.sha256)) for s in self.segments]
        return merkle_root(leaves).hex()

    def body(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "journal": self.journal,
            "component": self.component,
            "host": self.host,
            "segments": [asdict(s) for s in self.segments],
            "journal_root": self.journal_root,
        }


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def fsync_dir(path: Path) -> None:
    """fsync a directory so a create/rename/unlink in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_manifest(directory: Path, manifest: Manifest, *, durable: bool = True) -> None:
    """Replace ``directory/manifest.json`` atomically (fsyncs unless durable=False)."""
    body = manifest.body()
    checksum = hashlib.sha256(_canonical(body)).hexdigest()
    text = json.dumps({**body, "checksum": checksum}, sort_keys=True, indent=1) + "\n"
    path = directory / MANIFEST_NAME
    tmp = directory / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(text.encode())
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


_ENTRY_FIELDS: Final = tuple(f.name for f in fields(SegmentEntry))


def _entry(raw: object, i: int) -> SegmentEntry:
    if not isinstance(raw, dict) or set(raw) != set(_ENTRY_FIELDS):
        raise ManifestError(f"segment entry {i} has the wrong fields")
    for name in _ENTRY_FIELDS:
        value = raw[name]
        want_str = name in {"file", "sha256", "merkle_root", "prev_sha256"}
        if want_str != isinstance(value, str) or isinstance(value, bool):
            raise ManifestError(f"segment entry {i}: {name} has type {type(value).__name__}")
    return SegmentEntry(**raw)


def load_manifest(directory: Path) -> Manifest | None:
    """The manifest of a journal directory, None if it has none; ManifestError if damaged."""
    path = directory / MANIFEST_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a {MANIFEST_FORMAT} document")
    checksum = doc.pop("checksum", None)
    if checksum != hashlib.sha256(_canonical(doc)).hexdigest():
        raise ManifestError(f"{path}: checksum mismatch (manifest edited or damaged)")
    try:
        segments = [_entry(raw, i) for i, raw in enumerate(doc["segments"])]
        manifest = Manifest(
            journal=str(doc["journal"]),
            component=int(doc["component"]),
            host=str(doc["host"]),
            segments=segments,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{path}: malformed ({exc!r})") from exc
    if doc.get("journal_root") != manifest.journal_root:
        raise ManifestError(f"{path}: journal_root does not match its segments")
    return manifest
