"""The journal role: ring → segments, in process (RingDrain) and as a real role process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from tectra.io.shm import RingKind, RingNotFoundError, RingPolicy, ShmRing
from tectra.journal.format import RecordType
from tectra.journal.reader import JournalReader
from tectra.journal.service import RingDrain
from tectra.journal.verify import verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status
from tectra.schema import (
    ITCH_EVENT,
    LIFECYCLE_EVENT,
    RISK_VERDICT,
    Component,
    new_records,
)


def _itch(first: int, n: int) -> np.ndarray:
    recs = new_records(ITCH_EVENT, n)
    recs["seq"] = np.arange(first, first + n)
    recs["ts_ns"] = 5_000 + recs["seq"].astype(np.int64)
    recs["msg_type"] = ord("A")
    return recs


def test_drain_journals_every_record_with_its_type_and_component(
    tmp_path: Path, shm_root: Path
) -> None:
    ring = ShmRing.create(
        "j", ITCH_EVENT.dtype, 1024, RingKind.MPMC, RingPolicy.BACKPRESSURE, root=shm_root
    )
    writer = JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE))
    drain = RingDrain(ring, writer, batch=64, batch_frames=False)
    ring.push(_itch(1, 100))
    # Other layouts travel in a slot of the ring's layout, identified by their header.
    mixed = np.zeros(3, dtype=ITCH_EVENT.dtype)
    verdict = new_records(RISK_VERDICT, 1)
    verdict["order_id"] = 42
    mixed[0:1].view(np.uint8)[: RISK_VERDICT.itemsize] = verdict.view(np.uint8)
    event = new_records(LIFECYCLE_EVENT, 1)
    event["component"] = Component.GATEWAY
    mixed[1:2].view(np.uint8)[:] = event.view(np.uint8)
    mixed[2:3].view(np.uint8)[:2] = [0xEE, 0xEE]  # a type this build does not know
    ring.push(mixed)
    assert drain.drain() == 103
    writer.close()
    ring.close()
    frames = list(JournalReader(tmp_path / "j").batches())
    types = np.concatenate([fb.type for fb in frames]).tolist()
    comps = np.concatenate([fb.component for fb in frames]).tolist()
    assert types == [ITCH_EVENT.type_id] * 100 + [
        RISK_VERDICT.type_id,
        LIFECYCLE_EVENT.type_id,
        RecordType.UNKNOWN_RECORD,
    ]
    assert comps[:100] == [Component.FEED] * 100
    assert comps[100:102] == [Component.RISK, Component.GATEWAY]
    last = frames[-1]
    assert last.records(RISK_VERDICT.type_id)["order_id"].tolist() == [42]
    assert drain.counters.unknown == 1
    assert verify_journal(tmp_path / "j").ok


def test_ring_loss_is_journaled_as_a_gap(tmp_path: Path, shm_root: Path) -> None:
    ring = ShmRing.create(
        "g", ITCH_EVENT.dtype, 64, RingKind.SPSC, RingPolicy.OVERWRITE, root=shm_root
    )
    writer = JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE))
    drain = RingDrain(ring, writer, batch_frames=False)
    ring.push(_itch(1, 200))  # 136 overwritten before the journal reads
    drain.drain()
    writer.close()
    fb = next(JournalReader(tmp_path / "j").batches())
    assert int(fb.type[0]) == RecordType.GAP
    assert int.from_bytes(bytes(fb.payload(0)), "little") == drain.counters.lost == 136
    assert len(fb) == 1 + 64


def test_market_data_is_journaled_one_frame_per_pop(tmp_path: Path, shm_root: Path) -> None:
    ring = ShmRing.create(
        "b", ITCH_EVENT.dtype, 4096, RingKind.SPSC, RingPolicy.BACKPRESSURE, root=shm_root
    )
    writer = JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE))
    drain = RingDrain(ring, writer, batch=500)
    assert drain.batch_frames  # chosen by layout: ITCH_EVENT is market data
    sent = _itch(1, 1200)
    ring.push(sent)
    assert drain.drain() == 1200
    writer.close()
    frames = list(JournalReader(tmp_path / "j").batches())
    assert [len(fb) for fb in frames] == [3]  # 500 + 500 + 200 records in 3 frames
    assert frames[0].type.tolist() == [RecordType.RECORD_BATCH] * 3
    assert frames[0].component.tolist() == [Component.FEED] * 3
    got = np.concatenate(list(JournalReader(tmp_path / "j").records(ITCH_EVENT.type_id)))
    assert got.tobytes() == sent.tobytes()
    assert verify_journal(tmp_path / "j").ok


CONFIG = """
[appliance]
name = "journal-test"
state_dir = "{state}"
shm_root = "{shm}"
[roles.journal]
metrics_port = 0
watchdog_s = 0
warmup_ticks = 500
[rings.journal]
capacity = 4096
kind = "mpmc"
policy = "backpressure"
record = "ITCH_EVENT"
[journal]
ring = "journal"
fsync = "{fsync}"
segment_max_bytes = 65536
batch_interval_s = 0.005
"""


def test_journal_role_process(tmp_path: Path, shm_root: Path) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "tectra.toml"
    cfg.write_text(CONFIG.format(state=state, shm=shm_root, fsync="batch"))
    code = (
        "import sys; from tectra.core.config import load_config; "
        "from tectra.journal.service import run_journal; "
        "sys.exit(run_journal(load_config(sys.argv[1])))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg)], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"journal role exited with {proc.returncode}"
            try:
                status = fetch_status(control_socket_path(state, "journal"), 1.0)
                if status.lifecycle == "READY":
                    break
            except RoleControlError:
                pass
            time.sleep(0.05)
        assert status is not None and status.lifecycle == "READY"
        ring = None
        while ring is None:
            try:
                ring = ShmRing.attach("journal", ITCH_EVENT.dtype, root=shm_root)
            except RingNotFoundError:
                time.sleep(0.01)
        sent = 0
        while sent < 5000:
            batch = _itch(sent + 1, 250)
            done = 0
            while done < len(batch):
                done += ring.push(batch[done:])
            sent += len(batch)
        deadline = time.monotonic() + 30
        while ring.stats().popped < sent and time.monotonic() < deadline:
            time.sleep(0.01)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{status.metrics_port}/metrics", timeout=5
        ) as reply:
            text = reply.read().decode()
        assert "tectra_journal_records_total" in text
        ring.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    journal = state / "journal" / "journal"
    report = verify_journal(journal)
    assert report.ok, report.format_text()
    got = np.concatenate(list(JournalReader(journal).records(ITCH_EVENT.type_id)))
    assert np.array_equal(got["seq"], np.arange(1, 5001))
    assert len(report.segments) > 5  # 64 KiB segments: rotated many times
    assert not any(p.name.endswith(".tmp") for p in journal.iterdir())
    assert os.path.exists(journal / "manifest.json")
