"""Exporting journals to Parquet for research (pyarrow).

This module owns `export_parquet`: one Parquet file per record type, ``<TYPE_NAME>.parquet``.
Schema records become one column per dtype field (the common header included), with the
schema's own names and exact integer types: uint/int of the field's width, fixed-size binary
for byte strings (symbols, text and raw wire bytes, unmodified), fixed-size lists for array
fields. Every row also carries the frame's journal columns: ``journal_seq``, ``journal_kind``,
``journal_component``, ``journal_step``, ``journal_mono_ns``, ``journal_real_ns``. Opaque types
(raw packets, FIX messages, snapshots) get the journal columns plus a ``payload`` binary column.
RECORD_BATCH frames are expanded: one row per record in its own type's file, the journal
columns repeated.

pyarrow is imported when an export runs, so the journal itself does not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tectra.journal.format import (
    RecordType,
    decode_record_batch,
    is_schema_type,
    raw_copy,
    type_name,
)
from tectra.journal.reader import FrameBatch, JournalReader
from tectra.schema import SchemaError, layout_by_type_id

__all__ = ["ExportError", "export_parquet"]


class ExportError(RuntimeError):
    """pyarrow is missing, or the destination cannot be written."""


def _pa() -> Any:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError("Parquet export needs pyarrow (pip install pyarrow)") from exc
    return pa, pq


def _column(pa: Any, values: np.ndarray[Any, Any]) -> Any:
    base = values.dtype.base if values.ndim > 1 else values.dtype
    if values.ndim > 1:
        width = int(np.prod(values.shape[1:]))
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, width)
    if base.kind == "S":
        size = base.itemsize
        buf = pa.py_buffer(np.ascontiguousarray(values).tobytes())
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), len(values), [None, buf])
    return pa.array(np.ascontiguousarray(values))


def _journal_columns(pa: Any, fb: FrameBatch) -> dict[str, Any]:
    return {
        "journal_seq": pa.array(fb.seq.astype(np.uint64)),
        "journal_kind": pa.array(fb.kind.astype(np.uint8)),
        "journal_component": pa.array(fb.component.astype(np.uint8)),
        "journal_step": pa.array(fb.step.astype(np.uint64)),
        "journal_mono_ns": pa.array(fb.mono_ns.astype(np.int64)),
        "journal_real_ns": pa.array(fb.real_ns.astype(np.int64)),
    }


class _Sink:
    """One ParquetWriter per record type, opened on the type's first table."""

    def __init__(self, pq: Any, out: Path, compression: str) -> None:
        self.pq = pq
        self.out = out
        self.compression = compression
        self.writers: dict[int, Any] = {}
        self.files: dict[str, Path] = {}

    def write(self, t: int, table: Any) -> None:
        writer = self.writers.get(t)
        if writer is None:
            path = self.out / f"{type_name(t)}.parquet"
            writer = self.pq.ParquetWriter(path, table.schema, compression=self.compression)
            self.writers[t] = writer
            self.files[type_name(t)] = path
        writer.write_table(table)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _export_batches(pa: Any, sink: _Sink, sub: FrameBatch, wanted: set[int] | None) -> None:
    """RECORD_BATCH frames: one row per record, in the file of the records' own type."""
    for i in range(len(sub)):
        recs = decode_record_batch(sub.payload(i))
        t = int(recs["type_id"][0])
        if wanted is not None and t not in wanted:
            continue
        n = recs.shape[0]
        journal = _journal_columns(pa, sub.select(np.array([i])))
        cols = {k: pa.array(np.repeat(v.to_numpy(), n)) for k, v in journal.items()}
        recs = raw_copy(recs)
        for name in recs.dtype.names or ():
            cols[name] = _column(pa, recs[name])
        sink.write(t, pa.table(cols))


def export_parquet(
    source: Path | str,
    out_dir: Path | str,
    *,
    types: Iterable[int] | None = None,
    start_seq: int | None = None,
    end_seq: int | None = None,
    compression: str = "zstd",
) -> dict[str, Path]:
    """Export `source` (optionally a seq window, optionally only some type codes) to one
    Parquet file per record type in `out_dir`; returns {type name: file}."""
    pa, pq = _pa()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = None if types is None else {int(t) for t in types}
    sink = _Sink(pq, out, compression)
    try:
        for fb in JournalReader(source).batches(start_seq=start_seq, end_seq=end_seq):
            # Runs of consecutive same-type frames, in journal order, so every file's rows
            # stay in journal order even where single-record and batch frames interleave.
            types = fb.type
            cuts = np.flatnonzero(types[1:] != types[:-1]) + 1
            for run in np.split(np.arange(len(fb)), cuts):
                t = int(types[int(run[0])])
                if wanted is not None and t not in wanted and t != RecordType.RECORD_BATCH:
                    continue
                sub = fb.select(run)
                if t == RecordType.RECORD_BATCH:
                    _export_batches(pa, sink, sub, wanted)
                    continue
                cols = _journal_columns(pa, sub)
                layout = None
                if is_schema_type(t):
                    try:
                        layout = layout_by_type_id(t)
                    except SchemaError:
                        layout = None
                if layout is not None:
                    recs = raw_copy(sub.records(t))
                    for name in layout.dtype.names or ():
                        cols[name] = _column(pa, recs[name])
                else:
                    cols["payload"] = pa.array(
                        [bytes(sub.payload(i)) for i in range(len(sub))], type=pa.binary()
                    )
                sink.write(t, pa.table(cols))
    finally:
        sink.close()
    return sink.files
