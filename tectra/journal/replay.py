"""Deterministic replay: recorded inputs through the same step functions, outputs diffed.

This module owns the replay engine and its diff report:

* `iter_steps` regroups a journal's frames into the step calls that produced them (a step is
  the frames of one component sharing one step number; see `tectra.journal.capture`).
* `ReplayEngine` restores components from a SNAPSHOT frame (or starts them fresh), then, in
  journal order, sets a `VirtualClock` to each step's recorded time and calls
  ``component.step(inputs, now_ns)`` with the recorded input batch. Pacing: `INSTANT` (as fast
  as possible), `REALTIME` (recorded inter-step gaps kept), `SPEED` (gaps divided by N),
  `STEP` (a hook after every step; `steps()` also lets a caller drive one step at a time and
  inspect the component between them). The engine only calls `step`: it opens no socket and
  sends nothing, so a replay can never reach a venue or a client. Outputs it produces carry
  `RecordFlag.REPLAY` in their header flags, and may be journaled to a separate journal
  (`output_writer`) whose frames say so.
* Every step's outputs are compared with the recorded OUTPUT frames of that step, bit for bit
  (the REPLAY flag bit excepted). `DiffReport` gives the first divergence with its segment,
  sequence, record type, field-level differences and the step's inputs as context, and counts
  divergences by component and by record type.
* `diff_journals` compares the OUTPUT frames of two journals step by step (a live capture and
  a replay's output journal, or two live runs).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tectra.core.clock import VirtualClock
from tectra.journal.capture import (
    Component,
    OpaqueBatch,
    StepInputs,
    normalize_outputs,
    timer_input_type,
)
from tectra.journal.format import (
    BATCH_HEAD,
    FRAME_HEADER_SIZE,
    FormatError,
    RecordKind,
    RecordType,
    crc32c,
    decode_record_batch,
    is_schema_type,
    raw_bytes,
    raw_copy,
    type_name,
)
from tectra.journal.reader import FrameBatch, JournalReader
from tectra.journal.stepblock import DIGEST_DTYPE, decode_step_block, is_digest
from tectra.journal.writer import JournalWriter
from tectra.schema import Component as ComponentId
from tectra.schema import RecordFlag, SchemaError, layout_by_type_id

__all__ = [
    "DiffReport",
    "Divergence",
    "FieldDiff",
    "ReplayEngine",
    "ReplayError",
    "ReplayMode",
    "ReplayOptions",
    "StepGroup",
    "StepView",
    "diff_journals",
    "iter_steps",
    "replay_journal",
]

_REPLAY = np.uint32(int(RecordFlag.REPLAY))
_NOT_REPLAY = np.uint32(~int(RecordFlag.REPLAY) & 0xFFFFFFFF)

Chunk = tuple[int, npt.NDArray[Any] | OpaqueBatch, npt.NDArray[np.uint64] | None]
"""(type code, records or opaque batch, journal seqs of those records when recorded)."""


class ReplayError(RuntimeError):
    """The journal cannot be replayed as asked (no snapshot, time going backwards, ...)."""


class ReplayMode(enum.StrEnum):
    INSTANT = "instant"
    REALTIME = "realtime"
    SPEED = "speed"
    STEP = "step"


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay. `speed` is the N of N× (SPEED mode); `from_snapshot` starts every
    component at its latest SNAPSHOT frame (at or before step `snapshot_step` when given)."""

    mode: ReplayMode = ReplayMode.INSTANT
    speed: float = 1.0
    from_snapshot: bool = False
    snapshot_step: int | None = None
    max_details: int = 50
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", ReplayMode(self.mode))
        if self.speed <= 0:
            raise ValueError("speed must be > 0")


def component_name(cid: int) -> str:
    try:
        return ComponentId(cid).name
    except ValueError:
        return str(cid)


# --------------------------------------------------------------------------------------------
# Step groups
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StepGroup:
    """One recorded step call: its inputs and the outputs it produced, with where they are."""

    component: int
    step: int
    now_ns: int
    segment: str
    first_seq: int
    inputs: StepInputs | None
    input_seqs: npt.NDArray[np.uint64]
    expected: list[Chunk]


def _opaque_from(fb: FrameBatch, idx: npt.NDArray[np.intp], type_code: int) -> OpaqueBatch:
    return OpaqueBatch.from_payloads(type_code, [fb.payload(int(i)) for i in idx])


def _chunks(fb: FrameBatch, idx: npt.NDArray[np.intp], *, copy: bool) -> list[Chunk]:
    """Runs of consecutive same-type frames among fb[idx], as record arrays / opaque batches."""
    if idx.shape[0] == 0:
        return []
    types = fb.type[idx]
    cuts = np.flatnonzero(types[1:] != types[:-1]) + 1
    out: list[Chunk] = []
    for run in np.split(idx, cuts):
        t = int(fb.type[int(run[0])])
        seqs = fb.seq[run]
        if t == RecordType.RECORD_BATCH:
            # One frame, many records: each record takes its frame's seq.
            for i in run.tolist():
                recs = decode_record_batch(fb.payload(i))
                data = raw_copy(recs) if copy else recs
                seq = np.full(recs.shape[0], fb.seq[i], dtype=np.uint64)
                out.append((int(recs["type_id"][0]), data, seq))
        elif is_schema_type(t):
            recs = fb.select(run).records(t)
            out.append((t, raw_copy(recs) if copy else recs, seqs))
        else:
            out.append((t, _opaque_from(fb, run, t), seqs))
    return out


def _merge_chunks(chunks: Iterable[Chunk]) -> list[Chunk]:
    merged: list[Chunk] = []
    for t, data, seqs in chunks:
        if merged and merged[-1][0] == t and len(data) and len(merged[-1][1]):
            pt, pdata, pseqs = merged[-1]
            if isinstance(pdata, OpaqueBatch) and isinstance(data, OpaqueBatch):
                joined: Any = OpaqueBatch.from_payloads(t, pdata.payloads() + data.payloads())
            elif isinstance(pdata, np.ndarray) and isinstance(data, np.ndarray):
                # Raw bytes, not np.concatenate: promotion of padded structured dtypes yields a
                # packed dtype, which would compare unequal to the same records.
                joined = np.frombuffer(bytearray(raw_bytes(pdata) + raw_bytes(data)), pdata.dtype)
            else:
                merged.append((t, data, seqs))
                continue
            js = None if pseqs is None or seqs is None else np.concatenate([pseqs, seqs])
            merged[-1] = (pt, joined, js)
        else:
            merged.append((t, data, seqs))
    return merged


def _materialize(pieces: list[tuple[FrameBatch, npt.NDArray[np.intp]]]) -> StepGroup:
    fb0, idx0 = pieces[0]
    i0 = int(idx0[0])
    comp, step = int(fb0.component[i0]), int(fb0.step[i0])
    inputs_chunks: list[Chunk] = []
    expected: list[Chunk] = []
    timer_type: int | None = None
    for fb, idx in pieces:
        kinds = fb.kind[idx]
        inp = idx[kinds == RecordKind.INPUT]
        timers = inp[fb.type[inp] == RecordType.TIMER]
        if timers.shape[0]:
            timer_type = timer_input_type(fb.payload(int(timers[0])))
            inp = inp[fb.type[inp] != RecordType.TIMER]
        inputs_chunks += _chunks(fb, inp, copy=True)
        expected += _chunks(fb, idx[kinds == RecordKind.OUTPUT], copy=False)
    inputs: StepInputs | None = None
    input_seqs = np.zeros(0, np.uint64)
    merged_inputs = _merge_chunks(inputs_chunks)
    if len(merged_inputs) > 1:
        raise ReplayError(
            f"{component_name(comp)} step {step}: inputs of several types "
            f"({', '.join(type_name(c[0]) for c in merged_inputs)}); a step takes one batch"
        )
    if merged_inputs:
        _t, data, seqs = merged_inputs[0]
        inputs = data
        input_seqs = seqs if seqs is not None else input_seqs
    elif timer_type is not None:
        if is_schema_type(timer_type):
            inputs = np.zeros(0, dtype=layout_by_type_id(timer_type).dtype)
        else:
            inputs = OpaqueBatch.empty(timer_type)
    return StepGroup(
        component=comp,
        step=step,
        now_ns=int(fb0.mono_ns[i0]),
        segment=fb0.segment.name,
        first_seq=int(fb0.seq[i0]),
        inputs=inputs,
        input_seqs=input_seqs,
        expected=_merge_chunks(expected),
    )


def _side(fb: FrameBatch, frames: npt.NDArray[np.intp]) -> tuple[int, Any, Any, Any]:
    """(record type, records, record seqs, per-frame record starts) for frames that are all
    single records of one schema type, or all RECORD_BATCHes of one inner type."""
    if frames.shape[0] == 0:
        return 0, None, np.zeros(0, np.uint64), np.zeros(1, np.int64)
    types = fb.type[frames]
    t = int(types[0])
    if (types != t).any():
        raise _NoPlanError
    if is_schema_type(t):
        recs = fb.select(frames).records(t)
        return t, recs, fb.seq[frames], np.arange(frames.shape[0] + 1)
    if t != RecordType.RECORD_BATCH:
        raise _NoPlanError
    # RECORD_BATCH payloads: head (u16 type, u16 version, u32 count) then the records.
    data = fb.data
    heads = fb.offset[frames] + FRAME_HEADER_SIZE
    words = data[: data.shape[0] // 4 * 4].view("<u4")
    type_version = words[heads // 4]
    counts = words[heads // 4 + 1].astype(np.int64)
    first = int(type_version[0])
    if (type_version != first).any():
        raise _NoPlanError
    layout = layout_by_type_id(first & 0xFFFF, first >> 16)
    size = layout.itemsize
    if (fb.payload_len[frames] != BATCH_HEAD.size + counts * size).any():
        raise _NoPlanError  # malformed: let the one-by-one path raise with details
    starts = np.zeros(frames.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    total = int(starts[-1])
    # Each frame's records are contiguous: one slice per frame, one concatenation (memcpy).
    first_rec = (heads + BATCH_HEAD.size).tolist()
    spans = (counts * size).tolist()
    raw = np.concatenate([data[a : a + n] for a, n in zip(first_rec, spans, strict=True)])
    recs = raw.view(layout.dtype).reshape(total)
    if ((recs["type_id"] != layout.type_id) | (recs["version"] != layout.version)).any():
        raise _NoPlanError
    return layout.type_id, recs, np.repeat(fb.seq[frames], counts), starts


class _BatchPlan:
    """Per read batch: when the input frames are all one schema type (or all RECORD_BATCHes
    of one type) and so are the output frames — the usual case — all inputs and outputs are
    gathered once and each step is a slice of them, so a step costs a few slices instead of a
    dozen numpy calls. `in_at`/`out_at` map a frame position to its first record."""

    __slots__ = (
        "in_at",
        "in_recs",
        "in_seqs",
        "in_type",
        "out_at",
        "out_recs",
        "out_seqs",
        "out_type",
    )

    def __init__(self, fb: FrameBatch, idx: npt.NDArray[np.intp]) -> None:
        is_in = fb.kind[idx] == RecordKind.INPUT
        self.in_type, in_recs, self.in_seqs, in_at = _side(fb, idx[is_in])
        self.out_type, self.out_recs, self.out_seqs, out_at = _side(fb, idx[~is_in])
        self.in_recs = raw_copy(in_recs) if in_recs is not None else None
        self.in_at: list[int] = in_at.tolist()
        self.out_at: list[int] = out_at.tolist()


class _NoPlanError(Exception):
    """The batch mixes types (or has TIMER/opaque frames): step groups are built one by one."""


def iter_steps(
    directory: Path | str,
    components: Iterable[int] | None = None,
    *,
    start_seq: int | None = None,
    outputs_only: bool = False,
    max_frames: int = 65536,
) -> Iterator[StepGroup]:
    """The recorded step calls of `components` (all when None), in journal order."""
    wanted = None if components is None else np.array(sorted(set(components)), dtype=np.uint8)
    pending: list[tuple[FrameBatch, npt.NDArray[np.intp]]] = []
    key: tuple[int, int] | None = None

    def plain(fb: FrameBatch) -> Iterator[StepGroup]:
        """Step groups of per-step frames (INPUT/OUTPUT), which may straddle read batches."""
        nonlocal pending, key
        kind = fb.kind
        mask = kind == RecordKind.OUTPUT
        if not outputs_only:
            mask |= kind == RecordKind.INPUT
        if wanted is not None:
            mask &= np.isin(fb.component, wanted)
        idx = np.flatnonzero(mask)
        if idx.shape[0] == 0:
            return
        steps = fb.step[idx]
        comps = fb.component[idx]
        cuts = np.flatnonzero((steps[1:] != steps[:-1]) | (comps[1:] != comps[:-1])) + 1
        bounds = [0, *cuts.tolist(), int(idx.shape[0])]
        groups = len(bounds) - 1
        plan: _BatchPlan | None = None
        if groups > 2:
            try:
                plan = _BatchPlan(fb, idx)
            except _NoPlanError:
                plan = None
        if plan is not None:
            is_in = (fb.kind[idx] == RecordKind.INPUT).astype(np.int64)
            in_at = np.concatenate([[0], np.cumsum(is_in)]).tolist()
            segment = fb.segment.name
            mono = fb.mono_ns[idx].tolist()
            seq_at = fb.seq[idx].tolist()
        comps_l, steps_l = comps.tolist(), steps.tolist()
        for g in range(groups):
            lo, hi = bounds[g], bounds[g + 1]
            k = (comps_l[lo], steps_l[lo])
            if key == k:
                pending.append((fb, idx[lo:hi]))  # a step that straddles two read batches
                continue
            if pending:
                yield _materialize(pending)
                pending = []
            key = k
            if plan is None or g == groups - 1:
                pending = [(fb, idx[lo:hi])]  # the last may continue in the next batch
                continue
            # Frame positions -> record positions (1:1 for single-record frames).
            fa, fb_ = in_at[lo], in_at[hi]
            a, b = plan.in_at[fa], plan.in_at[fb_]
            c, d = plan.out_at[lo - fa], plan.out_at[hi - fb_]
            inputs: StepInputs | None = None
            if b > a and plan.in_recs is not None:
                inputs = plan.in_recs[a:b]
            expected: list[Chunk] = []
            if d > c and plan.out_recs is not None:
                expected.append((plan.out_type, plan.out_recs[c:d], plan.out_seqs[c:d]))
            yield StepGroup(
                component=k[0],
                step=k[1],
                now_ns=mono[lo],
                segment=segment,
                first_seq=seq_at[lo],
                inputs=inputs,
                input_seqs=plan.in_seqs[a:b],
                expected=expected,
            )

    for fb in JournalReader(directory).batches(start_seq=start_seq, max_frames=max_frames):
        blocks = fb.type == RecordType.STEP_BLOCK
        if wanted is not None:
            blocks &= np.isin(fb.component, wanted)
        at = np.flatnonzero(blocks).tolist()
        if not at:
            yield from plain(fb)
            continue
        start = 0
        for i in [*at, len(fb)]:
            if i > start:
                yield from plain(fb.select(np.arange(start, i)))
            if i < len(fb):
                if pending:
                    yield _materialize(pending)
                    pending, key = [], None
                yield from _block_groups(fb, i)
            start = i + 1
    if pending:
        yield _materialize(pending)


def _block_groups(fb: FrameBatch, i: int) -> Iterator[StepGroup]:
    """The steps of the STEP_BLOCK frame `i` of `fb` (the light capture path's frames)."""
    seq = int(fb.seq[i])
    try:
        steps = decode_step_block(fb.payload(i))
    except (FormatError, SchemaError) as exc:
        raise ReplayError(f"STEP_BLOCK seq {seq} in {fb.segment.name} is malformed: {exc}") from exc
    component = int(fb.component[i])
    for st in steps:
        seqs = np.full(len(st.inputs), seq, dtype=np.uint64)
        yield StepGroup(
            component=component,
            step=st.step,
            now_ns=st.now_ns,
            segment=fb.segment.name,
            first_seq=seq,
            inputs=st.inputs,
            input_seqs=seqs,
            expected=[
                (_chunk_type(out), out, np.full(len(out), seq, dtype=np.uint64))
                for out in st.outputs
            ],
        )


def _chunk_type(out: npt.NDArray[Any] | OpaqueBatch) -> int:
    if isinstance(out, OpaqueBatch):
        return out.type_code
    if is_digest(out):
        return int(RecordType.OUTPUT_DIGEST)
    return int(out["type_id"][0])


# --------------------------------------------------------------------------------------------
# Diff report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldDiff:
    field: str
    expected: Any
    actual: Any


@dataclass(frozen=True, slots=True)
class Divergence:
    """One output record that differs from the recording (or is missing / extra).

    kind: "mismatch" (same type, different bytes), "type" (another record type), "missing"
    (recorded, not produced), "extra" (produced, not recorded), "digest" (digest-mode capture:
    the output array's record count or XXH64 differs; `index` is the array's position among
    the step's non-empty outputs and the context holds the replayed records).
    """

    component: str
    step: int
    now_ns: int
    kind: str
    record_type: str
    index: int
    segment: str
    seq: int | None
    fields: tuple[FieldDiff, ...]
    context: Mapping[str, Any]

    def format_text(self) -> str:
        seq = f"seq {self.seq}" if self.seq is not None else "no recorded seq"
        lines = [
            f"{self.kind} in {self.component} step {self.step} at t={self.now_ns} ns: "
            f"{self.record_type} output #{self.index} ({self.segment}, {seq})"
        ]
        lines += [f"    {f.field}: expected {f.expected!r}, got {f.actual!r}" for f in self.fields]
        for key, value in self.context.items():
            lines.append(f"    {key}: {value}")
        return "\n".join(lines)


@dataclass(slots=True)
class DiffReport:
    """Outcome of a replay (or a journal diff): counts, first divergence, details."""

    components: list[str]
    mode: str
    steps: int = 0
    inputs: int = 0
    expected_outputs: int = 0
    actual_outputs: int = 0
    divergences: int = 0
    divergent_steps: int = 0
    by_component: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    first: Divergence | None = None
    details: list[Divergence] = field(default_factory=list)
    elapsed_s: float = 0.0
    first_now_ns: int | None = None
    last_now_ns: int | None = None
    snapshot_steps: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    steps_lost: int = 0
    steps_not_replayed: int = 0
    first_gap: str | None = None

    @property
    def zero(self) -> bool:
        return self.divergences == 0

    @property
    def complete(self) -> bool:
        """False when the recording has gaps (steps the capture lost): replay of a component
        stops at its first gap, so what follows was not verified."""
        return self.gaps == 0

    @property
    def span_s(self) -> float:
        if self.first_now_ns is None or self.last_now_ns is None:
            return 0.0
        return (self.last_now_ns - self.first_now_ns) / 1e9

    @property
    def realtime_multiple(self) -> float:
        return self.span_s / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        def div(d: Divergence | None) -> dict[str, Any] | None:
            if d is None:
                return None
            out = asdict(d)
            out["context"] = {k: repr(v) for k, v in d.context.items()}
            out["fields"] = [
                {"field": f.field, "expected": repr(f.expected), "actual": repr(f.actual)}
                for f in d.fields
            ]
            return out

        return {
            "components": self.components,
            "mode": self.mode,
            "steps": self.steps,
            "inputs": self.inputs,
            "expected_outputs": self.expected_outputs,
            "actual_outputs": self.actual_outputs,
            "divergences": self.divergences,
            "divergent_steps": self.divergent_steps,
            "by_component": dict(self.by_component),
            "by_type": dict(self.by_type),
            "first": div(self.first),
            "elapsed_s": self.elapsed_s,
            "span_s": self.span_s,
            "realtime_multiple": self.realtime_multiple,
            "snapshot_steps": dict(self.snapshot_steps),
            "gaps": self.gaps,
            "steps_lost": self.steps_lost,
            "steps_not_replayed": self.steps_not_replayed,
            "first_gap": self.first_gap,
        }

    def format_text(self) -> str:
        head = (
            f"replay ({self.mode}) of {', '.join(self.components) or 'no components'}: "
            f"{self.steps} steps, {self.inputs} inputs, {self.expected_outputs} recorded / "
            f"{self.actual_outputs} replayed outputs — "
            + ("ZERO DIFFS" if self.zero else f"{self.divergences} DIVERGENCES")
        )
        lines = [head]
        if self.elapsed_s > 0 and self.span_s > 0:
            lines.append(
                f"  {self.span_s:.3f} s of recorded time in {self.elapsed_s:.3f} s "
                f"({self.realtime_multiple:.1f}x real time)"
            )
        if self.snapshot_steps:
            lines.append(f"  started from snapshots at steps {self.snapshot_steps}")
        if self.gaps:
            lines.append(
                f"  GAPS: {self.gaps} in the recording, {self.steps_lost} steps lost; "
                f"{self.steps_not_replayed} later steps not replayed; first: {self.first_gap}"
            )
        if not self.zero:
            lines.append(f"  divergent steps: {self.divergent_steps}")
            lines.append(f"  by component: {self.by_component}")
            lines.append(f"  by record type: {self.by_type}")
            if self.first is not None:
                lines.append("  first divergence: " + self.first.format_text())
        return "\n".join(lines)


def _render(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        raw = bytes(value)
        text = raw.rstrip(b"\x00")
        return text.decode() if all(32 <= b < 127 for b in text) else raw.hex()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _record_dict(rec: np.void) -> dict[str, Any]:
    names = rec.dtype.names or ()
    return {name: _render(rec[name]) for name in names}


def _masked_bytes(arr: npt.NDArray[Any]) -> bytes:
    if arr.dtype.names and "flags" in arr.dtype.names and (arr["flags"] & _REPLAY).any():
        arr = raw_copy(arr)
        arr["flags"] &= _NOT_REPLAY
    return raw_bytes(arr)


def _chunk_bytes(data: npt.NDArray[Any] | OpaqueBatch) -> bytes:
    if isinstance(data, OpaqueBatch):
        return data.offsets.tobytes() + data.data.tobytes()
    return _masked_bytes(data)


def _flatten(chunks: Sequence[Chunk]) -> list[tuple[int, Any, int | None]]:
    out: list[tuple[int, Any, int | None]] = []
    for t, data, seqs in chunks:
        items: Sequence[Any] = (
            data.payloads()
            if isinstance(data, OpaqueBatch)
            else [data[i : i + 1] for i in range(data.shape[0])]
        )
        for j, item in enumerate(items):
            out.append((t, item, int(seqs[j]) if seqs is not None else None))
    return out


def _field_diffs(exp: Any, act: Any) -> tuple[FieldDiff, ...]:
    if isinstance(exp, bytes):
        n = min(len(exp), len(act))
        at = next((i for i in range(n) if exp[i] != act[i]), n)
        return (
            FieldDiff(
                f"bytes[{at}:]",
                exp[max(0, at - 8) : at + 8].hex(),
                act[max(0, at - 8) : at + 8].hex(),
            ),
        )
    diffs: list[FieldDiff] = []
    exp, act = exp[0], act[0]
    for name in exp.dtype.names or ():
        e, a = exp[name], act[name]
        if name == "flags":
            e, a = int(e) & int(_NOT_REPLAY), int(a) & int(_NOT_REPLAY)
            if e != a:
                diffs.append(FieldDiff(name, e, a))
            continue
        if np.asarray(e).tobytes() != np.asarray(a).tobytes():
            diffs.append(FieldDiff(name, _render(e), _render(a)))
    return tuple(diffs)


def _same(exp: Any, act: Any) -> bool:
    if isinstance(exp, bytes) or isinstance(act, bytes):
        return bool(exp == act)
    return _masked_bytes(exp) == _masked_bytes(act)


def _input_context(group: StepGroup) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    inputs = group.inputs
    if inputs is None:
        return ctx
    n = len(inputs)
    t = inputs.type_code if isinstance(inputs, OpaqueBatch) else None
    if t is None and n and isinstance(inputs, np.ndarray):
        t = int(inputs["type_id"][0])
    ctx["inputs"] = f"{n} x {type_name(t) if t is not None else 'none'}"
    if group.input_seqs.shape[0]:
        ctx["input seqs"] = f"{int(group.input_seqs[0])}..{int(group.input_seqs[-1])}"
    if n and not isinstance(inputs, OpaqueBatch):
        ctx["first input"] = _record_dict(inputs[0])
    return ctx


def _compare(
    report: DiffReport,
    group: StepGroup,
    actual: list[Chunk],
    max_details: int,
    raw_actual: Sequence[npt.NDArray[Any] | OpaqueBatch] | None = None,
) -> bool:
    """Account one step's outputs; True when it diverged."""
    exp, act = group.expected, actual
    if any(c[0] == RecordType.OUTPUT_DIGEST for c in exp):
        return _compare_digests(report, group, actual, raw_actual, max_details)
    report.expected_outputs += sum(len(c[1]) for c in exp)
    report.actual_outputs += sum(len(c[1]) for c in act)
    if len(exp) == len(act) and all(
        e[0] == a[0] and len(e[1]) == len(a[1]) and _chunk_bytes(e[1]) == _chunk_bytes(a[1])
        for e, a in zip(exp, act, strict=True)
    ):
        return False
    flat_e, flat_a = _flatten(exp), _flatten(act)
    comp = component_name(group.component)
    context = _input_context(group)
    diverged = False
    for i in range(max(len(flat_e), len(flat_a))):
        e = flat_e[i] if i < len(flat_e) else None
        a = flat_a[i] if i < len(flat_a) else None
        fields: tuple[FieldDiff, ...] = ()
        ctx = dict(context)
        if e is not None and a is not None:
            if e[0] != a[0]:
                kind = "type"
                ctx["expected type"] = type_name(e[0])
                ctx["actual type"] = type_name(a[0])
            elif _same(e[1], a[1]):
                continue
            else:
                kind = "mismatch"
                fields = _field_diffs(e[1], a[1])
            t, seq = e[0], e[2]
        elif e is not None:
            kind, t, seq = "missing", e[0], e[2]
        else:
            assert a is not None
            kind, t, seq = "extra", a[0], None
        sample = e[1] if e is not None else a[1] if a is not None else b""
        if not isinstance(sample, bytes):
            if e is not None:
                ctx["expected"] = _record_dict(e[1][0])
            if a is not None:
                ctx["actual"] = _record_dict(a[1][0])
        diverged = True
        report.divergences += 1
        tname = type_name(t)
        report.by_component[comp] = report.by_component.get(comp, 0) + 1
        report.by_type[tname] = report.by_type.get(tname, 0) + 1
        if len(report.details) < max_details or report.first is None:
            d = Divergence(
                component=comp,
                step=group.step,
                now_ns=group.now_ns,
                kind=kind,
                record_type=tname,
                index=i,
                segment=group.segment,
                seq=seq,
                fields=fields,
                context=ctx,
            )
            if report.first is None:
                report.first = d
            if len(report.details) < max_details:
                report.details.append(d)
    if diverged:
        report.divergent_steps += 1
    return diverged


def _digest_table(
    chunks: Sequence[Chunk], raw: Sequence[npt.NDArray[Any] | OpaqueBatch] | None
) -> npt.NDArray[Any]:
    """(type, records, XXH64) per non-empty output array: what digest mode journals. From the
    recorded digest chunks, or computed over replayed outputs in the order step returned them
    (`raw`, unmerged, as the live capture digested them)."""
    from tectra.journal.shmtap import output_digest  # the C digest the capture used

    tables = [c[1] for c in chunks if isinstance(c[1], np.ndarray) and is_digest(c[1])]
    if tables:
        return np.concatenate(tables)
    arrays: list[Any] = [c[1] for c in chunks] if raw is None else list(raw)
    arrays = [a for a in arrays if len(a) and not isinstance(a, OpaqueBatch)]
    table = np.zeros(len(arrays), dtype=DIGEST_DTYPE)
    for i, arr in enumerate(arrays):
        recs = arr
        if recs.dtype.names and "flags" in recs.dtype.names and (recs["flags"] & _REPLAY).any():
            recs = raw_copy(recs)
            recs["flags"] &= _NOT_REPLAY
        table[i] = (int(recs["type_id"][0]), 0, recs.shape[0], output_digest(recs))
    return table


def _compare_digests(
    report: DiffReport,
    group: StepGroup,
    actual: list[Chunk],
    raw_actual: Sequence[npt.NDArray[Any] | OpaqueBatch] | None,
    max_details: int,
) -> bool:
    """Digest mode: compare (type, records, XXH64) per output array. A divergence names the
    step and the output array; the replayed records of that array are given as context (the
    recording holds only their digest)."""
    exp = _digest_table(group.expected, None)
    act = _digest_table(actual, raw_actual)
    report.expected_outputs += int(exp["count"].sum())
    report.actual_outputs += int(act["count"].sum())
    if exp.tobytes() == act.tobytes():
        return False
    by_type: dict[int, Any] = {}
    for arr in raw_actual if raw_actual is not None else [c[1] for c in actual]:
        if len(arr) and not isinstance(arr, OpaqueBatch) and not is_digest(arr):
            by_type.setdefault(int(arr["type_id"][0]), arr)
    comp = component_name(group.component)
    seq = group.first_seq
    for i in range(max(len(exp), len(act))):
        e = exp[i] if i < len(exp) else None
        a = act[i] if i < len(act) else None
        if e is not None and a is not None and e.tobytes() == a.tobytes():
            continue
        ctx: dict[str, Any] = dict(_input_context(group))
        ctx["capture mode"] = "digest: recorded outputs are (type, records, XXH64) per array"
        fields: list[FieldDiff] = []
        if e is not None and a is not None:
            kind = "digest" if e["type"] == a["type"] else "type"
            t = int(e["type"])
            if kind == "type":
                ctx["expected type"] = type_name(int(e["type"]))
                ctx["actual type"] = type_name(int(a["type"]))
            if e["count"] != a["count"]:
                fields.append(FieldDiff("records", int(e["count"]), int(a["count"])))
            if e["digest"] != a["digest"]:
                fields.append(
                    FieldDiff("xxh64", f"{int(e['digest']):016x}", f"{int(a['digest']):016x}")
                )
        elif e is not None:
            kind, t = "missing", int(e["type"])
        else:
            assert a is not None
            kind, t = "extra", int(a["type"])
        if a is not None:
            replayed = by_type.get(int(a["type"]))
            if replayed is not None:
                ctx["replayed records"] = int(replayed.shape[0])
                ctx["first replayed"] = _record_dict(replayed[0])
        report.divergences += 1
        tname = type_name(t)
        report.by_component[comp] = report.by_component.get(comp, 0) + 1
        report.by_type[tname] = report.by_type.get(tname, 0) + 1
        if len(report.details) < max_details or report.first is None:
            d = Divergence(
                component=comp,
                step=group.step,
                now_ns=group.now_ns,
                kind=kind,
                record_type=tname,
                index=i,
                segment=group.segment,
                seq=seq,
                fields=tuple(fields),
                context=ctx,
            )
            if report.first is None:
                report.first = d
            if len(report.details) < max_details:
                report.details.append(d)
    report.divergent_steps += 1
    return True


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StepView:
    """What a STEP-mode hook (or a `steps()` caller) sees after each replayed step."""

    component_id: int
    component: Component
    step: int
    now_ns: int
    inputs: StepInputs | None
    outputs: list[npt.NDArray[Any] | OpaqueBatch]
    expected: list[Chunk]
    diverged: bool


StepHook = Callable[[StepView], bool | None]


def _as_chunks(outputs: list[npt.NDArray[Any] | OpaqueBatch]) -> list[Chunk]:
    chunks: list[Chunk] = []
    for out in outputs:
        if isinstance(out, OpaqueBatch):
            if len(out):
                chunks.append((out.type_code, out, None))
            continue
        if out.shape[0] == 0:
            continue
        types = out["type_id"]
        t0 = int(types[0])
        if (types != t0).any():
            raise ReplayError("an output array holds records of several types")
        chunks.append((t0, out, None))
    return _merge_chunks(chunks)


class ReplayEngine:
    """Replays the steps of one or more components recorded in a journal directory."""

    def __init__(
        self,
        directory: Path | str,
        components: Component | Sequence[Component] | Mapping[int, Component],
        *,
        options: ReplayOptions | None = None,
        output_writer: JournalWriter | None = None,
        hook: StepHook | None = None,
        clock: VirtualClock | None = None,
    ) -> None:
        self.directory = Path(directory)
        if isinstance(components, Mapping):
            self.components = {int(k): v for k, v in components.items()}
        elif isinstance(components, Sequence):
            self.components = {int(c.component_id): c for c in components}
        else:
            self.components = {int(components.component_id): components}
        self.options = options if options is not None else ReplayOptions()
        if self.options.mode is ReplayMode.STEP and hook is None:
            raise ReplayError("STEP mode needs a hook (or drive steps() yourself)")
        self.output_writer = output_writer
        self.hook = hook
        self.clock = clock if clock is not None else VirtualClock()
        self.report = DiffReport(
            components=[component_name(c) for c in sorted(self.components)],
            mode=self.options.mode.value,
        )

    def _find_snapshots(self) -> dict[int, tuple[int, int, bytes]]:
        """component -> (step, seq, state) of the snapshot to start from."""
        found: dict[int, tuple[int, int, bytes]] = {}
        wanted = np.array(sorted(self.components), dtype=np.uint8)
        limit = self.options.snapshot_step
        # Headers only (no CRC pass over the whole journal); the chosen frames are checked.
        for fb in JournalReader(self.directory).batches(max_frames=65536, verify_crc=False):
            mask = (fb.kind == RecordKind.SNAPSHOT) & np.isin(fb.component, wanted)
            if limit is not None:
                mask &= fb.step <= np.uint64(limit)
            for i in np.flatnonzero(mask).tolist():
                frame = fb.frame(i)
                if crc32c(frame[:-4]) != int.from_bytes(frame[-4:], "little"):
                    raise ReplayError(
                        f"snapshot frame seq {int(fb.seq[i])} in {fb.segment.name} fails its CRC"
                    )
                found[int(fb.component[i])] = (
                    int(fb.step[i]),
                    int(fb.seq[i]),
                    bytes(fb.payload(i)),
                )
        return found

    def steps(self) -> Iterator[StepView]:
        """Replay lazily: each `next()` replays one step and returns what it did."""
        opts = self.options
        start_seq: int | None = None
        skip_before: dict[int, int] = {}
        if opts.from_snapshot:
            snaps = self._find_snapshots()
            missing = [component_name(c) for c in self.components if c not in snaps]
            if missing:
                raise ReplayError(f"no snapshot to start from for {', '.join(missing)}")
            for cid, (step, _seq, state) in snaps.items():
                self.components[cid].restore(state)
                skip_before[cid] = step
                self.report.snapshot_steps[component_name(cid)] = step
            start_seq = min(seq for _step, seq, _state in snaps.values())
        report = self.report
        t_start = opts.wall_clock()
        wall0: float | None = None
        speed = opts.speed if opts.mode is ReplayMode.SPEED else 1.0
        paced = opts.mode in (ReplayMode.REALTIME, ReplayMode.SPEED)
        last_step: dict[int, int] = {}
        stopped: set[int] = set()
        try:
            for group in iter_steps(self.directory, self.components, start_seq=start_seq):
                if group.step < skip_before.get(group.component, 0):
                    continue
                if group.component in stopped:
                    report.steps_not_replayed += 1
                    continue
                last = last_step.get(group.component)
                if last is not None and group.step > last + 1:
                    # The capture lost steps here (a full capture queue): the component's
                    # state after them is unknown, so comparing further would only report
                    # the gap as divergences. Say so and stop replaying this component.
                    report.gaps += 1
                    report.steps_lost += group.step - last - 1
                    report.steps_not_replayed += 1
                    if report.first_gap is None:
                        report.first_gap = (
                            f"{component_name(group.component)} steps {last + 1}.."
                            f"{group.step - 1} missing before {group.segment} seq "
                            f"{group.first_seq}"
                        )
                    stopped.add(group.component)
                    continue
                last_step[group.component] = group.step
                if group.inputs is None:
                    raise ReplayError(
                        f"{component_name(group.component)} step {group.step} "
                        f"({group.segment}, seq {group.first_seq}) has outputs but no inputs"
                    )
                now = group.now_ns
                if report.first_now_ns is None:
                    report.first_now_ns = now
                    wall0 = opts.wall_clock()
                if paced and wall0 is not None:
                    delay = wall0 + (now - report.first_now_ns) / 1e9 / speed - opts.wall_clock()
                    if delay > 0:
                        opts.sleep(delay)
                if now < self.clock.now_ns():
                    raise ReplayError(
                        f"recorded time goes backwards at {component_name(group.component)} "
                        f"step {group.step}: {self.clock.now_ns()} -> {now}"
                    )
                self.clock.set(now)
                component = self.components[group.component]
                outputs = normalize_outputs(component.step(group.inputs, now))
                actual = _as_chunks(outputs)
                report.steps += 1
                report.inputs += len(group.inputs)
                report.last_now_ns = now
                diverged = _compare(report, group, actual, opts.max_details, outputs)
                outputs = [_flag_replay(o) for o in outputs]
                if self.output_writer is not None:
                    self._journal_outputs(group, outputs)
                report.elapsed_s = opts.wall_clock() - t_start
                yield StepView(
                    group.component,
                    component,
                    group.step,
                    now,
                    group.inputs,
                    outputs,
                    group.expected,
                    diverged,
                )
        finally:
            report.elapsed_s = opts.wall_clock() - t_start

    def _journal_outputs(
        self, group: StepGroup, outputs: list[npt.NDArray[Any] | OpaqueBatch]
    ) -> None:
        writer = self.output_writer
        assert writer is not None
        with writer.group():
            for out in outputs:
                if isinstance(out, OpaqueBatch):
                    if len(out):
                        writer.append_payloads(
                            out.payloads(),
                            type_code=out.type_code,
                            kind=RecordKind.OUTPUT,
                            component=group.component,
                            mono_ns=group.now_ns,
                            step=group.step,
                        )
                elif out.shape[0]:
                    writer.append_records(
                        out,
                        kind=RecordKind.OUTPUT,
                        component=group.component,
                        mono_ns=group.now_ns,
                        step=group.step,
                    )

    def run(self) -> DiffReport:
        """Replay to the end (or until a STEP hook returns False); the diff report."""
        for view in self.steps():
            if self.hook is not None and self.hook(view) is False:
                break
        return self.report


def _flag_replay(out: npt.NDArray[Any] | OpaqueBatch) -> npt.NDArray[Any] | OpaqueBatch:
    if isinstance(out, OpaqueBatch) or out.shape[0] == 0:
        return out
    if not out.flags.writeable:
        out = raw_copy(out)
    out["flags"] |= _REPLAY
    return out


def replay_journal(
    directory: Path | str,
    components: Component | Sequence[Component] | Mapping[int, Component],
    *,
    options: ReplayOptions | None = None,
    output_writer: JournalWriter | None = None,
    hook: StepHook | None = None,
) -> DiffReport:
    """Replay `directory` through `components` and return the diff report."""
    engine = ReplayEngine(
        directory, components, options=options, output_writer=output_writer, hook=hook
    )
    return engine.run()


def diff_journals(
    expected_dir: Path | str,
    actual_dir: Path | str,
    components: Iterable[int] | None = None,
    *,
    max_details: int = 50,
) -> DiffReport:
    """Compare the OUTPUT frames of two journals step by step (per component, by step number).

    Steps present on one side only count all their outputs as missing / extra. The REPLAY
    flag bit is ignored, so a live capture diffs cleanly against its replay's output journal.
    """
    started = time.monotonic()
    if components is None:
        seen: set[int] = set()
        for d in (expected_dir, actual_dir):
            for fb in JournalReader(d).batches():
                seen.update(np.unique(fb.component[fb.kind == RecordKind.OUTPUT]).tolist())
        comps = sorted(seen)
    else:
        comps = sorted(set(components))
    report = DiffReport(components=[component_name(c) for c in comps], mode="diff")
    for cid in comps:
        left = iter_steps(expected_dir, [cid], outputs_only=True)
        right = iter_steps(actual_dir, [cid], outputs_only=True)
        a = next(left, None)
        b = next(right, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a.step < b.step):
                assert a is not None
                _compare(report, a, [], max_details)
                a = next(left, None)
            elif a is None or b.step < a.step:
                empty = StepGroup(
                    b.component,
                    b.step,
                    b.now_ns,
                    b.segment,
                    b.first_seq,
                    None,
                    np.zeros(0, np.uint64),
                    [],
                )
                _compare(report, empty, b.expected, max_details)
                b = next(right, None)
            else:
                _compare(report, a, b.expected, max_details)
                a, b = next(left, None), next(right, None)
            report.steps += 1
    report.elapsed_s = time.monotonic() - started
    return report
